package machine

import (
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/oklog/ulid/v2"
)

// coreRig drives a Core directly with a controlled time: no goroutines,
// no clock, no disk. Every event a step emits is kept in events.
type coreRig struct {
	t       *testing.T
	s       *State
	c       *Core
	now     int64
	events  []Event
	pending []Job      // leased attempts nobody has answered yet
	started []startRec // every attempt handed out, in order
	wake    int64      // NextWake of the last step
}

type startRec struct {
	at  int64
	job Job
}

const rigStart = int64(1_000_000)

// coreOpts are the knobs of a coreRig; zero values are the defaults of the rig.
type coreOpts struct {
	workers     int   // default 1
	leaseGrace  int64 // default 1000
	retainMs    int64
	retainCount int
	rand        func() float64 // default: always 0 (no jitter)
	state       *State         // default NewState()
}

func newCoreRig(t *testing.T, o coreOpts) *coreRig {
	t.Helper()
	if o.workers == 0 {
		o.workers = 1
	}
	if o.leaseGrace == 0 {
		o.leaseGrace = 1000
	}
	if o.rand == nil {
		o.rand = func() float64 { return 0 }
	}
	if o.state == nil {
		o.state = NewState()
	}
	cfg := CoreConfig{Workers: o.workers, Node: "n", LeaseGrace: o.leaseGrace, RetainMs: o.retainMs,
		RetainCount: o.retainCount, Rand: o.rand}
	entropy := ulid.Monotonic(mrand.NewChaCha8([32]byte{1}), 0)
	return &coreRig{t: t, s: o.state, c: NewCore(o.state, cfg, entropy), now: rigStart}
}

// step runs one tick at r.now; an error fails the test.
func (r *coreRig) step(inputs ...any) Batch {
	r.t.Helper()
	b, err := r.c.Step(r.now, inputs)
	if err != nil {
		r.t.Fatalf("Step(%d): %v", r.now, err)
	}
	r.record(b)
	return b
}

func (r *coreRig) record(b Batch) {
	r.events = append(r.events, b.Events...)
	for _, j := range b.Starts {
		r.started = append(r.started, startRec{at: r.now, job: j})
		r.pending = append(r.pending, j)
	}
	r.wake = b.NextWake
}

// ask steps with one input that carries a reply channel and returns the reply.
func (r *coreRig) ask(in any, ch chan Reply) (Batch, Reply) {
	r.t.Helper()
	b := r.step(in)
	for _, a := range b.Acks {
		if a.To == ch {
			return b, a.R
		}
	}
	r.t.Fatalf("no reply for %T", in)
	return b, Reply{}
}

func (r *coreRig) submit(spec TaskSpec) (SubmitResult, error) {
	r.t.Helper()
	ch := make(chan Reply, 1)
	_, rep := r.ask(SubmitInput{Spec: spec, Reply: ch}, ch)
	return rep.Submit, rep.Err
}

func (r *coreRig) mustSubmit(spec TaskSpec) TaskID {
	r.t.Helper()
	res, err := r.submit(spec)
	if err != nil {
		r.t.Fatalf("submit %q: %v", spec.ID, err)
	}
	return res.Task
}

func (r *coreRig) cancel(id TaskID) (Batch, error) {
	r.t.Helper()
	ch := make(chan Reply, 1)
	b, rep := r.ask(CancelInput{Task: id, Reason: "test", Reply: ch}, ch)
	return b, rep.Err
}

// take removes the pending attempt of run id and returns it.
func (r *coreRig) take(id RunID) Job {
	r.t.Helper()
	for i, j := range r.pending {
		if j.Run == id {
			r.pending = slices.Delete(r.pending, i, i+1)
			return j
		}
	}
	r.t.Fatalf("no pending attempt of %s (pending %v)", id, r.pendingRuns())
	return Job{}
}

func (r *coreRig) pendingRuns() []RunID {
	var ids []RunID
	for _, j := range r.pending {
		ids = append(ids, j.Run)
	}
	return ids
}

// finish reports run id's pending attempt as started and done with res.
func (r *coreRig) finish(id RunID, res Result) Batch {
	r.t.Helper()
	j := r.take(id)
	return r.step(StartedInput{Run: j.Run, Attempt: j.Attempt}, ResultInput{Run: j.Run, Attempt: j.Attempt, Res: res})
}

// drive answers every attempt with exec (in the step after it was handed
// out, at the same time) and jumps the time to the next wake-up whenever
// nothing is in flight, until nothing is left to do or the time passes until.
func (r *coreRig) drive(until int64, exec func(j Job) Result) {
	r.t.Helper()
	for range 100_000 {
		if len(r.pending) > 0 {
			var in []any
			for _, j := range r.pending {
				in = append(in, StartedInput{Run: j.Run, Attempt: j.Attempt}, ResultInput{Run: j.Run, Attempt: j.Attempt, Res: exec(j)})
			}
			r.pending = nil
			r.step(in...)
			continue
		}
		if r.wake == 0 || r.wake > until {
			return
		}
		r.now = r.wake
		r.step()
	}
	r.t.Fatal("drive did not settle")
}

func (r *coreRig) run(id RunID) *Run {
	r.t.Helper()
	run, ok := r.s.Runs[id]
	if !ok {
		r.t.Fatalf("no run %s", id)
	}
	return run
}

func (r *coreRig) eventsOf(typ EventType) []Event {
	var out []Event
	for _, e := range r.events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func okResult(Job) Result { return Result{Outcome: OutcomeOK} }

func TestCoreRunAccounting(t *testing.T) {
	tests := []struct {
		name     string
		policy   RunPolicy
		notAfter int64 // not_before relative to submission (0: none)
		wantDue  []int64
	}{
		{name: "once", policy: RunPolicy{Kind: PolicyOnce}, wantDue: []int64{0}},
		{name: "default policy is once", policy: RunPolicy{}, wantDue: []int64{0}},
		{name: "once not before", policy: RunPolicy{Kind: PolicyOnce}, notAfter: 5000, wantDue: []int64{5000}},
		{name: "repeat 1", policy: RunPolicy{Kind: PolicyRepeat, Count: 1, EveryMs: 1000}, wantDue: []int64{0}},
		{name: "repeat 4 every 1s", policy: RunPolicy{Kind: PolicyRepeat, Count: 4, EveryMs: 1000}, wantDue: []int64{0, 1000, 2000, 3000}},
		{name: "repeat 3 every 0", policy: RunPolicy{Kind: PolicyRepeat, Count: 3}, wantDue: []int64{0, 0, 0}},
		{name: "repeat not before", policy: RunPolicy{Kind: PolicyRepeat, Count: 3, EveryMs: 250}, notAfter: 10_000, wantDue: []int64{10_000, 10_250, 10_500}},
		{name: "not before in the past", policy: RunPolicy{Kind: PolicyRepeat, Count: 2, EveryMs: 100}, notAfter: -50_000, wantDue: []int64{0, 100}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newCoreRig(t, coreOpts{workers: 2})
			spec := TaskSpec{ID: "t", Handler: "h", Policy: tc.policy}
			if tc.notAfter != 0 {
				spec.NotBeforeMs = rigStart + tc.notAfter
			}
			r.mustSubmit(spec)
			task := r.s.Tasks["t"]
			if len(task.Runs) != len(tc.wantDue) {
				t.Fatalf("%d runs created, want %d", len(task.Runs), len(tc.wantDue))
			}
			for i, id := range task.Runs {
				run := r.run(id)
				if want := MakeRunID("t", i+1); id != want || run.Index != i+1 {
					t.Errorf("run %d is %s index %d, want %s", i, id, run.Index, want)
				}
				if got := run.DueAt - rigStart; got != tc.wantDue[i] {
					t.Errorf("run %d due at +%d, want +%d", i+1, got, tc.wantDue[i])
				}
			}
			// Runs due later are scheduled; runs due now are ready or already leased.
			for _, e := range r.eventsOf(EvRunCreated) {
				if want := map[bool]RunState{true: RunScheduled, false: RunReady}[e.DueAt > rigStart]; e.To != want {
					t.Errorf("%s created %s (due +%d), want %s", e.Run, e.To, e.DueAt-rigStart, want)
				}
			}
			r.drive(rigStart+1_000_000, okResult)
			if len(r.started) != len(tc.wantDue) {
				t.Fatalf("%d attempts started, want exactly %d", len(r.started), len(tc.wantDue))
			}
			for _, s := range r.started {
				if s.at < r.run(s.job.Run).DueAt {
					t.Errorf("%s started at +%d before it was due at +%d", s.job.Run, s.at-rigStart, r.run(s.job.Run).DueAt-rigStart)
				}
			}
			for _, id := range task.Runs {
				if run := r.run(id); run.State != RunCompleted || len(run.Attempts) != 1 {
					t.Errorf("%s: %s with %d attempts, want completed with 1", id, run.State, len(run.Attempts))
				}
			}
			// Nothing more ever happens.
			r.now += 10_000_000
			if b := r.step(); len(b.Events) != 0 || b.NextWake != 0 {
				t.Errorf("a finished task still produces events %v / a wake-up at %d", b.Events, b.NextWake)
			}
		})
	}
}

