package dispatch

import (
	"errors"
	"fmt"
	"syscall"
)

// ErrDiskFull: the data directory's filesystem is (nearly) full, so the
// engine refuses new work until space returns; what it already accepted
// goes on. Match it with errors.Is; the error is a *DiskFullError naming
// the directory and the free space. The HTTP API answers 507.
var ErrDiskFull = errors.New("dispatch: disk full")

// DiskFullError is ErrDiskFull with the details an operator needs.
type DiskFullError struct {
	Dir       string // the directory whose filesystem is full
	FreeBytes int64  // free space (for unprivileged users) when last measured; -1: unknown
	MinFree   int64  // the threshold below which submissions are refused (0: ENOSPC alone)
	Cause     error  // the ENOSPC that started the episode, or nil when the threshold did
}

func (e *DiskFullError) Error() string {
	free := "unknown free space"
	if e.FreeBytes >= 0 {
		free = FormatBytes(e.FreeBytes) + " free"
	}
	msg := fmt.Sprintf("disk full: data dir %s has %s", e.Dir, free)
	if e.MinFree > 0 {
		msg += fmt.Sprintf(" (new work is refused below %s)", FormatBytes(e.MinFree))
	}
	if e.Cause != nil {
		msg += fmt.Sprintf("; last write failed: %v", e.Cause)
	}
	return msg + "; free space there, new submissions are accepted again by themselves"
}

// Is makes errors.Is(err, ErrDiskFull) hold.
func (e *DiskFullError) Is(target error) bool { return target == ErrDiskFull }

// Unwrap returns the ENOSPC that started the episode, if any.
func (e *DiskFullError) Unwrap() error { return e.Cause }

// IsNoSpace reports whether err is a write that failed for lack of space
// (ENOSPC, or EDQUOT: a quota is a full disk to the writer).
func IsNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// NewDiskFullError is the *DiskFullError for a write into dir that failed
// with cause (an ENOSPC), with dir's free space measured now. Other stores
// in the data dir (payloads, plugins) return it so that the API answers
// their ENOSPC as the engine's: 507 naming the directory.
func NewDiskFullError(dir string, cause error) *DiskFullError {
	free, _, err := FreeSpace(dir)
	if err != nil {
		free = -1
	}
	return &DiskFullError{Dir: dir, FreeBytes: free, Cause: cause}
}

// FormatBytes prints n in the largest binary unit that keeps one decimal
// meaningful ("512 B", "63.9 MiB").
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for (v >= unit || v <= -unit) && i < 4 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTP"[i])
}
