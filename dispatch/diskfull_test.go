package dispatch

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestDiskFullError(t *testing.T) {
	enospc := &os.PathError{Op: "write", Path: "/data/wal/x.seg", Err: syscall.ENOSPC}
	for _, tc := range []struct {
		name string
		err  *DiskFullError
		want []string
	}{
		{"threshold", &DiskFullError{Dir: "/data", FreeBytes: 3 << 20, MinFree: 64 << 20},
			[]string{"data dir /data has 3.0 MiB free", "refused below 64.0 MiB", "accepted again"}},
		{"enospc", &DiskFullError{Dir: "/data", FreeBytes: 0, Cause: enospc},
			[]string{"data dir /data has 0 B free", "last write failed: write /data/wal/x.seg: no space left on device"}},
		{"unknown free", &DiskFullError{Dir: "/d", FreeBytes: -1}, []string{"unknown free space"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := tc.err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
			wrapped := fmt.Errorf("submit: %w", tc.err)
			if !errors.Is(wrapped, ErrDiskFull) {
				t.Errorf("errors.Is(%v, ErrDiskFull) = false", wrapped)
			}
			if got := errors.Is(wrapped, syscall.ENOSPC); got != (tc.err.Cause != nil) {
				t.Errorf("errors.Is(ENOSPC) = %v with cause %v", got, tc.err.Cause)
			}
		})
	}
}

func TestIsNoSpace(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&os.PathError{Op: "write", Path: "f", Err: syscall.ENOSPC}, true},
		{fmt.Errorf("segwal: %w", syscall.EDQUOT), true},
		{syscall.EIO, false},
		{nil, false},
	} {
		if got := IsNoSpace(tc.err); got != tc.want {
			t.Errorf("IsNoSpace(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestFreeSpace(t *testing.T) {
	avail, size, err := FreeSpace(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if size <= 0 || avail < 0 || avail > size {
		t.Fatalf("FreeSpace = %d available of %d", avail, size)
	}
	if _, _, err := FreeSpace("/nonexistent/wasmtask"); err == nil || !strings.Contains(err.Error(), "/nonexistent/wasmtask") {
		t.Fatalf("FreeSpace of a missing dir: %v, want an error naming it", err)
	}
	e := NewDiskFullError(t.TempDir(), syscall.ENOSPC)
	if e.FreeBytes < 0 || !errors.Is(e, syscall.ENOSPC) {
		t.Fatalf("NewDiskFullError = %+v", e)
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 64 << 20: "64.0 MiB", 3 << 30: "3.0 GiB", 1536: "1.5 KiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
