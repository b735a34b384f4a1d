package segwal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyWithDurable copies the segments and the DURABLE file of src, as a
// crash would leave them on disk.
func copyWithDurable(t testing.TB, src string) string {
	t.Helper()
	dst := copyDir(t, src)
	b, err := os.ReadFile(filepath.Join(src, durableName))
	if err != nil {
		t.Fatalf("no durable point written: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dst, durableName), b, 0o640); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestTruncationBelowDurablePoint cuts real segment files below the last
// fsynced record: Open refuses (ErrBelowDurable, naming the file, changing
// nothing) where it used to cut a "torn tail", Verify reports damage, and
// Repair keeps the longest valid prefix and rewrites the durable point so
// that the repaired log opens again.
func TestTruncationBelowDurablePoint(t *testing.T) {
	t.Parallel()
	rng := newRand(18)
	tmpl := t.TempDir()
	// 8 frames of 4 records, SyncAlways: each Append is fsynced and recorded.
	fx := writeLog(t, tmpl, Options{SegmentSize: 1200, Compression: CompressNone}, batches(rng, 8, 4, 40, randomBytes))
	if len(fx.segs) < 2 {
		t.Fatalf("want several segments, got %v", fx.segs)
	}
	lastSeg := fx.segs[len(fx.segs)-1]
	lastFrames := fx.framesIn(lastSeg)
	lastFrame := lastFrames[len(lastFrames)-1]
	tests := []struct {
		name    string
		damage  func(dir string)
		seg     string // the segment the error names
		off     int64
		keepTo  uint64 // Repair keeps records < keepTo
		missing string // the error also names this file
	}{
		{name: "last segment cut to half", damage: func(dir string) {
			editFile(t, filepath.Join(dir, lastSeg), truncateTo(lastFrame.end()/2))
		}, seg: lastSeg, off: frameStartBefore(lastFrames, lastFrame.end()/2), keepTo: firstAfter(lastFrames, lastFrame.end()/2)},
		{name: "last frame cut in the middle", damage: func(dir string) {
			editFile(t, filepath.Join(dir, lastSeg), truncateTo(lastFrame.off+10))
		}, seg: lastSeg, off: lastFrame.off, keepTo: lastFrame.first},
		{name: "last frame cut whole (a clean frame boundary)", damage: func(dir string) {
			editFile(t, filepath.Join(dir, lastSeg), truncateTo(lastFrame.off))
		}, seg: lastSeg, off: lastFrame.off, keepTo: lastFrame.first},
		{name: "newest segment deleted", damage: func(dir string) {
			os.Remove(filepath.Join(dir, lastSeg))
		}, seg: fx.segs[len(fx.segs)-2], off: -1, keepTo: lastFrames[0].first, missing: lastSeg},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyWithDurable(t, tmpl)
			tc.damage(dir)
			seg := filepath.Join(dir, tc.seg)
			off := tc.off
			if off < 0 {
				off = segSizes(t, dir)[tc.seg]
			}
			checkOpenFails(t, dir, Options{}, seg, off, ErrBelowDurable)
			_, err := Open(dir, testOptions(t, Options{}))
			if tc.missing != "" && !strings.Contains(err.Error(), filepath.Join(dir, tc.missing)+", which is missing") {
				t.Errorf("Open: %v; want it to name the missing %s", err, tc.missing)
			}
			rep, err := Verify(dir)
			if err != nil {
				t.Fatal(err)
			}
			if rep.TornTail != nil || !errors.Is(rep.Damage, ErrBelowDurable) || rep.Durable != uint64(len(fx.want)) {
				t.Errorf("Verify: torn %+v, damage %v, durable %d; want damage below the durable point %d", rep.TornTail, rep.Damage, rep.Durable, len(fx.want))
			}
			l := mustOpen(t, dir, Options{Repair: true})
			if l.Last() != tc.keepTo-1 || len(l.Recovery().Removed) == 0 {
				t.Errorf("Repair kept 1..%d (removed %+v), want 1..%d", l.Last(), l.Recovery().Removed, tc.keepTo-1)
			}
			checkReplay(t, l, 0, upTo(fx.want, tc.keepTo))
			mustAppend(t, l, []byte("after repair"))
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = mustOpen(t, dir, Options{})
			if rec := l.Recovery(); rec.TornTail != nil || rec.Removed != nil || l.Last() != tc.keepTo || rec.Durable != tc.keepTo {
				t.Errorf("reopen after repair: %+v, last %d; want a clean log up to %d", rec, l.Last(), tc.keepTo)
			}
			l.Close()
		})
	}
}

// frameStartBefore returns the offset of the frame that contains off.
func frameStartBefore(frames []frameInfo, off int64) int64 {
	for _, f := range frames {
		if off < f.end() {
			return f.off
		}
	}
	return off
}

// firstAfter returns the first sequence of the frame that contains off.
func firstAfter(frames []frameInfo, off int64) uint64 {
	for _, f := range frames {
		if off < f.end() {
			return f.first
		}
	}
	return 0
}

// TestTornTailAboveDurablePoint: frames appended after the last Commit
// (SyncNone, as the engine writes) are in the page cache but not durable;
// a crash may tear them, and Open still cuts that tail, reporting the
// durable point. A cut below the committed records is refused.
func TestTornTailAboveDurablePoint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{Sync: SyncNone, Compression: CompressNone})
	committed := [][]byte{bytes.Repeat([]byte("c"), 100), bytes.Repeat([]byte("d"), 100)}
	mustAppend(t, l, committed[0])
	mustAppend(t, l, committed[1])
	if n, err := l.Commit(); err != nil || n != 2 {
		t.Fatalf("Commit: %d, %v", n, err)
	}
	mustAppend(t, l, bytes.Repeat([]byte("u"), 100)) // appended, never committed
	frames, _ := scanFrames(t, dir)
	unsynced := frames[2]
	// The disk after a crash in the middle of the unsynced write.
	crashed := copyWithDurable(t, dir)
	l.Close()
	seg := filepath.Join(crashed, unsynced.seg)
	editFile(t, seg, truncateTo(unsynced.off+unsynced.size/2))
	rep, err := Verify(crashed)
	if err != nil {
		t.Fatal(err)
	}
	if rep.TornTail == nil || rep.Damage != nil || rep.Durable != 2 {
		t.Fatalf("Verify: torn %+v, damage %v, durable %d; want a torn tail above record 2", rep.TornTail, rep.Damage, rep.Durable)
	}
	l2 := mustOpen(t, crashed, Options{})
	rec := l2.Recovery()
	if rec.TornTail == nil || rec.TornTail.Offset != unsynced.off || rec.Durable != 2 || l2.Last() != 2 {
		t.Errorf("Open: torn %+v, durable %d, last %d; want the unsynced frame cut at %d, records 1..2", rec.TornTail, rec.Durable, l2.Last(), unsynced.off)
	}
	checkReplay(t, l2, 0, recordsFrom(1, committed))
	l2.Close()

	// The same crash, but the committed frame is cut too: damage.
	crashed = copyWithDurable(t, dir)
	editFile(t, filepath.Join(crashed, unsynced.seg), truncateTo(frames[1].off+5))
	checkOpenFails(t, crashed, Options{}, filepath.Join(crashed, unsynced.seg), frames[1].off, ErrBelowDurable)
}

// TestDurablePointDamaged: a DURABLE file that fails its checksum is
// ignored (the check is off, logged), and the next fsync rewrites it.
func TestDurablePointDamaged(t *testing.T) {
	t.Parallel()
	rng := newRand(19)
	tmpl := t.TempDir()
	fx := writeLog(t, tmpl, Options{Compression: CompressNone}, batches(rng, 3, 2, 30, randomBytes))
	dir := copyWithDurable(t, tmpl)
	editFile(t, filepath.Join(dir, durableName), flipBits(9, 1))
	last := fx.frames[len(fx.frames)-1]
	editFile(t, filepath.Join(dir, last.seg), truncateTo(last.off+3))
	l := mustOpen(t, dir, Options{})
	if rec := l.Recovery(); rec.TornTail == nil || rec.Durable != 0 {
		t.Errorf("with a damaged DURABLE: torn %+v, durable %d; want the tail cut as before", rec.TornTail, rec.Durable)
	}
	mustAppend(t, l, []byte("x"))
	l.Close()
	if dp, err := readDurable(dir); err != nil || dp.seq != last.first {
		t.Errorf("DURABLE after the next fsync: %+v, %v; want record %d", dp, err, last.first)
	}
}