func TestCoreRepeatRunsNotBeforeDue(t *testing.T) {
	r := newCoreRig(t, coreOpts{})
	r.mustSubmit(TaskSpec{ID: "t", Handler: "h", Policy: RunPolicy{Kind: PolicyRepeat, Count: 3, EveryMs: 1000}})
	r.finish("t#1", Result{Outcome: OutcomeOK})
	if r.wake != rigStart+1000 {
		t.Fatalf("NextWake = +%d, want +1000", r.wake-rigStart)
	}
	r.now = rigStart + 999
	if b := r.step(); len(b.Starts) != 0 || r.run("t#2").State != RunScheduled {
		t.Fatalf("run 2 started or promoted 1ms early: %v, %s", b.Starts, r.run("t#2").State)
	}
	r.now = rigStart + 1000
	if b := r.step(); len(b.Starts) != 1 || b.Starts[0].Run != "t#2" {
		t.Fatalf("at its due time the step started %v, want t#2", b.Starts)
	}
}

func TestCoreRetryCap(t *testing.T) {
	fail := Result{Outcome: OutcomeFailed, Retryable: true, Error: "boom"}
	tests := []struct {
		name         string
		maxAttempts  int
		results      []Result // by attempt; the last one repeats
		wantState    RunState
		wantOutcomes []Outcome
		wantErr      string // in the last attempt's error
	}{
		{name: "max 1 retryable failure", maxAttempts: 1, results: []Result{fail}, wantState: RunFailed, wantOutcomes: []Outcome{OutcomeFailed}},
		{name: "max 3 retryable failures", maxAttempts: 3, results: []Result{fail}, wantState: RunFailed, wantOutcomes: []Outcome{OutcomeFailed, OutcomeFailed, OutcomeFailed}},
		{name: "max 3 success on the third", maxAttempts: 3, results: []Result{fail, fail, {Outcome: OutcomeOK}}, wantState: RunCompleted, wantOutcomes: []Outcome{OutcomeFailed, OutcomeFailed, OutcomeOK}},
		{name: "max 3 success on the second", maxAttempts: 3, results: []Result{{Outcome: OutcomeTrap}, {Outcome: OutcomeOK}}, wantState: RunCompleted, wantOutcomes: []Outcome{OutcomeTrap, OutcomeOK}},
		{name: "max 3 success at once", maxAttempts: 3, results: []Result{{Outcome: OutcomeOK}}, wantState: RunCompleted, wantOutcomes: []Outcome{OutcomeOK}},
		{name: "max 100 failures", maxAttempts: 100, results: []Result{fail}, wantState: RunFailed, wantOutcomes: slices.Repeat([]Outcome{OutcomeFailed}, 100)},
		{name: "permanent failure", maxAttempts: 3, results: []Result{{Outcome: OutcomeFailed, Retryable: false}}, wantState: RunFailed, wantOutcomes: []Outcome{OutcomeFailed}},
		{name: "oom is not retried", maxAttempts: 3, results: []Result{{Outcome: OutcomeOOM, Retryable: true}}, wantState: RunFailed, wantOutcomes: []Outcome{OutcomeOOM}},
		{name: "output_too_large is not retried", maxAttempts: 3, results: []Result{{Outcome: OutcomeOutputTooLarge, Retryable: true}}, wantState: RunFailed, wantOutcomes: []Outcome{OutcomeOutputTooLarge}},
		{name: "abi_violation is not retried", maxAttempts: 3, results: []Result{{Outcome: OutcomeABIViolation, Retryable: true}}, wantState: RunFailed, wantOutcomes: []Outcome{OutcomeABIViolation}},
		{name: "cancelled without a cancel is not retried", maxAttempts: 3, results: []Result{{Outcome: OutcomeCancelled, Retryable: true}}, wantState: RunFailed, wantOutcomes: []Outcome{OutcomeCancelled}},
		{name: "trap is retried", maxAttempts: 3, results: []Result{{Outcome: OutcomeTrap}}, wantState: RunFailed, wantOutcomes: []Outcome{OutcomeTrap, OutcomeTrap, OutcomeTrap}},
		{name: "timeout is retried", maxAttempts: 2, results: []Result{{Outcome: OutcomeTimeout}}, wantState: RunFailed, wantOutcomes: []Outcome{OutcomeTimeout, OutcomeTimeout}},
		{name: "lost is retried up to MaxLostAttempts", maxAttempts: 2, results: []Result{{Outcome: OutcomeLost}}, wantState: RunFailed, wantOutcomes: slices.Repeat([]Outcome{OutcomeLost}, MaxLostAttempts),
			wantErr: "failed after 5 lost attempts (the limit of lost attempts per run"},
		{name: "lost does not use max_attempts 1", maxAttempts: 1, results: []Result{{Outcome: OutcomeLost}, {Outcome: OutcomeLost}, {Outcome: OutcomeOK}}, wantState: RunCompleted, wantOutcomes: []Outcome{OutcomeLost, OutcomeLost, OutcomeOK}},
		{name: "lost between failures", maxAttempts: 2, results: []Result{fail, {Outcome: OutcomeLost}, fail}, wantState: RunFailed, wantOutcomes: []Outcome{OutcomeFailed, OutcomeLost, OutcomeFailed}},
		{name: "max 1 lost then failure", maxAttempts: 1, results: []Result{{Outcome: OutcomeLost}, fail}, wantState: RunFailed, wantOutcomes: []Outcome{OutcomeLost, OutcomeFailed}},
		{name: "retryable then permanent", maxAttempts: 5, results: []Result{fail, {Outcome: OutcomeOOM}}, wantState: RunFailed, wantOutcomes: []Outcome{OutcomeFailed, OutcomeOOM}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newCoreRig(t, coreOpts{})
			r.mustSubmit(TaskSpec{ID: "t", Handler: "h", MaxAttempts: tc.maxAttempts, Backoff: Backoff{Kind: BackoffFixed, BaseMs: 10}})
			r.drive(rigStart+1_000_000, func(j Job) Result {
				if j.MaxAttempts != tc.maxAttempts {
					t.Errorf("job MaxAttempts = %d, want %d", j.MaxAttempts, tc.maxAttempts)
				}
				return tc.results[min(j.Attempt, len(tc.results))-1]
			})
			run := r.run("t#1")
			if run.State != tc.wantState {
				t.Errorf("run %s, want %s", run.State, tc.wantState)
			}
			var got []Outcome
			for i, a := range run.Attempts {
				got = append(got, a.Outcome)
				if a.Number != i+1 {
					t.Errorf("attempt %d numbered %d", i+1, a.Number)
				}
				wantRetryable := a.Outcome.Retryable(tc.results[min(i+1, len(tc.results))-1].Retryable)
				if a.Retryable != wantRetryable {
					t.Errorf("attempt %d (%s) recorded Retryable=%v, want %v", i+1, a.Outcome, a.Retryable, wantRetryable)
				}
			}
			if diff := cmp.Diff(tc.wantOutcomes, got); diff != "" {
				t.Errorf("attempt outcomes (-want +got):\n%s", diff)
			}
			if len(r.started) != len(tc.wantOutcomes) {
				t.Errorf("%d attempts handed out, want %d", len(r.started), len(tc.wantOutcomes))
			}
			if n := len(r.eventsOf(EvLeaseAcquired)); n != len(tc.wantOutcomes) {
				t.Errorf("%d leases for %d attempts", n, len(tc.wantOutcomes))
			}
			if last := run.Attempts[len(run.Attempts)-1]; !strings.Contains(last.Error, tc.wantErr) {
				t.Errorf("last attempt's error %q, want it to contain %q", last.Error, tc.wantErr)
			}
		})
	}
}

