package segwal

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
)

// smallDisk stands in a filesystem with free bytes left: writes that grow
// a file past them write what fits and fail with ENOSPC, as a full disk's
// do. Overwrites of bytes a file already has cost nothing.
type smallDisk struct {
	mu    sync.Mutex
	free  int64
	sizes map[*preallocFile]int64
}

func (d *smallDisk) setFree(n int64) {
	d.mu.Lock()
	d.free = n
	d.mu.Unlock()
}

// open opens a preallocated segment whose writes go through the disk.
func (d *smallDisk) open(path string) (appendFile, error) {
	af, err := openPrealloc(path)
	if err != nil {
		return nil, err
	}
	p := af.(*preallocFile)
	d.mu.Lock()
	if d.sizes == nil {
		d.sizes = map[*preallocFile]int64{}
	}
	d.sizes[p] = p.filled
	d.mu.Unlock()
	write := p.writeAt
	p.writeAt = func(b []byte, off int64) (int, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		want := b
		if grow := off + int64(len(b)) - d.sizes[p]; grow > d.free {
			want = b[:max(0, int64(len(b))-(grow-d.free))]
		}
		n, err := write(want, off)
		if end := off + int64(n); end > d.sizes[p] {
			d.free -= end - d.sizes[p]
			d.sizes[p] = end
		}
		if err == nil && len(want) < len(b) {
			err = &os.PathError{Op: "write", Path: path, Err: syscall.ENOSPC}
		}
		return n, err
	}
	return p, nil
}

// TestNoSpacePreallocated: on a disk that fills up, a preallocated log
// keeps taking Appends into its headroom while NoSpace says the disk is
// full, refuses the Append that no longer fits without poisoning itself,
// and once space is freed, Reserve succeeds and Appends go on. Every
// acknowledged record is there after a reopen, nothing else.
func TestNoSpacePreallocated(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// Room for the first chunk and half the second: the fill ahead of the
	// data fails once the data is within preallocReserve of the first
	// chunk's end.
	disk := &smallDisk{free: preallocChunk + preallocChunk/2}
	opts := Options{Preallocate: true, Compression: CompressNone, openFile: disk.open}
	l := mustOpen(t, dir, opts)
	rng := newRand(3)
	const recSize = 64 << 10
	var want []record
	var softAppends int
	hard := false
	for i := 0; i < 200 && !hard; i++ {
		rec := randomBytes(rng, recSize)
		last, err := l.Append(rec)
		switch {
		case err == nil:
			want = append(want, record{seq: last, data: rec})
			if l.NoSpace() != nil {
				softAppends++
			}
		case errors.Is(err, syscall.ENOSPC):
			hard = true
			if ns := l.NoSpace(); !errors.Is(ns, syscall.ENOSPC) {
				t.Fatalf("NoSpace after a refused Append = %v, want the ENOSPC", ns)
			}
			if got := l.Last(); got != uint64(len(want)) {
				t.Fatalf("Last = %d after the refused Append, want %d", got, len(want))
			}
			if err := l.Reserve(); !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Reserve on a full disk = %v, want ENOSPC", err)
			}
			// Still full: the same Append is refused again, the log still usable.
			if _, err := l.Append(rec); !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("second Append on a full disk = %v, want ENOSPC", err)
			}
		default:
			t.Fatalf("Append %d: %v", i+1, err)
		}
	}
	if !hard {
		t.Fatal("200 Appends of 64 KiB never filled a 6 MiB disk")
	}
	// The headroom held frames after the fill ahead failed: the writer was
	// warned before any Append was refused.
	if minSoft := preallocReserve/(recSize+64) - 1; softAppends < minSoft {
		t.Fatalf("%d Appends went into the headroom while NoSpace was set, want at least %d", softAppends, minSoft)
	}
	disk.setFree(64 << 20)
	if err := l.Reserve(); err != nil {
		t.Fatalf("Reserve after space was freed: %v", err)
	}
	more := [][]byte{randomBytes(rng, recSize), []byte("after the disk was freed")}
	last := mustAppend(t, l, more...)
	want = append(want, recordsFrom(last-1, more)...)
	if ns := l.NoSpace(); ns != nil {
		t.Fatalf("NoSpace after space came back and an Append succeeded: %v", ns)
	}
	checkReplay(t, l, 1, want)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := mustOpen(t, dir, Options{})
	if torn := l2.Recovery().TornTail; torn != nil {
		t.Errorf("TornTail after a clean Close: %+v", torn)
	}
	checkReplay(t, l2, 1, want)
}

