package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/wasmtask/wasmtask/segwal"
)

// recorder is an Executor that records every call and delegates to fn
// (nil: succeed).
type recorder struct {
	mu   sync.Mutex
	jobs []Job
	fn   func(ctx context.Context, j Job) Result
}

func (r *recorder) Execute(ctx context.Context, j Job) Result {
	r.mu.Lock()
	r.jobs = append(r.jobs, j)
	fn := r.fn
	r.mu.Unlock()
	if fn == nil {
		return Result{Outcome: OutcomeOK, Output: []byte("out:" + string(j.Run))}
	}
	return fn(ctx, j)
}

func (r *recorder) set(fn func(ctx context.Context, j Job) Result) {
	r.mu.Lock()
	r.fn = fn
	r.mu.Unlock()
}

func (r *recorder) calls() []Job {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.jobs)
}

// attempts returns "run/attempt" of every call, in call order.
func (r *recorder) attempts() []string {
	var out []string
	for _, j := range r.calls() {
		out = append(out, fmt.Sprintf("%s/%d", j.Run, j.Attempt))
	}
	return out
}

// engineRig runs an Engine on a ManualClock in a temporary directory and
// can close and reopen it on the same data.
type engineRig struct {
	t     *testing.T
	clock *ManualClock
	ex    *recorder
	cfg   Config
	e     *Engine
}

var rigEpoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newEngineRig opens an engine; edit may change the config first.
func newEngineRig(t *testing.T, edit func(*Config)) *engineRig {
	t.Helper()
	r := &engineRig{t: t, clock: NewManualClock(rigEpoch), ex: &recorder{}}
	r.cfg = Config{Dir: t.TempDir(), Executor: r.ex, Workers: 4, Clock: r.clock, Logger: quietLogger(),
		Node: "test", LeaseGrace: time.Second, SnapshotEvery: -1, WAL: segwal.Options{Sync: segwal.SyncNone}}
	if edit != nil {
		edit(&r.cfg)
	}
	r.open()
	t.Cleanup(func() {
		if r.e != nil {
			if err := r.e.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
	})
	return r
}

func (r *engineRig) open() {
	r.t.Helper()
	e, err := Open(r.cfg)
	if err != nil {
		r.t.Fatalf("Open: %v", err)
	}
	r.e = e
}

func (r *engineRig) close() {
	r.t.Helper()
	e := r.e
	r.e = nil
	if err := e.Close(); err != nil {
		r.t.Fatalf("Close: %v", err)
	}
}

func (r *engineRig) reopen() {
	r.t.Helper()
	r.close()
	r.open()
}

func (r *engineRig) ctx() context.Context {
	ctx, cancel := context.WithTimeout(r.t.Context(), 20*time.Second)
	r.t.Cleanup(cancel)
	return ctx
}

func (r *engineRig) submit(spec TaskSpec) SubmitResult {
	r.t.Helper()
	if spec.Handler == "" {
		spec.Handler = "h"
	}
	res, err := r.e.Submit(r.ctx(), spec)
	if err != nil {
		r.t.Fatalf("Submit %q: %v", spec.ID, err)
	}
	return res
}

// idle waits until the engine has nothing to do at the current time.
func (r *engineRig) idle() {
	r.t.Helper()
	if err := r.e.RunUntilIdle(r.ctx()); err != nil {
		r.t.Fatalf("RunUntilIdle: %v", err)
	}
}

// advance moves the clock and waits until the engine is idle again.
func (r *engineRig) advance(d time.Duration) {
	r.t.Helper()
	r.clock.Advance(d)
	r.idle()
}

// barrier returns after the loop ran a tick that began after the call:
// the tick saw the clock as it is now. Unlike idle it does not wait for
// attempts in flight.
func (r *engineRig) barrier() {
	r.t.Helper()
	ch := make(chan idleReply, 1)
	if err := r.e.send(r.ctx(), idleProbe{reply: ch}); err != nil {
		r.t.Fatal(err)
	}
	select {
	case <-ch:
	case <-r.ctx().Done():
		r.t.Fatal("barrier: no tick")
	}
}

func (r *engineRig) view(id TaskID) TaskView {
	r.t.Helper()
	v, ok := r.e.Task(id)
	if !ok {
		r.t.Fatalf("task %q not found", id)
	}
	return v
}

func (r *engineRig) wait(id TaskID) TaskView {
	r.t.Helper()
	v, err := r.e.Wait(r.ctx(), id)
	if err != nil {
		r.t.Fatalf("Wait %q: %v (view %+v)", id, err, v)
	}
	return v
}

// viewCmp compares views and runs by their data (not the index generation).
var viewCmp = []cmp.Option{cmpopts.IgnoreUnexported(Run{}, TaskView{}), cmpopts.EquateEmpty()}

func sorted(s []string) []string {
	slices.Sort(s)
	return s
}

func outcomes(v TaskView) [][]Outcome {
	var out [][]Outcome
	for _, run := range v.Runs {
		var os []Outcome
		for _, a := range run.Attempts {
			os = append(os, a.Outcome)
		}
		out = append(out, os)
	}
	return out
}

// gate lets a test hold executors: each call announces itself on started
// and blocks until release is closed (or, if honorCtx, its context ends).
type gate struct {
	started  chan Job
	release  chan struct{}
	once     sync.Once
	honorCtx bool
	result   Result
}

func newGate(t *testing.T, honorCtx bool) *gate {
	g := &gate{started: make(chan Job, 100), release: make(chan struct{}), honorCtx: honorCtx, result: Result{Outcome: OutcomeOK}}
	t.Cleanup(g.open) // before the engine's Close (cleanups run last in, first out)
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

func (g *gate) execute(ctx context.Context, j Job) Result {
	g.started <- j
	if g.honorCtx {
		select {
		case <-g.release:
		case <-ctx.Done():
			return Result{Outcome: OutcomeCancelled, Error: ctx.Err().Error()}
		}
	} else {
		<-g.release
	}
	return g.result
}

func (g *gate) next(t *testing.T) Job {
	t.Helper()
	select {
	case j := <-g.started:
		return j
	case <-time.After(20 * time.Second):
		t.Fatal("no attempt started")
		return Job{}
	}
}

func TestEngineOnceAndRepeatAcrossRestart(t *testing.T) {
	r := newEngineRig(t, nil)
	r.submit(TaskSpec{ID: "once"})
	r.submit(TaskSpec{ID: "rep", Policy: RunPolicy{Kind: PolicyRepeat, Count: 5, EveryMs: 1000}})
	r.submit(TaskSpec{ID: "later", NotBeforeMs: rigEpoch.Add(10 * time.Second).UnixMilli()})
	r.idle()
	r.advance(time.Second)
	r.advance(time.Second)
	if got := sorted(r.ex.attempts()); !slices.Equal(got, []string{"once#1/1", "rep#1/1", "rep#2/1", "rep#3/1"}) {
		t.Fatalf("before restart: %v", got)
	}
	before := r.e.Stats()
	r.reopen()
	r.idle()
	if st := r.e.Stats(); st.Tasks != before.Tasks || !cmp.Equal(st.RunsByState, before.RunsByState) || st.Applied != before.Applied {
		t.Errorf("after restart: %d tasks %v applied %d; before %d tasks %v applied %d",
			st.Tasks, st.RunsByState, st.Applied, before.Tasks, before.RunsByState, before.Applied)
	}
	if n := len(r.ex.calls()); n != 4 {
		t.Errorf("restart re-ran completed runs: %v", r.ex.attempts())
	}
	for range 10 {
		r.advance(time.Second)
	}
	want := []string{"later#1/1", "once#1/1", "rep#1/1", "rep#2/1", "rep#3/1", "rep#4/1", "rep#5/1"}
	if got := sorted(r.ex.attempts()); !slices.Equal(got, want) {
		t.Errorf("calls %v, want %v", got, want)
	}
	for _, id := range []TaskID{"once", "rep", "later"} {
		v := r.view(id)
		if v.State != TaskCompleted {
			t.Errorf("%s: %s", id, v.State)
		}
		for i, run := range v.Runs {
			if run.State != RunCompleted || len(run.Attempts) != 1 {
				t.Errorf("%s: %s with %d attempts", run.ID, run.State, len(run.Attempts))
			}
			if id == "rep" {
				if due := rigEpoch.UnixMilli() + int64(i)*1000; run.DueAt != due || run.Attempts[0].LeasedAt < due {
					t.Errorf("%s due %d leased %d, want due %d", run.ID, run.DueAt, run.Attempts[0].LeasedAt, due)
				}
			}
		}
	}
	if got := r.view("rep").Runs; len(got) != 5 {
		t.Errorf("rep has %d runs after restart, want 5", len(got))
	}
	// A second restart changes nothing either.
	r.reopen()
	r.advance(time.Hour)
	if n := len(r.ex.calls()); n != len(want) {
		t.Errorf("second restart ran %v", r.ex.attempts()[len(want):])
	}
}

func TestEngineRetryCapAcrossRestart(t *testing.T) {
	tests := []struct {
		name         string
		maxAttempts  int
		fn           func(j Job) Result
		wantState    TaskState
		wantOutcomes []Outcome
	}{
		{name: "max 1 retryable", maxAttempts: 1, fn: func(Job) Result { return Result{Outcome: OutcomeFailed, Retryable: true} },
			wantState: TaskFailed, wantOutcomes: []Outcome{OutcomeFailed}},
		{name: "max 3 retryable", maxAttempts: 3, fn: func(Job) Result { return Result{Outcome: OutcomeTrap, Error: "unreachable"} },
			wantState: TaskFailed, wantOutcomes: []Outcome{OutcomeTrap, OutcomeTrap, OutcomeTrap}},
		{name: "max 3 permanent", maxAttempts: 3, fn: func(Job) Result { return Result{Outcome: OutcomeFailed, Retryable: false} },
			wantState: TaskFailed, wantOutcomes: []Outcome{OutcomeFailed}},
		{name: "max 3 oom", maxAttempts: 3, fn: func(Job) Result { return Result{Outcome: OutcomeOOM, Retryable: true} },
			wantState: TaskFailed, wantOutcomes: []Outcome{OutcomeOOM}},
		{name: "success under the cap", maxAttempts: 3, fn: func(j Job) Result {
			if j.Attempt < 2 {
				return Result{Outcome: OutcomeFailed, Retryable: true}
			}
			return Result{Outcome: OutcomeOK, Output: []byte("fine")}
		}, wantState: TaskCompleted, wantOutcomes: []Outcome{OutcomeFailed, OutcomeOK}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newEngineRig(t, nil)
			r.ex.set(func(_ context.Context, j Job) Result { return tc.fn(j) })
			r.submit(TaskSpec{ID: "t", MaxAttempts: tc.maxAttempts, Backoff: Backoff{Kind: BackoffFixed, BaseMs: 100}})
			r.idle()
			for range tc.maxAttempts {
				r.advance(100 * time.Millisecond)
			}
			v := r.wait("t")
			if v.State != tc.wantState {
				t.Errorf("state %s, want %s", v.State, tc.wantState)
			}
			if diff := cmp.Diff([][]Outcome{tc.wantOutcomes}, outcomes(v)); diff != "" {
				t.Errorf("outcomes (-want +got):\n%s", diff)
			}
			calls := len(r.ex.calls())
			if calls != len(tc.wantOutcomes) {
				t.Errorf("%d calls, want %d", calls, len(tc.wantOutcomes))
			}
			r.reopen()
			r.advance(time.Hour)
			if n := len(r.ex.calls()); n != calls {
				t.Errorf("restart ran %d more attempts", n-calls)
			}
			if diff := cmp.Diff(outcomes(v), outcomes(r.view("t"))); diff != "" {
				t.Errorf("outcomes changed by restart (-before +after):\n%s", diff)
			}
		})
	}
}

// TestEngineRestartDuringRetryWait stops the engine while a run waits for
// its backoff; the retry happens after the restart, and the cap holds over
// both processes.
func TestEngineRestartDuringRetryWait(t *testing.T) {
	r := newEngineRig(t, nil)
	r.ex.set(func(context.Context, Job) Result { return Result{Outcome: OutcomeTimeout} })
	r.submit(TaskSpec{ID: "t", MaxAttempts: 3, Backoff: Backoff{Kind: BackoffFixed, BaseMs: 5000}})
	r.idle()
	r.reopen()
	r.advance(4999 * time.Millisecond)
	if n := len(r.ex.calls()); n != 1 {
		t.Fatalf("%d calls before the backoff ran out, want 1", n)
	}
	r.advance(time.Millisecond)
	r.reopen()
	r.advance(5 * time.Second)
	r.reopen()
	r.advance(time.Hour)
	if got := r.ex.attempts(); !slices.Equal(got, []string{"t#1/1", "t#1/2", "t#1/3"}) {
		t.Errorf("calls %v", got)
	}
	if v := r.view("t"); v.State != TaskFailed {
		t.Errorf("state %s", v.State)
	}
}

// TestEngineRestartMidAttempt closes the engine while an attempt runs: the
// next Open closes it as lost and retries it, also when max_attempts is 1
// (a lost attempt does not use it).
func TestEngineRestartMidAttempt(t *testing.T) {
	tests := []struct {
		name        string
		maxAttempts int
		want        TaskState
		wantCalls   int
	}{
		{name: "retried", maxAttempts: 2, want: TaskCompleted, wantCalls: 2},
		{name: "max_attempts 1: a lost attempt does not count", maxAttempts: 1, want: TaskCompleted, wantCalls: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newEngineRig(t, nil)
			g := newGate(t, true)
			r.ex.set(g.execute)
			r.submit(TaskSpec{ID: "t", MaxAttempts: tc.maxAttempts, Backoff: Backoff{Kind: BackoffFixed}})
			g.next(t)
			r.close() // cancels the attempt; its result is never recorded
			r.ex.set(nil)
			r.open()
			v := r.wait("t")
			if v.State != tc.want {
				t.Errorf("state %s, want %s", v.State, tc.want)
			}
			if a := v.Runs[0].Attempts[0]; a.Outcome != OutcomeLost {
				t.Errorf("attempt 1 %s, want lost", a.Outcome)
			}
			if n := len(r.ex.calls()); n != tc.wantCalls {
				t.Errorf("%d calls, want %d", n, tc.wantCalls)
			}
		})
	}
}

