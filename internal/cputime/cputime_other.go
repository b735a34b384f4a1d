//go:build !unix

package cputime

import "time"

// Process is 0 where getrusage is missing: Report then adds nothing.
func Process() time.Duration { return 0 }

// Children is 0 where getrusage is missing.
func Children() time.Duration { return 0 }
