//go:build !unix

package cluster

import "time"

// processCPU is not measured here (cpu-us/task reads 0).
func processCPU() time.Duration { return 0 }
