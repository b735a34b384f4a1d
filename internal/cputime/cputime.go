// Package cputime adds the process's CPU time per iteration to benchmarks
// (cpu-ns/op): a shared machine inflates it far less than wall time, and it
// counts the garbage collector and wazero's goroutines too.
package cputime

import (
	"testing"
	"time"
)

// Report adds cpu-ns/op to b; start is Process() taken before the loop.
func Report(b *testing.B, start time.Duration) {
	if b.N > 0 && start > 0 {
		b.ReportMetric(float64((Process()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

// ReportChildren adds child-cpu-ns/op to b: the CPU time of the processes
// the benchmark ran and waited for; start is Children() taken before the
// loop.
func ReportChildren(b *testing.B, start time.Duration) {
	if b.N > 0 && start > 0 {
		b.ReportMetric(float64((Children()-start).Nanoseconds())/float64(b.N), "child-cpu-ns/op")
	}
}
