package machine

import (
	"bytes"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Events of one task "t" (max_attempts 2) whose single run "t#1" goes
// through every state. applyChain builds a state from a prefix of them.
var (
	chainSpec = func() *TaskSpec {
		s := &TaskSpec{ID: "t", Handler: "h", MaxAttempts: 2}
		if err := s.Normalize(); err != nil {
			panic(err)
		}
		return s
	}()
	evSubmitted  = Event{Type: EvTaskSubmitted, At: 1, Task: "t", Spec: chainSpec}
	evReady      = Event{Type: EvRunCreated, At: 1, Task: "t", Run: "t#1", Index: 1, To: RunReady, DueAt: 1}
	evScheduled  = Event{Type: EvRunCreated, At: 1, Task: "t", Run: "t#1", Index: 1, To: RunScheduled, DueAt: 10}
	evPromoted   = Event{Type: EvRunTransition, At: 10, Task: "t", Run: "t#1", From: RunScheduled, To: RunReady, DueAt: 10}
	evLeased1    = Event{Type: EvLeaseAcquired, At: 2, Task: "t", Run: "t#1", From: RunReady, Attempt: 1, Worker: "n/w1", LeaseExp: 100}
	evStarted1   = Event{Type: EvAttemptStarted, At: 3, Task: "t", Run: "t#1", Attempt: 1}
	evRetry1     = Event{Type: EvAttemptFinished, At: 4, Task: "t", Run: "t#1", From: RunRunning, To: RunRetryWait, Attempt: 1, Outcome: OutcomeTrap, Retryable: true, DueAt: 50}
	evRetryReady = Event{Type: EvRunTransition, At: 50, Task: "t", Run: "t#1", From: RunRetryWait, To: RunReady, DueAt: 50}
	evLeased2    = Event{Type: EvLeaseAcquired, At: 51, Task: "t", Run: "t#1", From: RunReady, Attempt: 2, Worker: "n/w1", LeaseExp: 200}
	evCompleted1 = Event{Type: EvAttemptFinished, At: 4, Task: "t", Run: "t#1", From: RunRunning, To: RunCompleted, Attempt: 1, Outcome: OutcomeOK, Output: []byte("out")}
	evFailed1    = Event{Type: EvAttemptFinished, At: 4, Task: "t", Run: "t#1", From: RunRunning, To: RunFailed, Attempt: 1, Outcome: OutcomeOOM}
	evCanceled   = Event{Type: EvRunTransition, At: 5, Task: "t", Run: "t#1", From: RunReady, To: RunCanceled}
)

// setups name the state run t#1 is in after the events.
var applySetups = map[string][]Event{
	"empty":      nil,
	"submitted":  {evSubmitted},
	"scheduled":  {evSubmitted, evScheduled},
	"ready":      {evSubmitted, evReady},
	"leased":     {evSubmitted, evReady, evLeased1},
	"running":    {evSubmitted, evReady, evLeased1, evStarted1},
	"retry_wait": {evSubmitted, evReady, evLeased1, evStarted1, evRetry1},
	"ready2":     {evSubmitted, evReady, evLeased1, evStarted1, evRetry1, evRetryReady},
	"leased2":    {evSubmitted, evReady, evLeased1, evStarted1, evRetry1, evRetryReady, evLeased2},
	"completed":  {evSubmitted, evReady, evLeased1, evStarted1, evCompleted1},
	"failed":     {evSubmitted, evReady, evLeased1, evStarted1, evFailed1},
	"canceled":   {evSubmitted, evReady, evCanceled},
}

func applyChain(t *testing.T, evs []Event) *State {
	t.Helper()
	s := NewState()
	for i := range evs {
		e := evs[i]
		if err := Apply(s, &e); err != nil {
			t.Fatalf("setup event %d (%v): %v", i, e.Type, err)
		}
	}
	return s
}

// fingerprint captures everything apply may change, derived indexes included.
func fingerprint(t *testing.T, s *State) string {
	t.Helper()
	b, err := EncodeState(s)
	if err != nil {
		t.Fatal(err)
	}
	var w strings.Builder
	w.Write(b)
	for _, st := range []RunState{RunScheduled, RunReady, RunLeased, RunRunning, RunRetryWait, RunCompleted, RunFailed, RunCanceled} {
		w.WriteString(" " + string(st) + "=" + strconv.Itoa(s.counts.of(st)))
	}
	w.WriteString(" inflight=" + strconv.Itoa(s.Inflight) + " finals=" + strings.Join(taskIDs(s.Finals()), ","))
	w.WriteString(" ready=" + strconv.Itoa(s.ready.Len()) + " timers=" + strconv.Itoa(s.timers.Len()) + " leases=" + strconv.Itoa(s.leases.Len()))
	for _, id := range slices.Sorted(maps.Keys(s.Tasks)) {
		w.WriteString(" " + string(id) + ".finalRuns=" + strconv.Itoa(s.Tasks[id].finalRuns))
	}
	return w.String()
}

func taskIDs(ids []TaskID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = string(id)
	}
	return out
}

