package dispatch

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestCommitLingersForNewTasksResults: the committer holds the fsync of a
// lone tick that started attempts of its own new tasks until their results
// are pended, so a short attempt's result shares its submission's fsync
// (one fsync per task, not two); not under DurableLeases (no attempt runs
// before that fsync); and a slow attempt holds it only up to the bound:
// its Submit returns while the attempt still runs.
func TestCommitLingersForNewTasksResults(t *testing.T) {
	for _, tc := range []struct {
		name          string
		durableLeases bool
		linger        time.Duration
		slow          bool
		shared        bool // the result shares its submission's fsync
	}{
		{name: "short attempt shares the fsync", linger: time.Minute, shared: true},
		{name: "durable leases", durableLeases: true, linger: time.Minute},
		{name: "slow attempt ends the linger at its bound", linger: time.Millisecond, slow: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fsyncs atomic.Int64
			r := newEngineRig(t, func(c *Config) {
				c.DurableLeases = tc.durableLeases
				c.commitLinger = tc.linger
				c.beforeCommit = func() error { fsyncs.Add(1); return nil }
			})
			release := make(chan struct{})
			if tc.slow {
				r.ex.set(func(context.Context, Job) Result {
					<-release
					return Result{Outcome: OutcomeOK}
				})
			}
			r.idle()
			before := fsyncs.Load()
			r.submit(TaskSpec{ID: "a"}) // with slow: returns while the attempt still runs
			close(release)
			if v := r.wait("a"); v.State != TaskCompleted {
				t.Fatalf("a is %s, want completed", v.State)
			}
			// Counted from Submit to the final view: one when shared; two
			// otherwise, or three when the attempt ran long enough to
			// report its start.
			if got := fsyncs.Load() - before; tc.shared != (got == 1) || got < 1 {
				t.Errorf("%d fsyncs for a task, want the result to share its submission's: %v", got, tc.shared)
			}
		})
	}
}
