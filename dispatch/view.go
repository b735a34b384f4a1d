package dispatch

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/wasmtask/wasmtask/dispatch/machine"
)

// Task returns a copy of task id, or false. Like every read it returns only
// durable state: the view may include the last tick or two, whose fsync is
// in flight, so it waits for that fsync (at most about one) before returning.
func (e *Engine) Task(id TaskID) (v TaskView, ok bool) { return e.task(id, true) }

// TaskWithoutInput is Task without reading an input kept in the payload
// store (Spec.InputRef names it): for views that do not show the input,
// such as the API's.
func (e *Engine) TaskWithoutInput(id TaskID) (TaskView, bool) { return e.task(id, false) }

func (e *Engine) task(id TaskID, input bool) (v TaskView, ok bool) {
	e.readDurable(func(s *State) {
		var t *Task
		if t, ok = s.Tasks[id]; ok {
			v = machine.ViewOf(s, t)
		}
	})
	if ok {
		e.resolveView(&v, input) // outside the lock: it reads files
	}
	return v, ok
}

// readDurable runs read on the state under the read lock, then waits until
// everything it may have seen (up to State.Applied) is durable.
func (e *Engine) readDurable(read func(s *State)) {
	e.mu.RLock()
	read(e.state)
	seen := e.state.Applied
	e.mu.RUnlock()
	e.waitDurable(seen)
}

// ListFilter selects tasks for List; zero fields match everything.
type ListFilter struct {
	State   TaskState
	Handler string
	// Labels: every pair must be among the task's labels.
	Labels map[string]string
	// IDContains keeps tasks whose id contains this text (the dashboard's
	// search box).
	IDContains string
	Limit      int // default 100
	// Before returns only tasks submitted before this one (for paging).
	Before TaskID
}

// List returns tasks newest first. Under the read lock (which holds up
// the loop's next step) it only filters and keeps the newest Limit tasks
// in a bounded heap; it builds views of those alone.
func (e *Engine) List(f ListFilter) []TaskView {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	var out []TaskView
	e.readDurable(func(s *State) { out = ListState(s, f) })
	for i := range out {
		e.resolveView(&out[i], false) // outputs; inputs only in Task's single views
	}
	return out
}

// ListState is List over s, without reading the payload store (a
// replica's payloads are inline): the caller holds s still.
func ListState(s *State, f ListFilter) []TaskView {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	var before uint64
	if t, ok := s.Tasks[f.Before]; ok {
		before = t.SubmitSeq
	}
	newest := make(taskHeap, 0, min(f.Limit, len(s.Tasks)))
	for _, t := range s.Tasks {
		if before != 0 && t.SubmitSeq >= before || f.Handler != "" && t.Spec.Handler != f.Handler ||
			!machine.HasLabels(t.Spec.Labels, f.Labels) || f.IDContains != "" && !strings.Contains(string(t.Spec.ID), f.IDContains) {
			continue
		}
		if len(newest) == f.Limit && t.SubmitSeq < newest[0].SubmitSeq {
			continue // older than every task kept so far
		}
		if f.State != "" && s.StateOf(t) != f.State {
			continue
		}
		newest.keep(t, f.Limit)
	}
	slices.SortFunc(newest, func(a, b *Task) int { return cmp.Compare(b.SubmitSeq, a.SubmitSeq) })
	out := make([]TaskView, len(newest))
	for i, t := range newest {
		out[i] = machine.ViewOf(s, t)
	}
	return out
}

// taskHeap is a min-heap of tasks by SubmitSeq: the newest n seen.
type taskHeap []*Task

func (h taskHeap) Len() int           { return len(h) }
func (h taskHeap) Less(i, j int) bool { return h[i].SubmitSeq < h[j].SubmitSeq }
func (h taskHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }

// keep adds t, dropping the oldest when the heap holds n already.
func (h *taskHeap) keep(t *Task, n int) {
	if len(*h) < n {
		*h = append(*h, t)
		machine.SiftUp(h, len(*h)-1)
		return
	}
	(*h)[0] = t
	machine.SiftDown(h, 0, len(*h))
}

// After adds prerequisites to task id, which must not have started: all or
// nothing, durable when it returns. Unknown ids and cycles (checked against
// the whole graph) are *ValidationErrors naming the cycle.
func (e *Engine) After(ctx context.Context, id TaskID, after []TaskID) error {
	ch := make(chan machine.Reply, 1)
	if err := e.send(ctx, machine.AfterInput{Task: id, After: after, Reply: ch}); err != nil {
		return err
	}
	_, err := e.await(ctx, ch)
	return err
}

// Wait blocks until task id is final or ctx ends, and returns its view.
func (e *Engine) Wait(ctx context.Context, id TaskID) (TaskView, error) { return e.wait(ctx, id, true) }

// WaitWithoutInput is Wait returning TaskWithoutInput's view.
func (e *Engine) WaitWithoutInput(ctx context.Context, id TaskID) (TaskView, error) {
	return e.wait(ctx, id, false)
}

