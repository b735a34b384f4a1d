package machine

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Workflows: prerequisites (after), parent/child hierarchy, concurrency
// keys. Everything here is derived from durable state: apply maintains it
// event by event and reindex rebuilds it after a snapshot load, so gating,
// failure propagation and key holds survive a restart.

// doom is a task to cancel because a prerequisite failed or was canceled.
// apply records it; Core turns it into events in the same tick.
type doom struct {
	task   TaskID
	reason string
}

// prereqs returns every prerequisite of t (submitted and declared later).
func (t *Task) prereqs() []TaskID {
	if len(t.more().AddedAfter) == 0 {
		return t.Spec.After
	}
	return append(slices.Clone(t.Spec.After), t.more().AddedAfter...)
}

// waitsFor returns what task id waits for before it can be final: its
// prerequisites and its children (a final task waits for nothing). A
// cycle of these edges would never end, so declarations that close one
// are rejected.
func (s *State) waitsFor(id TaskID) []TaskID {
	t, ok := s.Tasks[id]
	if !ok || t.IsFinal() {
		return nil
	}
	if len(t.linked().children) == 0 {
		return t.prereqs()
	}
	return append(slices.Clip(t.prereqs()), t.linked().children...)
}

// link registers a new task with its parent and prerequisites.
func (s *State) link(t *Task) {
	if t.Spec.Parent != "" {
		if p, ok := s.Tasks[t.Spec.Parent]; ok {
			pl := p.own()
			pl.children = append(pl.children, t.Spec.ID)
			pl.pendingChildren++
			t.own().depth = pl.depth + 1
		}
	}
	for _, id := range t.Spec.After {
		s.addPrereq(t, id)
	}
}

// addPrereq makes t wait for prerequisite id.
func (s *State) addPrereq(t *Task, id TaskID) {
	p, ok := s.Tasks[id]
	if !ok {
		return // dropped by retention after it completed
	}
	switch {
	case !p.IsFinal():
		t.own().waiting++
		pl := p.own()
		pl.dependents = append(pl.dependents, t.Spec.ID)
	case p.result() != TaskCompleted:
		s.Doomed = append(s.Doomed, doom{task: t.Spec.ID, reason: doomReason(p)})
	}
}

// doomReason says why a dependent of p is canceled: p did not complete
// and, when p was canceled, why it was, by the root cause rather than the
// whole chain: "prerequisite C canceled (prerequisite A failed)".
func doomReason(p *Task) string {
	reason := fmt.Sprintf("prerequisite %s %s", p.Spec.ID, p.result())
	if p.result() != TaskCanceled || p.more().CancelNote == "" {
		return reason
	}
	cause := p.more().CancelNote
	if head, inner, ok := strings.Cut(cause, " ("); ok && strings.HasPrefix(head, "prerequisite ") && strings.HasSuffix(inner, ")") {
		cause = strings.TrimSuffix(inner, ")") // p was canceled for a prerequisite: keep the root
	}
	return reason + " (" + cause + ")"
}

// maybeFinalize marks t final when its runs are final, no more runs will
// be created (cron), and its children are final; then it tells its parent
// and its dependents.
func (s *State) maybeFinalize(t *Task, at int64) {
	if t.IsFinal() || t.finalRuns < len(t.Runs) || len(t.Runs) == 0 || t.linked().pendingChildren > 0 || !t.runsComplete() {
		return
	}
	t.FinalAt = at
	t.setResult(s.resultOf(t))
	s.JustFinal = append(s.JustFinal, t.Spec.ID)
	if p, ok := s.Tasks[t.Spec.Parent]; ok && t.Spec.Parent != "" {
		p.own().pendingChildren--
		s.maybeFinalize(p, at)
	} else {
		// Retention may drop a subtree only once its root is final: the
		// parent's result still depends on its children.
		s.addFinalTree(t)
	}
	for _, id := range t.linked().dependents {
		d, ok := s.Tasks[id]
		if !ok || d.IsFinal() {
			continue
		}
		if t.result() == TaskCompleted {
			d.own().waiting--
			if d.linked().waiting == 0 {
				for _, r := range d.runs {
					if r.State == RunScheduled {
						s.index(r) // now due: the timer heap promotes it
					}
				}
			}
		} else {
			s.Doomed = append(s.Doomed, doom{task: id, reason: doomReason(t)})
		}
	}
}

