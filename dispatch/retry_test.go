package dispatch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/dispatch/machine"
)

// failFor makes the recorder fail the first attempt of every run of the
// listed tasks (permanently) and succeed otherwise, outputting the run id.
func failFor(tasks ...TaskID) func(ctx context.Context, j Job) Result {
	return func(_ context.Context, j Job) Result {
		if slices.Contains(tasks, j.Task) && strings.HasSuffix(string(j.Run), "#1") {
			return Result{Outcome: OutcomeFailed, Error: "first run fails"}
		}
		return Result{Outcome: OutcomeOK, Output: []byte("out:" + string(j.Run))}
	}
}

// restartModes are the ways TestEngine* tests check that a change
// survives a restart: replayed from the WAL, or loaded from a snapshot.
var restartHow = []string{"wal", "snapshot"}

func (r *engineRig) restart(mode string) {
	r.t.Helper()
	if mode == "snapshot" {
		if err := r.e.Snapshot(r.ctx()); err != nil {
			r.t.Fatalf("Snapshot: %v", err)
		}
	}
	r.reopen()
	r.idle()
}

func TestEngineRetryFinalTask(t *testing.T) {
	for _, mode := range restartHow {
		t.Run(mode, func(t *testing.T) {
			r := newEngineRig(t, nil)
			r.ex.set(failFor("f"))
			r.submit(TaskSpec{ID: "f"})
			r.submit(TaskSpec{ID: "c", NotBeforeMs: rigEpoch.Add(time.Hour).UnixMilli()})
			if err := r.e.Cancel(r.ctx(), "c", "test"); err != nil {
				t.Fatal(err)
			}
			r.idle()
			if v := r.view("f"); v.State != TaskFailed {
				t.Fatalf("f is %s before the retry", v.State)
			}
			for _, id := range []TaskID{"f", "c"} {
				if err := r.e.Retry(r.ctx(), id); err != nil {
					t.Fatalf("Retry(%s): %v", id, err)
				}
			}
			r.idle()
			r.restart(mode)
			for _, tc := range []struct {
				id       TaskID
				wantRuns []RunState
			}{
				{id: "f", wantRuns: []RunState{RunFailed, RunCompleted}},
				{id: "c", wantRuns: []RunState{RunCanceled, RunCompleted}},
			} {
				v := r.view(tc.id)
				var got []RunState
				for _, run := range v.Runs {
					got = append(got, run.State)
				}
				if v.State != TaskCompleted || v.Retries != 1 || !slices.Equal(got, tc.wantRuns) || v.Canceled {
					t.Errorf("%s after retry and restart: %s, retries %d, runs %v, canceled %v; want completed, 1, %v",
						tc.id, v.State, v.Retries, got, v.Canceled, tc.wantRuns)
				}
				if want := "out:" + string(tc.id) + "#2"; string(v.Output) != want {
					t.Errorf("%s output %q, want %q", tc.id, v.Output, want)
				}
			}
			if got := r.ex.attempts(); !slices.Equal(sorted(got), []string{"c#2/1", "f#1/1", "f#2/1"}) {
				t.Errorf("attempts %v", got)
			}
			// Completed now: a second retry is refused.
			if err := r.e.Retry(r.ctx(), "f"); !errors.Is(err, ErrNotFinal) || !strings.Contains(err.Error(), "completed") {
				t.Errorf("retry of a completed task: %v", err)
			}
		})
	}
}

