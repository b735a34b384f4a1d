package worker

import (
	"testing"
	"time"
)

// TestAheadFor: about aheadWork of work is held beyond the concurrency,
// at most maxAhead, none before a run time is known or once attempts run
// long.
func TestAheadFor(t *testing.T) {
	for _, tc := range []struct {
		name        string
		concurrency int
		avg         time.Duration
		want        int
	}{
		{"unknown run time", 4, 0, 0},
		{"no-op attempts: capped", 4, 20 * time.Microsecond, maxAhead},
		{"0.5 ms attempts", 4, 500 * time.Microsecond, 16},
		{"attempts of aheadWork", 4, aheadWork, 4},
		{"attempts of 5x aheadWork", 4, 5 * aheadWork, 0},
		{"long attempts", 64, time.Second, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := aheadFor(tc.concurrency, tc.avg); got != tc.want {
				t.Fatalf("aheadFor(%d, %v) = %d, want %d", tc.concurrency, tc.avg, got, tc.want)
			}
		})
	}
}