func (e *Engine) wait(ctx context.Context, id TaskID, input bool) (TaskView, error) {
	for {
		// Register before looking, so a task that becomes final in between
		// still wakes us; the engine closes the channel of each task that
		// became final once its tick is durable (not on every tick: many
		// waiters would otherwise all wake at every fsync).
		slot := e.waiter(id)
		v, ok := e.task(id, input)
		if !ok {
			e.unwait(id, slot)
			return v, ErrNotFound
		}
		if v.Final() {
			e.unwait(id, slot)
			return v, nil
		}
		select {
		case <-slot.ch:
			// The view as of the tick that made the task final, which is
			// durable now: reading the task again would wait for the fsync
			// of whatever the loop stepped since (often one more).
			if fv := slot.view; fv != nil && fv.Final() {
				v := cloneView(fv)
				e.resolveView(&v, input)
				return v, nil
			}
		case <-e.done:
			e.unwait(id, slot)
			return v, e.stoppedErr()
		case <-ctx.Done():
			e.unwait(id, slot)
			return v, ctx.Err()
		}
	}
}

// cloneView copies what resolveView writes into (the runs and their
// attempts) and the lists, so that Wait calls sharing a view each get
// their own.
func cloneView(v *TaskView) TaskView {
	c := *v
	c.Runs = slices.Clone(v.Runs)
	for i := range c.Runs {
		c.Runs[i].Attempts = slices.Clone(c.Runs[i].Attempts)
	}
	c.Children, c.After, c.WaitingFor = slices.Clone(v.Children), slices.Clone(v.After), slices.Clone(v.WaitingFor)
	return c
}

// waiters are the Wait calls by task; the committer wakes them.
type waiters struct {
	mu sync.Mutex
	m  map[TaskID]*waitSlot
}

// waitSlot is what the Wait calls on one task share.
type waitSlot struct {
	ch chan struct{} // closed when the task became final (or was dropped) in a durable tick
	n  int           // Wait calls sharing it
	// view, set before ch closes: the task's view as of that tick, when
	// the slot was registered before the tick was stepped (nil: read the
	// task again).
	view *TaskView
}

func (e *Engine) waiter(id TaskID) *waitSlot {
	w := &e.waits
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[TaskID]*waitSlot{}
	}
	slot, ok := w.m[id]
	if !ok {
		slot = &waitSlot{ch: make(chan struct{})}
		w.m[id] = slot
	}
	slot.n++
	return slot
}

// unwait forgets a Wait call that returned without its channel closing.
func (e *Engine) unwait(id TaskID, slot *waitSlot) {
	w := &e.waits
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m[id] != slot {
		return // already closed and removed by the committer
	}
	if slot.n--; slot.n <= 0 {
		delete(w.m, id)
	}
}

// finalViews returns, for the tasks of ids (those that became final or
// were dropped in the tick just stepped) that Wait calls wait for, their
// views as of this tick; nil when none is waited for. The loop calls it
// under e.mu, right after the step; wakeFinal hands the views over once
// the tick is durable.
func (e *Engine) finalViews(ids []TaskID) []*TaskView {
	if len(ids) == 0 {
		return nil
	}
	w := &e.waits
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.m) == 0 {
		return nil
	}
	var views []*TaskView
	for i, id := range ids {
		if _, ok := w.m[id]; !ok {
			continue
		}
		t, ok := e.state.Tasks[id]
		if !ok {
			continue // dropped: the Wait call reads it again and reports it gone
		}
		if views == nil {
			views = make([]*TaskView, len(ids))
		}
		v := machine.ViewOf(e.state, t)
		views[i] = &v
	}
	return views
}

// wakeFinal closes the channels of tasks that became final (or were
// dropped) in a durable tick, handing them the views finalViews took
// (views[i] is ids[i]'s; views may be nil).
func (e *Engine) wakeFinal(ids []TaskID, views []*TaskView) {
	if len(ids) == 0 {
		return
	}
	w := &e.waits
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, id := range ids {
		if slot, ok := w.m[id]; ok {
			if views != nil {
				slot.view = views[i]
			}
			close(slot.ch)
			delete(w.m, id)
		}
	}
}

// Stats are engine counters for status and metrics.
type Stats struct {
	Submitted   uint64 // tasks ever accepted (retention does not lower it)
	Tasks       int
	RunsByState map[RunState]int
	InFlight    int
	Paused      bool
	Applied     uint64 // last WAL sequence
	Ticks       uint64
	Events      uint64
	WALAppends  uint64
}

// Stats returns counters; it never blocks the loop for long.
func (e *Engine) Stats() (st Stats) {
	e.readDurable(func(s *State) { st = StateStats(s) })
	st.Ticks, st.Events, st.WALAppends = e.stats.ticks.Load(), e.stats.events.Load(), e.stats.appends.Load()
	return st
}

// StateStats are the counters of s alone (no loop counters): a replica's.
func StateStats(s *State) Stats {
	return Stats{Submitted: s.NextSubmitSeq - 1, Tasks: len(s.Tasks), RunsByState: s.Counts(), InFlight: s.Inflight,
		Paused: s.Paused, Applied: s.Applied}
}

// Done is closed when the loop has stopped: after Close, or on its own
// after a fatal error (see Err).
func (e *Engine) Done() <-chan struct{} { return e.done }

// DurableSeq is the sequence up to which the log is durable (in cluster
// mode: committed by a majority). Every answer given so far, a write's
// acknowledgment included, is at or below it: a replica that applied it
// holds everything a client has seen (read-your-writes).
func (e *Engine) DurableSeq() uint64 { return e.durable.Load() }