func TestEngineRetryRefused(t *testing.T) {
	r := newEngineRig(t, nil)
	r.ex.set(failFor("failed", "P"))
	r.submit(TaskSpec{ID: "waiting", NotBeforeMs: rigEpoch.Add(time.Hour).UnixMilli()})
	r.submit(TaskSpec{ID: "done"})
	r.submit(TaskSpec{ID: "failed"})
	r.submit(TaskSpec{ID: "dependent", After: []TaskID{"failed"}})
	r.submit(TaskSpec{ID: "cron", Policy: RunPolicy{Kind: PolicyCron, CronExpr: "0 0 * * * *"}})
	if err := r.e.Cancel(r.ctx(), "cron", "test"); err != nil {
		t.Fatal(err)
	}
	r.idle()
	tests := []struct {
		name    string
		id      TaskID
		wantErr error
		wantMsg string
	}{
		{name: "unknown", id: "nope", wantErr: ErrNotFound},
		{name: "not final", id: "waiting", wantErr: ErrNotFinal, wantMsg: "task waiting is pending; only a failed or canceled task can be retried"},
		{name: "completed", id: "done", wantErr: ErrNotFinal, wantMsg: "task done is completed"},
		{name: "prerequisite failed", id: "dependent", wantErr: ErrNotFinal, wantMsg: "task dependent waits for failed, which is failed; retry failed first"},
		{name: "cron", id: "cron", wantErr: ErrNotFinal, wantMsg: "cron task"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := r.e.Stats().Applied
			err := r.e.Retry(r.ctx(), tc.id)
			if !errors.Is(err, tc.wantErr) || !strings.Contains(fmt.Sprint(err), tc.wantMsg) {
				t.Fatalf("Retry(%s) = %v, want %v containing %q", tc.id, err, tc.wantErr, tc.wantMsg)
			}
			if after := r.e.Stats().Applied; after != before {
				t.Errorf("a refused retry wrote %d events", after-before)
			}
		})
	}
	// Retrying the prerequisite first makes the dependent retryable: it
	// waits for the prerequisite's new run, then runs.
	if err := r.e.Retry(r.ctx(), "failed"); err != nil {
		t.Fatal(err)
	}
	if err := r.e.Retry(r.ctx(), "dependent"); err != nil {
		t.Fatalf("retry of the dependent after its prerequisite: %v", err)
	}
	r.idle()
	if v := r.view("dependent"); v.State != TaskCompleted {
		t.Errorf("dependent is %s after both retries, want completed", v.State)
	}
}

// TestEngineRetryParentOfFailedChild: a parent failed because a child
// failed; its retry runs the handler again, whose new children (ids from
// the new run) decide the result; the old failed child does not.
func TestEngineRetryParentOfFailedChild(t *testing.T) {
	r := newEngineRig(t, nil)
	r.ex.set(func(_ context.Context, j Job) Result {
		switch {
		case j.Task == "P":
			return Result{Outcome: OutcomeOK, Children: childrenOf(t, j.Run, []SpecJSON{{Handler: "h"}})}
		case strings.HasPrefix(string(j.Task), string(childID("P#1", 1))):
			return Result{Outcome: OutcomeFailed, Error: "child of the first run fails"}
		}
		return Result{Outcome: OutcomeOK}
	})
	r.submit(TaskSpec{ID: "P"})
	r.idle()
	if v := r.view("P"); v.State != TaskFailed {
		t.Fatalf("P is %s, want failed (its child failed)", v.State)
	}
	if err := r.e.Retry(r.ctx(), childID("P#1", 1)); !errors.Is(err, ErrNotFinal) || !strings.Contains(err.Error(), "retry P") {
		t.Errorf("retry of a child: %v", err)
	}
	if err := r.e.Retry(r.ctx(), "P"); err != nil {
		t.Fatal(err)
	}
	r.idle()
	r.restart("snapshot")
	v := r.view("P")
	if v.State != TaskCompleted || len(v.Children) != 2 {
		t.Errorf("P after retry: %s with children %v, want completed with 2", v.State, v.Children)
	}
}

func TestEngineDelete(t *testing.T) {
	for _, mode := range restartHow {
		t.Run(mode, func(t *testing.T) {
			r := newEngineRig(t, nil)
			r.ex.set(func(_ context.Context, j Job) Result {
				if j.Task == "P" {
					return Result{Outcome: OutcomeOK, Children: childrenOf(t, j.Run, []SpecJSON{{Handler: "h"}})}
				}
				return Result{Outcome: OutcomeOK}
			})
			r.submit(TaskSpec{ID: "done"})
			r.submit(TaskSpec{ID: "keep"})
			r.submit(TaskSpec{ID: "P"})
			r.submit(TaskSpec{ID: "waiting", NotBeforeMs: rigEpoch.Add(time.Hour).UnixMilli()})
			r.idle()
			child := childID("P#1", 1)
			for _, tc := range []struct {
				id      TaskID
				wantN   int
				wantErr error
			}{
				{id: "nope", wantErr: ErrNotFound},
				{id: "waiting", wantErr: ErrNotFinal},
				{id: "done", wantN: 1},
				{id: "P", wantN: 2}, // and its child with it
			} {
				if n, err := r.e.Delete(r.ctx(), tc.id); !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) || n != tc.wantN {
					t.Errorf("Delete(%s) = %d, %v, want %d, %v", tc.id, n, err, tc.wantN, tc.wantErr)
				}
			}
			r.restart(mode)
			for id, want := range map[TaskID]bool{"done": false, "P": false, child: false, "keep": true, "waiting": true} {
				if _, ok := r.e.Task(id); ok != want {
					t.Errorf("after delete and restart: %s present=%v, want %v", id, ok, want)
				}
			}
			if st := r.e.Stats(); st.Tasks != 2 || st.RunsByState[RunCompleted] != 1 {
				t.Errorf("stats after delete: %d tasks, runs %v", st.Tasks, st.RunsByState)
			}
			// A deleted id is free again.
			if res := r.submit(TaskSpec{ID: "done"}); res.Duplicate {
				t.Error("resubmit of a deleted id is a duplicate")
			}
		})
	}
}

