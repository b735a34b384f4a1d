package cluster

import (
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wasmtask/wasmtask/dispatch"
)

// Status is what GET /v1/cluster reports of a node.
type Status struct {
	NodeID string `json:"node_id"`
	// Role is leader, follower, candidate or shutdown.
	Role       string `json:"role"`
	Term       uint64 `json:"term"`
	Leader     string `json:"leader,omitempty"`      // the leader's node id ("" while none is known)
	LeaderHTTP string `json:"leader_http,omitempty"` // its API address
	// Raft log indexes: last written here, committed (known to this node),
	// applied to this node's state.
	LastIndex    uint64 `json:"last_index"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	// AppliedSeq is the dispatch sequence (event count) of the state this
	// node applied; equal on every node that caught up.
	AppliedSeq uint64 `json:"applied_seq"`
	// Tasks in this node's committed state.
	Tasks int `json:"tasks"`
	// LastContactMs: milliseconds since a follower last heard the leader
	// (0 on the leader).
	LastContactMs int64 `json:"last_contact_ms"`
	// Commits counts the raft entries of dispatch events this node
	// committed while it led (each holds the ticks stepped during the
	// previous commit), CommitEvents their events and CommitSeconds the
	// time spent waiting for them: the mean commit latency is
	// CommitSeconds/Commits.
	Commits       uint64   `json:"commits"`
	CommitEvents  uint64   `json:"commit_events"`
	CommitSeconds float64  `json:"commit_seconds"`
	Servers       []Server `json:"servers"`
}

// Server is a member of the configuration.
type Server struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTP     string `json:"http,omitempty"`
	Voter    bool   `json:"voter"`
	Leader   bool   `json:"leader"`
	// Filled by the API from the server's own status (GET /v1/cluster asks
	// each member): its applied index and lag behind this node's commit
	// index; Error when it did not answer.
	AppliedIndex uint64 `json:"applied_index,omitempty"`
	Lag          uint64 `json:"lag"`
	Error        string `json:"error,omitempty"`
}

// Status reports this node's view of the cluster.
func (n *Node) Status() Status {
	addr, id := n.raft.LeaderWithID()
	_ = addr
	st := Status{NodeID: n.cfg.NodeID, Role: roleName(n.raft.State()), Term: n.raft.CurrentTerm(), Leader: string(id),
		LastIndex: n.raft.LastIndex(), CommitIndex: n.raft.CommitIndex(), AppliedIndex: n.fsm.index.Load(),
		AppliedSeq: n.fsm.seq.Load(), Commits: n.commits.commits.Load(), CommitEvents: n.commits.events.Load(),
		CommitSeconds: time.Duration(n.commits.nanos.Load()).Seconds()}
	if st.Role != "leader" {
		if lc := n.raft.LastContact(); !lc.IsZero() {
			st.LastContactMs = time.Since(lc).Milliseconds()
		}
	}
	members := n.fsm.memberMap()
	st.LeaderHTTP = members[st.Leader]
	if e := n.Engine(); e != nil && n.fsm.stale() {
		st.Tasks = e.Stats().Tasks // rather than catching up on every status (metrics, peers)
	} else {
		n.fsm.read(func(s *dispatch.State) { st.Tasks = len(s.Tasks) })
	}
	if cf := n.raft.GetConfiguration(); cf.Error() == nil {
		for _, s := range cf.Configuration().Servers {
			st.Servers = append(st.Servers, Server{ID: string(s.ID), RaftAddr: string(s.Address), HTTP: members[string(s.ID)],
				Voter: s.Suffrage == raft.Voter, Leader: s.ID == id})
		}
	}
	return st
}

// LeaderHTTP is the leader's API address, "" while none is known.
func (n *Node) LeaderHTTP() string {
	_, id := n.raft.LeaderWithID()
	if id == "" {
		return ""
	}
	return n.fsm.member(string(id))
}

// ID is this node's id (Config.NodeID), without the rest of Status.
func (n *Node) ID() string { return n.cfg.NodeID }

// IsLeader reports whether this node leads.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

func roleName(s raft.RaftState) string {
	switch s {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	}
	return "shutdown"
}

// Digest is a SHA-256 of this node's committed state in its snapshot
// encoding (deterministic: tasks in submission order), with the sequence
// it covers: two nodes at the same sequence hold the same state exactly
// when their digests match.
func (n *Node) Digest() (seq uint64, digest string, err error) {
	n.fsm.read(func(s *dispatch.State) {
		var b []byte
		if b, err = dispatch.EncodeState(s); err == nil {
			seq, digest = s.Applied, fmt.Sprintf("%x", sha256.Sum256(b))
		}
	})
	return seq, digest, err
}