func with(e Event, edit func(*Event)) Event {
	edit(&e)
	return e
}

func TestApplyRejectsIllegalEvents(t *testing.T) {
	otherSpec := *chainSpec
	otherSpec.ID = "u"
	tests := []struct {
		name    string
		setup   string
		event   Event
		wantWhy string // substring of InvariantError.Reason
	}{
		{name: "duplicate task submitted", setup: "ready", event: evSubmitted, wantWhy: "already exists"},
		{name: "task submitted without spec", setup: "empty", event: with(evSubmitted, func(e *Event) { e.Spec = nil }), wantWhy: "missing spec"},
		{name: "task submitted under another id", setup: "empty", event: with(evSubmitted, func(e *Event) { e.Spec = &otherSpec }), wantWhy: "missing spec or id"},
		{name: "run created for unknown task", setup: "empty", event: evReady, wantWhy: "unknown task"},
		{name: "run created twice", setup: "ready", event: evReady, wantWhy: "already exists"},
		{name: "run created running", setup: "submitted", event: with(evReady, func(e *Event) { e.To = RunRunning }), wantWhy: "starts scheduled or ready"},
		{name: "run created with a gap in the index", setup: "submitted", event: with(evReady, func(e *Event) { e.Index, e.Run = 2, "t#2" }), wantWhy: "run index 2, want 1"},
		{name: "run created with a foreign run id", setup: "submitted", event: with(evReady, func(e *Event) { e.Run = "x#1" }), wantWhy: "run index"},
		{name: "lease acquired on a scheduled run", setup: "scheduled", event: evLeased1, wantWhy: "run is scheduled"},
		{name: "lease acquired on a leased run", setup: "leased", event: evLeased1, wantWhy: "run is leased"},
		{name: "lease acquired with attempt 2 first", setup: "ready", event: with(evLeased1, func(e *Event) { e.Attempt = 2 }), wantWhy: "attempt 2, want 1"},
		{name: "lease acquired on an unknown run", setup: "ready", event: with(evLeased1, func(e *Event) { e.Run = "t#9" }), wantWhy: "unknown run"},
		{name: "attempt started on a ready run", setup: "ready", event: evStarted1, wantWhy: "run is ready"},
		{name: "attempt started with the wrong attempt", setup: "leased", event: with(evStarted1, func(e *Event) { e.Attempt = 2 }), wantWhy: "not the open attempt"},
		{name: "attempt started twice", setup: "running", event: evStarted1, wantWhy: "run is running"},
		{name: "lease renewed on a ready run", setup: "ready", event: Event{Type: EvLeaseRenewed, Task: "t", Run: "t#1", Attempt: 1, LeaseExp: 500}, wantWhy: "run is ready"},
		{name: "lease renewed for an old attempt", setup: "leased2", event: Event{Type: EvLeaseRenewed, Task: "t", Run: "t#1", Attempt: 1, LeaseExp: 500}, wantWhy: "not the open attempt"},
		{name: "attempt finished with the wrong attempt", setup: "running", event: with(evCompleted1, func(e *Event) { e.Attempt = 2 }), wantWhy: "not the open attempt"},
		{name: "attempt finished for a closed attempt", setup: "leased2", event: with(evCompleted1, func(e *Event) { e.From = RunLeased }), wantWhy: "not the open attempt"},
		{name: "attempt finished on a ready run", setup: "ready", event: evCompleted1, wantWhy: "run is ready"},
		{name: "attempt finished on a completed run", setup: "completed", event: evCompleted1, wantWhy: "run is completed"},
		{name: "attempt finished from the wrong state", setup: "running", event: with(evCompleted1, func(e *Event) { e.From = RunLeased }), wantWhy: "event says from leased"},
		{name: "attempt finished to ready", setup: "running", event: with(evCompleted1, func(e *Event) { e.To = RunReady }), wantWhy: "cannot leave its run ready"},
		{name: "attempt finished completed but not ok", setup: "running", event: with(evCompleted1, func(e *Event) { e.Outcome = OutcomeFailed }), wantWhy: "completed with outcome failed"},
		{name: "retry after the last attempt", setup: "leased2", event: with(evRetry1, func(e *Event) { e.Attempt, e.From = 2, RunLeased }), wantWhy: "retry after attempt 2 (2 of max_attempts 2 used, 0 lost)"},
		{name: "lease expired with outcome ok", setup: "running", event: with(evCompleted1, func(e *Event) { e.Type, e.To = EvLeaseExpired, RunRetryWait }), wantWhy: "lost, not ok"},
		{name: "lease expired on a ready run", setup: "ready", event: Event{Type: EvLeaseExpired, Task: "t", Run: "t#1", From: RunReady, To: RunFailed, Attempt: 1, Outcome: OutcomeLost}, wantWhy: "run is ready"},
		{name: "transition completed to ready", setup: "completed", event: Event{Type: EvRunTransition, Task: "t", Run: "t#1", From: RunCompleted, To: RunReady}, wantWhy: "illegal transition completed -> ready"},
		{name: "transition failed to ready", setup: "failed", event: Event{Type: EvRunTransition, Task: "t", Run: "t#1", From: RunFailed, To: RunReady}, wantWhy: "illegal transition"},
		{name: "transition canceled to canceled", setup: "canceled", event: Event{Type: EvRunTransition, Task: "t", Run: "t#1", From: RunCanceled, To: RunCanceled}, wantWhy: "illegal transition"},
		{name: "transition ready to leased", setup: "ready", event: Event{Type: EvRunTransition, Task: "t", Run: "t#1", From: RunReady, To: RunLeased}, wantWhy: "illegal transition ready -> leased"},
		{name: "transition scheduled to completed", setup: "scheduled", event: Event{Type: EvRunTransition, Task: "t", Run: "t#1", From: RunScheduled, To: RunCompleted}, wantWhy: "illegal transition"},
		{name: "transition running to canceled", setup: "running", event: Event{Type: EvRunTransition, Task: "t", Run: "t#1", From: RunRunning, To: RunCanceled}, wantWhy: "illegal transition"},
		{name: "transition from a state the run is not in", setup: "ready", event: evPromoted, wantWhy: "run is ready"},
		{name: "task canceled unknown", setup: "empty", event: Event{Type: EvTaskCanceled, Task: "t"}, wantWhy: "unknown task"},
		{name: "task dropped unknown", setup: "empty", event: Event{Type: EvTaskDropped, Task: "t"}, wantWhy: "unknown task"},
		{name: "task dropped while running", setup: "running", event: Event{Type: EvTaskDropped, Task: "t"}, wantWhy: "not final"},
		{name: "task dropped while retry_wait", setup: "retry_wait", event: Event{Type: EvTaskDropped, Task: "t"}, wantWhy: "not final"},
		{name: "invalid type 0", setup: "ready", event: Event{Type: evInvalid}, wantWhy: "unknown event type"},
		{name: "unknown type 200", setup: "ready", event: Event{Type: 200}, wantWhy: "unknown event type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			setup, ok := applySetups[tc.setup]
			if !ok {
				t.Fatalf("no setup %q", tc.setup)
			}
			s := applyChain(t, setup)
			before := fingerprint(t, s)
			e := tc.event
			err := Apply(s, &e)
			var ie *InvariantError
			if !errors.As(err, &ie) {
				t.Fatalf("apply = %v, want *InvariantError", err)
			}
			if ie.Event != tc.event.Type {
				t.Errorf("InvariantError.Event = %v, want %v", ie.Event, tc.event.Type)
			}
			if !strings.Contains(ie.Reason, tc.wantWhy) {
				t.Errorf("reason %q does not contain %q", ie.Reason, tc.wantWhy)
			}
			if !strings.Contains(err.Error(), tc.event.Type.String()) {
				t.Errorf("error %q does not name the event type %v", err, tc.event.Type)
			}
			if after := fingerprint(t, s); after != before {
				t.Errorf("state changed by a rejected event:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func TestApplyLegalEvents(t *testing.T) {
	type want struct {
		state    RunState
		attempts int
		dueAt    int64
		leaseExp int64
		inflight int
		finals   int
	}
	tests := []struct {
		name  string
		setup string
		event Event
		want  want
	}{
		{name: "run created ready", setup: "submitted", event: evReady, want: want{state: RunReady, dueAt: 1}},
		{name: "run created scheduled", setup: "submitted", event: evScheduled, want: want{state: RunScheduled, dueAt: 10}},
		{name: "scheduled promoted", setup: "scheduled", event: evPromoted, want: want{state: RunReady, dueAt: 10}},
		{name: "scheduled canceled", setup: "scheduled", event: Event{Type: EvRunTransition, At: 5, Task: "t", Run: "t#1", From: RunScheduled, To: RunCanceled}, want: want{state: RunCanceled, dueAt: 10, finals: 1}},
		{name: "ready canceled", setup: "ready", event: evCanceled, want: want{state: RunCanceled, dueAt: 1, finals: 1}},
		{name: "retry_wait canceled", setup: "retry_wait", event: Event{Type: EvRunTransition, At: 5, Task: "t", Run: "t#1", From: RunRetryWait, To: RunCanceled}, want: want{state: RunCanceled, attempts: 1, dueAt: 50, finals: 1}},
		{name: "ready leased", setup: "ready", event: evLeased1, want: want{state: RunLeased, attempts: 1, dueAt: 1, leaseExp: 100, inflight: 1}},
		{name: "leased started", setup: "leased", event: evStarted1, want: want{state: RunRunning, attempts: 1, dueAt: 1, leaseExp: 100, inflight: 1}},
		{name: "lease renewed", setup: "running", event: Event{Type: EvLeaseRenewed, At: 20, Task: "t", Run: "t#1", Attempt: 1, LeaseExp: 900}, want: want{state: RunRunning, attempts: 1, dueAt: 1, leaseExp: 900, inflight: 1}},
		{name: "running to retry_wait", setup: "running", event: evRetry1, want: want{state: RunRetryWait, attempts: 1, dueAt: 50}},
		{name: "retry_wait promoted", setup: "retry_wait", event: evRetryReady, want: want{state: RunReady, attempts: 1, dueAt: 50}},
		{name: "second attempt leased", setup: "ready2", event: evLeased2, want: want{state: RunLeased, attempts: 2, dueAt: 50, leaseExp: 200, inflight: 1}},
		{name: "running completed", setup: "running", event: evCompleted1, want: want{state: RunCompleted, attempts: 1, dueAt: 1, finals: 1}},
		{name: "running failed", setup: "running", event: evFailed1, want: want{state: RunFailed, attempts: 1, dueAt: 1, finals: 1}},
		{name: "leased finished without start", setup: "leased", event: with(evFailed1, func(e *Event) { e.From = RunLeased }), want: want{state: RunFailed, attempts: 1, dueAt: 1, finals: 1}},
		{name: "lease expired to retry", setup: "running", event: with(evRetry1, func(e *Event) { e.Type, e.Outcome = EvLeaseExpired, OutcomeLost }), want: want{state: RunRetryWait, attempts: 1, dueAt: 50}},
		{name: "second attempt failed at the cap", setup: "leased2", event: with(evFailed1, func(e *Event) { e.Attempt, e.From = 2, RunLeased }), want: want{state: RunFailed, attempts: 2, dueAt: 50, finals: 1}},
		{name: "running canceled", setup: "running", event: with(evFailed1, func(e *Event) { e.To, e.Outcome = RunCanceled, OutcomeCancelled }), want: want{state: RunCanceled, attempts: 1, dueAt: 1, finals: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := applyChain(t, applySetups[tc.setup])
			e := tc.event
			if err := Apply(s, &e); err != nil {
				t.Fatalf("apply: %v", err)
			}
			r := s.Runs["t#1"]
			got := want{state: r.State, attempts: len(r.Attempts), dueAt: r.DueAt, leaseExp: r.LeaseExp, inflight: s.Inflight, finals: len(s.Finals())}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if n := s.Counts()[r.State]; n != 1 {
				t.Errorf("count of %s = %d, want 1 (counts %v)", r.State, n, s.Counts())
			}
			// The derived indexes must equal those rebuilt from scratch.
			if a, b := s.IndexSummary(), rebuilt(t, s).IndexSummary(); a != b {
				t.Errorf("indexes after apply %s, rebuilt %s", a, b)
			}
		})
	}
}

// rebuilt returns s after a snapshot round trip (decodeState reindexes).
func rebuilt(t *testing.T, s *State) *State {
	t.Helper()
	b, err := EncodeState(s)
	if err != nil {
		t.Fatal(err)
	}
	r, err := DecodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestApplyAttemptRecord(t *testing.T) {
	s := applyChain(t, applySetups["running"])
	e := evRetry1
	e.Error, e.Module, e.Output, e.Worker = "trap: unreachable", "sha256:ab", []byte("partial"), "n/w7"
	if err := Apply(s, &e); err != nil {
		t.Fatal(err)
	}
	got := s.Runs["t#1"].Attempts[0]
	want := Attempt{Number: 1, Worker: "n/w7", LeasedAt: 2, StartedAt: 3, FinishedAt: 4, Outcome: OutcomeTrap,
		Retryable: true, Error: "trap: unreachable", Output: []byte("partial"), Module: "sha256:ab"}
	if got.Number != want.Number || got.Worker != want.Worker || got.LeasedAt != want.LeasedAt ||
		got.StartedAt != want.StartedAt || got.FinishedAt != want.FinishedAt || got.Outcome != want.Outcome ||
		got.Retryable != want.Retryable || got.Error != want.Error || !bytes.Equal(got.Output, want.Output) || got.Module != want.Module {
		t.Errorf("attempt = %+v, want %+v", got, want)
	}
	if r := s.Runs["t#1"]; r.LeaseExp != 0 {
		t.Errorf("LeaseExp = %d after the attempt closed, want 0", r.LeaseExp)
	}
}

func TestApplyTaskEvents(t *testing.T) {
	t.Run("cancel marks the task", func(t *testing.T) {
		s := applyChain(t, applySetups["running"])
		if err := Apply(s, &Event{Type: EvTaskCanceled, At: 9, Task: "t", Reason: "user"}); err != nil {
			t.Fatal(err)
		}
		if tk := s.Tasks["t"]; !tk.Canceled || tk.more().CancelNote != "user" {
			t.Errorf("task = %+v, want canceled with note", tk)
		}
		if r := s.Runs["t#1"]; r.State != RunRunning {
			t.Errorf("run = %s; EvTaskCanceled alone must not move runs", r.State)
		}
	})
	t.Run("pause and resume", func(t *testing.T) {
		s := NewState()
		for _, tc := range []struct {
			typ  EventType
			want bool
		}{{EvEnginePaused, true}, {EvEnginePaused, true}, {EvEngineResumed, false}, {EvEngineResumed, false}} {
			if err := Apply(s, &Event{Type: tc.typ}); err != nil {
				t.Fatal(err)
			}
			if s.Paused != tc.want {
				t.Errorf("after %v Paused = %v", tc.typ, s.Paused)
			}
		}
	})
	t.Run("drop removes the task and its runs", func(t *testing.T) {
		s := applyChain(t, applySetups["completed"])
		if len(s.Finals()) != 1 || s.Tasks["t"].FinalAt != 4 {
			t.Fatalf("finals %v FinalAt %d, want [t] 4", s.Finals(), s.Tasks["t"].FinalAt)
		}
		if err := Apply(s, &Event{Type: EvTaskDropped, At: 10, Task: "t"}); err != nil {
			t.Fatal(err)
		}
		if len(s.Tasks) != 0 || len(s.Runs) != 0 || len(s.Finals()) != 0 || len(s.Counts()) != 0 {
			t.Errorf("after drop tasks %d runs %d finals %v counts %v", len(s.Tasks), len(s.Runs), s.Finals(), s.Counts())
		}
		// The id can be used again.
		if err := Apply(s, &Event{Type: EvTaskSubmitted, At: 11, Task: "t", Spec: chainSpec}); err != nil {
			t.Errorf("resubmit after drop: %v", err)
		}
	})
	t.Run("submission order", func(t *testing.T) {
		s := NewState()
		for i, id := range []TaskID{"a", "b", "c"} {
			spec := *chainSpec
			spec.ID = id
			if err := Apply(s, &Event{Type: EvTaskSubmitted, Task: id, Spec: &spec}); err != nil {
				t.Fatal(err)
			}
			if got := s.Tasks[id].SubmitSeq; got != uint64(i+1) {
				t.Errorf("%s SubmitSeq = %d, want %d", id, got, i+1)
			}
		}
	})
}

// TestApplyDeterministic replays the same events into two states and
// checks they encode to the same bytes (no map order, clock or random).
func TestApplyDeterministic(t *testing.T) {
	var evs []Event
	for _, name := range []TaskID{"x", "y", "z"} {
		spec := *chainSpec
		spec.ID = name
		spec.Labels = map[string]string{"a": "1", "b": "2", "c": "3"}
		evs = append(evs,
			Event{Type: EvTaskSubmitted, At: 1, Task: name, Spec: &spec},
			Event{Type: EvRunCreated, At: 1, Task: name, Run: MakeRunID(name, 1), Index: 1, To: RunReady, DueAt: 1},
			Event{Type: EvRunCreated, At: 1, Task: name, Run: MakeRunID(name, 2), Index: 2, To: RunScheduled, DueAt: 9},
		)
	}
	a, b := applyChain(t, evs), applyChain(t, evs)
	ba, _ := EncodeState(a)
	bb, _ := EncodeState(b)
	if !bytes.Equal(ba, bb) {
		t.Error("two replays of the same events encode differently")
	}
	if !maps.Equal(a.Counts(), map[RunState]int{RunReady: 3, RunScheduled: 3}) {
		t.Errorf("counts %v", a.Counts())
	}
}

func TestIsRunID(t *testing.T) {
	for _, tc := range []struct {
		id    RunID
		task  TaskID
		index int
		want  bool
	}{
		{MakeRunID("t1", 1), "t1", 1, true},
		{MakeRunID("t1", 12345), "t1", 12345, true},
		{MakeRunID("t1", 1), "t1", 2, false},
		{MakeRunID("t1", 1), "t", 1, false},
		{MakeRunID("t1", 12), "t1", 1, false},
		{"t1#", "t1", 0, false},
		{"t1", "t1", 1, false},
		{"t1-1", "t1", 1, false},
		{MakeRunID("a#1", 2), "a#1", 2, true},
	} {
		if got := isRunID(tc.id, tc.task, tc.index); got != tc.want {
			t.Errorf("isRunID(%q, %q, %d) = %v, want %v", tc.id, tc.task, tc.index, got, tc.want)
		}
	}
}

// TestApplyLostAttemptBudget checks the retry rule apply enforces for lost
// attempts: they do not use max_attempts, up to MaxLostAttempts per run;
// and a WAL of the earlier rule (lost attempts counted against
// max_attempts) still replays.
func TestApplyLostAttemptBudget(t *testing.T) {
	spec := &TaskSpec{ID: "t", Handler: "h", MaxAttempts: 1}
	if err := spec.Normalize(); err != nil {
		t.Fatal(err)
	}
	lease := func(n int) Event {
		return Event{Type: EvLeaseAcquired, At: int64(10 * n), Task: "t", Run: "t#1", From: RunReady, Attempt: n, Worker: "n/w1", LeaseExp: 1000}
	}
	finish := func(n int, o Outcome, to RunState) Event {
		return Event{Type: EvAttemptFinished, At: int64(10*n + 1), Task: "t", Run: "t#1", From: RunLeased, To: to, Attempt: n, Outcome: o, Retryable: o != OutcomeOK, DueAt: int64(10*n + 5)}
	}
	again := func(n int) Event {
		return Event{Type: EvRunTransition, At: int64(10*n + 5), Task: "t", Run: "t#1", From: RunRetryWait, To: RunReady, DueAt: int64(10*n + 5)}
	}
	// lostThen: n-1 lost attempts retried, then attempt n with outcome o moving the run to `to`.
	lostThen := func(n int, o Outcome, to RunState) []Event {
		evs := []Event{{Type: EvTaskSubmitted, At: 1, Task: "t", Spec: spec}, {Type: EvRunCreated, At: 1, Task: "t", Run: "t#1", Index: 1, To: RunReady, DueAt: 1}}
		for i := 1; i < n; i++ {
			evs = append(evs, lease(i), finish(i, OutcomeLost, RunRetryWait), again(i))
		}
		return append(evs, lease(n), finish(n, o, to))
	}
	tests := []struct {
		name    string
		events  []Event
		wantErr string // substring of the error of the last event; "" = accepted
		want    RunState
	}{
		{name: "lost attempts 1-4 retried, then ok", events: lostThen(5, OutcomeOK, RunCompleted), want: RunCompleted},
		{name: "after 4 lost, a failure uses the one attempt", events: lostThen(5, OutcomeTrap, RunRetryWait), wantErr: "retry after attempt 5 (1 of max_attempts 1 used, 4 lost)"},
		{name: "the 5th lost attempt is not retried", events: lostThen(5, OutcomeLost, RunRetryWait), wantErr: "retry after attempt 5 (0 of max_attempts 1 used, 5 lost)"},
		{name: "the 5th lost attempt fails the run", events: lostThen(5, OutcomeLost, RunFailed), want: RunFailed},
		{name: "earlier rule: a lost first attempt failed a max_attempts 1 task", events: lostThen(1, OutcomeLost, RunFailed), want: RunFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := applyChain(t, tc.events[:len(tc.events)-1])
			last := tc.events[len(tc.events)-1]
			err := Apply(s, &last)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("apply: %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Runs["t#1"].State; got != tc.want {
				t.Errorf("run is %s, want %s", got, tc.want)
			}
		})
	}
}