// runsComplete reports whether the policy will create no more runs.
func (t *Task) runsComplete() bool {
	if t.Spec.Policy.Kind != PolicyCron || t.Canceled {
		return true
	}
	return t.Spec.Policy.MaxRuns > 0 && t.countedRuns() >= t.Spec.Policy.MaxRuns
}

// countedRuns is how many runs count toward a cron task's max_runs: every
// run created, pruned ones included, but skipped misfires.
func (t *Task) countedRuns() int { return t.nextRunIndex() - 1 - t.more().Skipped }

// resultOf decides a final task's result from its runs and children.
func (s *State) resultOf(t *Task) TaskState {
	failed, canceled := t.more().PrunedFailed, false
	for _, r := range t.runs {
		if r.Index < t.more().RetryFrom {
			continue // an earlier generation: a retry started over
		}
		failed = failed || r.State == RunFailed
		// A run is canceled without its task only as a skipped cron
		// misfire (promoteCron): that does not make the task canceled.
		canceled = canceled || r.State == RunCanceled && t.Canceled
	}
	switch {
	case failed:
		return TaskFailed
	case canceled:
		return TaskCanceled
	}
	if !t.Spec.TolerateChildFailures {
		for _, id := range t.linked().children {
			if c, ok := s.Tasks[id]; ok && c.IsFinal() && c.result() != TaskCompleted && c.SubmitSeq >= t.more().RetrySeq {
				if t.Canceled {
					return TaskCanceled // its subtree was canceled with it
				}
				return TaskFailed
			}
		}
	}
	return TaskCompleted
}

// addFinalTree records t and its descendants (all final) for retention.
func (s *State) addFinalTree(t *Task) {
	s.addFinal(t)
	for _, id := range t.linked().children {
		if c, ok := s.Tasks[id]; ok {
			s.addFinalTree(c)
		}
	}
}

// retainable reports whether retention may drop t: t and every ancestor
// is final.
func (s *State) retainable(t *Task) bool {
	for t.IsFinal() {
		p, ok := s.Tasks[t.Spec.Parent]
		if !ok || t.Spec.Parent == "" {
			return true
		}
		t = p
	}
	return false
}

// Finals are the retainable final tasks, oldest first (FinalAt, then
// SubmitSeq): the order retention drops them in. The slice is the
// state's: read it, do not keep it.
func (s *State) Finals() []TaskID { return s.finals[s.finalsHead:] }

// addFinal records t in the retention order (FinalAt, SubmitSeq).
func (s *State) addFinal(t *Task) {
	k := keyOf(t)
	if n := len(s.finalKeys); n == cap(s.finalKeys) || n == cap(s.finals) {
		s.roomForFinal()
	}
	if n := len(s.finalKeys); n == s.finalsHead || s.finalKeys[n-1].before(k) {
		s.finals = append(s.finals, t.Spec.ID)
		s.finalKeys = append(s.finalKeys, k)
		return
	}
	// Tasks final in one tick share FinalAt and arrive out of submission
	// order, so the place is near the end: gallop back from there, then
	// search the last stride.
	head := s.finalsHead
	hi, step := len(s.finalKeys)-1, 1 // finalKeys[hi] is not before t
	lo := hi - step
	for lo >= head && !s.finalKeys[lo].before(k) {
		hi, step = lo, step*2
		lo = hi - step
	}
	lo = max(lo, head-1) // finalKeys[lo] is before t, or lo is head-1
	i, _ := slices.BinarySearchFunc(s.finalKeys[lo+1:hi], k, func(f, k finalKey) int {
		if f.before(k) {
			return -1
		}
		return 1
	})
	s.finals = slices.Insert(s.finals, lo+1+i, t.Spec.ID)
	s.finalKeys = slices.Insert(s.finalKeys, lo+1+i, k)
}

// roomForFinal makes room in the full arrays of the retention order for
// one more task. When a quarter of them or more is room that retention
// left in front, the order moves there; otherwise it moves to arrays
// twice its length. With retention dropping a task for each one added,
// each task then costs the copy of a few entries and no new arrays; popping
// the front of a slice made append copy the whole order (100k tasks by
// default) into new arrays, new heap to fault in, every quarter of it.
func (s *State) roomForFinal() {
	head, n := s.finalsHead, len(s.finals)
	if head > 0 && head >= n/4 {
		m := copy(s.finals, s.finals[head:])
		copy(s.finalKeys, s.finalKeys[head:])
		clear(s.finals[m:])
		s.finals, s.finalKeys, s.finalsHead = s.finals[:m], s.finalKeys[:m], 0
		return
	}
	c := max(2*(n-head), 16)
	finals, keys := make([]TaskID, n-head, c), make([]finalKey, n-head, c)
	copy(finals, s.finals[head:])
	copy(keys, s.finalKeys[head:])
	s.finals, s.finalKeys, s.finalsHead = finals, keys, 0
}