func TestEngineBackoffTiming(t *testing.T) {
	tests := []struct {
		name    string
		backoff Backoff
		rand    float64
		waits   []time.Duration // before attempts 2, 3, 4
	}{
		{name: "fixed", backoff: Backoff{Kind: BackoffFixed, BaseMs: 2000}, waits: []time.Duration{2 * time.Second, 2 * time.Second, 2 * time.Second}},
		{name: "exponential with max", backoff: Backoff{Kind: BackoffExponential, BaseMs: 1000, MaxMs: 3000}, waits: []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}},
		{name: "jitter", backoff: Backoff{Kind: BackoffExponential, BaseMs: 1000, MaxMs: 3000, Jitter: 0.5}, rand: 0.5,
			waits: []time.Duration{750 * time.Millisecond, 1500 * time.Millisecond, 2250 * time.Millisecond}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newEngineRig(t, func(c *Config) { c.Rand = func() float64 { return tc.rand } })
			r.ex.set(func(_ context.Context, j Job) Result { return Result{Outcome: OutcomeFailed, Retryable: true} })
			r.submit(TaskSpec{ID: "t", MaxAttempts: len(tc.waits) + 1, Backoff: tc.backoff})
			r.idle()
			for i, w := range tc.waits {
				r.advance(w - time.Millisecond)
				if n := len(r.ex.calls()); n != i+1 {
					t.Fatalf("attempt %d ran %v before its backoff of %v", i+2, time.Millisecond, w)
				}
				r.advance(time.Millisecond)
				if n := len(r.ex.calls()); n != i+2 {
					t.Fatalf("attempt %d did not run when its backoff of %v ran out (%d calls)", i+2, w, n)
				}
			}
			if v := r.view("t"); v.State != TaskFailed || len(v.Runs[0].Attempts) != len(tc.waits)+1 {
				t.Errorf("state %s with %d attempts", v.State, len(v.Runs[0].Attempts))
			}
		})
	}
}

func TestEnginePriorityOrder(t *testing.T) {
	r := newEngineRig(t, func(c *Config) { c.Workers = 1 })
	if err := r.e.Pause(r.ctx()); err != nil {
		t.Fatal(err)
	}
	at := func(d time.Duration) int64 { return rigEpoch.Add(d).UnixMilli() }
	// Submitted in this order, 1ms apart, while paused.
	specs := []TaskSpec{
		{ID: "p0-first"},
		{ID: "p1-first", Priority: 1},
		{ID: "p0-due-later", NotBeforeMs: at(50 * time.Millisecond)},
		{ID: "p0-second"},
		{ID: "p5", Priority: 5},
		{ID: "p0-due-early", NotBeforeMs: at(8 * time.Millisecond)},
		{ID: "p1-second", Priority: 1},
		{ID: "pneg", Priority: -3},
	}
	for _, s := range specs {
		r.submit(s)
		r.clock.Advance(time.Millisecond)
	}
	r.advance(time.Second)
	if n := len(r.ex.calls()); n != 0 {
		t.Fatalf("paused engine ran %d attempts", n)
	}
	if err := r.e.Resume(r.ctx()); err != nil {
		t.Fatal(err)
	}
	r.idle()
	var got []TaskID
	for _, j := range r.ex.calls() {
		got = append(got, j.Task)
	}
	want := []TaskID{"p5", "p1-first", "p1-second", "p0-first", "p0-second", "p0-due-early", "p0-due-later", "pneg"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("execution order (-want +got):\n%s", diff)
	}
}

