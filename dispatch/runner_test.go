package dispatch

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// waitRunning waits until run is running: its attempt reported its start.
func (r *engineRig) waitRunning(run RunID) {
	r.t.Helper()
	waitFor(r.t, string(run)+" running", func() bool { return r.isRunning(run) })
}

// isRunning reports whether run is running.
func (r *engineRig) isRunning(run RunID) bool {
	task, _, _ := strings.Cut(string(run), "#")
	v, ok := r.e.Task(TaskID(task))
	if !ok {
		return false
	}
	for _, x := range v.Runs {
		if x.ID == run {
			return x.State == RunRunning
		}
	}
	return false
}

// walEvents returns the types of the events in the WAL, in order.
func (r *engineRig) walEvents() []EventType {
	r.t.Helper()
	var types []EventType
	err := r.e.wal.Replay(1, func(seq uint64, rec []byte) error {
		ev, err := DecodeEvent(rec)
		types = append(types, ev.Type)
		return err
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return types
}

func countOf[T comparable](s []T, v T) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

// TestRunnerStartReport: an attempt that ends before startedReportDelay
// is closed by its result alone (no EvAttemptStarted; its times come from
// the result), one that runs longer is seen running while it runs, and
// runners are reused rather than one goroutine started per attempt.
func TestRunnerStartReport(t *testing.T) {
	tests := []struct {
		name        string
		hold        time.Duration // how long each attempt runs
		wantStarted bool          // EvAttemptStarted written for every attempt
	}{
		{name: "short attempts", hold: 0, wantStarted: false},
		{name: "long attempts", hold: 20 * startedReportDelay, wantStarted: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r *engineRig
			r = newEngineRig(t, func(c *Config) {
				c.Clock = SystemClock{} // the attempt times are the runner's own
				c.Workers = 2
				c.Executor = ExecutorFunc(func(ctx context.Context, j Job) Result {
					time.Sleep(tc.hold)
					if tc.wantStarted {
						// A long attempt sees its run running before it ends
						// (on a busy machine the report may take longer than
						// the sleep).
						for deadline := time.Now().Add(10 * time.Second); !r.isRunning(j.Run) && time.Now().Before(deadline); {
							time.Sleep(time.Millisecond)
						}
					}
					return Result{Outcome: OutcomeOK}
				})
			})
			const tasks = 20
			for i := range tasks {
				r.submit(TaskSpec{ID: TaskID(string(rune('a'+i))) + "-task"})
			}
			for i := range tasks {
				v := r.wait(TaskID(string(rune('a'+i))) + "-task")
				a := v.Runs[0].Attempts[0]
				if v.State != TaskCompleted || a.StartedAt == 0 || a.FinishedAt < a.StartedAt || a.LeasedAt == 0 {
					t.Fatalf("task %s: state %s, attempt %+v: want completed with leased, started and finished times", v.ID, v.State, a)
				}
				if tc.hold > 0 && time.Duration(a.FinishedAt-a.StartedAt)*time.Millisecond < tc.hold {
					t.Errorf("task %s ran %d ms by its times, it held %v", v.ID, a.FinishedAt-a.StartedAt, tc.hold)
				}
			}
			types := r.walEvents()
			started, finished := countOf(types, EvAttemptStarted), countOf(types, EvAttemptFinished)
			if finished != tasks {
				t.Fatalf("%d attempts finished in the WAL, want %d", finished, tasks)
			}
			// A short attempt may still outlast the delay on a busy machine:
			// most must not report their start.
			if tc.wantStarted && started != tasks {
				t.Errorf("%d of %d long attempts reported their start", started, tasks)
			}
			if !tc.wantStarted && started > tasks/2 {
				t.Errorf("%d of %d short attempts reported their start, want few", started, tasks)
			}
			if n := r.e.idleRunners(); n < 1 || n > r.cfg.Workers {
				t.Errorf("%d idle runners after the attempts, want 1..%d (Config.Workers)", n, r.cfg.Workers)
			}
		})
	}
}

// TestRunnerRunningView: a held attempt shows its run running with its
// start time while it runs.
func TestRunnerRunningView(t *testing.T) {
	r := newEngineRig(t, nil)
	g := newGate(t, true)
	r.ex.fn = g.execute
	r.submit(TaskSpec{ID: "held"})
	g.next(t)
	r.waitRunning("held#1")
	if a := r.view("held").Runs[0].Attempts[0]; a.StartedAt == 0 {
		t.Errorf("running attempt without a start time: %+v", a)
	}
	g.open()
	if v := r.wait("held"); v.State != TaskCompleted {
		t.Fatalf("state %s, want completed", v.State)
	}
}

// TestAttemptContext: an attempt's context behaves as context.WithTimeout's
// would, for the executor and for contexts it derives: at the deadline
// (counted from the start) Err is DeadlineExceeded everywhere; when the task
// is canceled, Canceled.
func TestAttemptContext(t *testing.T) {
	type seen struct {
		err, childErr, cause, afterErr error
		deadline                       time.Duration // deadline - start
		hasDeadline                    bool
	}
	tests := []struct {
		name   string
		cancel bool
		want   error
	}{
		{name: "deadline", want: context.DeadlineExceeded},
		{name: "canceled", cancel: true, want: context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan seen, 1)
			running := make(chan struct{}, 1)
			r := newEngineRig(t, func(c *Config) {
				c.Clock = SystemClock{}
				c.Executor = ExecutorFunc(func(ctx context.Context, j Job) Result {
					start := time.Now()
					child, stop := context.WithCancel(ctx)
					defer stop()
					after := make(chan error, 1)
					context.AfterFunc(ctx, func() { after <- ctx.Err() })
					running <- struct{}{}
					<-child.Done()
					d, ok := ctx.Deadline()
					got <- seen{err: ctx.Err(), childErr: child.Err(), cause: context.Cause(child), afterErr: <-after,
						deadline: d.Sub(start), hasDeadline: ok}
					return Result{Outcome: OutcomeCancelled, Error: ctx.Err().Error()}
				})
			})
			timeout := 200 * time.Millisecond
			if tc.cancel {
				timeout = time.Minute
			}
			r.submit(TaskSpec{ID: "t", TimeoutMs: timeout.Milliseconds()})
			<-running
			if tc.cancel {
				if err := r.e.Cancel(r.ctx(), "t", "test"); err != nil {
					t.Fatal(err)
				}
			}
			s := <-got
			if s.err != tc.want || s.childErr != tc.want || s.cause != tc.want || s.afterErr != tc.want {
				t.Errorf("Err %v, derived Err %v, Cause %v, Err in AfterFunc %v: want %v for all", s.err, s.childErr, s.cause, s.afterErr, tc.want)
			}
			if !s.hasDeadline || s.deadline > timeout || s.deadline < timeout-50*time.Millisecond {
				t.Errorf("Deadline %v after the start (set: %v), want about the timeout %v", s.deadline, s.hasDeadline, timeout)
			}
			want := OutcomeTimeout
			if tc.cancel {
				want = OutcomeCancelled
			}
			if v := r.wait("t"); v.Runs[0].Attempts[0].Outcome != want {
				t.Errorf("outcome %s, want %s", v.Runs[0].Attempts[0].Outcome, want)
			}
		})
	}
}

