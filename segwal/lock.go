package segwal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// lockName is the file in a log's directory that a Log holds locked while
// open: one writer per directory. tryLock (lock_unix.go, lock_windows.go)
// is the one per-OS part.
const lockName = "LOCK"

// errBusy is what tryLock returns when another holder has the lock.
var errBusy = errors.New("lock held")

// lockDir takes an exclusive lock on dir/LOCK. The lock belongs to the open
// file (description or handle), so a second Open fails even inside the same
// process, and the kernel drops it when the process dies (kill -9 included).
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("segwal: lock %s: %w", path, err)
	}
	if err := tryLock(f, true); err != nil {
		f.Close()
		if errors.Is(err, errBusy) {
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
	if err := tryLock(f, false); err != nil {
		f.Close()
		if errors.Is(err, errBusy) {
			return nil, fmt.Errorf("%w: %s is held; stop the server using %s first", ErrLocked, path, dir)
		}
		return nil, fmt.Errorf("segwal: lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
