//go:build unix

package segwal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

const lockName = "LOCK"

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
