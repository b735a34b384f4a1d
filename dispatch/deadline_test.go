package dispatch

import (
	"context"
	"sync"
	"testing"
	"time"
)

// lateClock is a ManualClock whose every reading is later than the one
// before by lag: the worker that starts an attempt reads a time later than
// the tick that leased it, as under load.
type lateClock struct {
	*ManualClock
	lag time.Duration
}

func (c *lateClock) Now() time.Time {
	c.Advance(c.lag)
	return c.ManualClock.Now()
}

// TestAttemptTimeoutCountsFromItsStart: an attempt whose worker starts
// later than its lease's tick by more than the task's timeout still gets
// its whole timeout: the deadline handed to the executor (Job.DeadlineMs
// and the context) counts from the attempt's start, and an instant handler
// completes instead of timing out.
func TestAttemptTimeoutCountsFromItsStart(t *testing.T) {
	const timeoutMs = 100
	var (
		mu       sync.Mutex
		deadline int64         // Job.DeadlineMs seen by the executor
		left     time.Duration // what the context had left when Execute began
	)
	ex := ExecutorFunc(func(ctx context.Context, j Job) Result {
		d, _ := ctx.Deadline()
		mu.Lock()
		deadline, left = j.DeadlineMs, time.Until(d)
		mu.Unlock()
		if err := ctx.Err(); err != nil { // as the host does: a deadline already past stops the guest
			return Result{Outcome: OutcomeTimeout, Retryable: true, Error: "stopped at the attempt deadline: " + err.Error()}
		}
		return Result{Outcome: OutcomeOK}
	})
	clock := &lateClock{ManualClock: NewManualClock(rigEpoch), lag: 3 * timeoutMs * time.Millisecond}
	e, err := Open(Config{Dir: t.TempDir(), Executor: ex, Workers: 1, Clock: clock, Logger: quietLogger(),
		LeaseGrace: time.Hour, SnapshotEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := e.Submit(ctx, TaskSpec{ID: "t", Handler: "h", TimeoutMs: timeoutMs, MaxAttempts: 1}); err != nil {
		t.Fatal(err)
	}
	v, err := e.Wait(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	a := v.Runs[0].Attempts[0]
	if v.State != TaskCompleted || a.Outcome != OutcomeOK {
		t.Fatalf("task %s, attempt %s (%s); want completed: the wait for a worker is not the handler's time", v.State, a.Outcome, a.Error)
	}
	if a.StartedAt-a.LeasedAt < timeoutMs {
		t.Fatalf("the attempt started %d ms after its lease: the test did not make it late", a.StartedAt-a.LeasedAt)
	}
	mu.Lock()
	defer mu.Unlock()
	if deadline != a.StartedAt+timeoutMs {
		t.Errorf("Job.DeadlineMs = started + %d ms, want started + %d (leased at started - %d)", deadline-a.StartedAt, timeoutMs, a.StartedAt-a.LeasedAt)
	}
	if left <= timeoutMs/2*time.Millisecond || left > timeoutMs*time.Millisecond {
		t.Errorf("the executor's context had %v left, want about the task's %d ms timeout", left, timeoutMs)
	}
}
