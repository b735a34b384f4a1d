package machine

import (
	"fmt"
	"slices"
)

// checkSubmission validates what Normalize cannot: the handler (through
// Config.ValidateHandler) and prerequisites against the current state.
// Nothing of a rejected submission is written.
func (c *Core) checkSubmission(now int64, spec *TaskSpec) error {
	if spec.Policy.Kind == PolicyCron {
		if cronOf(spec).next(max(now, spec.NotBeforeMs)-1) == 0 {
			return Invalid("run_policy.cron.expr", "%q has no future occurrence", spec.Policy.CronExpr)
		}
	}
	if c.cfg.ValidateHandler != nil {
		if err := c.cfg.ValidateHandler(spec.Handler); err != nil {
			return Invalid("handler", "%v", err)
		}
	}
	for _, id := range spec.After {
		if id == spec.ID {
			return Invalid("after", "cycle: %s waits for itself (%s -> %s)", id, id, id)
		}
		if _, ok := c.s.Tasks[id]; !ok {
			return Invalid("after", "unknown task %q (a prerequisite must be submitted first)", id)
		}
	}
	return nil
}

// submitTask writes a validated spec and its first runs.
func (c *Core) submitTask(now int64, spec *TaskSpec) error {
	if err := c.emit(Event{Type: EvTaskSubmitted, At: now, Task: spec.ID, Spec: spec}); err != nil {
		return err
	}
	t := c.s.submitted // the task just applied, without a lookup
	if t == nil || t.Spec.ID != spec.ID {
		t = c.s.Tasks[spec.ID]
	}
	if t == nil {
		return nil // canceled and dropped in the same tick: cannot happen, but do not crash
	}
	t.submitSeq = c.s.Applied + uint64(len(c.batch.Events)) // the loop moves Applied after Step
	if spec.Policy.Kind == PolicyCron {
		return c.refillCron(now, t)
	}
	base := max(now, spec.NotBeforeMs)
	for i := 1; i <= spec.RunCount(); i++ {
		due := base + int64(i-1)*spec.Policy.EveryMs
		to := RunReady
		if due > now || t.linked().waiting > 0 || t.Canceled {
			to = RunScheduled
		}
		if err := c.emit(Event{Type: EvRunCreated, At: now, Task: spec.ID, Run: c.runID(spec.ID, i), Index: i, To: to, DueAt: due}); err != nil {
			return err
		}
	}
	if t.Canceled { // a prerequisite had already failed: cancel the new runs too
		return c.cancelRuns(now, t, t.more().CancelNote)
	}
	return nil
}

// cancelDoomed cancels every task whose prerequisite failed or was
// canceled, transitively (canceling one may doom its dependents).
func (c *Core) cancelDoomed(now int64) error {
	c.dooming = true
	defer func() { c.dooming = false }()
	for len(c.s.Doomed) > 0 {
		d := c.s.Doomed[0]
		c.s.Doomed = c.s.Doomed[1:]
		t, ok := c.s.Tasks[d.task]
		if !ok || t.IsFinal() {
			continue
		}
		if err := c.cancelTask(now, t, d.reason, false); err != nil {
			return err
		}
	}
	return nil
}

