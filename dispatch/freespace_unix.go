//go:build unix

package dispatch

import (
	"fmt"
	"syscall"
)

// FreeSpace returns the bytes available to unprivileged users and the
// size of the filesystem holding dir (statfs). Available, not free: root's
// reserved blocks are not counted, so the engine stops before an ext4
// filesystem is full for everyone else.
func FreeSpace(dir string) (avail, size int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}
