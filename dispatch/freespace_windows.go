package dispatch

import (
	"fmt"

	"golang.org/x/sys/windows"
)

// FreeSpace returns the bytes available to this user (quotas included)
// and the size of the volume holding dir (GetDiskFreeSpaceEx).
func FreeSpace(dir string) (avail, size int64, err error) {
	p, err := windows.UTF16PtrFromString(dir)
	if err != nil {
		return 0, 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	var availBytes, totalBytes, freeBytes uint64
	if err := windows.GetDiskFreeSpaceEx(p, &availBytes, &totalBytes, &freeBytes); err != nil {
		return 0, 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return int64(availBytes), int64(totalBytes), nil
}
