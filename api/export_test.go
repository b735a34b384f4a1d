package api

import "net"

// NewFastListenerOf is the fast path of whichever Server server returns
// (nil: none, as on a cluster node that does not lead), with
// X-Wasmtask-Index on its answers when index is set: what
// ClusterFront.NewFastListener builds, without a raft node.
func NewFastListenerOf(ln net.Listener, t FastTimeouts, server func() *Server, index bool) *FastListener {
	return newFastListener(ln, t, server, index, nil)
}