func TestEngineCancel(t *testing.T) {
	t.Run("running attempt", func(t *testing.T) {
		r := newEngineRig(t, nil)
		g := newGate(t, true)
		var sawErr error
		r.ex.set(func(ctx context.Context, j Job) Result {
			res := g.execute(ctx, j)
			sawErr = ctx.Err()
			return res
		})
		r.submit(TaskSpec{ID: "t", MaxAttempts: 5, Backoff: Backoff{Kind: BackoffFixed}})
		g.next(t)
		if err := r.e.Cancel(r.ctx(), "t", "no longer needed"); err != nil {
			t.Fatal(err)
		}
		v := r.wait("t")
		if v.State != TaskCanceled || !v.Canceled || v.Runs[0].State != RunCanceled {
			t.Errorf("task %s canceled=%v run %s", v.State, v.Canceled, v.Runs[0].State)
		}
		if diff := cmp.Diff([][]Outcome{{OutcomeCancelled}}, outcomes(v)); diff != "" {
			t.Errorf("outcomes (-want +got):\n%s", diff)
		}
		if !errors.Is(sawErr, context.Canceled) {
			t.Errorf("executor saw ctx.Err() = %v, want context.Canceled", sawErr)
		}
		r.reopen()
		r.advance(time.Hour)
		if n := len(r.ex.calls()); n != 1 {
			t.Errorf("%d calls, want 1 (no retry of a canceled run)", n)
		}
		if v := r.view("t"); v.State != TaskCanceled {
			t.Errorf("after restart %s", v.State)
		}
	})
	t.Run("waiting runs", func(t *testing.T) {
		r := newEngineRig(t, nil)
		r.ex.set(func(context.Context, Job) Result { return Result{Outcome: OutcomeTrap} })
		r.submit(TaskSpec{ID: "sched", NotBeforeMs: rigEpoch.Add(time.Minute).UnixMilli()})
		r.submit(TaskSpec{ID: "retry", MaxAttempts: 2, Backoff: Backoff{Kind: BackoffFixed, BaseMs: 60_000}})
		r.idle()
		for _, id := range []TaskID{"sched", "retry"} {
			if err := r.e.Cancel(r.ctx(), id, ""); err != nil {
				t.Fatal(err)
			}
			// Durable before Cancel returned: the view is final at once.
			if v := r.view(id); v.State != TaskCanceled {
				t.Errorf("%s: %s right after Cancel", id, v.State)
			}
		}
		r.reopen()
		r.advance(time.Hour)
		if n := len(r.ex.calls()); n != 1 {
			t.Errorf("calls %v, want only retry's first attempt", r.ex.attempts())
		}
		for _, id := range []TaskID{"sched", "retry"} {
			if v := r.view(id); v.State != TaskCanceled {
				t.Errorf("%s: %s after restart", id, v.State)
			}
		}
	})
	t.Run("final task and unknown id", func(t *testing.T) {
		r := newEngineRig(t, nil)
		r.submit(TaskSpec{ID: "done"})
		r.wait("done")
		r.idle() // Wait may see the tick's state before its append
		last := r.e.wal.Last()
		if err := r.e.Cancel(r.ctx(), "done", ""); err != nil {
			t.Errorf("cancel a completed task: %v", err)
		}
		if got := r.e.wal.Last(); got != last {
			t.Errorf("cancel of a final task wrote %d records", got-last)
		}
		if v := r.view("done"); v.State != TaskCompleted || v.Canceled {
			t.Errorf("completed task is now %s canceled=%v", v.State, v.Canceled)
		}
		if err := r.e.Cancel(r.ctx(), "nope", ""); !errors.Is(err, ErrNotFound) {
			t.Errorf("cancel unknown: %v, want ErrNotFound", err)
		}
	})
}

func TestEnginePauseResumeAcrossRestart(t *testing.T) {
	r := newEngineRig(t, nil)
	if err := r.e.Pause(r.ctx()); err != nil {
		t.Fatal(err)
	}
	last := r.e.wal.Last()
	if err := r.e.Pause(r.ctx()); err != nil {
		t.Fatal(err)
	}
	if r.e.wal.Last() != last {
		t.Error("a second Pause wrote a record")
	}
	r.submit(TaskSpec{ID: "t"})
	r.advance(time.Minute)
	r.reopen()
	r.advance(time.Minute)
	if st := r.e.Stats(); !st.Paused || len(r.ex.calls()) != 0 {
		t.Fatalf("after restart paused=%v calls=%d, want paused and none", st.Paused, len(r.ex.calls()))
	}
	if v := r.view("t"); v.State != TaskPending {
		t.Errorf("task %s, want pending", v.State)
	}
	if err := r.e.Resume(r.ctx()); err != nil {
		t.Fatal(err)
	}
	if v := r.wait("t"); v.State != TaskCompleted {
		t.Errorf("task %s after Resume", v.State)
	}
	r.reopen()
	if r.e.Stats().Paused {
		t.Error("Resume did not survive a restart")
	}
}

