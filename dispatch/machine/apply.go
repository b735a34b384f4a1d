package machine

import (
	"cmp"
	"fmt"
	"slices"
)

// Apply is the reducer: the only code that changes a State, used for live
// ticks and for recovery alike. It is deterministic (no clock, no random, no
// map-order dependence) and checks every event against the state: a
// mismatch is an *InvariantError and leaves s unchanged.
func Apply(s *State, e *Event) error {
	if e.Type != EvRunCreated {
		// Only the runs created right after a submission may use it: any
		// other event may replace or drop the task (a retry, retention).
		s.submitted = nil
	}
	switch e.Type {
	case EvTaskSubmitted:
		return applySubmitted(s, e)
	case EvRunCreated:
		return applyRunCreated(s, e)
	case EvRunTransition, EvRunSkipped:
		return applyTransition(s, e)
	case EvLeaseAcquired:
		r, err := runIn(s, e, RunReady)
		if err != nil {
			return err
		}
		if e.Attempt != len(r.Attempts)+1 {
			return violation(e, r, "attempt %d, want %d", e.Attempt, len(r.Attempts)+1)
		}
		if k := s.taskOf(r).Spec.ConcurrencyKey; k != "" {
			if h, held := s.keyHolder[k]; held && h != r.ID {
				return violation(e, r, "concurrency key %q is held by run %s", k, h)
			}
			s.keyHolder[k] = r.ID
		}
		if cap(r.Attempts) == 0 {
			r.Attempts = r.att0[:0:1]
		}
		r.Attempts = append(r.Attempts, Attempt{Number: e.Attempt, Worker: e.Worker, LeasedAt: e.At})
		r.LeaseExp = e.LeaseExp
		setState(s, r, RunLeased, e.At)
	case EvAttemptStarted:
		r, err := runIn(s, e, RunLeased)
		if err != nil {
			return err
		}
		if err := checkAttempt(e, r); err != nil {
			return err
		}
		r.Current().StartedAt = cmp.Or(e.ExecStart, e.At)
		setState(s, r, RunRunning, e.At)
	case EvLeaseRenewed:
		r, err := runIn(s, e, RunLeased, RunRunning)
		if err != nil {
			return err
		}
		if err := checkAttempt(e, r); err != nil {
			return err
		}
		r.LeaseExp = e.LeaseExp
		s.index(r)
	case EvAttemptFinished, EvLeaseExpired:
		return applyFinished(s, e)
	case EvTaskCanceled:
		t, ok := s.Tasks[e.Task]
		if !ok {
			return &InvariantError{Event: e.Type, Task: e.Task, Reason: "unknown task"}
		}
		t.Canceled = true
		t.editMore().CancelNote = e.Reason
		s.maybeFinalize(t, e.At) // a cron task with no open run ends here
	case EvEnginePaused:
		s.Paused = true
	case EvEngineResumed:
		s.Paused = false
	case EvTaskDropped:
		t, ok := s.taskHint, s.taskHint != nil && s.taskHint.Spec.ID == e.Task
		if !ok {
			t, ok = s.Tasks[e.Task]
		}
		if !ok {
			return &InvariantError{Event: e.Type, Task: e.Task, Reason: "unknown task"}
		}
		if !t.IsFinal() {
			return &InvariantError{Event: e.Type, Task: e.Task, Reason: "task is not final"}
		}
		for i, id := range t.Runs {
			var r *Run
			if len(t.runs) == len(t.Runs) {
				r = t.runs[i] // the same run, without a lookup
			} else {
				r = s.Runs[id]
			}
			s.counts.add(r.State, -1)
			r.task = nil // no longer the state's (runRef)
			delete(s.Runs, id)
		}
		delete(s.Tasks, e.Task)
		if p, ok := s.Tasks[t.Spec.Parent]; ok && t.Spec.Parent != "" {
			// A new slice: the parent may be captured by a snapshot.
			pl := p.own()
			pl.children = slices.DeleteFunc(slices.Clone(pl.children), func(id TaskID) bool { return id == e.Task })
		}
		s.JustFinal = append(s.JustFinal, e.Task) // wakes Wait, which then reports it gone
		if fs := s.Finals(); len(fs) > 0 && fs[0] == e.Task {
			s.dropFinal(0)
		} else if i := slices.Index(fs, e.Task); i >= 0 {
			s.dropFinal(i)
		}
	case EvDependencyAdded:
		return applyDependencyAdded(s, e)
	case EvTaskRetried:
		return applyRetried(s, e)
	default:
		return &InvariantError{Event: e.Type, Reason: "unknown event type"}
	}
	return nil
}