// cancelTask cancels t (and, with subtree, its children): its waiting runs
// at once, its running attempts through their contexts.
func (c *Core) cancelTask(now int64, t *Task, reason string, subtree bool) error {
	if t.IsFinal() {
		return nil
	}
	if !t.Canceled {
		if err := c.emit(Event{Type: EvTaskCanceled, At: now, Task: t.Spec.ID, Reason: reason}); err != nil {
			return err
		}
	}
	if err := c.cancelRuns(now, t, reason); err != nil {
		return err
	}
	if subtree {
		for _, id := range slices.Clone(t.linked().children) {
			if ch, ok := c.s.Tasks[id]; ok {
				if err := c.cancelTask(now, ch, "parent "+string(t.Spec.ID)+" canceled", true); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (c *Core) cancelRuns(now int64, t *Task, reason string) error {
	for _, r := range slices.Clone(t.runs) {
		switch r.State {
		case RunScheduled, RunReady, RunRetryWait:
			if err := c.emit(Event{Type: EvRunTransition, At: now, Task: r.Task, Run: r.ID, From: r.State, To: RunCanceled, Reason: reason}); err != nil {
				return err
			}
		case RunLeased, RunRunning:
			c.batch.Cancels = append(c.batch.Cancels, AttemptRef{Run: r.ID, Attempt: len(r.Attempts)})
		}
	}
	return nil
}

// handleAfter adds prerequisites to a task that has not started, all or
// nothing: unknown ids and cycles (against the whole graph) are rejected.
func (c *Core) handleAfter(now int64, in AfterInput) error {
	t, ok := c.s.Tasks[in.Task]
	if !ok {
		c.reply(in.Reply, Reply{Err: fmt.Errorf("%w: %q", ErrNotFound, in.Task)})
		return nil
	}
	fail := func(err error) error { c.reply(in.Reply, Reply{Err: err}); return nil }
	if t.IsFinal() || t.Canceled {
		return fail(Invalid("after", "task %s is already %s", in.Task, c.s.StateOf(t)))
	}
	for _, r := range t.runs {
		if len(r.Attempts) > 0 || (r.State != RunScheduled && r.State != RunReady) {
			return fail(Invalid("after", "task %s already started (run %s is %s); prerequisites can only be added before its first attempt", in.Task, r.ID, r.State))
		}
	}
	if len(in.After) == 0 {
		return fail(Invalid("after", "give at least one prerequisite"))
	}
	var add []TaskID
	seen := map[TaskID]bool{}
	for _, id := range in.After {
		p, ok := c.s.Tasks[id]
		switch {
		case !ok:
			return fail(Invalid("after", "unknown task %q", id))
		case seen[id] || slices.Contains(t.prereqs(), id):
			continue // already a prerequisite: idempotent
		case p.IsFinal() && p.result() != TaskCompleted:
			return fail(Invalid("after", "prerequisite %s is already %s", id, p.result()))
		}
		seen[id] = true
		add = append(add, id)
	}
	if cyc := findCycle(in.Task, add, c.s.waitsFor); cyc != nil {
		return fail(Invalid("after", "cycle: %s", renderCycle(cyc)))
	}
	if len(add) > 0 {
		if len(t.prereqs())+len(add) > MaxAfter {
			return fail(Invalid("after", "at most %d prerequisites", MaxAfter))
		}
		if err := c.emit(Event{Type: EvDependencyAdded, At: now, Task: in.Task, After: add}); err != nil {
			return err
		}
		if t.linked().waiting > 0 {
			for _, r := range slices.Clone(t.runs) {
				if r.State == RunReady {
					if err := c.emit(Event{Type: EvRunTransition, At: now, Task: r.Task, Run: r.ID, From: RunReady, To: RunScheduled, Reason: "waits for a prerequisite declared later"}); err != nil {
						return err
					}
				}
			}
		}
	}
	c.reply(in.Reply, Reply{Submit: SubmitResult{Task: in.Task}})
	return nil
}

// commitChildren validates the children an attempt submitted and writes
// them before the attempt's success, so the parent cannot become final
// before it has them. A bad child fails the attempt permanently instead,
// naming the child and the field; then nothing of it is written.
func (c *Core) commitChildren(now int64, r *Run, children [][]byte) error {
	parent := c.s.Tasks[r.Task]
	if parent.linked().depth+1 > MaxDepth {
		return fmt.Errorf("children: task depth would exceed %d", MaxDepth)
	}
	if len(children) > MaxChildren {
		return fmt.Errorf("children: %d submitted, the limit per attempt is %d", len(children), MaxChildren)
	}
	specs := make([]TaskSpec, 0, len(children))
	ids := map[TaskID]bool{}
	for i, raw := range children {
		js, err := DecodeSpecJSON(raw)
		if err != nil {
			return fmt.Errorf("child %d: %w", i+1, err)
		}
		spec, err := js.ToSpec()
		if err != nil {
			if js.ID != "" {
				return fmt.Errorf("child %d (%s): %w", i+1, js.ID, err)
			}
			return fmt.Errorf("child %d: %w", i+1, err)
		}
		if spec.ID == "" {
			return fmt.Errorf("child %d: id: the host must derive an id", i+1)
		}
		spec.Parent = r.Task
		if err := c.checkChild(&spec, ids); err != nil {
			return fmt.Errorf("child %d (%s): %w", i+1, spec.ID, err)
		}
		ids[spec.ID] = true
		specs = append(specs, spec)
	}
	for i := range specs {
		spec := &specs[i]
		if t, ok := c.s.Tasks[spec.ID]; ok && t.Spec.SameAs(spec) {
			continue // committed by an earlier attempt of this run
		}
		if err := c.submitTask(now, spec); err != nil {
			return err
		}
		if child := c.s.Tasks[spec.ID]; parent.Canceled && child != nil {
			// The parent was canceled while this attempt ran: its subtree
			// is canceled, including what the attempt submitted.
			if err := c.cancelTask(now, child, "parent "+string(parent.Spec.ID)+" canceled", true); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkChild validates a child against the state and its earlier siblings.
func (c *Core) checkChild(spec *TaskSpec, siblings map[TaskID]bool) error {
	if siblings[spec.ID] {
		// Committing it twice would stop the engine (the task exists).
		return Invalid("id", "%q is also the id of an earlier child of this attempt", spec.ID)
	}
	if t, ok := c.s.Tasks[spec.ID]; ok && !t.Spec.SameAs(spec) {
		return fmt.Errorf("%w: %q", ErrConflict, spec.ID)
	}
	if c.cfg.ValidateHandler != nil {
		if err := c.cfg.ValidateHandler(spec.Handler); err != nil {
			return Invalid("handler", "%v", err)
		}
	}
	for _, id := range spec.After {
		if id == spec.ID {
			return Invalid("after", "cycle: %s -> %s", id, id)
		}
		if _, ok := c.s.Tasks[id]; !ok {
			if !siblings[id] {
				return Invalid("after", "unknown task %q (name an existing task or an earlier sibling)", id)
			}
			continue // new, like this child: it waits for nothing that waits for the parent
		}
		// The parent waits for this child, so a prerequisite that waits
		// (transitively) for the parent would wait for ever.
		if cyc := findCycle(spec.Parent, []TaskID{id}, c.s.waitsFor); cyc != nil {
			return Invalid("after", "cycle: %s -> %s -> %s (a task waits for its prerequisites and its children)", spec.ID, renderCycle(cyc[1:]), spec.ID)
		}
	}
	return nil
}

// refillCron keeps CronWindow future runs of a cron task scheduled, and
// handles occurrences missed while the engine was down: skip creates one
// run for the latest missed occurrence, catch_up one per occurrence (at
// most MaxCatchUp; the occurrences missed beyond are dropped).
func (c *Core) refillCron(now int64, t *Task) error {
	if t.Canceled || t.IsFinal() {
		return nil
	}
	sched := cronOf(&t.Spec)
	pol := t.Spec.Policy
	// The schedule goes on from the latest occurrence a run was created
	// for; a run's DueAt is that occurrence only until a retry's backoff
	// moves it (a state from an older snapshot has no CronLast: due times).
	last := max(t.SubmittedAt, t.Spec.NotBeforeMs, t.more().CronLast+1) - 1
	future := 0
	for _, r := range t.runs {
		if t.more().CronLast == 0 {
			last = max(last, r.DueAt)
		}
		if r.State == RunScheduled && r.DueAt > now {
			future++
		}
	}
	caughtUp := 0
	for future < CronWindow && (pol.MaxRuns == 0 || t.countedRuns() < pol.MaxRuns) {
		due := sched.next(last)
		if due == 0 {
			break // the expression has no further occurrence
		}
		if due <= now {
			if pol.Misfire == MisfireCatchUp {
				if caughtUp >= MaxCatchUp {
					// Drop the rest of the missed occurrences and go on
					// from now: no later refill would get to them (a
					// refill follows the promotion of a scheduled run).
					last = now
					continue
				}
				caughtUp++
			} else {
				due = latestOccurrence(sched, due, now)
			}
		} else {
			future++
		}
		i := t.nextRunIndex()
		to := RunScheduled
		if due <= now && t.linked().waiting == 0 {
			to = RunReady
		}
		if err := c.emit(Event{Type: EvRunCreated, At: now, Task: t.Spec.ID, Run: c.runID(t.Spec.ID, i), Index: i, To: to, DueAt: due}); err != nil {
			return err
		}
		last = due
	}
	return nil
}

// latestOccurrence returns the last occurrence <= now, starting from
// first (an occurrence <= now).
func latestOccurrence(sched cronSchedule, first, now int64) int64 {
	at := first
	for i := 0; i < 1_000_000; i++ {
		n := sched.next(at)
		if n == 0 || n > now {
			break
		}
		at = n
	}
	return at
}

// promoteCron decides what a due cron run becomes: ready, or canceled as a
// skipped misfire when a later occurrence is also due.
func (c *Core) promoteCron(now int64, r *Run, t *Task) error {
	if t.Spec.Policy.Misfire != MisfireCatchUp {
		if next := cronOf(&t.Spec).next(r.DueAt); next != 0 && next <= now {
			if err := c.emit(Event{Type: EvRunSkipped, At: now, Task: r.Task, Run: r.ID, From: r.State, To: RunCanceled,
				Reason: "misfire: skipped, a later occurrence is already due"}); err != nil {
				return err
			}
			return c.refillCron(now, t)
		}
	}
	if err := c.emit(Event{Type: EvRunTransition, At: now, Task: r.Task, Run: r.ID, From: r.State, To: RunReady, DueAt: r.DueAt}); err != nil {
		return err
	}
	return c.refillCron(now, t)
}

// StateOf summarizes a task as TaskView does.
func (s *State) StateOf(t *Task) TaskState {
	if t.IsFinal() {
		return t.result()
	}
	running, done := false, 0
	for _, r := range t.runs {
		running = running || r.State == RunLeased || r.State == RunRunning
		if r.State.Final() {
			done++
		}
	}
	switch {
	case running:
		return TaskRunning
	case done == len(t.runs) && len(t.runs) > 0 && t.linked().pendingChildren > 0:
		return TaskWaitingChildren
	}
	return TaskPending
}
