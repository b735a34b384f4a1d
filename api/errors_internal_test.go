package api

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/wasmtask/wasmtask/dispatch"
)

// TestDiskFullIs507: a full disk, from the engine or another store of the
// data dir, is 507 naming the directory (or file) and what to do.
func TestDiskFullIs507(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"engine threshold", &dispatch.DiskFullError{Dir: "/data", FreeBytes: 1 << 20, MinFree: 64 << 20}, "data dir /data has 1.0 MiB free"},
		{"payload store", fmt.Errorf("payload store: %w", &dispatch.DiskFullError{Dir: "/data", FreeBytes: 0, Cause: syscall.ENOSPC}), "data dir /data has 0 B free"},
		{"plain ENOSPC", fmt.Errorf("plugins: %w", &os.PathError{Op: "write", Path: "/data/plugins/x.wasm", Err: syscall.ENOSPC}),
			"disk full: plugins: write /data/plugins/x.wasm: no space left on device; free space in the data dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			writeError(w, tc.err)
			if w.Code != 507 {
				t.Fatalf("status %d for %v, want 507", w.Code, tc.err)
			}
			e := decodeError(w.Code, w.Body.Bytes())
			if e.Code != "insufficient_storage" || !strings.Contains(e.Message, tc.want) || !errors.Is(e, ErrInsufficientStorage) {
				t.Fatalf("body %s, want insufficient_storage with %q", w.Body, tc.want)
			}
		})
	}
}
