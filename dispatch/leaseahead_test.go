package dispatch

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// warmLeaseAhead runs n short attempts, so that the engine leases ahead of
// its runners from then on.
func (r *engineRig) warmLeaseAhead(n int) {
	r.t.Helper()
	round := warmRounds.Add(1)
	specs := make([]TaskSpec, n)
	for i := range specs {
		specs[i] = TaskSpec{ID: TaskID(fmt.Sprintf("warm-%d-%03d", round, i)), Handler: "h"}
	}
	if _, _, err := r.e.SubmitMany(r.ctx(), specs); err != nil {
		r.t.Fatal(err)
	}
	for i := range specs {
		if v := r.wait(specs[i].ID); v.State != TaskCompleted {
			r.t.Fatalf("%s: %s", specs[i].ID, v.State)
		}
	}
	r.barrier()
}

// warmRounds numbers warmLeaseAhead's rounds: their task ids differ.
var warmRounds atomic.Int64

// TestLeaseAheadRunsAtMostWorkers: once attempts are short, the engine
// leases more attempts than it has workers, but runs at most Workers at
// once; the others wait, leased, and run as workers free up.
func TestLeaseAheadRunsAtMostWorkers(t *testing.T) {
	r := newEngineRig(t, func(c *Config) { c.Workers = 2 })
	var running, most atomic.Int32
	g := newGate(t, false)
	held := atomic.Bool{}
	r.ex.set(func(ctx context.Context, j Job) Result {
		n := running.Add(1)
		defer running.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		if held.Load() {
			return g.execute(ctx, j)
		}
		return Result{Outcome: OutcomeOK}
	})
	// How far the engine leases ahead follows the measured run time of
	// recent attempts: on a loaded machine (-race, a parallel suite) a
	// round of no-op attempts can measure too long for more than a few.
	// Warm up until it leases ahead at all, then hold as many tasks as it
	// leases: none ends while they are held, so the bound stays.
	tasks := 0
	for round := 1; ; round++ {
		r.warmLeaseAhead(64)
		if tasks = r.e.leaseBound(); tasks > 2 { // read after barrier: the loop is idle
			break
		}
		if round == 50 {
			t.Fatalf("no lease ahead of 2 workers after %d rounds of 64 short attempts", round)
		}
	}
	held.Store(true)
	for i := range tasks {
		r.submit(TaskSpec{ID: TaskID(fmt.Sprintf("t%d", i)), TimeoutMs: 600_000})
	}
	g.next(t)
	g.next(t)
	r.barrier()
	select {
	case j := <-g.started:
		t.Fatalf("attempt of %s started beyond the 2 workers", j.Task)
	case <-time.After(200 * time.Millisecond):
	}
	if got := r.e.Stats().InFlight; got != tasks {
		t.Fatalf("%d attempts leased with short attempts and %d tasks ready, want all %d leased ahead (the lease bound)", got, tasks, tasks)
	}
	g.open()
	for i := range tasks {
		if v := r.wait(TaskID(fmt.Sprintf("t%d", i))); v.State != TaskCompleted || len(v.Runs[0].Attempts) != 1 {
			t.Fatalf("t%d: %s after %d attempts", i, v.State, len(v.Runs[0].Attempts))
		}
	}
	if m := most.Load(); m > 2 {
		t.Fatalf("%d attempts ran at once with 2 workers", m)
	}
}

// TestLeaseAheadQueuedLeaseRenewed: an attempt leased ahead waits for a
// runner held by a long attempt far beyond its own timeout and lease grace;
// its lease is renewed while it waits, so it runs once, not lost.
func TestLeaseAheadQueuedLeaseRenewed(t *testing.T) {
	r := newEngineRig(t, func(c *Config) { c.Workers = 1 })
	g := newGate(t, false)
	held := atomic.Bool{}
	r.ex.set(func(ctx context.Context, j Job) Result {
		if held.Load() && j.Task == "long" {
			return g.execute(ctx, j)
		}
		return Result{Outcome: OutcomeOK}
	})
	r.warmLeaseAhead(32)
	held.Store(true)
	r.submit(TaskSpec{ID: "long", TimeoutMs: 600_000})
	g.next(t)
	r.submit(TaskSpec{ID: "queued", TimeoutMs: 2000})
	r.barrier()
	if v := r.view("queued"); v.Runs[0].State != RunLeased {
		t.Fatalf("queued behind the long attempt: run %s, want leased ahead", v.Runs[0].State)
	}
	for range 20 { // 20 s: ten times its timeout plus the lease grace (1 s)
		r.clock.Advance(time.Second)
		r.barrier()
	}
	if v := r.view("queued"); v.Runs[0].State != RunLeased || len(v.Runs[0].Attempts) != 1 {
		t.Fatalf("queued after 20 s behind the long attempt: run %s with %d attempts, want still leased, its first", v.Runs[0].State, len(v.Runs[0].Attempts))
	}
	g.open()
	v := r.wait("queued")
	if v.State != TaskCompleted || len(v.Runs[0].Attempts) != 1 || v.Runs[0].Attempts[0].Outcome != OutcomeOK {
		t.Fatalf("queued: %s, attempts %+v: want completed by its first attempt", v.State, v.Runs[0].Attempts)
	}
}

// TestLeaseAheadCanceledWhileQueued: an attempt canceled while it waits,
// leased ahead, for a runner ends canceled without running its handler.
func TestLeaseAheadCanceledWhileQueued(t *testing.T) {
	r := newEngineRig(t, func(c *Config) { c.Workers = 1 })
	g := newGate(t, false)
	held := atomic.Bool{}
	var victimRan atomic.Bool
	r.ex.set(func(ctx context.Context, j Job) Result {
		if j.Task == "victim" {
			victimRan.Store(true)
		}
		if held.Load() && j.Task == "long" {
			return g.execute(ctx, j)
		}
		return Result{Outcome: OutcomeOK}
	})
	r.warmLeaseAhead(32)
	held.Store(true)
	r.submit(TaskSpec{ID: "long", TimeoutMs: 600_000})
	g.next(t)
	r.submit(TaskSpec{ID: "victim"})
	r.barrier()
	if v := r.view("victim"); v.Runs[0].State != RunLeased {
		t.Fatalf("victim behind the long attempt: run %s, want leased ahead", v.Runs[0].State)
	}
	if err := r.e.Cancel(r.ctx(), "victim", "test"); err != nil {
		t.Fatal(err)
	}
	g.open()
	if v := r.wait("victim"); v.State != TaskCanceled {
		t.Fatalf("victim: %s, want canceled", v.State)
	}
	r.wait("long")
	if victimRan.Load() {
		t.Fatal("the handler of the attempt canceled while queued ran")
	}
}
