package machine

import "testing"

// TestCoreLeaseOutlastsALateStart: an attempt's deadline counts from its
// start, so the lease must outlast start + timeout by the grace. A start
// reported within half the grace of the lease writes nothing more; a later
// one renews the lease to start + timeout + grace, and the lease expires
// then, not at lease + timeout + grace.
func TestCoreLeaseOutlastsALateStart(t *testing.T) {
	const timeout, grace = 2000, 1000
	tests := []struct {
		name       string
		reportAt   int64 // when the start reaches the core, after the lease
		startAt    int64 // StartedInput.At after the lease (-1: unknown, 0)
		wantRenew  bool
		wantExpiry int64 // after the lease
	}{
		{name: "start at once", reportAt: 0, startAt: 0, wantExpiry: timeout + grace},
		{name: "start within half the grace", reportAt: 450, startAt: 400, wantExpiry: timeout + grace},
		{name: "late start", reportAt: 1600, startAt: 1500, wantRenew: true, wantExpiry: 1500 + timeout + grace},
		{name: "late start, time unknown: the report's", reportAt: 1500, startAt: -1, wantRenew: true, wantExpiry: 1500 + timeout + grace},
		{name: "start time after the report: the report's", reportAt: 1500, startAt: 9000, wantRenew: true, wantExpiry: 1500 + timeout + grace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newCoreRig(t, coreOpts{leaseGrace: grace})
			r.mustSubmit(TaskSpec{ID: "t", Handler: "h", TimeoutMs: timeout, MaxAttempts: 2, Backoff: Backoff{Kind: BackoffFixed}})
			j := r.take("t#1")
			if j.DeadlineMs != rigStart+timeout || r.run("t#1").LeaseExp != rigStart+timeout+grace {
				t.Fatalf("leased with deadline +%d, lease +%d", j.DeadlineMs-rigStart, r.run("t#1").LeaseExp-rigStart)
			}
			at := rigStart + tc.startAt
			if tc.startAt < 0 {
				at = 0
			}
			r.now = rigStart + tc.reportAt
			before := len(r.eventsOf(EvLeaseRenewed))
			r.step(StartedInput{Run: j.Run, Attempt: j.Attempt, At: at})
			if renewed := len(r.eventsOf(EvLeaseRenewed)) > before; renewed != tc.wantRenew {
				t.Errorf("lease renewed: %v, want %v", renewed, tc.wantRenew)
			}
			if got := r.run("t#1").LeaseExp - rigStart; got != tc.wantExpiry {
				t.Errorf("lease expires at +%d, want +%d", got, tc.wantExpiry)
			}
			r.now = rigStart + tc.wantExpiry - 1
			if r.step(); r.run("t#1").State != RunRunning {
				t.Fatalf("at +%d the run is %s, want running", tc.wantExpiry-1, r.run("t#1").State)
			}
			r.now = rigStart + tc.wantExpiry
			r.step()
			if a := r.run("t#1").Attempts[0]; a.Outcome != OutcomeLost {
				t.Errorf("at +%d attempt 1 is %q, want lost (lease expired)", tc.wantExpiry, a.Outcome)
			}
		})
	}
}
