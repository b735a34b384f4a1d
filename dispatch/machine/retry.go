package machine

import (
	"errors"
	"fmt"
	"slices"
)

// Client operations on final tasks: retry (new runs of a failed or
// canceled task), delete and purge (drop final tasks before retention
// would). A retry is EvTaskRetried followed by EvRunCreated; a delete or
// purge is EvTaskDropped with a Reason, the event retention writes too.

// ErrNotFinal is returned (wrapped, with the task and its state) for a
// retry, delete or purge of a task whose state does not allow it.
var ErrNotFinal = errors.New("dispatch: the task's state does not allow this")

// Reasons recorded on EvTaskDropped by client operations (retention
// writes none).
const (
	DropDeleted = "deleted"
	DropPurged  = "purged"
)

// MaxPurge bounds the tasks one purge step drops (one WAL frame);
// Engine.Purge repeats steps until nothing more matches.
const MaxPurge = 10_000

// CronRunsKept is how many final runs of a cron task stay in its run list
// (older ones are pruned, so a cron task's memory stays bounded).
const CronRunsKept = 100

// Inputs to Core.Step for Engine.Retry, Delete and Purge.
type (
	RetryInput struct {
		Task  TaskID
		Reply chan Reply
	}
	DeleteInput struct {
		Task  TaskID
		Reply chan Reply
	}
	PurgeInput struct {
		Filter PurgeFilter
		Reply  chan Reply
	}
)

// PurgeFilter selects final tasks for Engine.Purge; zero fields match
// everything final.
type PurgeFilter struct {
	// States among completed, failed, canceled; empty: all three.
	States  []TaskState
	Handler string
	Labels  map[string]string // every pair must match
	// OlderThanMs keeps tasks that became final less than this long ago.
	OlderThanMs int64
}

func notFinal(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotFinal, fmt.Sprintf(format, args...))
}

// handleRetry starts a new generation of a failed or canceled task: one
// new run for each run of the last generation that did not complete (one
// run if they all completed and a child failed). The old runs stay as
// they were, for the record.
func (c *Core) handleRetry(now int64, in RetryInput) error {
	t, ok := c.s.Tasks[in.Task]
	if !ok {
		c.reply(in.Reply, Reply{Err: fmt.Errorf("%w: %q", ErrNotFound, in.Task)})
		return nil
	}
	if err := c.s.checkRetry(t); err != nil {
		c.reply(in.Reply, Reply{Err: err})
		return nil
	}
	var again int
	for _, r := range t.runs {
		if r.Index >= t.more().RetryFrom && r.State != RunCompleted {
			again++
		}
	}
	again = max(again, 1)
	if err := c.emit(Event{Type: EvTaskRetried, At: now, Task: t.Spec.ID, Reason: "retried by a client"}); err != nil {
		return err
	}
	t = c.s.Tasks[in.Task] // applyRetried replaced it
	for range again {
		i := t.nextRunIndex()
		to := RunReady
		if t.linked().waiting > 0 {
			to = RunScheduled
		}
		if err := c.emit(Event{Type: EvRunCreated, At: now, Task: t.Spec.ID, Run: c.runID(t.Spec.ID, i), Index: i, To: to, DueAt: now}); err != nil {
			return err
		}
	}
	c.reply(in.Reply, Reply{Submit: SubmitResult{Task: in.Task}})
	return nil
}

// checkRetry says why t cannot be retried, or nil.
func (s *State) checkRetry(t *Task) error {
	id := t.Spec.ID
	switch {
	case !t.IsFinal():
		return notFinal("task %s is %s; only a failed or canceled task can be retried", id, s.StateOf(t))
	case t.result() == TaskCompleted:
		return notFinal("task %s is completed; only a failed or canceled task can be retried", id)
	case t.Spec.Parent != "":
		return notFinal("task %s is a child of %s; retry %s, whose handler submits it again", id, t.Spec.Parent, t.Spec.Parent)
	case t.Spec.Policy.Kind == PolicyCron:
		return notFinal("task %s is a cron task, whose schedule ended; submit it again under a new id", id)
	}
	for _, pid := range t.prereqs() {
		if p, ok := s.Tasks[pid]; ok && p.IsFinal() && p.result() != TaskCompleted {
			return notFinal("task %s waits for %s, which is %s; retry %s first", id, pid, p.result(), pid)
		}
	}
	return nil
}

// applyRetried makes a final failed or canceled task live again. The task
// is replaced by a copy, not changed in place: a snapshot may hold final
// tasks by pointer (captureState).
func applyRetried(s *State, e *Event) error {
	t, ok := s.Tasks[e.Task]
	if !ok {
		return &InvariantError{Event: e.Type, Task: e.Task, Reason: "unknown task"}
	}
	if err := s.checkRetry(t); err != nil {
		return &InvariantError{Event: e.Type, Task: e.Task, Reason: err.Error()}
	}
	nt := *t
	nt.runs = slices.Clone(t.runs)
	for _, r := range nt.runs {
		r.task = &nt
	}
	s.Tasks[e.Task] = &nt
	s.removeFinalTree(&nt)
	nt.res, nt.FinalAt, nt.Canceled = resNone, 0, false
	m := nt.editMore() // the original keeps its own
	m.CancelNote = ""
	m.Retries++
	m.RetryFrom, m.RetrySeq = nt.nextRunIndex(), s.NextSubmitSeq
	// Its old dependents were canceled with it; those still waiting
	// (none: a failed prerequisite dooms them) are kept, as reindex would.
	if t.links != nil {
		l := *t.links // the links of the copy are its own too
		l.dependents = slices.DeleteFunc(slices.Clone(l.dependents), func(id TaskID) bool {
			d, ok := s.Tasks[id]
			return !ok || d.IsFinal()
		})
		l.waiting = 0
		nt.links = &l
	}
	for _, pid := range nt.prereqs() {
		if p, ok := s.Tasks[pid]; ok && !p.IsFinal() {
			nt.own().waiting++
			if !slices.Contains(p.linked().dependents, nt.Spec.ID) {
				pl := p.own()
				pl.dependents = append(pl.dependents, nt.Spec.ID)
			}
		}
	}
	return nil
}

