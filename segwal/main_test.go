package segwal

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind (a Log,
// Reader or zstd coder that was not closed).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
