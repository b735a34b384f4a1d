package host

import (
	"io/fs"
	"sync"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
)

// quotaFS is the writable scratch directory of an attempt: a directory on
// the host whose writes are counted against a byte quota.
//
// What is counted, honestly: every byte the guest writes (write, pwrite,
// and the growth of a file by truncate), whether it extends a file or
// overwrites bytes already there; deleting a file gives back its size at
// the time of the unlink. So the figure is an upper bound of the bytes the
// directory holds, never below it. Not counted: directories, file names
// and other metadata (a guest can create many empty files or directories;
// the attempt timeout bounds how many), and the file system's block
// rounding. The quota is enforced by the host, not by the file system:
// the host's temporary directory must have the room. A write past the
// quota fails with EIO (WASI preview1 has no ENOSPC) and a log line says
// why.
type quotaFS struct {
	experimentalsys.FS
	quota *quota
}

type quota struct {
	mu     sync.Mutex
	used   int64
	max    int64
	onFull func(n int64)
}

// take reserves n bytes, or reports that they do not fit.
func (q *quota) take(n int64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if n > 0 && q.used+n > q.max {
		if q.onFull != nil {
			q.onFull(n)
		}
		return false
	}
	q.used += n
	return true
}

func (q *quota) give(n int64) {
	q.mu.Lock()
	q.used = max(0, q.used-n)
	q.mu.Unlock()
}

func (f *quotaFS) OpenFile(path string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	file, errno := f.FS.OpenFile(path, flag, perm)
	if errno != 0 {
		return nil, errno
	}
	return &quotaFile{File: file, quota: f.quota}, 0
}

func (f *quotaFS) Unlink(path string) experimentalsys.Errno {
	st, errno := f.FS.Lstat(path)
	if errno = f.FS.Unlink(path); errno == 0 && st.Nlink <= 1 {
		f.quota.give(st.Size)
	}
	return errno
}

// Symlink is refused: the host follows a link the guest made, so a link
// to "/etc" would open the host's files.
func (f *quotaFS) Symlink(string, string) experimentalsys.Errno { return experimentalsys.EPERM }

// Link would let one quota charge cover two names, and a hard link could
// point outside the directory: refused.
func (f *quotaFS) Link(string, string) experimentalsys.Errno { return experimentalsys.EPERM }

type quotaFile struct {
	experimentalsys.File
	quota *quota
}

func (f *quotaFile) Write(buf []byte) (int, experimentalsys.Errno) {
	if !f.quota.take(int64(len(buf))) {
		return 0, experimentalsys.EIO
	}
	n, errno := f.File.Write(buf)
	f.quota.give(int64(len(buf) - n))
	return n, errno
}

func (f *quotaFile) Pwrite(buf []byte, off int64) (int, experimentalsys.Errno) {
	if !f.quota.take(int64(len(buf))) {
		return 0, experimentalsys.EIO
	}
	n, errno := f.File.Pwrite(buf, off)
	f.quota.give(int64(len(buf) - n))
	return n, errno
}

func (f *quotaFile) Truncate(size int64) experimentalsys.Errno {
	st, errno := f.File.Stat()
	if errno != 0 {
		return errno
	}
	grow := size - st.Size
	if !f.quota.take(grow) {
		return experimentalsys.EIO
	}
	if errno := f.File.Truncate(size); errno != 0 {
		f.quota.give(max(grow, 0))
		return errno
	}
	if grow < 0 {
		f.quota.give(-grow)
	}
	return 0
}