// finalKey orders final tasks for retention: by FinalAt, then submission.
type finalKey struct {
	at  int64
	seq uint64
}

func keyOf(t *Task) finalKey { return finalKey{at: t.FinalAt, seq: t.SubmitSeq} }

func (a finalKey) before(b finalKey) bool { return a.at < b.at || a.at == b.at && a.seq < b.seq }

// dropFinal removes Finals()[i] (and its key).
func (s *State) dropFinal(i int) {
	if i == 0 {
		// Retention drops the oldest final task: pop it in O(1) rather
		// than shifting the whole list (compactFinals reuses the room).
		s.finals[s.finalsHead] = "" // the id's memory is not the list's any more
		s.finalsHead++
		if s.finalsHead == len(s.finals) {
			s.finals, s.finalKeys, s.finalsHead = s.finals[:0], s.finalKeys[:0], 0
		}
		return
	}
	i += s.finalsHead
	s.finals = slices.Delete(s.finals, i, i+1)
	s.finalKeys = slices.Delete(s.finalKeys, i, i+1)
}

// reindexWorkflow rebuilds links, gating and finality from the tasks and
// runs of a snapshot, in submission order so that the result does not
// depend on map order.
func (s *State) reindexWorkflow() {
	tasks := make([]*Task, 0, len(s.Tasks))
	for _, t := range s.Tasks {
		t.res, t.links = resNone, nil
		tasks = append(tasks, t)
	}
	slices.SortFunc(tasks, func(a, b *Task) int { return cmp.Compare(a.SubmitSeq, b.SubmitSeq) })
	// Finality, children first: a child is always submitted after its
	// parent, so walking backwards settles children before parents.
	for _, t := range tasks {
		if p, ok := s.Tasks[t.Spec.Parent]; ok && t.Spec.Parent != "" {
			pl := p.own()
			pl.children = append(pl.children, t.Spec.ID)
			t.own().depth = pl.depth + 1
		}
	}
	for i := len(tasks) - 1; i >= 0; i-- {
		t := tasks[i]
		for _, id := range t.linked().children {
			if !s.Tasks[id].IsFinal() {
				t.own().pendingChildren++
			}
		}
		if t.FinalAt != 0 && t.finalRuns == len(t.Runs) && t.linked().pendingChildren == 0 && t.runsComplete() {
			t.setResult(s.resultOf(t))
		}
	}
	for _, t := range tasks {
		if t.IsFinal() {
			continue
		}
		for _, id := range t.prereqs() {
			if p, ok := s.Tasks[id]; ok && !p.IsFinal() {
				t.own().waiting++
				pl := p.own()
				pl.dependents = append(pl.dependents, t.Spec.ID)
			}
		}
	}
	s.Doomed = nil
}

// releaseKey frees r's concurrency key when r became final and moves the
// best run blocked on the key back to the ready heap.
func (s *State) releaseKey(r *Run, key string) {
	if key == "" || s.keyHolder[key] != r.ID {
		return
	}
	delete(s.keyHolder, key)
	s.unpark(key)
}

// leftReady is called when r left the ready state other than by a lease
// (canceled, or gated by a prerequisite declared later). If its key is
// free, r may be the run releaseKey moved back to the ready heap, so the
// next run parked on the key gets its chance; otherwise that run would
// stay parked while nothing holds the key.
func (s *State) leftReady(r *Run) {
	if k := s.taskOf(r).Spec.ConcurrencyKey; k != "" {
		if _, held := s.keyHolder[k]; !held {
			s.unpark(k)
		}
	}
}

// unpark moves the best run parked on key back to the ready heap (where
// leaseReady parks it again if the key is held by then).
func (s *State) unpark(key string) {
	h := s.blocked[key]
	if h == nil {
		return
	}
	if e, ok := h.peekValid(); ok {
		h.pop()
		s.ready.push(e)
	}
	if len(*h) == 0 {
		delete(s.blocked, key)
	}
}