func applyDependencyAdded(s *State, e *Event) error {
	t, ok := s.Tasks[e.Task]
	if !ok {
		return &InvariantError{Event: e.Type, Task: e.Task, Reason: "unknown task"}
	}
	if t.IsFinal() {
		return &InvariantError{Event: e.Type, Task: e.Task, Reason: "task is final"}
	}
	for _, r := range t.runs {
		if len(r.Attempts) > 0 || (r.State != RunScheduled && r.State != RunReady) {
			return &InvariantError{Event: e.Type, Task: e.Task, Run: r.ID, Reason: "a run already started"}
		}
	}
	for _, id := range e.After {
		if _, ok := s.Tasks[id]; !ok || id == e.Task || slices.Contains(t.prereqs(), id) {
			return &InvariantError{Event: e.Type, Task: e.Task, Reason: fmt.Sprintf("prerequisite %q unknown, the task itself, or already listed", id)}
		}
	}
	for _, id := range e.After {
		m := t.editMore()
		m.AddedAfter = append(m.AddedAfter, id)
		s.addPrereq(t, id)
	}
	if t.linked().waiting > 0 {
		for _, r := range t.runs {
			if r.State == RunScheduled {
				s.index(r) // gated now: its timer entry goes stale
			}
		}
	}
	return nil
}

func applySubmitted(s *State, e *Event) error {
	if e.Spec == nil || e.Task == "" || e.Spec.ID != e.Task {
		return &InvariantError{Event: e.Type, Task: e.Task, Reason: "missing spec or id"}
	}
	checked := s.newID == e.Task && e.Task != "" // absent: the Core just looked
	s.newID = ""
	if !checked {
		if _, ok := s.Tasks[e.Task]; ok {
			return &InvariantError{Event: e.Type, Task: e.Task, Reason: "task already exists"}
		}
	}
	for _, id := range e.Spec.After {
		if _, ok := s.Tasks[id]; !ok && id == e.Task {
			return &InvariantError{Event: e.Type, Task: e.Task, Reason: "a task cannot wait for itself"}
		}
	}
	t := s.taskMem // memory the submitter allocated (Core.handleSubmit), or none
	s.taskMem = nil
	if t == nil {
		t = new(Task)
	}
	*t = Task{Spec: *e.Spec, SubmitSeq: s.NextSubmitSeq, SubmittedAt: e.At}
	s.Tasks[e.Task] = t
	s.submitted = t
	s.NextSubmitSeq++
	s.link(t)
	return nil
}

func applyRunCreated(s *State, e *Event) error {
	t, ok := s.submitted, s.submitted != nil && s.submitted.Spec.ID == e.Task
	if !ok {
		t, ok = s.Tasks[e.Task]
	}
	if !ok {
		return &InvariantError{Event: e.Type, Task: e.Task, Run: e.Run, Reason: "unknown task"}
	}
	// The first run of a task submitted by the event just before: no run
	// has its id (a run id is its task's id, '#', its index; a dropped
	// task's runs went with it), so it needs no lookup to check that.
	if t != s.submitted || len(t.Runs) > 0 {
		if _, ok := s.Runs[e.Run]; ok {
			return &InvariantError{Event: e.Type, Task: e.Task, Run: e.Run, Reason: "run already exists"}
		}
	}
	if e.To != RunScheduled && e.To != RunReady {
		return &InvariantError{Event: e.Type, Task: e.Task, Run: e.Run, Reason: fmt.Sprintf("a run starts scheduled or ready, not %s", e.To)}
	}
	if want := t.nextRunIndex(); e.Index != want || !isRunID(e.Run, e.Task, e.Index) {
		return &InvariantError{Event: e.Type, Task: e.Task, Run: e.Run, Reason: fmt.Sprintf("run index %d, want %d", e.Index, want)}
	}
	var r *Run
	if t.run0.ID == "" && len(t.Runs) == 0 {
		r = &t.run0 // the task's first run lives in the Task's allocation
		*r = Run{ID: e.Run, Task: e.Task, Index: e.Index, DueAt: e.DueAt, task: t}
		t.Runs, t.runs = t.ids0[:0:1], t.runs0[:0:1]
	} else {
		r = &Run{ID: e.Run, Task: e.Task, Index: e.Index, DueAt: e.DueAt, task: t}
	}
	if t.Spec.Policy.Kind == PolicyCron {
		if e.DueAt > t.more().CronLast {
			t.editMore().CronLast = e.DueAt
		}
	}
	s.Runs[r.ID] = r
	t.Runs = append(t.Runs, r.ID)
	t.runs = append(t.runs, r)
	r.State = e.To
	r.UpdateAt = e.At
	s.counts.add(r.State, 1)
	s.index(r)
	return nil
}

// legalTransitions are the moves EvRunTransition may make.
var legalTransitions = map[RunState][]RunState{
	RunScheduled: {RunReady, RunCanceled},
	RunRetryWait: {RunReady, RunCanceled},
	RunReady:     {RunCanceled, RunScheduled}, // back to scheduled: gated by a prerequisite declared later
}

