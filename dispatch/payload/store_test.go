package payload

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestPutGet(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"small", []byte("hello")},
		{"1MiB", bytes.Repeat([]byte{0xab}, 1<<20)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref, err := s.Put(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			if ref != Ref(tc.data) || !ValidRef(ref) {
				t.Fatalf("ref %q, want %q", ref, Ref(tc.data))
			}
			got, err := s.Get(ref, int64(len(tc.data)))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.data) {
				t.Fatalf("got %d bytes back, want %d", len(got), len(tc.data))
			}
			if err := s.Check(ref, int64(len(tc.data))); err != nil {
				t.Fatal(err)
			}
			s.Unpin(ref)
		})
	}
	if files, n := s.Usage(); files != 3 || n != 5+1<<20 {
		t.Fatalf("usage %d files %d bytes, want 3 and %d", files, n, 5+1<<20)
	}
}

func TestPutSameBytesTwice(t *testing.T) {
	s, _ := Open(t.TempDir())
	var wg sync.WaitGroup
	data := bytes.Repeat([]byte("x"), 10_000)
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Put(data)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if files, n := s.Usage(); files != 1 || n != 10_000 {
		t.Fatalf("usage %d files %d bytes, want 1 file of 10000", files, n)
	}
}

// TestDamagedFiles: a payload file cut short, altered or missing is a
// *DamagedError naming the file and saying what is wrong, never wrong bytes.
func TestDamagedFiles(t *testing.T) {
	data := bytes.Repeat([]byte("payload "), 1000)
	for _, tc := range []struct {
		name   string
		damage func(path string) error
		reason string // in the error
		check  bool   // Check (stat only) sees it too
	}{
		{"torn", func(p string) error { return os.Truncate(p, 100) }, "holds 100 bytes, the payload has 8000 (torn or truncated)", true},
		{"altered", func(p string) error {
			b, _ := os.ReadFile(p)
			b[10] ^= 0xff
			return os.WriteFile(p, b, 0o640)
		}, "do not match their hash", false},
		{"missing", os.Remove, "the file is missing", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := Open(t.TempDir())
			ref, err := s.Put(data)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.damage(s.Path(ref)); err != nil {
				t.Fatal(err)
			}
			_, err = s.Get(ref, int64(len(data)))
			var de *DamagedError
			if !errors.As(err, &de) {
				t.Fatalf("Get: %v, want a *DamagedError", err)
			}
			if msg := err.Error(); !strings.Contains(msg, s.Path(ref)) || !strings.Contains(msg, tc.reason) {
				t.Fatalf("error %q should name %s and say %q", msg, s.Path(ref), tc.reason)
			}
			if err := s.Check(ref, int64(len(data))); (err != nil) != tc.check {
				t.Fatalf("Check: %v, want an error: %v", err, tc.check)
			}
			// Putting the bytes again repairs the file.
			if _, err := s.Put(data); err != nil {
				t.Fatal(err)
			}
			if got, err := s.Get(ref, int64(len(data))); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("after a new Put: %v", err)
			}
		})
	}
}

func TestOpenRemovesTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir)
	ref, _ := s.Put([]byte("kept"))
	tmp := s.Path(ref) + ".tmp-0011223344556677"
	if err := os.WriteFile(tmp, []byte("half writ"), 0o640); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left: %v", err)
	}
	if files, _ := s2.Usage(); files != 1 {
		t.Fatalf("%d files after reopening, want 1", files)
	}
	if b, err := s2.Get(ref, 4); err != nil || string(b) != "kept" {
		t.Fatalf("Get after reopen: %q %v", b, err)
	}
}

