//go:build linux

package host

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func loadFile(t *testing.T, h *Host, path string) *Module {
	t.Helper()
	m, err := h.LoadFile(context.Background(), path, Limits{})
	if err != nil {
		t.Fatalf("LoadFile: %v", err)
	}
	res := h.Run(context.Background(), m, Attempt{Limits: DefaultLimits()})
	if res.Outcome != "ok" || string(res.Output) != "big\n" {
		t.Fatalf("run: %s %q %s", res.Outcome, res.Output, res.Error)
	}
	return m
}

// rememberedHash returns the hash LoadFile remembered for path, or "".
func rememberedHash(t *testing.T, h *Host, path string) string {
	t.Helper()
	b, err := os.ReadFile(h.hashFile(path))
	if os.IsNotExist(err) {
		return ""
	}
	var e hashedFile
	if err != nil || json.Unmarshal(b, &e) != nil {
		t.Fatalf("remembered hash of %s: %v %s", path, err, b)
	}
	return e.Hash
}

// TestLoadFileRemembersHash: LoadFile loads a module file (mapped when
// large, read when small), remembers its hash by the file's identity and
// uses it while the file is unchanged; a changed file, even of the same
// size and mtime, is hashed again; a file changed within racyAge is not
// remembered.
func TestLoadFileRemembersHash(t *testing.T) {
	for _, size := range []int{64 << 10, 2 << 20} {
		t.Run(map[bool]string{true: "mapped", false: "read"}[size >= bigModuleBytes], func(t *testing.T) {
			old := racyAge
			t.Cleanup(func() { racyAge = old })
			cache := t.TempDir()
			path := filepath.Join(t.TempDir(), "big.wasm")
			a, b := commandModule(size, 'a'), commandModule(size, 'b')
			if err := os.WriteFile(path, a, 0o644); err != nil {
				t.Fatal(err)
			}

			racyAge = time.Hour // everything is too recent
			if m := loadFile(t, newTestHost(t, Config{CacheDir: cache}), path); m.Hash != Hash(a) {
				t.Fatalf("hash %s, want %s", m.Hash, Hash(a))
			}
			if got := rememberedHash(t, newTestHost(t, Config{CacheDir: cache}), path); got != "" {
				t.Fatalf("a file changed within racyAge was remembered: %s", got)
			}

			racyAge = 0
			h := newTestHost(t, Config{CacheDir: cache})
			loadFile(t, h, path)
			if got := rememberedHash(t, h, path); got != Hash(a) {
				t.Fatalf("remembered %q, want %s", got, Hash(a))
			}
			// The remembered hash is what a second load uses: a forged
			// one shows through while the file's identity is unchanged.
			forged := "sha256:" + strings.Repeat("0", 64)
			abs, _ := filepath.Abs(path)
			e := readHashed(t, h.hashFile(abs))
			e.Hash = forged
			writeHashed(t, h.hashFile(abs), e)
			if m := loadFile(t, newTestHost(t, Config{CacheDir: cache}), path); m.Hash != forged {
				t.Fatalf("second load hashed again (%s): the remembered hash was not used", m.Hash)
			}

			// Same size, same mtime, other bytes: the ctime differs.
			fi, _ := os.Stat(path)
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			os.Chtimes(path, fi.ModTime(), fi.ModTime())
			h = newTestHost(t, Config{CacheDir: cache})
			if m := loadFile(t, h, path); m.Hash != Hash(b) {
				t.Fatalf("changed file: hash %s, want %s (a stale entry was used)", m.Hash, Hash(b))
			}
			if got := rememberedHash(t, h, path); got != Hash(b) {
				t.Fatalf("changed file: remembered %q, want %s", got, Hash(b))
			}
		})
	}
}

func readHashed(t *testing.T, file string) hashedFile {
	t.Helper()
	b, err := os.ReadFile(file)
	var e hashedFile
	if err != nil || json.Unmarshal(b, &e) != nil {
		t.Fatalf("read %s: %v", file, err)
	}
	return e
}

func writeHashed(t *testing.T, file string, e hashedFile) {
	t.Helper()
	b, _ := json.Marshal(e)
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoadFileLease: a large module file is mapped under a read lease:
// while it is held, an open for writing waits (here: fails, being
// non-blocking); after the load it succeeds. A file open for writing
// elsewhere cannot be leased and is read instead.
func TestLoadFileLease(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.wasm")
	wasm := commandModule(2<<20, 'a')
	if err := os.WriteFile(path, wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, release := mapModule(f, int64(len(wasm)))
	if b == nil {
		t.Skip("no read lease on this file system")
	}
	if string(b) != string(wasm) {
		t.Fatal("the mapping differs from the file")
	}
	_, err = unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK, 0)
	if err != unix.EWOULDBLOCK {
		t.Fatalf("open for writing under the lease: %v, want EWOULDBLOCK", err)
	}
	release()
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("open for writing after the release: %v", err)
	}
	defer w.Close()

	// w is open for writing: no lease, the file is read.
	if b, _ := mapModule(f, int64(len(wasm))); b != nil {
		t.Fatal("mapped a file open for writing")
	}
	h := newTestHost(t, Config{})
	if m := loadFile(t, h, path); m.Hash != Hash(wasm) {
		t.Fatalf("read fallback: hash %s, want %s", m.Hash, Hash(wasm))
	}
}

// TestLoadFileErrors: what cannot be read is an *os.PathError naming the
// file, once.
func TestLoadFileErrors(t *testing.T) {
	dir := t.TempDir()
	h := newTestHost(t, Config{})
	for _, tc := range []struct{ name, path, want string }{
		{"missing", filepath.Join(dir, "none.wasm"), "open " + filepath.Join(dir, "none.wasm") + ": no such file or directory"},
		{"a directory", dir, "read " + dir + ": not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.LoadFile(context.Background(), tc.path, Limits{})
			var pe *os.PathError
			if !errors.As(err, &pe) || err.Error() != tc.want {
				t.Fatalf("LoadFile: %v (%T), want the *os.PathError %q", err, err, tc.want)
			}
		})
	}
}
