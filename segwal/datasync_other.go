//go:build !linux && !darwin

package segwal

import "os"

// datasync is fsync where fdatasync is not available (FreeBSD's exists
// but syscall lacks it; Windows has FlushFileBuffers, which os.File.Sync
// calls): it also flushes metadata, which costs latency, not safety.
func datasync(f *os.File) error { return f.Sync() }