// TestAttemptContextOwnCancel: the attempt context's own cancellation, as
// context.WithCancel's: Done made before or after the end is closed, an
// AfterFunc stopped in time never runs, one registered after the end runs
// at once, and the first end decides Err.
func TestAttemptContextOwnCancel(t *testing.T) {
	tests := []struct {
		name       string
		doneBefore bool // Done is asked for before the end
		stop       bool // the AfterFunc is stopped before the end
		ends       []func(*attemptCtx)
		want       error
	}{
		{name: "canceled", doneBefore: true, ends: []func(*attemptCtx){(*attemptCtx).cancel}, want: context.Canceled},
		{name: "expired, Done asked after", ends: []func(*attemptCtx){(*attemptCtx).expire}, want: context.DeadlineExceeded},
		{name: "canceled then expired", ends: []func(*attemptCtx){(*attemptCtx).cancel, (*attemptCtx).expire}, want: context.Canceled},
		{name: "expired then canceled", ends: []func(*attemptCtx){(*attemptCtx).expire, (*attemptCtx).cancel}, want: context.DeadlineExceeded},
		{name: "stopped AfterFunc", stop: true, ends: []func(*attemptCtx){(*attemptCtx).cancel}, want: context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &attemptCtx{}
			if c.Err() != nil {
				t.Fatalf("Err %v before the end", c.Err())
			}
			if tc.doneBefore {
				select {
				case <-c.Done():
					t.Fatal("Done closed before the end")
				default:
				}
			}
			ran := make(chan struct{}, 2)
			stop := context.AfterFunc(c, func() { ran <- struct{}{} })
			child, cancelChild := context.WithCancel(c)
			defer cancelChild()
			if tc.stop && !stop() {
				t.Fatal("stop before the end reported false")
			}
			for _, end := range tc.ends {
				end(c)
			}
			<-c.Done()
			<-child.Done()
			if c.Err() != tc.want || child.Err() != tc.want {
				t.Errorf("Err %v, derived Err %v, want %v", c.Err(), child.Err(), tc.want)
			}
			if !tc.stop {
				<-ran
			}
			if stop() {
				t.Error("stop after the end reported true")
			}
			context.AfterFunc(c, func() { ran <- struct{}{} }) // after the end: runs at once
			<-ran
			select {
			case <-ran:
				t.Error("a stopped AfterFunc ran")
			case <-time.After(10 * time.Millisecond):
			}
		})
	}
}

