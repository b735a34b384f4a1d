// Package tmpfstest gives tests a real, small filesystem to fill: a tmpfs
// mounted for the test (root only) and a file that takes its last byte.
// Disk-full claims are tested on real files, not on fakes (host and e2e).
package tmpfstest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of the given size (e.g. "64m") on dir, which must
// exist, and unmounts it when the test ends (after whatever the test
// started later is stopped: cleanups run last-in first-out). It skips the
// test unless the process may mount; how says what to run instead (e.g.
// "sudo -E go test ./e2e -run TestDiskFull").
func Mount(t testing.TB, dir, size, how string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("this test fills a small tmpfs, and mounting one needs root: run it as root (%s)", how)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs on %s (%v: %s): this test needs one", dir, err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
			exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

// Fill writes a file in dir until its filesystem is full, down to the
// last byte that fits, and returns the file's path; removing it frees the
// space.
func Fill(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for size := len(chunk); size > 0; size /= 2 {
		for {
			if _, err := f.Write(chunk[:size]); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("fill %s: %v", path, err)
				}
				break
			}
		}
	}
	return path
}
