package api

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"time"
)

// A client that follows a cluster (FollowCluster) moves to another node
// when the node it talks to cannot be reached: any node forwards to the
// leader, so one live node is enough. wasmtask worker uses it, so a
// worker started with --server of one node goes on when that node dies.

// clusterPeers are the API addresses of a cluster's nodes and the one the
// client uses now.
type clusterPeers struct {
	mu      sync.Mutex
	urls    []string
	current string // "": BaseURL
}

// FollowCluster makes the client move to another node of the cluster when
// the node it talks to cannot be reached. It learns the nodes' API
// addresses (GET /v1/cluster) now and every 30 s until ctx ends; against
// a single server (no /v1/cluster) it changes nothing.
func (c *Client) FollowCluster(ctx context.Context) {
	p := &clusterPeers{}
	if !c.peers.CompareAndSwap(nil, p) {
		return
	}
	c.learnPeers(ctx, p)
	go func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				c.learnPeers(ctx, p)
			}
		}
	}()
}

func (c *Client) learnPeers(ctx context.Context, p *clusterPeers) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var st ClusterStatus
	if _, err := c.doOnce(ctx, "GET", "/v1/cluster?local=1", nil, "", &st); err != nil {
		return // a single server, or this node is down: keep what we know
	}
	urls := []string{c.BaseURL}
	for _, s := range st.Servers {
		if s.HTTP != "" && !slices.Contains(urls, s.HTTP) {
			urls = append(urls, s.HTTP)
		}
	}
	p.mu.Lock()
	p.urls = urls
	p.mu.Unlock()
}

// base is the URL requests go to now.
func (c *Client) base() string {
	if p := c.peers.Load(); p != nil {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.current != "" {
			return p.current
		}
	}
	return c.BaseURL
}

// rotate moves the client off failed, a node that could not be reached,
// to the next known node; it reports whether another node is known.
func (c *Client) rotate(failed string) bool {
	p := c.peers.Load()
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.urls) < 2 {
		return false
	}
	cur := p.current
	if cur == "" {
		cur = c.BaseURL
	}
	if cur != failed {
		return true // another request moved already
	}
	i := slices.Index(p.urls, failed)
	p.current = p.urls[(i+1)%len(p.urls)]
	return true
}

// peerCount is the number of nodes known (0: not following a cluster).
func (c *Client) peerCount() int {
	if p := c.peers.Load(); p != nil {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.urls)
	}
	return 0
}

// notSent reports whether err means the request never reached a server
// (the connection was refused): it may go to another node as it is.
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