// TestRunnersKeptUpToCapacity: with SetCapacity above Config.Workers (a
// server whose attempts run on remote workers), the runners of attempts
// that ran at once stay idle for the next ones, up to the capacity, rather
// than ending beyond Config.Workers.
func TestRunnersKeptUpToCapacity(t *testing.T) {
	r := newEngineRig(t, func(c *Config) { c.Workers = 1 })
	r.e.SetCapacity(8)
	g := newGate(t, false)
	r.ex.fn = g.execute
	for i := range 8 {
		r.submit(TaskSpec{ID: TaskID(string(rune('a'+i))) + "-task"})
	}
	for range 8 {
		g.next(t) // all eight run at once
	}
	g.open()
	for i := range 8 {
		r.wait(TaskID(string(rune('a'+i))) + "-task")
	}
	for deadline := time.Now().Add(10 * time.Second); r.e.idleRunners() < 8 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if n := r.e.idleRunners(); n != 8 {
		t.Fatalf("%d idle runners after 8 attempts at once with capacity 8 (Config.Workers 1), want 8", n)
	}
}

// TestRunnersWakeForQueuedAttempts: start wakes one idle runner at a time
// and queues the attempts that come while one is being woken (so a burst
// of short attempts wakes a few runners rather than one each); every
// attempt still runs at once up to Config.Workers, whether idle runners
// or new ones take them.
func TestRunnersWakeForQueuedAttempts(t *testing.T) {
	for _, idle := range []int{0, 1, 3, 8} {
		t.Run(fmt.Sprintf("idle=%d", idle), func(t *testing.T) {
			r := newEngineRig(t, func(c *Config) { c.Workers = 8 })
			ctx := context.Background()
			round := func(name string, n int) {
				t.Helper()
				g := newGate(t, false)
				r.ex.fn = g.execute
				specs := make([]TaskSpec, n)
				for i := range specs {
					specs[i] = TaskSpec{ID: TaskID(fmt.Sprintf("%s-%d", name, i)), Handler: "h"}
				}
				// One SubmitMany: the attempts are leased in one tick and
				// started in one release.
				if _, errs, err := r.e.SubmitMany(ctx, specs); err != nil {
					t.Fatal(err)
				} else {
					for _, err := range errs {
						if err != nil {
							t.Fatal(err)
						}
					}
				}
				for range n {
					g.next(t) // all n run at once
				}
				g.open()
				for _, s := range specs {
					r.wait(s.ID)
				}
			}
			if idle > 0 {
				round("warm", idle)
				for deadline := time.Now().Add(20 * time.Second); r.e.idleRunners() < idle && time.Now().Before(deadline); {
					time.Sleep(time.Millisecond)
				}
				if n := r.e.idleRunners(); n != idle {
					t.Fatalf("%d idle runners after %d attempts at once, want %d", n, idle, idle)
				}
			}
			round("burst", 8)
		})
	}
}
