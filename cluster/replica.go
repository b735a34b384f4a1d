package cluster

import (
	"context"
	"fmt"

	"github.com/wasmtask/wasmtask/dispatch"
)

// Replica answers reads from this node's committed state (the FSM's), so
// that a follower serves GET requests without asking the leader. Its
// methods are named as the engine's read methods the API uses.
//
// The state lags the leader's by what this node has not applied yet (a
// commit reaches a follower with the next entry or within CommitTimeout);
// AppliedIndex says how new it is and WaitApplied waits for a newer one.
type Replica struct{ n *Node }

// Replica returns the reads of this node's committed state.
func (n *Node) Replica() *Replica { return &Replica{n} }

// TaskWithoutInput returns the view of task id (payloads are inline in
// cluster mode: there is nothing to read elsewhere).
func (r *Replica) TaskWithoutInput(id dispatch.TaskID) (v dispatch.TaskView, ok bool) {
	r.n.fsm.read(func(s *dispatch.State) { v, ok = dispatch.ViewTask(s, id) })
	return v, ok
}

// Has reports whether task id is in the committed state.
func (r *Replica) Has(id dispatch.TaskID) bool {
	var ok bool
	r.n.fsm.read(func(s *dispatch.State) { ok, _ = dispatch.TaskFinal(s, id) })
	return ok
}

// List returns tasks newest first, as Engine.List.
func (r *Replica) List(f dispatch.ListFilter) (out []dispatch.TaskView) {
	r.n.fsm.read(func(s *dispatch.State) { out = dispatch.ListState(s, f) })
	return out
}

// Stats are the state's counters (the loop's own, ticks and appends, are
// the leader's: zero here).
func (r *Replica) Stats() (st dispatch.Stats) {
	r.n.fsm.read(func(s *dispatch.State) { st = dispatch.StateStats(s) })
	return st
}

// WaitWithoutInput blocks until task id is final in the committed state
// or ctx ends (then it returns the view as it is, with ctx's error), as
// Engine.WaitWithoutInput. It wakes when an entry makes the task final
// (fsm.waits), not at every entry.
func (r *Replica) WaitWithoutInput(ctx context.Context, id dispatch.TaskID) (dispatch.TaskView, error) {
	f := r.n.fsm
	for {
		var exists, final bool
		var woken chan struct{}
		f.read(func(s *dispatch.State) {
			if exists, final = dispatch.TaskFinal(s, id); exists && !final {
				woken = f.waits.task(id)
			}
		})
		if !exists {
			return dispatch.TaskView{}, fmt.Errorf("%w: %q", dispatch.ErrNotFound, id)
		}
		if final {
			v, _ := r.TaskWithoutInput(id)
			return v, nil
		}
		select {
		case <-woken:
		case <-ctx.Done():
			f.waits.dropTask(id, woken)
			v, ok := r.TaskWithoutInput(id)
			if !ok {
				return v, fmt.Errorf("%w: %q", dispatch.ErrNotFound, id)
			}
			return v, ctx.Err()
		}
	}
}

// AppliedSeq is the dispatch sequence of the committed state this node
// applied (the events in it). Sequences are the same on every node, and
// a write acknowledged by a leader is at or below the leader's durable
// sequence (Engine.DurableSeq): it is the index of read-your-writes.
func (r *Replica) AppliedSeq() uint64 { return r.n.fsm.seq.Load() }

// WaitApplied waits until this node's state holds sequence seq, or ctx
// ends; it reports whether the node got there.
func (r *Replica) WaitApplied(ctx context.Context, seq uint64) bool {
	f := r.n.fsm
	for {
		var woken chan struct{}
		f.read(func(*dispatch.State) {
			if f.seq.Load() < seq {
				woken = f.waits.seq(seq)
			}
		})
		if woken == nil {
			return true
		}
		select {
		case <-woken:
		case <-ctx.Done():
			return f.seq.Load() >= seq
		}
	}
}
