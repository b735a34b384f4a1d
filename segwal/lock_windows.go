package segwal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/windows"
)

// lockDir takes an exclusive LockFileEx lock on dir/LOCK, the Windows
// counterpart of flock: it belongs to the handle and Windows drops it when
// the process exits.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("segwal: lock %s: %w", path, err)
	}
	if err := lockFile(f, windows.LOCKFILE_EXCLUSIVE_LOCK); err != nil {
		f.Close()
		if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
			return nil, fmt.Errorf("%w: %s is held; stop the other wasmtask using %s or pick another data directory", ErrLocked, path, dir)
		}
		return nil, fmt.Errorf("segwal: lock %s: %w", path, err)
	}
	return f, nil
}

// lockShared takes a shared lock on dir/LOCK so that verification cannot
// race a writer; it fails with ErrLocked while a Log holds the directory.
func lockShared(dir string) (func(), error) {
	path := filepath.Join(dir, lockName)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		if _, statErr := os.Stat(dir); statErr != nil {
			return nil, fmt.Errorf("segwal: verify: %w", statErr)
		}
		return func() {}, nil // never opened by a Log: nothing can hold it
	}
	if err != nil {
		return nil, fmt.Errorf("segwal: lock %s: %w", path, err)
	}
	if err := lockFile(f, 0); err != nil {
		f.Close()
		if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
			return nil, fmt.Errorf("%w: %s is held; stop the server using %s first", ErrLocked, path, dir)
		}
		return nil, fmt.Errorf("segwal: lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// lockFile locks the file's first byte without waiting.
func lockFile(f *os.File, flags uint32) error {
	var ol windows.Overlapped
	return windows.LockFileEx(windows.Handle(f.Fd()), flags|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ol)
}