func TestCoreBackoff(t *testing.T) {
	tests := []struct {
		name      string
		backoff   Backoff
		rand      float64
		attempts  int
		wantDelay []int64 // before attempt 2, 3, ...
	}{
		{name: "fixed", backoff: Backoff{Kind: BackoffFixed, BaseMs: 300}, attempts: 4, wantDelay: []int64{300, 300, 300}},
		{name: "fixed ignores max", backoff: Backoff{Kind: BackoffFixed, BaseMs: 300, MaxMs: 400}, attempts: 3, wantDelay: []int64{300, 300}},
		{name: "fixed zero", backoff: Backoff{Kind: BackoffFixed}, attempts: 3, wantDelay: []int64{0, 0}},
		{name: "exponential", backoff: Backoff{Kind: BackoffExponential, BaseMs: 100}, attempts: 6, wantDelay: []int64{100, 200, 400, 800, 1600}},
		{name: "exponential capped", backoff: Backoff{Kind: BackoffExponential, BaseMs: 100, MaxMs: 500}, attempts: 6, wantDelay: []int64{100, 200, 400, 500, 500}},
		{name: "exponential cap equal to base", backoff: Backoff{Kind: BackoffExponential, BaseMs: 100, MaxMs: 100}, attempts: 4, wantDelay: []int64{100, 100, 100}},
		{name: "default backoff", backoff: Backoff{}, attempts: 9, wantDelay: []int64{1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000}},
		{name: "jitter with draw 0 is no jitter", backoff: Backoff{Kind: BackoffExponential, BaseMs: 100, MaxMs: 1000, Jitter: 0.5}, rand: 0, attempts: 3, wantDelay: []int64{100, 200}},
		{name: "jitter half with draw half", backoff: Backoff{Kind: BackoffExponential, BaseMs: 100, MaxMs: 1000, Jitter: 0.5}, rand: 0.5, attempts: 4, wantDelay: []int64{75, 150, 300}},
		{name: "full jitter", backoff: Backoff{Kind: BackoffFixed, BaseMs: 1000, Jitter: 1}, rand: 0.9, attempts: 2, wantDelay: []int64{100}},
		{name: "jitter on the cap", backoff: Backoff{Kind: BackoffExponential, BaseMs: 100, MaxMs: 300, Jitter: 0.2}, rand: 0.5, attempts: 5, wantDelay: []int64{90, 180, 270, 270}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			draws := 0
			r := newCoreRig(t, coreOpts{rand: func() float64 { draws++; return tc.rand }})
			r.mustSubmit(TaskSpec{ID: "t", Handler: "h", MaxAttempts: tc.attempts, Backoff: tc.backoff})
			for n := 1; n < tc.attempts; n++ {
				r.finish("t#1", Result{Outcome: OutcomeTrap})
				run := r.run("t#1")
				due := r.now + tc.wantDelay[n-1]
				if tc.wantDelay[n-1] == 0 {
					// Due at once: promoted and leased in the same step.
					if run.State != RunLeased || run.DueAt != due {
						t.Fatalf("after attempt %d: run %s due +%d, want leased again at once", n, run.State, run.DueAt-r.now)
					}
					continue
				}
				if run.State != RunRetryWait || run.DueAt != due {
					t.Fatalf("after attempt %d: run %s due in %dms, want retry_wait due in %dms", n, run.State, run.DueAt-r.now, tc.wantDelay[n-1])
				}
				if r.wake != due {
					t.Errorf("NextWake = %d, want the retry's due time %d", r.wake, due)
				}
				r.now = due - 1
				if b := r.step(); len(b.Starts) != 0 || run.State != RunRetryWait {
					t.Fatalf("attempt %d handed out 1ms before its due time", n+1)
				}
				r.now = due
				if b := r.step(); len(b.Starts) != 1 || b.Starts[0].Attempt != n+1 {
					t.Fatalf("at its due time the step started %v, want attempt %d", b.Starts, n+1)
				}
			}
			if draws != tc.attempts-1 {
				t.Errorf("Config.Rand drawn %d times, want once per retry (%d)", draws, tc.attempts-1)
			}
		})
	}
}

func TestBackoffDelayBounds(t *testing.T) {
	// Whatever the draw, the delay stays within [d*(1-jitter), d] and never
	// exceeds the cap.
	rng := mrand.New(mrand.NewPCG(7, 7))
	for range 2000 {
		b := Backoff{Kind: BackoffExponential, BaseMs: 1 + rng.Int64N(1000), Jitter: rng.Float64()}
		b.MaxMs = b.BaseMs + rng.Int64N(100_000)
		n := 1 + rng.IntN(100)
		u := rng.Float64()
		full := b.delay(n, 0)
		got := b.delay(n, u)
		if full > b.MaxMs || full < b.BaseMs {
			t.Fatalf("%+v attempt %d: undrawn delay %d outside [base, max]", b, n, full)
		}
		if got > full || float64(got) < float64(full)*(1-b.Jitter)-1 {
			t.Fatalf("%+v attempt %d u=%g: delay %d outside [%g, %d]", b, n, u, got, float64(full)*(1-b.Jitter), full)
		}
	}
}