func TestEnginePurge(t *testing.T) {
	r := newEngineRig(t, nil)
	r.ex.set(failFor("f1", "f2"))
	r.submit(TaskSpec{ID: "old-ok", Labels: map[string]string{"team": "a"}})
	r.idle()
	r.advance(2 * time.Hour)
	r.submit(TaskSpec{ID: "f1", Labels: map[string]string{"team": "a"}})
	r.submit(TaskSpec{ID: "f2", Handler: "other", Labels: map[string]string{"team": "b"}})
	r.submit(TaskSpec{ID: "ok", Labels: map[string]string{"team": "a"}})
	r.submit(TaskSpec{ID: "waiting", NotBeforeMs: rigEpoch.Add(24 * time.Hour).UnixMilli(), Labels: map[string]string{"team": "a"}})
	r.idle()
	present := func() []string {
		var ids []string
		for _, v := range r.e.List(ListFilter{}) {
			ids = append(ids, string(v.ID))
		}
		return sorted(ids)
	}
	tests := []struct {
		name   string
		filter PurgeFilter
		want   int
		left   []string
	}{
		{name: "older than", filter: PurgeFilter{OlderThanMs: time.Hour.Milliseconds()}, want: 1,
			left: []string{"f1", "f2", "ok", "waiting"}},
		{name: "state and label", filter: PurgeFilter{States: []TaskState{TaskFailed}, Labels: map[string]string{"team": "a"}}, want: 1,
			left: []string{"f2", "ok", "waiting"}},
		{name: "handler", filter: PurgeFilter{Handler: "other"}, want: 1, left: []string{"ok", "waiting"}},
		{name: "nothing matches", filter: PurgeFilter{States: []TaskState{TaskCanceled}}, want: 0, left: []string{"ok", "waiting"}},
		{name: "every final task", filter: PurgeFilter{}, want: 1, left: []string{"waiting"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := r.e.Purge(r.ctx(), tc.filter)
			if err != nil || n != tc.want {
				t.Fatalf("Purge = %d, %v; want %d", n, err, tc.want)
			}
			if got := present(); !slices.Equal(got, tc.left) {
				t.Errorf("left %v, want %v", got, tc.left)
			}
		})
	}
	r.restart("wal")
	if got := present(); !slices.Equal(got, []string{"waiting"}) {
		t.Errorf("after restart: %v", got)
	}
	var ve *ValidationError
	if _, err := r.e.Purge(r.ctx(), PurgeFilter{States: []TaskState{TaskPending}}); !errors.As(err, &ve) || ve.Field != "state" {
		t.Errorf("purge of pending tasks: %v, want a state error", err)
	}
}

func TestEngineListLabels(t *testing.T) {
	r := newEngineRig(t, nil)
	r.submit(TaskSpec{ID: "a", Labels: map[string]string{"team": "x", "env": "prod"}})
	r.submit(TaskSpec{ID: "b", Labels: map[string]string{"team": "x"}})
	r.submit(TaskSpec{ID: "c", Labels: map[string]string{"team": "y", "env": "prod"}})
	r.idle()
	tests := []struct {
		labels map[string]string
		want   []TaskID
	}{
		{labels: map[string]string{"team": "x"}, want: []TaskID{"b", "a"}},
		{labels: map[string]string{"team": "x", "env": "prod"}, want: []TaskID{"a"}},
		{labels: map[string]string{"env": "prod"}, want: []TaskID{"c", "a"}},
		{labels: map[string]string{"env": ""}, want: nil},
		{labels: nil, want: []TaskID{"c", "b", "a"}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.labels), func(t *testing.T) {
			var got []TaskID
			for _, v := range r.e.List(ListFilter{Labels: tc.labels}) {
				got = append(got, v.ID)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("List(labels %v) = %v, want %v", tc.labels, got, tc.want)
			}
		})
	}
}

