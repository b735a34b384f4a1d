package worker

import (
	"testing"
	"time"
)

// TestAheadFor: about aheadWork of work is held beyond the concurrency,
// at most maxAhead, none before a run time is known or once attempts run
// long; once the finish rate is known, at most what finishes in
// aheadWindow (or aheadRTTs lease round trips), but at least the
// concurrency.
func TestAheadFor(t *testing.T) {
	for _, tc := range []struct {
		name        string
		concurrency int
		avg         time.Duration
		rate        float64
		rtt         time.Duration
		want        int
	}{
		{"unknown run time", 4, 0, 0, 0, 0},
		{"no-op attempts, rate unknown: capped", 4, 20 * time.Microsecond, 0, 0, maxAhead},
		{"0.5 ms attempts", 4, 500 * time.Microsecond, 0, 0, 16},
		{"attempts of aheadWork", 4, aheadWork, 0, 0, 4},
		{"attempts of 5x aheadWork", 4, 5 * aheadWork, 0, 0, 0},
		{"long attempts", 64, time.Second, 0, 0, 0},
		{"no-op attempts at 20k/s: 8 ms of them", 16, 20 * time.Microsecond, 20000, 200 * time.Microsecond, 160},
		{"no-op attempts, slow round trips: 4 of them", 16, 20 * time.Microsecond, 20000, 3 * time.Millisecond, 240},
		{"no-op attempts at 1k/s: the concurrency", 16, 20 * time.Microsecond, 1000, time.Millisecond, 16},
		{"rate bound above the run-time bound", 4, aheadWork, 1e6, time.Millisecond, 4},
		{"long attempts, rate known", 64, time.Second, 100, time.Millisecond, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := aheadFor(tc.concurrency, tc.avg, tc.rate, tc.rtt); got != tc.want {
				t.Fatalf("aheadFor(%d, %v, %v, %v) = %d, want %d", tc.concurrency, tc.avg, tc.rate, tc.rtt, got, tc.want)
			}
		})
	}
}