// readyKey is the documented lease order: priority desc, due time,
// submission order, run index.
func readyLess(s *State, a, b *Run) bool {
	ta, tb := s.Tasks[a.Task], s.Tasks[b.Task]
	if ta.Spec.Priority != tb.Spec.Priority {
		return ta.Spec.Priority > tb.Spec.Priority
	}
	if a.DueAt != b.DueAt {
		return a.DueAt < b.DueAt
	}
	if ta.SubmitSeq != tb.SubmitSeq {
		return ta.SubmitSeq < tb.SubmitSeq
	}
	return a.Index < b.Index
}

// naiveOrder sorts every ready run by the documented order.
func naiveOrder(s *State) []RunID {
	var runs []*Run
	for _, r := range s.Runs {
		if r.State == RunReady {
			runs = append(runs, r)
		}
	}
	sortFunc(runs, func(a, b *Run) bool { return readyLess(s, a, b) })
	var ids []RunID
	for _, r := range runs {
		ids = append(ids, r.ID)
	}
	return ids
}

func randomSpec(rng *mrand.Rand, id string, now int64) TaskSpec {
	spec := TaskSpec{ID: TaskID(id), Handler: "h", Priority: rng.IntN(5) - 2}
	if rng.IntN(3) == 0 {
		spec.NotBeforeMs = now + rng.Int64N(40) - 10
	}
	if rng.IntN(4) == 0 {
		spec.Policy = RunPolicy{Kind: PolicyRepeat, Count: 1 + rng.IntN(3), EveryMs: rng.Int64N(6)}
	}
	return spec
}

// TestCoreLeaseOrderAgainstModel fills the ready queue behind a busy
// worker with random tasks, then checks that one worker takes them in
// exactly the order of a sort of everything.
func TestCoreLeaseOrderAgainstModel(t *testing.T) {
	for seed := range uint64(60) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := mrand.New(mrand.NewPCG(seed, 99))
			r := newCoreRig(t, coreOpts{})
			r.mustSubmit(TaskSpec{ID: "blocker", Handler: "h", Priority: 100})
			for i := range 3 + rng.IntN(40) {
				r.now += rng.Int64N(3)
				r.mustSubmit(randomSpec(rng, fmt.Sprintf("t%02d", i), r.now))
			}
			r.now += 1000
			r.step() // promote everything
			want := naiveOrder(r.s)
			var got []RunID
			r.finish("blocker#1", Result{Outcome: OutcomeOK})
			for len(r.pending) > 0 {
				id := r.pending[0].Run
				got = append(got, id)
				r.finish(id, Result{Outcome: OutcomeOK})
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("lease order (-model +core):\n%s", diff)
			}
		})
	}
}

// TestCoreLeaseChoiceAgainstModel interleaves submissions, completions,
// failures and time at random; every lease must pick the run the model
// ranks first among those ready, with up to three workers.
func TestCoreLeaseChoiceAgainstModel(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := mrand.New(mrand.NewPCG(seed, 5))
			r := newCoreRig(t, coreOpts{workers: 1 + rng.IntN(3)})
			next := 0
			for range 300 {
				// What is ready before this step, plus what this step may
				// promote or create, competes for the free workers.
				var in []any
				switch k := rng.IntN(10); {
				case k < 4:
					in = append(in, SubmitInput{Spec: randomSpec(rng, fmt.Sprintf("t%03d", next), r.now)})
					next++
				case k < 7 && len(r.pending) > 0:
					j := r.pending[rng.IntN(len(r.pending))]
					r.take(j.Run)
					res := Result{Outcome: OutcomeOK}
					if rng.IntN(3) == 0 {
						res = Result{Outcome: OutcomeTrap}
					}
					in = append(in, StartedInput{Run: j.Run, Attempt: j.Attempt}, ResultInput{Run: j.Run, Attempt: j.Attempt, Res: res})
				default:
					r.now += rng.Int64N(15)
				}
				b := r.step(in...)
				leased := map[RunID]bool{}
				for _, j := range b.Starts {
					leased[j.Run] = true
				}
				// Every run leased in this step must rank before every run
				// left ready; and no worker idles while a run is ready.
				left := naiveOrder(r.s)
				for _, j := range b.Starts {
					if len(left) > 0 && readyLess(r.s, r.run(left[0]), r.run(j.Run)) {
						t.Fatalf("leased %s while %s ranks first", j.Run, left[0])
					}
				}
				if len(left) > 0 && r.s.Inflight < r.c.cfg.Workers && !r.s.Paused {
					t.Fatalf("%d of %d workers busy while %v is ready", r.s.Inflight, r.c.cfg.Workers, left[0])
				}
				if r.s.Inflight > r.c.cfg.Workers {
					t.Fatalf("%d attempts in flight with %d workers", r.s.Inflight, r.c.cfg.Workers)
				}
			}
		})
	}
}

