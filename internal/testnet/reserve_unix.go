//go:build unix

package testnet

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

var reserved = struct {
	sync.Mutex
	files map[int]*os.File
	dir   string // the lock files' folder, once made ("" before)
}{files: map[int]*os.File{}}

// reserve takes port for this process: false when this process or another
// holds it. The lock (flock on a file named after the port) lasts until
// release or the end of the process.
func reserve(port int) bool {
	reserved.Lock()
	defer reserved.Unlock()
	if _, ok := reserved.files[port]; ok {
		return false
	}
	if reserved.dir == "" {
		dir := filepath.Join(os.TempDir(), "wasmtask-testnet")
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return true // no lock files here: the probe alone decides, as before
		}
		reserved.dir = dir
	}
	f, err := os.OpenFile(filepath.Join(reserved.dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return false
	}
	reserved.files[port] = f
	return true
}

// release gives up a port reserve took (it turned out to be busy).
func release(port int) {
	reserved.Lock()
	defer reserved.Unlock()
	if f, ok := reserved.files[port]; ok {
		f.Close() // drops the lock
		delete(reserved.files, port)
	}
}
