//go:build unix

package segwal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDir takes an exclusive flock on dir/LOCK. The lock belongs to the open
// file description, so a second Open fails even inside the same process, and
// the kernel drops it when the process dies (kill -9 included).
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("segwal: lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is held; stop the other wasmtask using %s or pick another data directory", ErrLocked, path, dir)
		}
		return nil, fmt.Errorf("segwal: lock %s: %w", path, err)
	}
	return f, nil
}

// lockShared takes a shared flock on dir/LOCK so that verification cannot
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
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is held; stop the server using %s first", ErrLocked, path, dir)
		}
		return nil, fmt.Errorf("segwal: lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
