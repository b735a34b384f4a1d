//go:build linux

package host

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/internal/tmpfstest"
)

// TestLoadOnFullDisk: the compile cache is an optimisation, so a module
// compiles and runs while the cache's disk (a real, full tmpfs) cannot
// take its compiled code; nothing half-written is left in the cache; once
// space is back, the next Host writes the cache as usual.
func TestLoadOnFullDisk(t *testing.T) {
	mnt := mountTmpfs(t, "1m")
	cache := filepath.Join(mnt, "cache")
	h := newTestHost(t, Config{CacheDir: cache})
	filler := tmpfstest.Fill(t, mnt)
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
// the test ends; it skips the test unless the process may mount (root).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	return tmpfstest.Mount(t, t.TempDir(), size, "sudo -E go test ./host -run TestLoadOnFullDisk")
}
