//go:build unix

package segwal

import (
	"errors"
	"os"
	"syscall"
)

// tryLock takes a flock (exclusive or shared) without waiting; errBusy when
// another open file holds it.
func tryLock(f *os.File, exclusive bool) error {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errBusy
	}
	return err
}