func applyTransition(s *State, e *Event) error {
	r, err := runIn(s, e, e.From)
	if err != nil {
		return err
	}
	legal := false
	for _, to := range legalTransitions[e.From] {
		legal = legal || to == e.To
	}
	if !legal {
		return violation(e, r, "illegal transition %s -> %s", e.From, e.To)
	}
	if e.From == RunReady && e.To == RunScheduled && s.taskOf(r).linked().waiting == 0 {
		return violation(e, r, "ready -> scheduled needs an unfinished prerequisite")
	}
	if e.To == RunReady {
		r.DueAt = e.DueAt
	}
	if e.Type == EvRunSkipped {
		if t := s.taskOf(r); e.To != RunCanceled || t.Spec.Policy.Kind != PolicyCron {
			return violation(e, r, "only a cron run is skipped, to canceled")
		} else {
			// Before setState, which may finalize the task: a skipped
			// run does not count toward max_runs.
			t.editMore().Skipped++
		}
	}
	if e.To == RunCanceled {
		r.Reason = e.Reason
	}
	setState(s, r, e.To, e.At)
	return nil
}

// finishTargets are the states an attempt may leave its run in.
var finishTargets = map[RunState]bool{RunCompleted: true, RunFailed: true, RunRetryWait: true, RunCanceled: true}

func applyFinished(s *State, e *Event) error {
	r, err := runIn(s, e, RunLeased, RunRunning)
	if err != nil {
		return err
	}
	if err := checkAttempt(e, r); err != nil {
		return err
	}
	if e.From != r.State {
		return violation(e, r, "event says from %s, run is %s", e.From, r.State)
	}
	if !finishTargets[e.To] {
		return violation(e, r, "an attempt cannot leave its run %s", e.To)
	}
	if e.Type == EvLeaseExpired && e.Outcome != OutcomeLost {
		return violation(e, r, "an expired lease ends the attempt as lost, not %s", e.Outcome)
	}
	if e.To == RunCompleted && e.Outcome != OutcomeOK {
		return violation(e, r, "completed with outcome %s", e.Outcome)
	}
	t := s.taskOf(r)
	if e.To == RunRetryWait {
		// The rule of decideAfterAttempt, or the rule of builds before
		// MaxLostAttempts (every attempt counted against max_attempts), so
		// that their WALs replay to the same state.
		used, lost := r.attemptCounts(e.Outcome)
		now := used < t.Spec.MaxAttempts
		if e.Outcome == OutcomeLost {
			now = lost < MaxLostAttempts
		}
		if !now && e.Attempt >= t.Spec.MaxAttempts {
			return violation(e, r, "retry after attempt %d (%d of max_attempts %d used, %d lost)", e.Attempt, used, t.Spec.MaxAttempts, lost)
		}
	}
	a := r.Current()
	a.FinishedAt, a.Outcome, a.Retryable, a.Error, a.Output, a.Module, a.Log = cmp.Or(e.ExecEnd, e.At), e.Outcome, e.Retryable, e.Error, e.Output, e.Module, e.Log
	a.OutputRef, a.OutputSize = e.OutputRef, e.OutputSize
	if e.ExecStart != 0 {
		a.StartedAt = e.ExecStart // as the executor measured it
	}
	if e.Worker != "" {
		a.Worker = e.Worker
	}
	r.LeaseExp = 0
	if e.To == RunRetryWait {
		r.DueAt = e.DueAt
	}
	if e.To == RunCanceled {
		r.Reason = t.more().CancelNote // canceled while its attempt ran
	}
	setState(s, r, e.To, e.At)
	return nil
}

// setState moves r to state to and maintains counts, indexes and the
// task's final bookkeeping.
func setState(s *State, r *Run, to RunState, at int64) {
	from := r.State
	s.counts.add(from, -1)
	s.counts.add(to, 1)
	if from == RunLeased || from == RunRunning {
		s.Inflight--
	}
	if to == RunLeased || to == RunRunning {
		s.Inflight++
	}
	r.State, r.UpdateAt = to, at
	s.index(r)
	if from == RunReady && to != RunLeased {
		s.leftReady(r)
	}
	if to.Final() && !from.Final() {
		t := s.taskOf(r)
		t.finalRuns++
		s.releaseKey(r, t.Spec.ConcurrencyKey)
		s.maybeFinalize(t, at)
		if t.Spec.Policy.Kind == PolicyCron {
			s.pruneCronRuns(t)
		}
	}
}

func runIn(s *State, e *Event, states ...RunState) (*Run, error) {
	// A hint still in the state (its task set) with the event's id is the
	// run Runs holds under that id.
	r := s.runHint
	if r == nil || r.task == nil || r.ID != e.Run {
		var ok bool
		if r, ok = s.Runs[e.Run]; !ok {
			return nil, &InvariantError{Event: e.Type, Run: e.Run, Task: e.Task, Reason: "unknown run"}
		}
	}
	for _, st := range states {
		if r.State == st {
			return r, nil
		}
	}
	// A copy, so that states (the caller's variadic arguments) does not
	// escape and cost an allocation on every call.
	return nil, violation(e, r, "run is %s, event needs %v", r.State, slices.Clone(states))
}

func checkAttempt(e *Event, r *Run) error {
	if len(r.Attempts) == 0 || e.Attempt != len(r.Attempts) {
		return violation(e, r, "attempt %d is not the open attempt %d", e.Attempt, len(r.Attempts))
	}
	return nil
}

func violation(e *Event, r *Run, format string, args ...any) error {
	return &InvariantError{Event: e.Type, Run: r.ID, Task: r.Task, Reason: fmt.Sprintf(format, args...)}
}
