package segwal

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// datasync flushes f to stable storage with F_FULLFSYNC: on macOS plain
// fsync (and fdatasync) only hands the data to the drive, whose cache may
// lose it on power loss. Filesystems without F_FULLFSYNC (SMB, some FUSE)
// answer ENOTSUP; those get fsync, as os.File.Sync does.
func datasync(f *os.File) error {
	for {
		_, err := unix.FcntlInt(f.Fd(), unix.F_FULLFSYNC, 0)
		if errors.Is(err, unix.ENOTSUP) {
			err = unix.Fsync(int(f.Fd()))
		}
		if err != unix.EINTR {
			return err
		}
	}
}