// TestNoSpaceAppendFile: without preallocation, a write that runs out of
// space halfway is cut back, so the retried Append leaves no torn frame.
func TestNoSpaceAppendFile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		errno syscall.Errno
	}{{"ENOSPC", syscall.ENOSPC}, {"EDQUOT", syscall.EDQUOT}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			fs := &faultFS{faultPlan: faultPlan{failWriteAt: 3, shortWrite: true, errno: tc.errno}}
			l := mustOpen(t, dir, Options{Compression: CompressNone, openFile: fs.open})
			in := batches(newRand(5), 5, 3, 300, randomBytes)
			var want []record
			for i, b := range in {
				last, err := l.Append(b...)
				if i == 2 {
					if !errors.Is(err, tc.errno) || l.NoSpace() == nil {
						t.Fatalf("Append 3: %v (NoSpace %v), want %v", err, l.NoSpace(), tc.errno)
					}
					last, err = l.Append(b...) // space is back
				}
				if err != nil {
					t.Fatalf("Append %d: %v", i+1, err)
				}
				want = append(want, recordsFrom(last-uint64(len(b))+1, b)...)
			}
			if l.NoSpace() != nil {
				t.Fatalf("NoSpace after a successful Append: %v", l.NoSpace())
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l2 := mustOpen(t, dir, Options{})
			if torn := l2.Recovery().TornTail; torn != nil {
				t.Errorf("TornTail = %+v: the half-written frame was not cut", torn)
			}
			checkReplay(t, l2, 1, want)
		})
	}
}

// TestNoSpaceRotation: when the next segment cannot be created, the frame
// goes into the active segment past SegmentSize and NoSpace says why;
// Reserve rotates once space is back.
func TestNoSpaceRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var mu sync.Mutex
	full := false
	prepare := func(dir string, first uint64) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if full {
			return "", fmt.Errorf("create segment: %w", &os.PathError{Op: "open", Path: dir, Err: syscall.ENOSPC})
		}
		return prepareSegment(dir, first)
	}
	setFull := func(v bool) { mu.Lock(); full = v; mu.Unlock() }
	l := mustOpen(t, dir, Options{SegmentSize: 700, Compression: CompressNone, prepare: prepare})
	in := batches(newRand(9), 8, 2, 90, randomBytes)
	var want []record
	for i, b := range in {
		if i == 4 { // SegmentSize 700 holds 3 frames: Append 4 rotated, Append 7 will
			setFull(true)
		}
		last := mustAppend(t, l, b...)
		want = append(want, recordsFrom(last-uint64(len(b))+1, b)...)
		if i >= 6 && !errors.Is(l.NoSpace(), syscall.ENOSPC) {
			t.Fatalf("Append %d without room for a segment: NoSpace = %v", i+1, l.NoSpace())
		}
	}
	if got := l.Stats().Rotations; got != 1 {
		t.Fatalf("%d rotations, want 1 (the one before the disk filled)", got)
	}
	if err := l.Reserve(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Reserve while full = %v, want ENOSPC", err)
	}
	setFull(false)
	if err := l.Reserve(); err != nil {
		t.Fatalf("Reserve after space came back: %v", err)
	}
	if l.NoSpace() != nil || l.Stats().Rotations != 2 {
		t.Fatalf("after Reserve: NoSpace %v, %d rotations, want nil and 2", l.NoSpace(), l.Stats().Rotations)
	}
	last := mustAppend(t, l, []byte("in the new segment"))
	want = append(want, record{seq: last, data: []byte("in the new segment")})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	checkReplay(t, mustOpen(t, dir, Options{}), 1, want)
}

// TestNoSpaceLessThanAChunk: on a disk with less room than one
// preallocation chunk, frames still go in while they fit (NoSpace set from
// the first), and the first that does not fit is refused, not torn.
func TestNoSpaceLessThanAChunk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	disk := &smallDisk{free: 300 << 10}
	l := mustOpen(t, dir, Options{Preallocate: true, Compression: CompressNone, openFile: disk.open})
	rng := newRand(11)
	var want []record
	for i := 0; ; i++ {
		rec := randomBytes(rng, 64<<10)
		last, err := l.Append(rec)
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Append %d: %v", i+1, err)
			}
			if i < 3 {
				t.Fatalf("Append %d refused with %d KiB free", i+1, 300)
			}
			break
		}
		want = append(want, record{seq: last, data: rec})
		if l.NoSpace() == nil {
			t.Fatalf("Append %d: NoSpace nil on a disk without room for a chunk", i+1)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := mustOpen(t, dir, Options{})
	checkReplay(t, l2, 1, want)
}
