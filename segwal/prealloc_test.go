package segwal

import (
	"os"
	"testing"
)

// segmentSizes returns the size of each segment file in dir, oldest first.
func segmentSizes(t *testing.T, dir string) []int64 {
	t.Helper()
	segs, _, err := listDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int64
	for _, s := range segs {
		fi, err := os.Stat(s.path)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, fi.Size())
	}
	return sizes
}

// TestPreallocate: with Options.Preallocate the active segment runs ahead
// in zeros, sealed segments end at their last frame, a clean Close leaves
// no zeros, and a crash (the files copied while the log is open) leaves a
// zero tail that Open cuts and reports, keeping every record.
func TestPreallocate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		crash bool
		opts  Options
	}{
		{"clean close", false, Options{Preallocate: true}},
		{"crash", true, Options{Preallocate: true}},
		{"clean close, rotations", false, Options{Preallocate: true, SegmentSize: 12 << 10}},
		{"crash, rotations", true, Options{Preallocate: true, SegmentSize: 12 << 10, Sync: SyncNone}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			l := mustOpen(t, dir, tc.opts)
			in := batches(newRand(7), 60, 8, 200, halfBytes)
			var want []record
			for _, b := range in {
				last := mustAppend(t, l, b...)
				want = append(want, recordsFrom(last-uint64(len(b))+1, b)...)
			}
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			// While open: the newest segment holds zeros beyond its data,
			// every older one ends exactly at its data.
			st := l.Stats()
			sizes := segmentSizes(t, dir)
			l.mu.Lock()
			data := l.segs[len(l.segs)-1].size
			l.mu.Unlock()
			if got, want := sizes[len(sizes)-1], segmentHeaderSize+(data-segmentHeaderSize+preallocReserve+preallocChunk-1)/preallocChunk*preallocChunk; got != want {
				t.Errorf("active segment is %d bytes for %d of data, want %d: zeros in %d-byte chunks at least %d bytes ahead", got, data, want, preallocChunk, preallocReserve)
			}
			var sealed int64
			for _, s := range sizes[:len(sizes)-1] {
				sealed += s
			}
			if len(sizes) > 1 && (st.Rotations == 0 || sealed >= int64(st.FrameBytes)+int64(len(sizes))*segmentHeaderSize) {
				t.Errorf("sealed segments %v hold %d bytes; frames written %d: zeros left in a sealed segment", sizes[:len(sizes)-1], sealed, st.FrameBytes)
			}
			checkReplay(t, l, 1, want)

			dir2 := dir
			if tc.crash {
				dir2 = copyDir(t, dir) // what a kill -9 leaves: the zero tail
			} else if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if !tc.crash {
				total := int64(0)
				for _, s := range segmentSizes(t, dir) {
					total += s
				}
				if want := int64(st.FrameBytes) + int64(len(sizes))*segmentHeaderSize; total != want {
					t.Errorf("after Close the segments hold %d bytes, want %d (frames and headers, no zeros)", total, want)
				}
			}
			l2, err := Open(dir2, testOptions(t, tc.opts))
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			defer l2.Close()
			torn := l2.Recovery().TornTail
			switch {
			case tc.crash && (torn == nil || torn.Bytes <= 0 || !torn.ZeroFilled):
				t.Errorf("after a crash TornTail = %+v, want the zero tail cut (ZeroFilled)", torn)
			case !tc.crash && torn != nil:
				t.Errorf("after a clean Close TornTail = %+v, want none", torn)
			}
			checkReplay(t, l2, 1, want)
			more := [][]byte{[]byte("after reopen")}
			last := mustAppend(t, l2, more...)
			want = append(want, recordsFrom(last, more)...)
			checkReplay(t, l2, 1, want)
		})
	}
}

// TestTornTailZeroFilled: a cut of zeros only is told apart from a torn
// frame in the report; both are cut the same way.
func TestTornTailZeroFilled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		tail []byte
		zero bool
	}{
		{"zeros", make([]byte, 300), true},
		{"half a frame", []byte{1, 0, 0, 0, 9, 0, 0, 0, 7}, false},
		{"zeros then a byte", append(make([]byte, 300), 5), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			l := mustOpen(t, dir, Options{})
			last := mustAppend(t, l, []byte("kept"))
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			segs, _, err := listDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(segs[len(segs)-1].path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(tc.tail); err != nil {
				t.Fatal(err)
			}
			f.Close()
			l2 := mustOpen(t, dir, Options{})
			torn := l2.Recovery().TornTail
			if torn == nil || torn.Bytes != int64(len(tc.tail)) || torn.ZeroFilled != tc.zero {
				t.Fatalf("TornTail = %+v, want %d bytes cut, ZeroFilled %v", torn, len(tc.tail), tc.zero)
			}
			checkReplay(t, l2, 1, recordsFrom(last, [][]byte{[]byte("kept")}))
		})
	}
}