func TestEngineDrain(t *testing.T) {
	r := newEngineRig(t, func(c *Config) { c.Workers = 2 })
	g := newGate(t, false)
	r.ex.set(g.execute)
	for _, id := range []TaskID{"a", "b", "c"} {
		r.submit(TaskSpec{ID: id})
	}
	g.next(t)
	g.next(t)
	n, err := r.e.Drain(20 * time.Millisecond)
	if err != nil || n != 2 {
		t.Fatalf("Drain with two attempts held = %d, %v; want 2", n, err)
	}
	g.open()
	n, err = r.e.Drain(20 * time.Second)
	if err != nil || n != 0 {
		t.Fatalf("Drain after release = %d, %v; want 0", n, err)
	}
	r.submit(TaskSpec{ID: "d"})
	r.advance(time.Hour)
	if got := r.ex.attempts(); len(got) != 2 {
		t.Errorf("attempts after Drain: %v, want only the two in flight", got)
	}
	if st := r.e.Stats(); st.InFlight != 0 || st.RunsByState[RunReady] != 2 || st.RunsByState[RunCompleted] != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestEngineTimeout(t *testing.T) {
	tests := []struct {
		name string
		fn   func(ctx context.Context) Result
	}{
		{name: "returns cancelled", fn: func(ctx context.Context) Result {
			<-ctx.Done()
			return Result{Outcome: OutcomeCancelled, Error: ctx.Err().Error()}
		}},
		{name: "returns a permanent failure", fn: func(ctx context.Context) Result {
			<-ctx.Done()
			return Result{Outcome: OutcomeFailed, Error: ctx.Err().Error()}
		}},
		{name: "returns no outcome", fn: func(ctx context.Context) Result {
			<-ctx.Done()
			return Result{}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newEngineRig(t, nil)
			var deadlines []bool
			var mu sync.Mutex
			r.ex.set(func(ctx context.Context, j Job) Result {
				res := tc.fn(ctx)
				mu.Lock()
				deadlines = append(deadlines, errors.Is(ctx.Err(), context.DeadlineExceeded))
				mu.Unlock()
				return res
			})
			// The context deadline is real time (TimeoutMs from the manual
			// clock's now); the manual clock stays put, so the lease does
			// not expire.
			r.submit(TaskSpec{ID: "t", TimeoutMs: 20, MaxAttempts: 2, Backoff: Backoff{Kind: BackoffFixed}})
			v := r.wait("t")
			if v.State != TaskFailed {
				t.Errorf("state %s, want failed", v.State)
			}
			if diff := cmp.Diff([][]Outcome{{OutcomeTimeout, OutcomeTimeout}}, outcomes(v)); diff != "" {
				t.Errorf("outcomes (-want +got):\n%s", diff)
			}
			if !v.Runs[0].Attempts[0].Retryable {
				t.Error("a timeout was recorded as not retryable")
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(deadlines, []bool{true, true}) {
				t.Errorf("executor contexts ended by deadline: %v", deadlines)
			}
		})
	}
}

func TestEngineLeaseExpiry(t *testing.T) {
	tests := []struct {
		name        string
		maxAttempts int
		want        TaskState
		wantOut     []Outcome
	}{
		{name: "retried", maxAttempts: 2, want: TaskCompleted, wantOut: []Outcome{OutcomeLost, OutcomeOK}},
		{name: "max_attempts 1: a lost attempt does not count", maxAttempts: 1, want: TaskCompleted, wantOut: []Outcome{OutcomeLost, OutcomeOK}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newEngineRig(t, func(c *Config) { c.LeaseGrace = 500 * time.Millisecond })
			stuck := newGate(t, false) // ignores its context
			var ctxErr error
			stuckDone := make(chan struct{})
			r.ex.set(func(ctx context.Context, j Job) Result {
				if j.Attempt == 1 {
					res := stuck.execute(ctx, j)
					ctxErr = ctx.Err()
					close(stuckDone)
					return res // ok, but too late
				}
				return Result{Outcome: OutcomeOK}
			})
			r.submit(TaskSpec{ID: "t", TimeoutMs: 3_600_000, MaxAttempts: tc.maxAttempts, Backoff: Backoff{Kind: BackoffFixed}})
			stuck.next(t)
			r.clock.Advance(time.Hour + 499*time.Millisecond)
			r.barrier()
			if v := r.view("t"); v.State != TaskRunning || len(v.Runs[0].Attempts) != 1 {
				t.Fatalf("before the lease ran out: %s with %d attempts", v.State, len(v.Runs[0].Attempts))
			}
			r.clock.Advance(time.Millisecond)
			r.barrier()
			v := r.wait("t")
			if v.State != tc.want {
				t.Errorf("state %s, want %s", v.State, tc.want)
			}
			if diff := cmp.Diff([][]Outcome{tc.wantOut}, outcomes(v)); diff != "" {
				t.Errorf("outcomes (-want +got):\n%s", diff)
			}
			if a := v.Runs[0].Attempts[0]; !strings.Contains(a.Error, "lease expired") {
				t.Errorf("lost attempt error %q", a.Error)
			}
			// The stuck worker finally returns ok: ignored.
			r.idle() // Wait may see the tick's state before its append
			last := r.e.wal.Last()
			stuck.open()
			<-stuckDone
			r.idle()
			if diff := cmp.Diff(v.Runs, r.view("t").Runs, viewCmp...); diff != "" {
				t.Errorf("stale result changed the task (-before +after):\n%s", diff)
			}
			if r.e.wal.Last() != last {
				t.Errorf("stale result wrote %d records", r.e.wal.Last()-last)
			}
			if !errors.Is(ctxErr, context.Canceled) {
				t.Errorf("the expired attempt's context: %v, want canceled", ctxErr)
			}
		})
	}
}

func TestEnginePanickingExecutor(t *testing.T) {
	tests := []struct {
		name        string
		maxAttempts int
		panics      int // attempts that panic before one succeeds
		want        TaskState
	}{
		{name: "retried to success", maxAttempts: 3, panics: 2, want: TaskCompleted},
		{name: "at the cap", maxAttempts: 2, panics: 5, want: TaskFailed},
		{name: "single attempt", maxAttempts: 1, panics: 1, want: TaskFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newEngineRig(t, nil)
			r.ex.set(func(_ context.Context, j Job) Result {
				if j.Attempt <= tc.panics {
					panic(fmt.Sprintf("handler bug on attempt %d", j.Attempt))
				}
				return Result{Outcome: OutcomeOK}
			})
			r.submit(TaskSpec{ID: "t", MaxAttempts: tc.maxAttempts, Backoff: Backoff{Kind: BackoffFixed, BaseMs: 10}})
			r.idle()
			for range tc.maxAttempts {
				r.advance(10 * time.Millisecond)
			}
			v := r.wait("t")
			if v.State != tc.want {
				t.Fatalf("state %s, want %s", v.State, tc.want)
			}
			attempts := v.Runs[0].Attempts
			if want := min(tc.maxAttempts, tc.panics+1); len(attempts) != want {
				t.Errorf("%d attempts, want %d", len(attempts), want)
			}
			for _, a := range attempts[:min(tc.panics, len(attempts))] {
				if a.Outcome != OutcomeFailed || !a.Retryable || !strings.Contains(a.Error, "panic") || !strings.Contains(a.Error, fmt.Sprintf("attempt %d", a.Number)) {
					t.Errorf("attempt %d: %s retryable=%v error %.80q", a.Number, a.Outcome, a.Retryable, a.Error)
				}
			}
		})
	}
}

func TestEngineResubmit(t *testing.T) {
	r := newEngineRig(t, nil)
	spec := TaskSpec{ID: "t", Handler: "h", Input: []byte("x"), MaxAttempts: 2, Labels: map[string]string{"k": "v"}}
	if res := r.submit(spec); res.Duplicate || res.Task != "t" {
		t.Fatalf("first submit %+v", res)
	}
	r.idle()
	last := r.e.wal.Last()
	applied := r.e.Stats().Applied
	for _, when := range []string{"after completion", "after restart"} {
		res, err := r.e.Submit(r.ctx(), spec)
		if err != nil || !res.Duplicate || res.Task != "t" {
			t.Errorf("%s: resubmit %+v, %v; want duplicate", when, res, err)
		}
		if r.e.wal.Last() != last || r.e.Stats().Applied != applied {
			t.Errorf("%s: duplicate wrote records (%d -> %d)", when, last, r.e.wal.Last())
		}
		other := spec
		other.Input = []byte("y")
		if _, err := r.e.Submit(r.ctx(), other); !errors.Is(err, ErrConflict) {
			t.Errorf("%s: conflicting resubmit: %v, want ErrConflict", when, err)
		}
		if r.e.wal.Last() != last {
			t.Errorf("%s: conflict wrote records", when)
		}
		r.reopen()
		last = r.e.wal.Last()
	}
	if n := len(r.ex.calls()); n != 1 {
		t.Errorf("%d calls, want 1", n)
	}
}

func TestEngineValidation(t *testing.T) {
	r := newEngineRig(t, nil)
	last := r.e.wal.Last()
	_, err := r.e.Submit(r.ctx(), TaskSpec{ID: "t", Handler: "h", MaxAttempts: 101})
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "max_attempts" {
		t.Errorf("Submit: %v, want a ValidationError on max_attempts", err)
	}
	if r.e.wal.Last() != last || r.e.Stats().Tasks != 0 {
		t.Error("an invalid spec was written")
	}
}