// removeFinalTree takes t and its descendants out of the retention order
// (they were added together when t became final; addFinalTree adds them
// again when it is final again).
func (s *State) removeFinalTree(t *Task) {
	tree := map[TaskID]bool{}
	var walk func(t *Task)
	walk = func(t *Task) {
		tree[t.Spec.ID] = true
		for _, id := range t.linked().children {
			if c, ok := s.Tasks[id]; ok {
				walk(c)
			}
		}
	}
	walk(t)
	old, oldKeys := s.Finals(), s.finalKeys[s.finalsHead:]
	finals, keys := make([]TaskID, 0, len(old)), make([]finalKey, 0, len(old))
	for i, id := range old {
		if !tree[id] {
			finals, keys = append(finals, id), append(keys, oldKeys[i])
		}
	}
	s.finals, s.finalKeys, s.finalsHead = finals, keys, 0
}

// handleDelete drops a final task and its subtree.
func (c *Core) handleDelete(now int64, in DeleteInput) error {
	t, ok := c.s.Tasks[in.Task]
	if !ok {
		c.reply(in.Reply, Reply{Err: fmt.Errorf("%w: %q", ErrNotFound, in.Task)})
		return nil
	}
	if !t.IsFinal() {
		c.reply(in.Reply, Reply{Err: notFinal("task %s is %s; only a final task can be deleted (cancel it first)", in.Task, c.s.StateOf(t))})
		return nil
	}
	if !c.s.retainable(t) {
		c.reply(in.Reply, Reply{Err: notFinal("task %s is a child of %s, which is not final yet", in.Task, t.Spec.Parent)})
		return nil
	}
	n, err := c.dropTree(now, t, DropDeleted, map[TaskID]bool{})
	if err != nil {
		return err
	}
	c.reply(in.Reply, Reply{N: n})
	return nil
}

// dropTree drops t and its descendants (all final) and returns how many
// it dropped; done holds what was dropped already.
func (c *Core) dropTree(now int64, t *Task, reason string, done map[TaskID]bool) (int, error) {
	var ids []TaskID
	var walk func(t *Task)
	walk = func(t *Task) {
		if done[t.Spec.ID] {
			return
		}
		done[t.Spec.ID] = true
		ids = append(ids, t.Spec.ID)
		for _, id := range t.linked().children {
			if ch, ok := c.s.Tasks[id]; ok {
				walk(ch)
			}
		}
	}
	walk(t)
	for _, id := range ids {
		if err := c.emit(Event{Type: EvTaskDropped, At: now, Task: id, Reason: reason}); err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}

// handlePurge drops up to MaxPurge final tasks matching the filter (and
// their subtrees), oldest final first.
func (c *Core) handlePurge(now int64, in PurgeInput) error {
	f := in.Filter
	var match []*Task
	for _, id := range c.s.Finals() {
		t, ok := c.s.Tasks[id]
		if !ok || !t.IsFinal() {
			continue
		}
		if len(match) >= MaxPurge {
			break
		}
		if f.OlderThanMs > 0 && t.FinalAt > now-f.OlderThanMs {
			continue
		}
		if len(f.States) > 0 && !slices.Contains(f.States, t.result()) ||
			f.Handler != "" && t.Spec.Handler != f.Handler || !HasLabels(t.Spec.Labels, f.Labels) {
			continue
		}
		match = append(match, t)
	}
	done, n := map[TaskID]bool{}, 0
	for _, t := range match {
		if done[t.Spec.ID] {
			continue
		}
		k, err := c.dropTree(now, t, DropPurged, done)
		if err != nil {
			return err
		}
		n += k
	}
	c.reply(in.Reply, Reply{N: n})
	return nil
}

// HasLabels reports whether labels contains every pair of want.
func HasLabels(labels, want map[string]string) bool {
	for k, v := range want {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// pruneCronRuns forgets the oldest final runs of cron task t beyond
// CronRunsKept (the newest run always stays: nextRunIndex relies on it).
// A pruned failed run still makes the task failed (PrunedFailed). The
// slices are new: a snapshot may share the old ones.
func (s *State) pruneCronRuns(t *Task) {
	drop := t.finalRuns - CronRunsKept
	if drop <= 0 {
		return
	}
	ids := make([]RunID, 0, len(t.Runs)-drop)
	runs := make([]*Run, 0, len(t.runs)-drop)
	for _, r := range t.runs {
		if drop > 0 && r.State.Final() {
			drop--
			t.finalRuns--
			m := t.editMore()
			m.Pruned++
			m.PrunedFailed = m.PrunedFailed || r.State == RunFailed
			s.counts.add(r.State, -1)
			r.task = nil // no longer the state's (runRef)
			delete(s.Runs, r.ID)
			continue
		}
		ids = append(ids, r.ID)
		runs = append(runs, r)
	}
	t.Runs, t.runs = ids, runs
}
