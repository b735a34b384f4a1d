package api

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"github.com/wasmtask/wasmtask/dispatch"
)

// TestDiskFullIs507: a full disk, from the engine or another store of the
// data dir, is 507 naming the directory and the free space.
func TestDiskFullIs507(t *testing.T) {
	for _, err := range []error{
		&dispatch.DiskFullError{Dir: "/data", FreeBytes: 1 << 20, MinFree: 64 << 20},
		fmt.Errorf("payload store: %w", &dispatch.DiskFullError{Dir: "/data", FreeBytes: 0, Cause: syscall.ENOSPC}),
	} {
		w := httptest.NewRecorder()
		writeError(w, err)
		if w.Code != 507 {
			t.Fatalf("status %d for %v, want 507", w.Code, err)
		}
		e := decodeError(w.Code, w.Body.Bytes())
		if e.Code != "insufficient_storage" || !strings.Contains(e.Message, "data dir /data has") || !errors.Is(e, ErrInsufficientStorage) {
			t.Fatalf("body %s", w.Body)
		}
	}
}
