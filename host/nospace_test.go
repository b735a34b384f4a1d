//go:build linux

package host

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/wasmtask/wasmtask/dispatch"
)

// TestLoadOnFullDisk: the compile cache is an optimisation, so a module
// compiles and runs while the cache's disk (a real, full tmpfs) cannot
// take its compiled code; nothing half-written is left in the cache; once
// space is back, the next Host writes the cache as usual.
func TestLoadOnFullDisk(t *testing.T) {
	mnt := mountTmpfs(t, "1m")
	cache := filepath.Join(mnt, "cache")
	h := newTestHost(t, Config{CacheDir: cache})
	filler := fillDisk(t, mnt)
	ctx := context.Background()

	m, err := h.Load(ctx, readWasm(t, "echo"), 0)
	if err != nil {
		t.Fatalf("Load with the cache's disk full: %v, want the module compiled without the cache", err)
	}
	res := h.Run(ctx, m, Attempt{Input: []byte("full disk"), Limits: DefaultLimits()})
	if res.Outcome != dispatch.OutcomeOK || string(res.Output) != "FULL DISK" {
		t.Fatalf("attempt: %s %q %s, want ok \"FULL DISK\"", res.Outcome, res.Output, res.Error)
	}
	if files := cacheFiles(t, cache); len(files) != 0 {
		t.Fatalf("files left in the cache on a full disk: %v", files)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	h2 := newTestHost(t, Config{CacheDir: cache})
	mustLoad(t, h2, readWasm(t, "echo"), 0)
	if files := cacheFiles(t, cache); len(files) != 1 || !strings.HasPrefix(files[0], strings.TrimPrefix(m.Hash, "sha256:")+"/") {
		t.Fatalf("cache with space back: %v, want the compiled code of %s", files, m.Hash)
	}
}

// cacheFiles lists the regular files under dir (slash-separated, relative).
func cacheFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// mountTmpfs mounts a tmpfs of size (e.g. "1m") on a new directory until
// the test ends (after the hosts it made closed), or skips the test
// unless the process may mount one (root).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("this test fills a small tmpfs, and mounting one needs root: run it as root (sudo -E go test ./host -run TestLoadOnFullDisk)")
	}
	dir := t.TempDir()
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

// fillDisk writes a file in dir until its filesystem is full and returns
// the file's path; removing it frees the space.
func fillDisk(t *testing.T, dir string) string {
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