// TestSweep: a sweep keeps live payloads, payloads pinned when it began and
// payloads put while it ran; it removes the rest.
func TestSweep(t *testing.T) {
	s, _ := Open(t.TempDir())
	put := func(v string) string {
		ref, err := s.Put([]byte(v))
		if err != nil {
			t.Fatal(err)
		}
		return ref
	}
	live, dead, pinned := put("live"), put("dead"), put("pinned")
	s.Unpin(live)
	s.Unpin(dead)
	// pinned stays pinned through BeginSweep, then is unpinned before Sweep:
	// it was on its way into the state when the state was captured.
	s.BeginSweep()
	s.Unpin(pinned)
	during := put("during")
	s.Unpin(during)
	files, freed, err := s.Sweep(func(ref string) bool { return ref == live })
	if err != nil {
		t.Fatal(err)
	}
	if files != 1 || freed != 4 {
		t.Fatalf("swept %d files, %d bytes; want only %q (1 file, 4 bytes)", files, freed, "dead")
	}
	for ref, want := range map[string]bool{live: true, dead: false, pinned: true, during: true} {
		if _, err := os.Stat(s.Path(ref)); (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", ref, err == nil, want)
		}
	}
	// The next sweep no longer protects what was unpinned.
	s.BeginSweep()
	if files, _, _ := s.Sweep(func(ref string) bool { return ref == live }); files != 2 {
		t.Fatalf("second sweep removed %d files, want 2 (pinned, during)", files)
	}
	if n, _ := s.Usage(); n != 1 {
		t.Fatalf("%d files left, want 1", n)
	}
}

func TestValidRef(t *testing.T) {
	for ref, want := range map[string]bool{
		Ref([]byte("x")):                       true,
		"sha256:" + strings.Repeat("A", 64):    false,
		"sha256:abc":                           false,
		"md5:" + strings.Repeat("a", 64):       false,
		"sha256:" + strings.Repeat("a", 64):    true,
		"sha256:../" + strings.Repeat("a", 61): false,
	} {
		if got := ValidRef(ref); got != want {
			t.Errorf("ValidRef(%q) = %v, want %v", ref, got, want)
		}
	}
	if filepath.Base(filepath.Dir((&Store{dir: "/d"}).Path(Ref(nil)))) != Ref(nil)[7:9] {
		t.Error("a payload's file is not in the directory of its first two hex digits")
	}
}

func TestBudget(t *testing.T) {
	b := NewBudget(100)
	if _, ok := b.TryAcquire(150); !ok {
		t.Fatal("a request larger than the budget is refused while nothing is held")
	}
	if used, ok := b.TryAcquire(1); ok || used != 150 {
		t.Fatalf("TryAcquire(1) with 150 of 100 held: ok=%v used=%d", ok, used)
	}
	b.Release(150)
	if _, ok := b.TryAcquire(60); !ok {
		t.Fatal("60 of 100 refused")
	}
	if _, ok := b.TryAcquire(41); ok {
		t.Fatal("60+41 > 100 accepted")
	}
	b.Acquire(41) // held already: taken past the limit
	if b.Used() != 101 || b.Peak() != 150 {
		t.Fatalf("used %d peak %d, want 101 and 150", b.Used(), b.Peak())
	}
}

func TestBudgetOnFreed(t *testing.T) {
	b := NewBudget(100)
	calls := 0
	b.OnFreed(25, func() { calls++ })
	for range 10 {
		b.Acquire(10)
		b.Release(10)
	}
	if calls != 3 { // after 30, 60 and 90 bytes freed
		t.Fatalf("OnFreed ran %d times for 100 bytes freed every 25, want 3", calls)
	}
}

