package machine

import (
	"slices"
	"testing"
)

// TestCronCatchUpCap: a catch-up creates at most MaxCatchUp runs for the
// missed occurrences, then the schedule goes on from now.
func TestCronCatchUpCap(t *testing.T) {
	r := newCoreRig(t, coreOpts{workers: 4})
	r.mustSubmit(TaskSpec{ID: "c", Handler: "h", Policy: RunPolicy{Kind: PolicyCron, CronExpr: "* * * * * *", Misfire: MisfireCatchUp}})
	// The first run ends before the gap (its lease would expire in it, and
	// a lost attempt is retried).
	r.finish("c#1", Result{Outcome: OutcomeOK})
	r.now += 2 * 3600_000 // 7200 occurrences missed
	r.step()
	task := r.s.Tasks["c"]
	due, future := 0, 0
	for _, run := range task.runs {
		switch {
		case run.DueAt <= rigStart: // the occurrence at the submission ran then
		case run.DueAt <= r.now:
			due++
		case run.State == RunScheduled:
			future++
		}
	}
	// The window's CronWindow runs were created before the gap.
	if due != MaxCatchUp+CronWindow || future != CronWindow {
		t.Errorf("%d runs due and %d scheduled after the gap, want %d and %d", due, future, MaxCatchUp+CronWindow, CronWindow)
	}
	r.drive(r.now, okResult)
	before := len(r.started)
	r.drive(r.now+10_000, okResult)
	if got := len(r.started) - before; got != 10 {
		t.Errorf("%d runs in the 10 s after the catch-up, want 10", got)
	}
}

// TestCronRetryDoesNotShiftTheSchedule: a cron run that fails and waits a
// long backoff keeps its retry's due time to itself; the schedule goes on
// from the occurrences, not from the retried run's moved due time, so no
// occurrence in between is left without a run.
func TestCronRetryDoesNotShiftTheSchedule(t *testing.T) {
	for _, restart := range []bool{false, true} {
		name := "same core"
		if restart {
			name = "state rebuilt from a snapshot"
		}
		t.Run(name, func(t *testing.T) {
			r := newCoreRig(t, coreOpts{workers: 4})
			r.mustSubmit(TaskSpec{ID: "c", Handler: "h", MaxAttempts: 3, Backoff: Backoff{Kind: BackoffFixed, BaseMs: 60_000},
				Policy: RunPolicy{Kind: PolicyCron, CronExpr: "* * * * * *"}})
			r.finish("c#1", Result{Outcome: OutcomeFailed, Retryable: true, Error: "boom"})
			if run := r.run("c#1"); run.State != RunRetryWait || run.DueAt != rigStart+60_000 {
				t.Fatalf("c#1 is %s due +%d, want retry_wait due +60000", run.State, run.DueAt-rigStart)
			}
			if restart {
				r = newCoreRig(t, coreOpts{workers: 4, state: rebuilt(t, r.s)})
				r.c.Lost = false // nothing was in flight
				r.step()
			}
			before := len(r.started)
			r.drive(rigStart+10_000, okResult)
			var dues []int64
			for _, s := range r.started[before:] {
				dues = append(dues, r.run(s.job.Run).DueAt-rigStart)
			}
			want := []int64{1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10_000}
			if !slices.Equal(dues, want) {
				t.Errorf("runs started in the first 10 s due at %v, want one per second %v", dues, want)
			}
		})
	}
}