func TestSpecValidation(t *testing.T) {
	tests := []struct {
		name      string
		edit      func(*TaskSpec)
		wantField string // "" = valid
	}{
		{name: "minimal", edit: func(*TaskSpec) {}},
		{name: "pinned handler", edit: func(s *TaskSpec) { s.Handler = "resize@sha256:" + strings.Repeat("0f", 32) }},
		{name: "empty handler", edit: func(s *TaskSpec) { s.Handler = "" }, wantField: "handler"},
		{name: "upper-case handler", edit: func(s *TaskSpec) { s.Handler = "Resize" }, wantField: "handler"},
		{name: "handler with a short pin", edit: func(s *TaskSpec) { s.Handler = "resize@sha256:abc" }, wantField: "handler"},
		{name: "bad id", edit: func(s *TaskSpec) { s.ID = "has space" }, wantField: "id"},
		{name: "id too long", edit: func(s *TaskSpec) { s.ID = TaskID(strings.Repeat("a", 129)) }, wantField: "id"},
		{name: "input too large", edit: func(s *TaskSpec) { s.Input = make([]byte, MaxInputBytes+1) }, wantField: "input"},
		{name: "max_attempts 0 is the default", edit: func(s *TaskSpec) { s.MaxAttempts = 0 }},
		{name: "max_attempts 100", edit: func(s *TaskSpec) { s.MaxAttempts = 100 }},
		{name: "max_attempts 101", edit: func(s *TaskSpec) { s.MaxAttempts = 101 }, wantField: "max_attempts"},
		{name: "max_attempts -1", edit: func(s *TaskSpec) { s.MaxAttempts = -1 }, wantField: "max_attempts"},
		{name: "negative timeout", edit: func(s *TaskSpec) { s.TimeoutMs = -1 }, wantField: "timeout"},
		{name: "timeout over 24h", edit: func(s *TaskSpec) { s.TimeoutMs = MaxTimeoutMs + 1 }, wantField: "timeout"},
		{name: "unknown backoff kind", edit: func(s *TaskSpec) { s.Backoff.Kind = "linear" }, wantField: "backoff.kind"},
		{name: "negative backoff base", edit: func(s *TaskSpec) { s.Backoff = Backoff{Kind: BackoffFixed, BaseMs: -1} }, wantField: "backoff"},
		{name: "backoff max under base", edit: func(s *TaskSpec) { s.Backoff = Backoff{Kind: BackoffExponential, BaseMs: 100, MaxMs: 50} }, wantField: "backoff.max"},
		{name: "jitter over 1", edit: func(s *TaskSpec) { s.Backoff = Backoff{Kind: BackoffFixed, BaseMs: 1, Jitter: 1.5} }, wantField: "backoff.jitter"},
		{name: "negative jitter", edit: func(s *TaskSpec) { s.Backoff = Backoff{Kind: BackoffFixed, BaseMs: 1, Jitter: -0.1} }, wantField: "backoff.jitter"},
		{name: "repeat count 0", edit: func(s *TaskSpec) { s.Policy = RunPolicy{Kind: PolicyRepeat, EveryMs: 1000} }, wantField: "run_policy.repeat.count"},
		{name: "repeat count too large", edit: func(s *TaskSpec) { s.Policy = RunPolicy{Kind: PolicyRepeat, Count: MaxRepeatCount + 1} }, wantField: "run_policy.repeat.count"},
		{name: "repeat negative every", edit: func(s *TaskSpec) { s.Policy = RunPolicy{Kind: PolicyRepeat, Count: 2, EveryMs: -1} }, wantField: "run_policy.repeat.every"},
		{name: "cron without an expression", edit: func(s *TaskSpec) { s.Policy = RunPolicy{Kind: PolicyCron} }, wantField: "run_policy.cron.expr"},
		{name: "cron with a bad expression", edit: func(s *TaskSpec) { s.Policy = RunPolicy{Kind: PolicyCron, CronExpr: "61 * * * *"} }, wantField: "run_policy.cron.expr"},
		{name: "cron with a bad misfire policy", edit: func(s *TaskSpec) { s.Policy = RunPolicy{Kind: PolicyCron, CronExpr: "* * * * *", Misfire: "later"} }, wantField: "run_policy.cron.misfire"},
		{name: "after names itself twice", edit: func(s *TaskSpec) { s.After = []TaskID{"x", "x"} }, wantField: "after"},
		{name: "unknown policy", edit: func(s *TaskSpec) { s.Policy = RunPolicy{Kind: "weekly"} }, wantField: "run_policy"},
		{name: "negative not_before", edit: func(s *TaskSpec) { s.NotBeforeMs = -1 }, wantField: "not_before"},
		{name: "empty label key", edit: func(s *TaskSpec) { s.Labels = map[string]string{"": "x"} }, wantField: "labels"},
		{name: "long label value", edit: func(s *TaskSpec) { s.Labels = map[string]string{"k": strings.Repeat("x", 1025)} }, wantField: "labels"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := TaskSpec{ID: "t", Handler: "h"}
			tc.edit(&spec)
			err := spec.Normalize()
			if tc.wantField == "" {
				if err != nil {
					t.Fatalf("Normalize: %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Normalize = %v, want a *ValidationError on %s", err, tc.wantField)
			}
			if ve.Field != tc.wantField || !strings.HasPrefix(err.Error(), tc.wantField+": ") {
				t.Errorf("error %q names field %q, want %q", err, ve.Field, tc.wantField)
			}
		})
	}
}

func TestSpecDefaults(t *testing.T) {
	spec := TaskSpec{Handler: "h"}
	if err := spec.Normalize(); err != nil {
		t.Fatal(err)
	}
	want := TaskSpec{Handler: "h", Policy: RunPolicy{Kind: PolicyOnce}, MaxAttempts: DefaultMaxAttempts, TimeoutMs: DefaultTimeoutMs,
		Backoff: Backoff{Kind: BackoffExponential, BaseMs: DefaultBackoffMs, MaxMs: DefaultBackoffMax, Jitter: DefaultJitter}}
	if diff := cmp.Diff(want, spec); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	again := spec
	if err := again.Normalize(); err != nil || !again.SameAs(&spec) {
		t.Errorf("Normalize is not idempotent: %v %+v", err, again)
	}
	// A backoff with only a base is exponential.
	partial := TaskSpec{Handler: "h", Backoff: Backoff{BaseMs: 10}}
	if err := partial.Normalize(); err != nil || partial.Backoff.Kind != BackoffExponential || partial.Backoff.BaseMs != 10 {
		t.Errorf("partial backoff: %v %+v", err, partial.Backoff)
	}
}