// TestPutMany stores a batch on real files: every payload readable, one
// fsync per new file and one per directory touched (not two per payload),
// a payload stored already and a repeated one counted once; a payload
// whose directory cannot be made fails alone, unpinned.
func TestPutMany(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Payloads whose references start with distinct 2-hex directories
	// but one pair that shares a directory.
	var batch [][]byte
	seen := map[string]bool{}
	var shared []byte
	for i := 0; len(batch) < 40; i++ {
		b := bytes.Repeat([]byte{byte(i), byte(i >> 8)}, 10<<10)
		dir := Ref(b)[len(RefPrefix):][:2]
		if seen[dir] {
			if shared == nil {
				shared = b
				batch = append(batch, b)
			}
			continue
		}
		seen[dir] = true
		batch = append(batch, b)
	}
	stored := batch[1]
	if _, err := s.Put(stored); err != nil {
		t.Fatal(err)
	}
	s.Unpin(Ref(stored))
	blocked := batch[2] // a file where its directory should be
	if err := os.WriteFile(filepath.Join(s.Dir(), Ref(blocked)[len(RefPrefix):][:2]), nil, 0o640); err != nil {
		t.Fatal(err)
	}
	batch = append(batch, batch[0]) // the same bytes twice in one batch

	syncs := s.Syncs()
	refs, errs := s.PutMany(batch)
	newFiles := len(batch) - 3 // not the stored one, the blocked one, the repeat
	dirs := len(seen) - 1      // not the blocked one's
	if got := s.Syncs() - syncs; got < int64(newFiles+dirs) || got > int64(newFiles+1+dirs) {
		// The repeat may find its twin's file in place (no write) or not.
		t.Errorf("%d fsyncs for %d new files in %d directories, want %d (one per file and one per directory)", got, newFiles, dirs, newFiles+dirs)
	}
	for i, b := range batch {
		if i == 2 {
			if errs[i] == nil || refs[i] != "" {
				t.Errorf("the payload whose directory is a file: ref %q, err %v; want an error", refs[i], errs[i])
			}
			continue
		}
		if errs[i] != nil || refs[i] != Ref(b) {
			t.Fatalf("payload %d: ref %q, err %v", i, refs[i], errs[i])
		}
		if got, err := s.Get(refs[i], int64(len(b))); err != nil || !bytes.Equal(got, b) {
			t.Fatalf("Get payload %d: %v", i, err)
		}
	}
	if files, _ := s.Usage(); files != int64(newFiles+1) {
		t.Errorf("Usage: %d files, want %d", files, newFiles+1)
	}
	s.mu.Lock()
	_, pinned := s.pins[Ref(blocked)]
	twice := s.pins[Ref(batch[0])]
	s.mu.Unlock()
	if pinned || twice != 2 {
		t.Errorf("pins: the failed payload pinned %v (want false), the repeated one %d times (want 2)", pinned, twice)
	}
	// What the batch stored is pinned: a sweep that finds nothing live
	// removes none of it.
	s.BeginSweep()
	if n, _, err := s.Sweep(func(string) bool { return false }); err != nil || n != 0 {
		t.Errorf("sweep removed %d files (%v), want 0: the batch pinned them all", n, err)
	}
}

// BenchmarkPutBatch stores batches of 64 payloads of 20 KiB (fsync on, in
// the OS temp dir; BENCHDIR elsewhere): one Put after another, as a batch
// submit did, against PutMany.
func BenchmarkPutBatch(b *testing.B) {
	for _, mode := range []string{"one-by-one", "PutMany"} {
		b.Run(mode, func(b *testing.B) {
			s, err := Open(filepath.Join(benchDir(b), "payloads"))
			if err != nil {
				b.Fatal(err)
			}
			batch := make([][]byte, 64)
			for i := 0; i < b.N; i++ {
				for k := range batch {
					batch[k] = bytes.Repeat([]byte(fmt.Sprintf("%d/%d/%s ", i, k, mode)), 2<<10)[:20<<10]
				}
				if mode == "PutMany" {
					if _, errs := s.PutMany(batch); errors.Join(errs...) != nil {
						b.Fatal(errors.Join(errs...))
					}
					continue
				}
				for _, p := range batch {
					if _, err := s.Put(p); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "payloads/s")
		})
	}
}

// benchDir is BENCHDIR or a new temporary directory.
func benchDir(b *testing.B) string {
	if d := os.Getenv("BENCHDIR"); d != "" {
		dir, err := os.MkdirTemp(d, "payload-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return b.TempDir()
}
