package payload

import (
	"bytes"
	"errors"
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
