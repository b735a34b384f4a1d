package api

import (
	"context"
	"net/http"
	"time"
)

// PeerLag is how far a member is behind the leader, as the leader last
// measured it (WatchPeers): the member's applied raft index, and Lag, the
// leader's commit index minus it (entries not applied there yet). Up is
// false when the member did not answer (then the others are zero).
type PeerLag struct {
	ID           string
	AppliedIndex uint64
	Lag          uint64
	Up           bool
}

// WatchPeers measures every other member's lag each interval while this
// node leads (each member is asked for its own status, 1 s at most), for
// PeerLags and the per-peer metrics, until ctx ends. On a follower it
// measures nothing (PeerLags is empty).
func (f *ClusterFront) WatchPeers(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		f.measurePeers(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (f *ClusterFront) measurePeers(ctx context.Context) {
	n := f.cfg.Node
	if !n.IsLeader() {
		f.peerLags.Store(nil)
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "/v1/cluster", nil)
	if err != nil {
		return
	}
	if f.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+f.cfg.Token)
	}
	st := n.Status()
	f.peerLag(req, &st)
	out := make([]PeerLag, 0, len(st.Servers))
	for _, s := range st.Servers {
		if s.ID == st.NodeID {
			continue
		}
		p := PeerLag{ID: s.ID, Up: s.Error == ""}
		if p.Up {
			p.AppliedIndex, p.Lag = s.AppliedIndex, s.Lag
		}
		out = append(out, p)
	}
	f.peerLags.Store(&out)
}

// PeerLags is the last measure of every other member's lag (WatchPeers),
// empty while this node does not lead.
func (f *ClusterFront) PeerLags() []PeerLag {
	if p := f.peerLags.Load(); p != nil {
		return *p
	}
	return nil
}