func TestEngineRetention(t *testing.T) {
	t.Run("count", func(t *testing.T) {
		r := newEngineRig(t, func(c *Config) { c.RetainCount = 2 })
		r.submit(TaskSpec{ID: "pending", NotBeforeMs: rigEpoch.Add(24 * time.Hour).UnixMilli()})
		for i := range 5 {
			r.submit(TaskSpec{ID: TaskID(fmt.Sprint("f", i))})
			r.idle()
			r.clock.Advance(time.Millisecond)
		}
		check := func(when string) {
			for i := range 5 {
				id := TaskID(fmt.Sprint("f", i))
				if _, ok := r.e.Task(id); ok != (i >= 3) {
					t.Errorf("%s: %s present=%v", when, id, ok)
				}
			}
			if _, ok := r.e.Task("pending"); !ok {
				t.Errorf("%s: the pending task was dropped", when)
			}
			if st := r.e.Stats(); st.Tasks != 3 || st.RunsByState[RunCompleted] != 2 {
				t.Errorf("%s: stats %+v", when, st)
			}
		}
		check("live")
		r.reopen()
		r.idle()
		check("after restart")
		// A dropped id may be submitted again, as a new task.
		if res := r.submit(TaskSpec{ID: "f0"}); res.Duplicate {
			t.Error("resubmit of a dropped task is a duplicate")
		}
	})
	t.Run("time", func(t *testing.T) {
		r := newEngineRig(t, func(c *Config) { c.RetainFor = time.Hour })
		r.submit(TaskSpec{ID: "old"})
		r.idle()
		r.advance(30 * time.Minute)
		r.submit(TaskSpec{ID: "young"})
		r.submit(TaskSpec{ID: "waiting", NotBeforeMs: rigEpoch.Add(48 * time.Hour).UnixMilli()})
		r.idle()
		r.advance(30*time.Minute - time.Millisecond)
		if _, ok := r.e.Task("old"); !ok {
			t.Fatal("old dropped before its retention ran out")
		}
		r.advance(time.Millisecond)
		if _, ok := r.e.Task("old"); ok {
			t.Fatal("old kept past its retention")
		}
		if st := r.e.Stats(); st.Tasks != 2 {
			t.Errorf("Stats().Tasks = %d, want 2", st.Tasks)
		}
		// young runs out while the engine is down: dropped on the first tick.
		r.close()
		r.clock.Advance(time.Hour)
		r.open()
		r.idle()
		if _, ok := r.e.Task("young"); ok {
			t.Error("young kept past its retention across a restart")
		}
		if _, ok := r.e.Task("waiting"); !ok {
			t.Error("a non-final task was dropped")
		}
		r.reopen()
		if _, ok := r.e.Task("old"); ok {
			t.Error("old came back after a restart")
		}
	})
}

