package host

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: an
// instance whose close-on-deadline watcher never ended, a stop timer of a
// canceled attempt, a runtime that was not closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
