package dispatch

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestWaitAnswersAtTheFinalTick: a Wait call is answered with the view of
// the tick that made its task final as soon as that tick is durable, not
// after the fsync of whatever the loop stepped since. Here the fsync of
// the next tick (b's submission) is held until the end: reading the task
// again would wait for it.
func TestWaitAnswersAtTheFinalTick(t *testing.T) {
	var (
		armed   atomic.Bool // the next commit is the final tick's: step b's tick during it
		holding atomic.Bool // every commit after it waits on hold
		hold    = make(chan struct{})
		r       *engineRig
	)
	stepped := make(chan error, 1)
	r = newEngineRig(t, func(c *Config) {
		c.beforeCommit = func() error {
			if holding.Load() {
				<-hold
				return nil
			}
			if armed.CompareAndSwap(true, false) {
				// The loop steps b's submission while this fsync is in
				// flight; its own fsync, the next one, is held.
				before := r.appliedNow()
				holding.Store(true)
				go func() { _, err := r.e.Submit(context.Background(), TaskSpec{ID: "b", Handler: "h"}); stepped <- err }()
				for deadline := time.Now().Add(10 * time.Second); r.appliedNow() == before; time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						t.Error("the loop did not step b's submission")
						break
					}
				}
			}
			return nil
		}
	})
	t.Cleanup(func() { close(hold) }) // before the rig's Close
	ctx := r.ctx()
	started, finish := make(chan struct{}), make(chan struct{})
	r.ex.set(func(ctx context.Context, j Job) Result {
		if j.Task == "a" {
			close(started)
			<-finish
		}
		return Result{Outcome: OutcomeOK, Output: []byte("done")}
	})
	if _, err := r.e.Submit(ctx, TaskSpec{ID: "a", Handler: "h"}); err != nil {
		t.Fatal(err)
	}
	<-started
	type answer struct {
		v   TaskView
		err error
	}
	waited := make(chan answer, 1)
	go func() {
		v, err := r.e.Wait(ctx, "a")
		waited <- answer{v, err}
	}()
	waitFor(t, "the Wait call to register", func() bool {
		r.e.waits.mu.Lock()
		defer r.e.waits.mu.Unlock()
		return r.e.waits.m["a"] != nil
	})
	// a's start report (sent once its attempt has run startedReportDelay)
	// makes a tick of its own: armed before it was committed, that tick,
	// not a's final one, would take the armed commit.
	waitFor(t, "a's start to be recorded", func() bool {
		v, ok := r.e.Task("a")
		return ok && len(v.Runs) == 1 && v.Runs[0].State == RunRunning
	})
	armed.Store(true)
	close(finish)
	select {
	case a := <-waited:
		if a.err != nil || a.v.State != TaskCompleted || string(a.v.Output) != "done" || len(a.v.Runs) != 1 {
			t.Fatalf("Wait(a) = %s %q %d runs, %v; want completed with its output", a.v.State, a.v.Output, len(a.v.Runs), a.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait(a) did not return while the next tick's fsync was held")
	}
	select {
	case err := <-stepped:
		t.Fatalf("b's Submit returned (%v) while its fsync was held", err)
	default:
	}
}

// appliedNow is the loop's last stepped WAL sequence.
func (r *engineRig) appliedNow() uint64 {
	r.e.mu.RLock()
	defer r.e.mu.RUnlock()
	return r.e.state.Applied
}