func TestEngineViews(t *testing.T) {
	r := newEngineRig(t, func(c *Config) { c.Workers = 1 })
	g := newGate(t, true)
	r.ex.set(func(ctx context.Context, j Job) Result {
		if j.Task == "block" {
			return g.execute(ctx, j)
		}
		if j.Handler == "bad" {
			return Result{Outcome: OutcomeFailed, Error: "no"}
		}
		return Result{Outcome: OutcomeOK, Output: []byte("out-" + string(j.Task))}
	})
	r.submit(TaskSpec{ID: "a"})
	r.submit(TaskSpec{ID: "b", Handler: "bad"})
	r.idle()
	r.submit(TaskSpec{ID: "block"})
	g.next(t)
	r.submit(TaskSpec{ID: "c"})
	if v := r.view("block"); v.State != TaskRunning || v.Final() {
		t.Errorf("block: %s", v.State)
	}
	if v := r.view("c"); v.State != TaskPending {
		t.Errorf("c: %s", v.State)
	}
	if v := r.view("a"); v.State != TaskCompleted || string(v.Output) != "out-a" || v.FinalAt == 0 {
		t.Errorf("a: %s output %q final_at %d", v.State, v.Output, v.FinalAt)
	}
	ids := func(vs []TaskView) []TaskID {
		var out []TaskID
		for _, v := range vs {
			out = append(out, v.ID)
		}
		return out
	}
	tests := []struct {
		name string
		f    ListFilter
		want []TaskID
	}{
		{name: "all, newest first", f: ListFilter{}, want: []TaskID{"c", "block", "b", "a"}},
		{name: "limit", f: ListFilter{Limit: 2}, want: []TaskID{"c", "block"}},
		{name: "before", f: ListFilter{Before: "block"}, want: []TaskID{"b", "a"}},
		{name: "state", f: ListFilter{State: TaskFailed}, want: []TaskID{"b"}},
		{name: "handler", f: ListFilter{Handler: "h"}, want: []TaskID{"c", "block", "a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, ids(r.e.List(tc.f))); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	// Views are copies.
	v := r.view("a")
	v.Runs[0].Attempts[0].Outcome = OutcomeTrap
	if r.view("a").Runs[0].Attempts[0].Outcome != OutcomeOK {
		t.Error("a view shares its attempts with the engine")
	}
	if _, err := r.e.Wait(r.ctx(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Wait unknown: %v", err)
	}
	ctx, cancel := context.WithCancel(r.ctx())
	cancel()
	if _, err := r.e.Wait(ctx, "c"); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with a cancelled context: %v", err)
	}
	g.open()
	r.wait("c")
}

func TestEngineClosed(t *testing.T) {
	r := newEngineRig(t, nil)
	r.submit(TaskSpec{ID: "t"})
	e := r.e
	r.close()
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ctx := r.ctx()
	if _, err := e.Submit(ctx, TaskSpec{Handler: "h"}); !errors.Is(err, ErrStopped) {
		t.Errorf("Submit after Close: %v", err)
	}
	if err := e.Cancel(ctx, "t", ""); !errors.Is(err, ErrStopped) {
		t.Errorf("Cancel after Close: %v", err)
	}
	if err := e.Pause(ctx); !errors.Is(err, ErrStopped) {
		t.Errorf("Pause after Close: %v", err)
	}
	if err := e.RunUntilIdle(ctx); !errors.Is(err, ErrStopped) {
		t.Errorf("RunUntilIdle after Close: %v", err)
	}
	if _, err := e.Drain(time.Second); !errors.Is(err, ErrStopped) {
		t.Errorf("Drain after Close: %v", err)
	}
	if err := e.Err(); err != nil {
		t.Errorf("Err after a clean Close: %v", err)
	}
}

func TestOpenConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "no dir", cfg: Config{Executor: &recorder{}}, want: "Dir is required"},
		{name: "no executor", cfg: Config{Dir: t.TempDir()}, want: "Executor is required"},
		{name: "negative workers", cfg: Config{Dir: t.TempDir(), Executor: &recorder{}, Workers: -1}, want: "Workers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Open(tc.cfg)
			if err == nil {
				e.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// TestConfigDefaultWorkers: a zero Config.Workers is DefaultWorkers, 4 per
// core with a floor of 16, the same default as serve --workers and wasmtask
// worker --concurrency.
func TestConfigDefaultWorkers(t *testing.T) {
	tests := []struct {
		procs, want int
	}{
		{procs: 1, want: 16},
		{procs: 2, want: 16},
		{procs: 4, want: 16},
		{procs: 5, want: 20},
		{procs: 16, want: 64},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("procs=%d", tc.procs), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(tc.procs))
			if got := DefaultWorkers(); got != tc.want {
				t.Errorf("DefaultWorkers() = %d, want %d", got, tc.want)
			}
			cfg := Config{Dir: t.TempDir(), Executor: &recorder{}}
			if err := cfg.normalize(); err != nil {
				t.Fatal(err)
			}
			if cfg.Workers != tc.want {
				t.Errorf("Config.Workers defaulted to %d, want %d", cfg.Workers, tc.want)
			}
		})
	}
}

// TestEngineSystemClock runs a small workload on the real clock, with real
// fsyncs, concurrent submitters and short backoffs.
func TestEngineSystemClock(t *testing.T) {
	ex := &recorder{}
	ex.set(func(_ context.Context, j Job) Result {
		if j.Attempt == 1 && strings.HasSuffix(string(j.Task), "3") {
			return Result{Outcome: OutcomeFailed, Retryable: true, Error: "first try"}
		}
		return Result{Outcome: OutcomeOK, Output: []byte(j.Run)}
	})
	dir := t.TempDir()
	cfg := Config{Dir: dir, Executor: ex, Workers: 4, Logger: quietLogger()}
	e, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := range 4 {
		wg.Go(func() {
			for i := range 25 {
				id := TaskID(fmt.Sprintf("w%d-%d", w, i))
				if _, err := e.Submit(ctx, TaskSpec{ID: id, Handler: "h", MaxAttempts: 2, Backoff: Backoff{Kind: BackoffFixed, BaseMs: 1}}); err != nil {
					errs <- err
					return
				}
				if v, err := e.Wait(ctx, id); err != nil || v.State != TaskCompleted {
					errs <- fmt.Errorf("%s: %v %s", id, err, v.State)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// 100 tasks; the 12 whose id ends in 3 needed a second attempt.
	if n := len(ex.calls()); n != 112 {
		t.Errorf("%d calls, want 112", n)
	}
	e, err = Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if got := e.Stats().RunsByState[RunCompleted]; got != 100 {
		t.Errorf("completed after restart = %d, want 100", got)
	}
}

// TestEngineReleasesAttemptContexts checks that the context of every
// finished attempt is cancelled once it is closed, also when the retry is
// leased in the same tick that closed it (which reuses the run's slot in
// the engine's cancel table).
func TestEngineReleasesAttemptContexts(t *testing.T) {
	r := newEngineRig(t, nil)
	var mu sync.Mutex
	var ctxs []context.Context
	r.ex.set(func(ctx context.Context, j Job) Result {
		mu.Lock()
		ctxs = append(ctxs, ctx)
		mu.Unlock()
		if j.Attempt < 3 {
			return Result{Outcome: OutcomeTrap}
		}
		return Result{Outcome: OutcomeOK}
	})
	r.submit(TaskSpec{ID: "t", MaxAttempts: 3, Backoff: Backoff{Kind: BackoffFixed}})
	if v := r.wait("t"); v.State != TaskCompleted {
		t.Fatalf("state %s", v.State)
	}
	r.idle()
	mu.Lock()
	defer mu.Unlock()
	if len(ctxs) != 3 {
		t.Fatalf("%d attempts, want 3", len(ctxs))
	}
	for i, ctx := range ctxs {
		if ctx.Err() == nil {
			t.Errorf("the context of finished attempt %d is still live (a timer held until its deadline)", i+1)
		}
	}
}

// TestEngineStopsOnInvariantViolation damages the in-memory state so that
// the next tick derives an event the reducer rejects: the engine must stop
// (not panic), write nothing of that tick, fail callers with ErrStopped and
// report the *InvariantError; the WAL still recovers.
func TestEngineStopsOnInvariantViolation(t *testing.T) {
	r := newEngineRig(t, nil)
	if err := r.e.Pause(r.ctx()); err != nil {
		t.Fatal(err)
	}
	r.submit(TaskSpec{ID: "t"})
	r.idle()
	last := r.e.wal.Last()
	r.e.mu.Lock()
	r.e.state.Runs["t#1"].State = RunScheduled // the ready index still lists it
	r.e.mu.Unlock()
	if err := r.e.Resume(r.ctx()); !errors.Is(err, ErrStopped) {
		t.Errorf("Resume: %v, want ErrStopped", err)
	}
	var ie *InvariantError
	if err := r.e.Err(); !errors.As(err, &ie) || ie.Event != EvLeaseAcquired || ie.Run != "t#1" {
		t.Errorf("Err() = %v, want the InvariantError of the lease", err)
	}
	if _, err := r.e.Submit(r.ctx(), TaskSpec{Handler: "h"}); !errors.Is(err, ErrStopped) {
		t.Errorf("Submit after the stop: %v", err)
	}
	if got := r.e.wal.Last(); got != last {
		t.Errorf("the failed tick wrote %d records", got-last)
	}
	if err := r.e.Close(); !errors.As(err, &ie) {
		t.Errorf("Close: %v, want the InvariantError", err)
	}
	r.e = nil
	r.open()
	if st := r.e.Stats(); !st.Paused || st.RunsByState[RunReady] != 1 {
		t.Errorf("recovered %+v, want paused with t#1 ready", st)
	}
	if len(r.ex.calls()) != 0 {
		t.Errorf("calls %v", r.ex.attempts())
	}
}

func TestEngineHeartbeat(t *testing.T) {
	r := newEngineRig(t, func(c *Config) { c.LeaseGrace = time.Second })
	g := newGate(t, false)
	r.ex.set(g.execute)
	r.submit(TaskSpec{ID: "t", TimeoutMs: 10_000, MaxAttempts: 1})
	j := g.next(t)
	r.clock.Advance(8 * time.Second)
	j.Heartbeat() // the lease now ends at 8s + timeout + grace = 19s
	r.barrier()
	r.clock.Advance(3 * time.Second) // 11s: the first lease would have ended
	r.barrier()
	if v := r.view("t"); v.State != TaskRunning {
		t.Fatalf("at 11s: %s, want running (renewed)", v.State)
	}
	r.clock.Advance(8 * time.Second) // 19s
	r.barrier()
	v := r.view("t")
	if v.Runs[0].State != RunRetryWait || v.Runs[0].Attempts[0].Outcome != OutcomeLost {
		t.Errorf("after the renewed lease ran out: run %s %v, want retry_wait after a lost attempt", v.Runs[0].State, outcomes(v))
	}
	g.open()
}
