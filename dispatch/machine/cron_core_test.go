package machine

import (
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
