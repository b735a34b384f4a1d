package dispatch

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: a loop
// that was not closed, a worker whose executor never returned, a snapshot
// writer still running, or a WAL or zstd coder left open.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