// TestEngineListBuildsOnlyThePage: a page of 1 out of 5,000 tasks builds
// one view, not 5,000 (List holds the read lock the loop waits for).
func TestEngineListBuildsOnlyThePage(t *testing.T) {
	r := newEngineRig(t, nil)
	if err := r.e.Pause(r.ctx()); err != nil {
		t.Fatal(err)
	}
	for i := range 5000 {
		r.submit(TaskSpec{ID: TaskID(fmt.Sprintf("t%05d", i))})
	}
	var page []TaskView
	allocs := testing.AllocsPerRun(5, func() { page = r.e.List(ListFilter{Limit: 1, State: TaskPending}) })
	if len(page) != 1 || page[0].ID != "t04999" {
		t.Fatalf("page %v", page)
	}
	if allocs > 100 {
		t.Errorf("List of 1 task out of 5000 made %.0f allocations: it builds views it does not return", allocs)
	}
	// Paging still walks every task, newest first.
	var all []TaskID
	for cursor := TaskID(""); ; {
		p := r.e.List(ListFilter{Limit: 1000, Before: cursor})
		if len(p) == 0 {
			break
		}
		for _, v := range p {
			all = append(all, v.ID)
		}
		cursor = p[len(p)-1].ID
	}
	if len(all) != 5000 || all[0] != "t04999" || all[4999] != "t00000" || !slices.IsSortedFunc(all, func(a, b TaskID) int { return strings.Compare(string(b), string(a)) }) {
		t.Errorf("paging returned %d tasks (%v ... %v)", len(all), all[:1], all[len(all)-1:])
	}
}

// TestEngineChildrenViewAfterRetention: retention drops final children
// before their (retained) root; the root's view must not list them, live
// as after a restart.
func TestEngineChildrenViewAfterRetention(t *testing.T) {
	r := newEngineRig(t, func(c *Config) { c.RetainCount = 2 })
	r.ex.set(func(_ context.Context, j Job) Result {
		if j.Task == "P" {
			// The second child ends a minute after the first: then P.
			later := rigEpoch.Add(time.Minute).Format(time.RFC3339Nano)
			return Result{Outcome: OutcomeOK, Children: childrenOf(t, j.Run, []SpecJSON{{Handler: "h"}, {Handler: "h", NotBefore: later}})}
		}
		return Result{Outcome: OutcomeOK}
	})
	r.submit(TaskSpec{ID: "P"})
	r.idle()
	r.advance(time.Minute)
	live := r.view("P")
	for _, c := range live.Children {
		if _, ok := r.e.Task(c); !ok {
			t.Errorf("live view of P lists child %s, which retention dropped", c)
		}
	}
	r.restart("wal")
	if got := r.view("P").Children; !slices.Equal(got, live.Children) {
		t.Errorf("children after a restart %v, live %v", got, live.Children)
	}
}

// TestEngineCronRunsBounded: an every-second cron task keeps at most
// CronRunsKept final runs, live and after a restart, and goes on.
func TestEngineCronRunsBounded(t *testing.T) {
	r, _ := newWorkflowRig(t, nil, nil)
	r.submit(cronSpec("* * * * * *", ""))
	r.idle()
	for range 3 * CronRunsKept {
		r.advance(time.Second)
	}
	check := func(when string) {
		v := r.view("cron")
		done := dueTimes(v, RunCompleted)
		if len(done) != CronRunsKept || len(v.Runs) > CronRunsKept+CronWindow {
			t.Errorf("%s: %d runs listed (%d completed), want %d completed", when, len(v.Runs), len(done), CronRunsKept)
		}
		if v.PrunedRuns != 3*CronRunsKept+1-CronRunsKept {
			t.Errorf("%s: %d runs pruned, want %d", when, v.PrunedRuns, 2*CronRunsKept+1)
		}
		if st := r.e.Stats(); st.RunsByState[RunCompleted] != CronRunsKept {
			t.Errorf("%s: %d completed runs counted", when, st.RunsByState[RunCompleted])
		}
	}
	check("live")
	r.restart("snapshot")
	check("after a snapshot restart")
	r.restart("wal")
	r.advance(time.Second)
	if v := r.view("cron"); dueTimes(v, RunCompleted)[CronRunsKept-1] != rigEpoch.Truncate(time.Second).Add(time.Duration(3*CronRunsKept+1)*time.Second).UTC() {
		t.Errorf("the schedule did not go on after the restarts: last run due %v", dueTimes(v, RunCompleted)[CronRunsKept-1])
	}
}

