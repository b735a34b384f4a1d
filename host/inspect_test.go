package host

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPrecheck(t *testing.T) {
	cases := []struct {
		name      string
		module    string
		max       Limits
		pages     uint32
		wantError []string
	}{
		{name: "every missing import at once", module: "missingimports",
			wantError: []string{"3 imports are not provided: env.now, env.random, wasmtask_v1.fetch;", "it provides input_len"}},
		{name: "memory minimum: says which manifest field raises it", module: "bigmemory", pages: 256,
			wantError: []string{"declares a minimum memory of 300 pages (19200 KiB), above the limit of 256 pages (16384 KiB)",
				"set limits.memory_pages to 300 or more in the plugin's manifest", "--memory-pages 300", "serve --max-memory-pages"}},
		{name: "memory minimum above the operator maximum: says which flag raises it", module: "bigmemory", pages: 512,
			max:       Limits{MemoryPages: 64},
			wantError: []string{"the operator's maximum is 64 pages: start the server with --max-memory-pages 300 or more"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cache := t.TempDir()
			h := newTestHost(t, Config{Max: tc.max, CacheDir: cache})
			wasm := readWasm(t, tc.module)
			_, err := h.Load(context.Background(), wasm, tc.pages)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			for _, s := range tc.wantError {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			// Rejected from its sections: no runtime, no compile, nothing cached.
			if entries, _ := os.ReadDir(cache); len(entries) != 0 {
				t.Errorf("cache dir holds %v after a rejection before compile", entries)
			}
			h.mu.Lock()
			n := len(h.runtimes)
			h.mu.Unlock()
			if n != 0 {
				t.Errorf("%d runtimes created for a module rejected before compile", n)
			}
		})
	}
}

// TestLargeCompileDoesNotBlock loads a generated 20 MB module (a compile of
// seconds) and, meanwhile, two small ones: they are ready while the large
// one still compiles.
func TestLargeCompileDoesNotBlock(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles a 20 MB module")
	}
	h := newTestHost(t, Config{CacheDir: t.TempDir(), CompileConcurrency: 1})
	big := largeModule()
	bigDone := make(chan error, 1)
	go func() {
		_, err := h.Load(context.Background(), big, 0)
		bigDone <- err
	}()
	// Wait until the big module holds the only compile slot.
	for deadline := time.Now().Add(time.Minute); len(h.compileSem) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the large module never started compiling")
		}
	}
	var wg sync.WaitGroup
	for _, name := range []string{"echo", "wasicmd"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := h.Load(context.Background(), readWasm(t, name), 0); err != nil {
				t.Errorf("Load %s: %v", name, err)
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-bigDone:
		t.Fatalf("the large module finished first (%v): the small ones may have waited for it", err)
	default:
	}
	if err := <-bigDone; err != nil {
		t.Fatalf("large module: %v", err)
	}
}

func TestPruneCache(t *testing.T) {
	dir := t.TempDir()
	a, b := readWasm(t, "echo"), readWasm(t, "wasicmd")
	h := newTestHost(t, Config{CacheDir: dir})
	mustLoad(t, h, a, 0)
	mustLoad(t, h, b, 0)
	legacy := filepath.Join(dir, "wazero-v1.12.0-amd64-linux")
	os.Mkdir(legacy, 0o755)
	os.Mkdir(filepath.Join(dir, fileHashesDir), 0o755) // LoadFile's: kept
	hexOf := func(w []byte) string { return strings.TrimPrefix(Hash(w), "sha256:") }
	for _, w := range [][]byte{a, b} {
		files, _ := filepath.Glob(filepath.Join(dir, hexOf(w), "*", "*"))
		if len(files) == 0 {
			t.Fatalf("no compiled code cached under %s", hexOf(w))
		}
	}
	// A loaded module is never pruned, whatever keep says.
	if removed, err := h.PruneCache(func(string) bool { return false }); err != nil || !slices.Equal(removed, []string{"wazero-v1.12.0-amd64-linux"}) {
		t.Fatalf("PruneCache with both loaded: removed %v, %v", removed, err)
	}
	// After a restart, only what keep names stays.
	h2 := newTestHost(t, Config{CacheDir: dir})
	removed, err := h2.PruneCache(func(hash string) bool { return hash == Hash(a) })
	if err != nil || !slices.Equal(removed, []string{hexOf(b)}) {
		t.Fatalf("PruneCache: removed %v, %v; want %s", removed, err, hexOf(b))
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 || entries[0].Name() != hexOf(a) || entries[1].Name() != fileHashesDir {
		t.Errorf("cache holds %v, want only %s and %s", entries, hexOf(a), fileHashesDir)
	}
}