func TestCoreLeaseOrderExamples(t *testing.T) {
	tests := []struct {
		name   string
		submit []TaskSpec // submitted 1ms apart behind a busy worker
		want   []RunID
	}{
		{
			name:   "priority first",
			submit: []TaskSpec{{ID: "low", Priority: -1}, {ID: "mid"}, {ID: "high", Priority: 5}},
			want:   []RunID{"high#1", "mid#1", "low#1"},
		},
		{
			name:   "then due time",
			submit: []TaskSpec{{ID: "late", NotBeforeMs: rigStart + 50}, {ID: "early", NotBeforeMs: rigStart + 20}, {ID: "now"}},
			want:   []RunID{"now#1", "early#1", "late#1"},
		},
		{
			name:   "then submission order",
			submit: []TaskSpec{{ID: "b", NotBeforeMs: rigStart + 30}, {ID: "a", NotBeforeMs: rigStart + 30}, {ID: "c", NotBeforeMs: rigStart + 30}},
			want:   []RunID{"b#1", "a#1", "c#1"},
		},
		{
			name:   "then run index",
			submit: []TaskSpec{{ID: "r", Policy: RunPolicy{Kind: PolicyRepeat, Count: 3}}},
			want:   []RunID{"r#1", "r#2", "r#3"},
		},
		{
			name:   "priority beats an earlier due time",
			submit: []TaskSpec{{ID: "old"}, {ID: "new", Priority: 1, NotBeforeMs: rigStart + 90}},
			want:   []RunID{"new#1", "old#1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newCoreRig(t, coreOpts{})
			r.mustSubmit(TaskSpec{ID: "blocker", Handler: "h", Priority: 1000})
			for _, spec := range tc.submit {
				r.now++
				spec.Handler = "h"
				r.mustSubmit(spec)
			}
			r.now = rigStart + 100
			r.finish("blocker#1", Result{Outcome: OutcomeOK})
			var got []RunID
			for len(r.pending) > 0 {
				got = append(got, r.pending[0].Run)
				r.finish(r.pending[0].Run, Result{Outcome: OutcomeOK})
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("order (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCoreWorkerBound(t *testing.T) {
	r := newCoreRig(t, coreOpts{workers: 3})
	for i := range 10 {
		r.mustSubmit(TaskSpec{ID: TaskID(fmt.Sprint("t", i)), Handler: "h"})
	}
	if len(r.pending) != 3 || r.s.Inflight != 3 {
		t.Fatalf("%d attempts handed out (%d in flight) with 3 workers", len(r.pending), r.s.Inflight)
	}
	workers := map[string]bool{}
	for _, j := range r.pending {
		workers[j.Worker] = true
	}
	if len(workers) != 3 {
		t.Errorf("workers %v, want 3 distinct slots", workers)
	}
	// A finished attempt frees its slot for the next run, and only one.
	freed := r.pending[0]
	b := r.finish(freed.Run, Result{Outcome: OutcomeOK})
	if len(b.Starts) != 1 || b.Starts[0].Worker != freed.Worker {
		t.Errorf("after one result: starts %v, want one on the freed slot %s", b.Starts, freed.Worker)
	}
	r.drive(rigStart, okResult)
	if len(r.started) != 10 {
		t.Errorf("%d attempts, want 10", len(r.started))
	}
}

func TestCoreJob(t *testing.T) {
	r := newCoreRig(t, coreOpts{leaseGrace: 700})
	r.mustSubmit(TaskSpec{ID: "t", Handler: "h", Input: []byte("in"), MaxAttempts: 4, TimeoutMs: 2000, Labels: map[string]string{"k": "v"}})
	if len(r.pending) != 1 {
		t.Fatalf("pending %v", r.pendingRuns())
	}
	j := r.pending[0]
	want := Job{Task: "t", Run: "t#1", Handler: "h", Input: []byte("in"), Attempt: 1, MaxAttempts: 4,
		DeadlineMs: rigStart + 2000, TimeoutMs: 2000, Worker: "n/w1", Labels: map[string]string{"k": "v"}}
	if diff := cmp.Diff(want, j, cmp.Comparer(func(a, b func()) bool { return a == nil && b == nil }), cmpopts.IgnoreUnexported(Job{})); diff != "" {
		t.Errorf("job (-want +got):\n%s", diff)
	}
	if got := r.run("t#1").LeaseExp; got != rigStart+2000+700 {
		t.Errorf("lease expires at +%d, want timeout+grace = +2700", got-rigStart)
	}
}

func TestCoreCancel(t *testing.T) {
	type setup func(r *coreRig)
	retryable := Result{Outcome: OutcomeFailed, Retryable: true}
	tests := []struct {
		name        string
		setup       setup
		from        RunState
		wantCancels bool // the attempt in flight must be cancelled by the loop
		finish      *Result
		want        RunState
	}{
		{name: "scheduled", from: RunScheduled, want: RunCanceled, setup: func(r *coreRig) {
			r.mustSubmit(TaskSpec{ID: "t", Handler: "h", NotBeforeMs: rigStart + 5000})
		}},
		{name: "ready", from: RunReady, want: RunCanceled, setup: func(r *coreRig) {
			r.mustSubmit(TaskSpec{ID: "busy", Handler: "h"})
			r.mustSubmit(TaskSpec{ID: "t", Handler: "h"})
		}},
		{name: "retry_wait", from: RunRetryWait, want: RunCanceled, setup: func(r *coreRig) {
			r.mustSubmit(TaskSpec{ID: "t", Handler: "h", MaxAttempts: 3, Backoff: Backoff{Kind: BackoffFixed, BaseMs: 500}})
			r.finish("t#1", retryable)
		}},
		{name: "leased", from: RunLeased, wantCancels: true, finish: &Result{Outcome: OutcomeCancelled}, want: RunCanceled, setup: func(r *coreRig) {
			r.mustSubmit(TaskSpec{ID: "t", Handler: "h", MaxAttempts: 3})
		}},
		{name: "running", from: RunRunning, wantCancels: true, finish: &Result{Outcome: OutcomeCancelled}, want: RunCanceled, setup: func(r *coreRig) {
			r.mustSubmit(TaskSpec{ID: "t", Handler: "h", MaxAttempts: 3})
			r.step(StartedInput{Run: "t#1", Attempt: 1})
		}},
		{name: "running, retryable failure is not retried", from: RunRunning, wantCancels: true, finish: &retryable, want: RunCanceled, setup: func(r *coreRig) {
			r.mustSubmit(TaskSpec{ID: "t", Handler: "h", MaxAttempts: 3})
			r.step(StartedInput{Run: "t#1", Attempt: 1})
		}},
		{name: "running, finishes ok anyway", from: RunRunning, wantCancels: true, finish: &Result{Outcome: OutcomeOK}, want: RunCompleted, setup: func(r *coreRig) {
			r.mustSubmit(TaskSpec{ID: "t", Handler: "h", MaxAttempts: 3})
			r.step(StartedInput{Run: "t#1", Attempt: 1})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newCoreRig(t, coreOpts{})
			tc.setup(r)
			if got := r.run("t#1").State; got != tc.from {
				t.Fatalf("setup left the run %s, want %s", got, tc.from)
			}
			attempts := len(r.run("t#1").Attempts) // the one in flight included
			b, err := r.cancel("t")
			if err != nil {
				t.Fatal(err)
			}
			if !r.s.Tasks["t"].Canceled || b.Events[0].Type != EvTaskCanceled {
				t.Fatalf("cancel wrote %v, want EvTaskCanceled first", b.Events)
			}
			if got := slices.Contains(b.Cancels, AttemptRef{Run: "t#1", Attempt: 1}); got != tc.wantCancels {
				t.Errorf("Batch.Cancels %v, want t#1 listed: %v", b.Cancels, tc.wantCancels)
			}
			if tc.finish != nil {
				if st := r.run("t#1").State; st != tc.from {
					t.Errorf("an attempt in flight moved to %s before it ended", st)
				}
				r.finish("t#1", *tc.finish)
			}
			run := r.run("t#1")
			if run.State != tc.want {
				t.Errorf("run %s, want %s", run.State, tc.want)
			}
			if len(run.Attempts) != attempts {
				t.Errorf("%d attempts, want %d", len(run.Attempts), attempts)
			}
			// Nothing more happens to it, whatever the time.
			r.now += 1_000_000
			r.drive(r.now+1_000_000, okResult)
			if run.State != tc.want || len(run.Attempts) != attempts {
				t.Errorf("later: run %s with %d attempts", run.State, len(run.Attempts))
			}
			// Canceling again writes nothing.
			if b, err := r.cancel("t"); err != nil || len(b.Events) != 0 {
				t.Errorf("second cancel: %v, events %v", err, b.Events)
			}
		})
	}
}

func TestCoreCancelRepeatTask(t *testing.T) {
	r := newCoreRig(t, coreOpts{})
	r.mustSubmit(TaskSpec{ID: "t", Handler: "h", Policy: RunPolicy{Kind: PolicyRepeat, Count: 4, EveryMs: 1000}})
	r.finish("t#1", Result{Outcome: OutcomeOK})
	r.now += 1000
	r.step()
	r.step(StartedInput{Run: "t#2", Attempt: 1})
	b, err := r.cancel("t")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]AttemptRef{{Run: "t#2", Attempt: 1}}, b.Cancels); diff != "" {
		t.Errorf("cancels (-want +got):\n%s", diff)
	}
	want := map[RunID]RunState{"t#1": RunCompleted, "t#2": RunRunning, "t#3": RunCanceled, "t#4": RunCanceled}
	for id, st := range want {
		if got := r.run(id).State; got != st {
			t.Errorf("%s: %s, want %s", id, got, st)
		}
	}
	r.finish("t#2", Result{Outcome: OutcomeCancelled})
	if got := r.run("t#2").State; got != RunCanceled {
		t.Errorf("t#2: %s, want canceled", got)
	}
	if ft := r.s.Tasks["t"].FinalAt; ft != r.now {
		t.Errorf("FinalAt = %d, want %d", ft, r.now)
	}
}

func TestCoreCancelFinalAndUnknown(t *testing.T) {
	r := newCoreRig(t, coreOpts{})
	r.mustSubmit(TaskSpec{ID: "done", Handler: "h"})
	r.finish("done#1", Result{Outcome: OutcomeOK})
	b, err := r.cancel("done")
	if err != nil || len(b.Events) != 0 || len(b.Cancels) != 0 {
		t.Errorf("cancel of a completed task: err %v, events %v, cancels %v; want a no-op", err, b.Events, b.Cancels)
	}
	if tk := r.s.Tasks["done"]; tk.Canceled || r.run("done#1").State != RunCompleted {
		t.Errorf("completed task changed by cancel: canceled=%v run %s", tk.Canceled, r.run("done#1").State)
	}
	if _, err := r.cancel("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("cancel unknown: %v, want ErrNotFound", err)
	}
}

func TestCorePause(t *testing.T) {
	r := newCoreRig(t, coreOpts{workers: 2})
	pause := func(p bool) Batch {
		ch := make(chan Reply, 1)
		b, rep := r.ask(PauseInput{Pause: p, Reply: ch}, ch)
		if rep.Err != nil {
			t.Fatal(rep.Err)
		}
		return b
	}
	if b := pause(true); len(b.Events) != 1 || b.Events[0].Type != EvEnginePaused {
		t.Fatalf("pause wrote %v", b.Events)
	}
	if b := pause(true); len(b.Events) != 0 {
		t.Errorf("pausing a paused engine wrote %v", b.Events)
	}
	r.mustSubmit(TaskSpec{ID: "a", Handler: "h"})
	r.mustSubmit(TaskSpec{ID: "b", Handler: "h", NotBeforeMs: rigStart + 100})
	r.now += 200
	r.step()
	if len(r.started) != 0 {
		t.Fatalf("attempts started while paused: %v", r.started)
	}
	if r.run("b#1").State != RunReady {
		t.Errorf("a paused engine still promotes due runs; b#1 is %s", r.run("b#1").State)
	}
	b := pause(false)
	if len(b.Events) == 0 || b.Events[0].Type != EvEngineResumed || len(b.Starts) != 2 {
		t.Errorf("resume: events %v starts %v, want resumed then two leases", b.Events, b.Starts)
	}
}

func TestCorePausedStillFinishesAttempts(t *testing.T) {
	r := newCoreRig(t, coreOpts{})
	r.mustSubmit(TaskSpec{ID: "a", Handler: "h", MaxAttempts: 2, Backoff: Backoff{Kind: BackoffFixed}})
	ch := make(chan Reply, 1)
	r.ask(PauseInput{Pause: true, Reply: ch}, ch)
	r.finish("a#1", Result{Outcome: OutcomeTrap})
	if run := r.run("a#1"); run.State != RunReady || len(r.pending) != 0 {
		t.Errorf("paused: run %s, pending %v; want the retry ready but not leased", run.State, r.pendingRuns())
	}
}

func TestCoreDrain(t *testing.T) {
	r := newCoreRig(t, coreOpts{workers: 2})
	r.mustSubmit(TaskSpec{ID: "a", Handler: "h"})
	r.c.Drain = true
	r.mustSubmit(TaskSpec{ID: "b", Handler: "h"})
	r.finish("a#1", Result{Outcome: OutcomeOK})
	if len(r.pending) != 0 || r.run("b#1").State != RunReady {
		t.Errorf("draining core leased %v; b#1 is %s", r.pendingRuns(), r.run("b#1").State)
	}
}

func TestCoreHeartbeat(t *testing.T) {
	r := newCoreRig(t, coreOpts{leaseGrace: 1000})
	r.mustSubmit(TaskSpec{ID: "t", Handler: "h", TimeoutMs: 5000, MaxAttempts: 2})
	r.step(StartedInput{Run: "t#1", Attempt: 1})
	exp := r.run("t#1").LeaseExp
	r.now += 500
	if b := r.step(HeartbeatInput{Run: "t#1", Attempt: 1}); len(b.Events) != 0 {
		t.Errorf("a heartbeat extending the lease by 500ms wrote %v", b.Events)
	}
	r.now += 4000
	b := r.step(HeartbeatInput{Run: "t#1", Attempt: 1})
	if len(b.Events) != 1 || b.Events[0].Type != EvLeaseRenewed || r.run("t#1").LeaseExp != r.now+6000 {
		t.Fatalf("heartbeat: events %v, lease +%d", b.Events, r.run("t#1").LeaseExp-r.now)
	}
	// The old expiry passes without a loss; the new one does not.
	r.now = exp + 1
	if r.step(); r.run("t#1").State != RunRunning {
		t.Fatalf("run %s after the old lease expiry, want running", r.run("t#1").State)
	}
	if r.wake != r.run("t#1").LeaseExp {
		t.Errorf("NextWake %d, want the renewed lease %d", r.wake, r.run("t#1").LeaseExp)
	}
	r.now = r.run("t#1").LeaseExp
	r.step()
	if a := r.run("t#1").Attempts[0]; a.Outcome != OutcomeLost {
		t.Errorf("attempt 1 %s after the renewed lease ran out, want lost", a.Outcome)
	}
	// A heartbeat of the closed attempt changes nothing.
	if b := r.step(HeartbeatInput{Run: "t#1", Attempt: 1}); len(b.Events) != 0 {
		t.Errorf("stale heartbeat wrote %v", b.Events)
	}
}

func TestCoreLeaseExpiry(t *testing.T) {
	tests := []struct {
		name        string
		maxAttempts int
		started     bool
		noOther     bool // no other task waits: the retry is leased at once
		wantState   RunState
	}{
		{name: "running, retried", maxAttempts: 2, started: true, wantState: RunReady},
		{name: "leased, retried", maxAttempts: 2, wantState: RunReady},
		{name: "running, retried at once", maxAttempts: 2, started: true, noOther: true, wantState: RunLeased},
		{name: "running, max_attempts 1: a lost attempt does not count", maxAttempts: 1, started: true, wantState: RunReady},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newCoreRig(t, coreOpts{workers: 1, leaseGrace: 1000})
			r.mustSubmit(TaskSpec{ID: "t", Handler: "h", TimeoutMs: 2000, MaxAttempts: tc.maxAttempts, Backoff: Backoff{Kind: BackoffFixed}})
			if !tc.noOther {
				r.mustSubmit(TaskSpec{ID: "other", Handler: "h"}) // waits for the worker
			}
			if tc.started {
				r.step(StartedInput{Run: "t#1", Attempt: 1})
			}
			stale := r.take("t#1")
			if r.wake != rigStart+3000 {
				t.Errorf("NextWake +%d, want the lease expiry +3000", r.wake-rigStart)
			}
			r.now = rigStart + 2999
			if r.step(); r.run("t#1").State == RunReady || r.run("t#1").State.Final() {
				t.Fatalf("lease expired 1ms early")
			}
			r.now = rigStart + 3000
			b := r.step()
			if len(b.Events) == 0 || b.Events[0].Type != EvLeaseExpired || b.Events[0].Outcome != OutcomeLost {
				t.Fatalf("expiry wrote %v", b.Events)
			}
			if !slices.Contains(b.Cancels, AttemptRef{Run: "t#1", Attempt: 1}) {
				t.Errorf("the expired attempt's context is not cancelled: %v", b.Cancels)
			}
			// The freed worker goes to the next run by order: "other" was
			// submitted after t, but t's retry is due only now.
			wantStart := RunID("other#1")
			if tc.noOther {
				wantStart = "t#1"
			}
			if len(b.Starts) != 1 || b.Starts[0].Run != wantStart {
				t.Errorf("after expiry started %v, want %s", b.Starts, wantStart)
			}
			if got := r.run("t#1").State; got != tc.wantState {
				t.Fatalf("run %s, want %s", got, tc.wantState)
			}
			// The worker that lost its lease reports late: ignored.
			before := len(r.events)
			r.step(StartedInput{Run: stale.Run, Attempt: stale.Attempt}, ResultInput{Run: stale.Run, Attempt: stale.Attempt, Res: Result{Outcome: OutcomeOK}})
			if got := r.run("t#1"); got.State != tc.wantState || got.Attempts[0].Outcome != OutcomeLost {
				t.Errorf("stale result changed the run: %s, attempt 1 %s", got.State, got.Attempts[0].Outcome)
			}
			if len(r.events) != before {
				t.Errorf("stale result wrote %v", r.events[before:])
			}
			if tc.noOther {
				r.finish("t#1", Result{Outcome: OutcomeOK})
				if got := r.run("t#1"); got.State != RunCompleted || len(got.Attempts) != 2 {
					t.Errorf("attempt 2: run %s with %d attempts, want completed with 2", got.State, len(got.Attempts))
				}
			}
		})
	}
}

// TestCoreClosesLostAttempts builds a state with attempts open, as a crash
// leaves it, and checks that the first step of a new core closes each as
// lost and retries or fails it under its policy.
func TestCoreClosesLostAttempts(t *testing.T) {
	first := newCoreRig(t, coreOpts{workers: 4})
	first.mustSubmit(TaskSpec{ID: "a", Handler: "h", MaxAttempts: 3, Backoff: Backoff{Kind: BackoffFixed, BaseMs: 100}})
	first.mustSubmit(TaskSpec{ID: "b", Handler: "h", MaxAttempts: 1})
	first.mustSubmit(TaskSpec{ID: "c", Handler: "h", MaxAttempts: 2, Backoff: Backoff{Kind: BackoffFixed}})
	first.mustSubmit(TaskSpec{ID: "d", Handler: "h", NotBeforeMs: rigStart + 50_000})
	first.step(StartedInput{Run: "a#1", Attempt: 1}, StartedInput{Run: "b#1", Attempt: 1})
	// c stays leased (not started). Rebuild the state from the events alone.
	s := NewState()
	for i := range first.events {
		if err := Apply(s, &first.events[i]); err != nil {
			t.Fatal(err)
		}
	}
	r := newCoreRig(t, coreOpts{workers: 4, state: s})
	r.now = rigStart + 10
	b := r.step()
	var closed []string
	for _, e := range b.Events {
		if e.Type == EvAttemptFinished {
			closed = append(closed, fmt.Sprintf("%s %s->%s %s", e.Run, e.From, e.To, e.Outcome))
		}
	}
	// b has max_attempts 1: a lost attempt does not use it.
	want := []string{"a#1 running->retry_wait lost", "b#1 running->retry_wait lost", "c#1 leased->retry_wait lost"}
	if diff := cmp.Diff(want, closed); diff != "" {
		t.Errorf("closed attempts (-want +got):\n%s", diff)
	}
	// c's retry (no backoff) goes out at once as attempt 2; a's after 100ms.
	if len(b.Starts) != 1 || b.Starts[0].Run != "c#1" || b.Starts[0].Attempt != 2 {
		t.Errorf("starts %v, want c#1 attempt 2", b.Starts)
	}
	if got := r.run("a#1"); got.DueAt != r.now+100 {
		t.Errorf("a#1 due +%d, want +100", got.DueAt-r.now)
	}
	if got := r.run("d#1").State; got != RunScheduled {
		t.Errorf("d#1 %s, want scheduled (not touched)", got)
	}
	// Results of the previous process's attempts are stale.
	before := len(r.events)
	r.step(ResultInput{Run: "a#1", Attempt: 1, Res: Result{Outcome: OutcomeOK}}, ResultInput{Run: "b#1", Attempt: 1, Res: Result{Outcome: OutcomeOK}})
	if len(r.events) != before {
		t.Errorf("stale results wrote %v", r.events[before:])
	}
	// Only the first step closes lost attempts.
	r.step(StartedInput{Run: "c#1", Attempt: 2})
	if got := r.run("c#1").State; got != RunRunning {
		t.Errorf("c#1 %s after a later step, want running", got)
	}
	r.drive(r.now+1000, okResult)
	for id, want := range map[RunID]RunState{"a#1": RunCompleted, "b#1": RunCompleted, "c#1": RunCompleted} {
		if got := r.run(id); got.State != want {
			t.Errorf("%s: %s, want %s", id, got.State, want)
		}
	}
	if n := len(r.run("a#1").Attempts); n != 2 {
		t.Errorf("a#1 has %d attempts, want 2 (lost + ok)", n)
	}
}

func TestCoreSubmit(t *testing.T) {
	t.Run("duplicate writes nothing", func(t *testing.T) {
		r := newCoreRig(t, coreOpts{})
		r.mustSubmit(TaskSpec{ID: "t", Handler: "h"})
		before := len(r.events)
		// The same spec, with the defaults spelled out.
		res, err := r.submit(TaskSpec{ID: "t", Handler: "h", Policy: RunPolicy{Kind: PolicyOnce}, MaxAttempts: DefaultMaxAttempts, TimeoutMs: DefaultTimeoutMs,
			Backoff: Backoff{Kind: BackoffExponential, BaseMs: DefaultBackoffMs, MaxMs: DefaultBackoffMax, Jitter: DefaultJitter}})
		if err != nil || !res.Duplicate || res.Task != "t" {
			t.Errorf("resubmit = %+v, %v; want duplicate", res, err)
		}
		if len(r.events) != before {
			t.Errorf("duplicate wrote %v", r.events[before:])
		}
	})
	t.Run("conflict", func(t *testing.T) {
		r := newCoreRig(t, coreOpts{})
		r.mustSubmit(TaskSpec{ID: "t", Handler: "h", Labels: map[string]string{"a": "1"}})
		for _, other := range []TaskSpec{
			{ID: "t", Handler: "g", Labels: map[string]string{"a": "1"}},
			{ID: "t", Handler: "h", Labels: map[string]string{"a": "2"}},
			{ID: "t", Handler: "h"},
			{ID: "t", Handler: "h", Labels: map[string]string{"a": "1"}, Input: []byte("x")},
			{ID: "t", Handler: "h", Labels: map[string]string{"a": "1"}, Priority: 1},
		} {
			before := len(r.events)
			if _, err := r.submit(other); !errors.Is(err, ErrConflict) {
				t.Errorf("submit %+v: %v, want ErrConflict", other, err)
			}
			if len(r.events) != before {
				t.Errorf("conflict wrote %v", r.events[before:])
			}
		}
	})
	t.Run("generated ids", func(t *testing.T) {
		r := newCoreRig(t, coreOpts{})
		seen := map[TaskID]bool{}
		for range 50 {
			id := r.mustSubmit(TaskSpec{Handler: "h"})
			if seen[id] || !idPattern.MatchString(string(id)) || len(id) != 26 {
				t.Fatalf("generated id %q (duplicate: %v)", id, seen[id])
			}
			seen[id] = true
			if _, ok := r.s.Tasks[id]; !ok {
				t.Fatalf("task %q not stored", id)
			}
		}
	})
	t.Run("invalid spec writes nothing", func(t *testing.T) {
		r := newCoreRig(t, coreOpts{})
		_, err := r.submit(TaskSpec{ID: "t", Handler: "Bad Name"})
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field != "handler" {
			t.Errorf("submit: %v, want a ValidationError on handler", err)
		}
		if len(r.events) != 0 {
			t.Errorf("invalid submit wrote %v", r.events)
		}
	})
	t.Run("unknown input", func(t *testing.T) {
		r := newCoreRig(t, coreOpts{})
		if _, err := r.c.Step(r.now, []any{42}); err == nil || !strings.Contains(err.Error(), "unknown input") {
			t.Errorf("Step with an int: %v", err)
		}
	})
}

func TestCoreRetention(t *testing.T) {
	t.Run("count", func(t *testing.T) {
		r := newCoreRig(t, coreOpts{workers: 8, retainCount: 2})
		r.mustSubmit(TaskSpec{ID: "pending", Handler: "h", NotBeforeMs: rigStart + 1_000_000})
		r.mustSubmit(TaskSpec{ID: "rep", Handler: "h", Policy: RunPolicy{Kind: PolicyRepeat, Count: 2, EveryMs: 500_000}})
		for i := range 5 {
			r.now++
			r.mustSubmit(TaskSpec{ID: TaskID(fmt.Sprint("f", i)), Handler: "h"})
			r.drive(r.now, okResult)
		}
		var dropped []TaskID
		for _, e := range r.eventsOf(EvTaskDropped) {
			dropped = append(dropped, e.Task)
		}
		if diff := cmp.Diff([]TaskID{"f0", "f1", "f2"}, dropped); diff != "" {
			t.Errorf("dropped (-want +got):\n%s", diff)
		}
		for _, id := range []TaskID{"f0", "f1", "f2"} {
			if _, ok := r.s.Tasks[id]; ok {
				t.Errorf("%s still in the state", id)
			}
			if _, ok := r.s.Runs[MakeRunID(id, 1)]; ok {
				t.Errorf("run of %s still in the state", id)
			}
		}
		for _, id := range []TaskID{"pending", "rep", "f3", "f4"} {
			if _, ok := r.s.Tasks[id]; !ok {
				t.Errorf("%s dropped", id)
			}
		}
		if r.run("rep#1").State != RunCompleted {
			t.Errorf("rep#1 %s", r.run("rep#1").State)
		}
	})
	t.Run("count, many ticks", func(t *testing.T) {
		// Retention pops the oldest final task, tasks final in one tick
		// arrive out of submission order: the order stays that of a
		// state rebuilt from scratch, and the list reuses the room
		// retention leaves rather than growing.
		const keep = 8
		r := newCoreRig(t, coreOpts{workers: 64, retainCount: keep})
		for tick := range 300 {
			r.now++
			var in []any
			for i := range 1 + tick%7 {
				in = append(in, SubmitInput{Spec: TaskSpec{ID: TaskID(fmt.Sprintf("t%d-%d", tick, i)), Handler: "h"}})
			}
			r.step(in...)
			// Finish the newest first: addFinal places them by submission.
			slices.Reverse(r.pending)
			r.drive(r.now, okResult)
			if got, want := r.s.Finals(), rebuiltFinals(t, r.s); !slices.Equal(got, want) {
				t.Fatalf("tick %d: Finals %v, a rebuilt state's %v", tick, got, want)
			}
			if got := len(r.s.Finals()); got != keep && tick > 3 {
				t.Fatalf("tick %d: %d final tasks retained, want %d", tick, got, keep)
			}
		}
		if c := cap(r.s.finals); c > 4*keep {
			t.Errorf("the retention list grew to %d entries for %d tasks kept", c, keep)
		}
	})
	t.Run("time", func(t *testing.T) {
		r := newCoreRig(t, coreOpts{retainMs: 10_000})
		r.mustSubmit(TaskSpec{ID: "a", Handler: "h"})
		r.finish("a#1", Result{Outcome: OutcomeOK})
		finalAt := r.now
		r.now += 3000
		r.mustSubmit(TaskSpec{ID: "b", Handler: "h"})
		r.finish("b#1", Result{Outcome: OutcomeFailed})
		r.mustSubmit(TaskSpec{ID: "slow", Handler: "h", MaxAttempts: 2, Backoff: Backoff{Kind: BackoffFixed, BaseMs: 1_000_000}})
		r.finish("slow#1", Result{Outcome: OutcomeTrap}) // retry_wait for a long time: never dropped
		if r.wake != finalAt+10_000 {
			t.Fatalf("NextWake +%d, want a's retention end +10000", r.wake-finalAt)
		}
		r.now = finalAt + 9_999
		if r.step(); r.s.Tasks["a"] == nil {
			t.Fatal("a dropped 1ms early")
		}
		r.now = finalAt + 10_000
		b := r.step()
		if len(b.Events) != 1 || b.Events[0].Type != EvTaskDropped || b.Events[0].Task != "a" {
			t.Fatalf("at a's retention end: %v", b.Events)
		}
		if b.NextWake != finalAt+13_000 {
			t.Errorf("NextWake +%d, want b's retention end +13000", b.NextWake-finalAt)
		}
		r.now = finalAt + 500_000
		r.step()
		if r.s.Tasks["b"] != nil || r.s.Tasks["slow"] == nil {
			t.Errorf("b kept %v, slow dropped %v", r.s.Tasks["b"] != nil, r.s.Tasks["slow"] == nil)
		}
	})
}

// sortFunc sorts by a less function: the naive model's ordering.
func sortFunc[T any](s []T, less func(a, b T) bool) {
	slices.SortFunc(s, func(a, b T) int {
		switch {
		case less(a, b):
			return -1
		case less(b, a):
			return 1
		}
		return 0
	})
}

// rebuiltFinals is the retention order of a state decoded from a
// snapshot of s (reindex sorts it from scratch).
func rebuiltFinals(t *testing.T, s *State) []TaskID {
	t.Helper()
	b, err := EncodeState(s)
	if err != nil {
		t.Fatal(err)
	}
	d, err := DecodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	return d.Finals()
}
