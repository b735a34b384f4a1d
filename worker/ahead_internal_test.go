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

// TestSteadyAhead: the announced lease-ahead is a power of two and keeps
// still while aheadFor wavers around it, so that the server's capacity
// does not change with every run time observed.
func TestSteadyAhead(t *testing.T) {
	for _, tc := range []struct {
		name           string
		cur, want, got int
	}{
		{"none yet, none wanted", 0, 0, 0},
		{"first: rounded down to a power of two", 0, 200, 128},
		{"at the cap", 0, maxAhead, maxAhead},
		{"wavers below the cap: kept", maxAhead, maxAhead - 40, maxAhead},
		{"falls past three quarters: the next power down", 256, 180, 128},
		{"rises just above: kept", 128, 200, 128},
		{"doubles: up", 128, 256, 256},
		{"long attempts: none", 64, 0, 0},
		{"one", 0, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := steadyAhead(tc.cur, tc.want); got != tc.got {
				t.Fatalf("steadyAhead(%d, %d) = %d, want %d", tc.cur, tc.want, got, tc.got)
			}
		})
	}
}
