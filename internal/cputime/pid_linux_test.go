package cputime

import (
	"os"
	"testing"
	"time"
)

// TestOfCountsOwnCPU: Of(own pid) grows with the CPU burnt, as Process
// (getrusage) says.
func TestOfCountsOwnCPU(t *testing.T) {
	before, start := Of(os.Getpid()), Process()
	for wall := time.Now(); Process()-start < 200*time.Millisecond && time.Since(wall) < 30*time.Second; {
	}
	after, spent := Of(os.Getpid()), Process()-start
	if d := after - before; d < spent-50*time.Millisecond || d > spent+50*time.Millisecond {
		t.Fatalf("Of grew by %v while Process grew by %v", d, spent)
	}
}
