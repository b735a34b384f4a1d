//go:build unix

package cluster

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user + system) this process used so far:
// on a shared machine, CPU per task says more than a rate does.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