// TestSpecJSONMaxAttemptsZero: an explicit "max_attempts": 0 is refused
// naming the field (it used to mean the default silently); omitted, null,
// or the words in the input are not.
func TestSpecJSONMaxAttemptsZero(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		wantErr   bool
		wantValue int
	}{
		{name: "explicit 0", body: `{"handler": "h", "max_attempts": 0}`, wantErr: true},
		{name: "explicit 0 with spaces", body: `{"handler": "h", "max_attempts" :  0}`, wantErr: true},
		{name: "omitted", body: `{"handler": "h"}`, wantValue: DefaultMaxAttempts},
		{name: "null", body: `{"handler": "h", "max_attempts": null}`, wantValue: DefaultMaxAttempts},
		{name: "the key in the input", body: `{"handler": "h", "input": "\"max_attempts\": 0"}`, wantValue: DefaultMaxAttempts},
		{name: "3", body: `{"handler": "h", "max_attempts": 3}`, wantValue: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			js, err := DecodeSpecJSON([]byte(tc.body))
			var spec TaskSpec
			if err == nil {
				spec, err = js.ToSpec()
			}
			var ve *ValidationError
			if tc.wantErr {
				if !errors.As(err, &ve) || ve.Field != "max_attempts" || !strings.Contains(ve.Reason, "got 0 (omit it for the default, 1)") {
					t.Fatalf("err = %v, want a max_attempts error", err)
				}
				return
			}
			if err != nil || spec.MaxAttempts != tc.wantValue {
				t.Fatalf("max_attempts %d, err %v; want %d", spec.MaxAttempts, err, tc.wantValue)
			}
		})
	}
}

// TestOldSkipsStillCountTowardMaxRuns: a log written before EvRunSkipped
// recorded a skipped misfire as EvRunTransition to canceled, which counted
// toward max_runs; it replays as it was written (the task ends, and the
// retention drop that followed applies). A skip written now does not count.
func TestOldSkipsStillCountTowardMaxRuns(t *testing.T) {
	for _, tc := range []struct {
		name      string
		skip      EventType
		wantFinal bool
	}{
		{name: "old log: run_transition", skip: EvRunTransition, wantFinal: true},
		{name: "new log: run_skipped", skip: EvRunSkipped, wantFinal: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := TaskSpec{ID: "c", Handler: "h", Policy: RunPolicy{Kind: PolicyCron, CronExpr: "* * * * * *", MaxRuns: 2}}
			if err := spec.Normalize(); err != nil {
				t.Fatal(err)
			}
			s := NewState()
			events := []Event{
				{Type: EvTaskSubmitted, At: 1000, Task: "c", Spec: &spec},
				{Type: EvRunCreated, At: 1000, Task: "c", Run: "c#1", Index: 1, To: RunScheduled, DueAt: 2000},
				{Type: EvRunCreated, At: 1000, Task: "c", Run: "c#2", Index: 2, To: RunScheduled, DueAt: 3000},
				{Type: tc.skip, At: 3000, Task: "c", Run: "c#1", From: RunScheduled, To: RunCanceled, Reason: "misfire"},
				{Type: EvRunTransition, At: 3000, Task: "c", Run: "c#2", From: RunScheduled, To: RunReady, DueAt: 3000},
				{Type: EvLeaseAcquired, At: 3000, Task: "c", Run: "c#2", From: RunReady, Attempt: 1, Worker: "w", LeaseExp: 9000},
				{Type: EvAttemptFinished, At: 3001, Task: "c", Run: "c#2", From: RunLeased, To: RunCompleted, Attempt: 1, Outcome: OutcomeOK},
			}
			for i := range events {
				if err := machine.Apply(s, &events[i]); err != nil {
					t.Fatalf("event %d (%v): %v", i, events[i].Type, err)
				}
			}
			task := s.Tasks["c"]
			if task.IsFinal() != tc.wantFinal {
				t.Fatalf("task final=%v (skipped %d), want %v", task.IsFinal(), task.MoreFields().Skipped, tc.wantFinal)
			}
			if tc.wantFinal {
				if err := machine.Apply(s, &Event{Type: EvTaskDropped, At: 4000, Task: "c"}); err != nil {
					t.Errorf("the old log's retention drop: %v", err)
				}
			}
		})
	}
}
