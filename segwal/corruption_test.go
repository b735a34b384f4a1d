package segwal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The corruption matrix: each test damages real segment files in a
// t.TempDir() and checks, by sequence and bytes, which records Open keeps:
//
//   - damage that can be a torn write (newest segment, nothing valid after
//     it) is cut, reported in Recovery().TornTail, and the log goes on;
//   - any other damage makes Open fail with a *CorruptionError naming the
//     segment and offset, changing nothing; with Options.Repair Open keeps
//     the longest valid prefix and lists what it removed.
//
// After every successful Open the log must take new appends that continue
// the sequence, and a second Open must find nothing to fix.

// errAnyCorruption in an expectation accepts any corruption sentinel.
var errAnyCorruption = errors.New("any corruption sentinel")

func matchSentinel(err, want error) bool {
	if want == errAnyCorruption {
		return isCorruption(err)
	}
	return errors.Is(err, want)
}

// readSegs returns the contents of every segment file of dir.
func readSegs(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for name := range segSizes(t, dir) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		out[name] = b
	}
	return out
}

// editFile replaces the contents of path by edit(contents).
func editFile(t testing.TB, path string, edit func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, edit(b), 0o640); err != nil {
		t.Fatal(err)
	}
}

func zeroRange(off, n int64) func([]byte) []byte {
	return func(b []byte) []byte {
		clear(b[off : off+n])
		return b
	}
}

func truncateTo(n int64) func([]byte) []byte {
	return func(b []byte) []byte { return b[:n] }
}

func flipBits(off int64, mask byte) func([]byte) []byte {
	return func(b []byte) []byte {
		b[off] ^= mask
		return b
	}
}

// checkOpenFails checks that Open(dir) without Repair fails with a
// *CorruptionError for segment seg at offset off carrying sentinel, and
// that it changed no segment file.
func checkOpenFails(t testing.TB, dir string, o Options, seg string, off int64, sentinel error) {
	t.Helper()
	before := readSegs(t, dir)
	o.Repair = false
	l, err := Open(dir, testOptions(t, o))
	if err == nil {
		l.Close()
		t.Fatalf("Open succeeded; want a *CorruptionError for %s at %d", seg, off)
	}
	var ce *CorruptionError
	if !errors.As(err, &ce) {
		t.Fatalf("Open: %v; want a *CorruptionError", err)
	}
	if ce.Segment != seg || ce.Offset != off {
		t.Errorf("Open: CorruptionError at %s:%d, want %s:%d (%v)", ce.Segment, ce.Offset, seg, off, err)
	}
	if !matchSentinel(err, sentinel) {
		t.Errorf("Open: %v; want errors.Is %v", err, sentinel)
	}
	if !strings.Contains(err.Error(), seg) {
		t.Errorf("Open error %q does not name %s", err, seg)
	}
	after := readSegs(t, dir)
	if len(after) != len(before) {
		t.Errorf("failed Open changed the segment files: %d -> %d", len(before), len(after))
	}
	for name, b := range before {
		if !bytes.Equal(after[name], b) {
			t.Errorf("failed Open changed %s", name)
		}
	}
}

// checkCut compares a Cut with an expected one. want.Reason is the sentinel
// the reason must carry (nil: no reason); the reason must be a
// *CorruptionError about the same segment.
func checkCut(t testing.TB, what string, got, want *Cut) {
	t.Helper()
	if (got == nil) != (want == nil) {
		t.Errorf("%s = %+v, want %+v", what, got, want)
		return
	}
	if got == nil {
		return
	}
	if got.Segment != want.Segment || got.Offset != want.Offset || got.Bytes != want.Bytes || got.Deleted != want.Deleted {
		t.Errorf("%s = {%s offset %d, %d bytes, deleted %v}, want {%s offset %d, %d bytes, deleted %v}",
			what, got.Segment, got.Offset, got.Bytes, got.Deleted, want.Segment, want.Offset, want.Bytes, want.Deleted)
	}
	if want.Reason == nil {
		if got.Reason != nil {
			t.Errorf("%s.Reason = %v, want none", what, got.Reason)
		}
		return
	}
	var ce *CorruptionError
	if !errors.As(got.Reason, &ce) || ce.Segment != want.Segment {
		t.Errorf("%s.Reason = %v, want a *CorruptionError about %s", what, got.Reason, want.Segment)
	}
	if !matchSentinel(got.Reason, want.Reason) {
		t.Errorf("%s.Reason = %v, want errors.Is %v", what, got.Reason, want.Reason)
	}
}

// checkRecovered opens dir with o and checks the recovery report and that
// exactly keep (seq 1..len(keep)) survived. Then it appends, checks that
// the sequence continues, and reopens without Repair: nothing may be found
// to fix and the records must be the same.
func checkRecovered(t testing.TB, dir string, o Options, keep []record, torn *Cut, removed []Cut) {
	t.Helper()
	l := mustOpen(t, dir, o)
	rec := l.Recovery()
	checkCut(t, "Recovery().TornTail", rec.TornTail, torn)
	if len(rec.Removed) != len(removed) {
		t.Errorf("Recovery().Removed = %+v, want %d cuts %+v", rec.Removed, len(removed), removed)
	} else {
		for i := range removed {
			checkCut(t, fmt.Sprintf("Recovery().Removed[%d]", i), &rec.Removed[i], &removed[i])
		}
	}
	if rec.Records != uint64(len(keep)) {
		t.Errorf("Recovery().Records = %d, want %d", rec.Records, len(keep))
	}
	if l.First() != 1 || l.Last() != uint64(len(keep)) {
		t.Errorf("First()..Last() = %d..%d, want 1..%d", l.First(), l.Last(), len(keep))
	}
	checkReplay(t, l, 0, keep)

	more := [][]byte{[]byte("after recovery 1"), bytes.Repeat([]byte("after recovery 2 "), 60)}
	mustAppend(t, l, more[0])
	mustAppend(t, l, more[1])
	all := append(slices.Clone(keep), recordsFrom(uint64(len(keep))+1, more)...)
	checkReplay(t, l, 0, all)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	o.Repair = false
	l = mustOpen(t, dir, o)
	if rec := l.Recovery(); rec.TornTail != nil || rec.Removed != nil || rec.TempFilesRemoved != nil {
		t.Errorf("second Open after recovery: %+v, want nothing to fix", rec)
	}
	checkReplay(t, l, 0, all)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// checkDamaged checks the outcome of damage that is not a torn tail: Open
// fails naming seg and off, and Open with Repair keeps exactly keep and
// reports removed.
func checkDamaged(t testing.TB, dir string, o Options, seg string, off int64, sentinel error, keep []record, removed []Cut) {
	t.Helper()
	checkOpenFails(t, dir, o, seg, off, sentinel)
	o.Repair = true
	checkRecovered(t, dir, o, keep, nil, removed)
}

// compressionModes are the two frame encodings; the zstd batches are big
// and compressible enough that their frames are stored compressed.
var compressionModes = []struct {
	name       string
	opts       Options
	compressed bool
}{
	{name: "raw", opts: Options{Compression: CompressNone}, compressed: false},
	{name: "zstd", opts: Options{Compression: CompressZstd}, compressed: true},
}

// checkFrameEncoding fails the test unless every frame has the expected
// encoding and Stats agree.
func checkFrameEncoding(t testing.TB, fx logFixture, compressed bool) {
	t.Helper()
	for i, f := range fx.frames {
		if f.compressed != compressed {
			t.Fatalf("frame %d compressed = %v, want %v", i, f.compressed, compressed)
		}
	}
	if compressed && fx.stats.CompressedFrames != uint64(len(fx.frames)) {
		t.Fatalf("Stats().CompressedFrames = %d, want %d", fx.stats.CompressedFrames, len(fx.frames))
	}
}

func TestTornLastFrameEveryOffset(t *testing.T) {
	t.Parallel()
	for _, mode := range compressionModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			rng := newRand(10)
			// Small frames so that there are few offsets; zstd needs 512
			// raw bytes before it compresses.
			size := 12
			gen := randomBytes
			if mode.compressed {
				size = 300
				gen = func(_ *rand.Rand, n int) []byte { return repetitiveBytes(fmt.Sprint(rng.IntN(1000)), n) }
			}
			tmpl := t.TempDir()
			fx := writeLog(t, tmpl, mode.opts, batches(rng, 3, 2, size, gen))
			checkFrameEncoding(t, fx, mode.compressed)
			last := fx.frames[len(fx.frames)-1]
			keep := upTo(fx.want, last.first)
			seg := readSegs(t, tmpl)[last.seg]
			if int64(len(seg)) != last.end() {
				t.Fatalf("segment is %d bytes, last frame ends at %d", len(seg), last.end())
			}
			// cut == last.off removes the whole frame: a clean end, no torn tail.
			for cut := last.off; cut < last.end(); cut++ {
				t.Run(fmt.Sprintf("cut at %d", cut), func(t *testing.T) {
					t.Parallel()
					dir := t.TempDir()
					path := filepath.Join(dir, last.seg)
					if err := os.WriteFile(path, seg[:cut], 0o640); err != nil {
						t.Fatal(err)
					}
					var torn *Cut
					if cut > last.off {
						torn = &Cut{Segment: path, Offset: last.off, Bytes: cut - last.off, Reason: ErrShortFrame}
					}
					checkRecovered(t, dir, mode.opts, keep, torn, nil)
				})
			}
		})
	}
}

func TestZeroFilledTail(t *testing.T) {
	t.Parallel()
	const zeros = 4096
	tests := []struct {
		name string
		// edit damages the segment; last is the last frame.
		edit     func(last frameInfo) func([]byte) []byte
		keepLast bool // the last frame's records survive
		// cutBytes is the size of the torn tail.
		cutBytes func(last frameInfo) int64
		reason   error
	}{
		{
			name:     "4 KiB of zeros after the last frame",
			edit:     func(frameInfo) func([]byte) []byte { return appendZeros(zeros) },
			keepLast: true,
			cutBytes: func(frameInfo) int64 { return zeros },
			reason:   ErrBadHeader,
		},
		{
			name:     "one zero byte after the last frame",
			edit:     func(frameInfo) func([]byte) []byte { return appendZeros(1) },
			keepLast: true,
			cutBytes: func(frameInfo) int64 { return 1 },
			reason:   ErrShortFrame,
		},
		{
			name:     "zeros over the whole last frame",
			edit:     func(f frameInfo) func([]byte) []byte { return zeroRange(f.off, f.size) },
			cutBytes: func(f frameInfo) int64 { return f.size },
			reason:   ErrBadHeader,
		},
		{
			name: "zeros over the last frame and 4 KiB beyond",
			edit: func(f frameInfo) func([]byte) []byte {
				return func(b []byte) []byte { return appendZeros(zeros)(zeroRange(f.off, f.size)(b)) }
			},
			cutBytes: func(f frameInfo) int64 { return f.size + zeros },
			reason:   ErrBadHeader,
		},
		{
			name:     "zeros over the last frame's payload",
			edit:     func(f frameInfo) func([]byte) []byte { return zeroRange(f.off+frameHeaderSize, f.size-frameHeaderSize) },
			cutBytes: func(f frameInfo) int64 { return f.size },
			reason:   ErrChecksum,
		},
		{
			name:     "zeros over the end of the last frame",
			edit:     func(f frameInfo) func([]byte) []byte { return zeroRange(f.end()-3, 3) },
			cutBytes: func(f frameInfo) int64 { return f.size },
			reason:   ErrChecksum,
		},
	}
	for _, mode := range compressionModes {
		tmpl := t.TempDir()
		rng := newRand(11)
		size := 40
		if mode.compressed {
			size = 700
		}
		fx := writeLog(t, tmpl, mode.opts, batches(rng, 4, 2, size, halfBytes))
		checkFrameEncoding(t, fx, mode.compressed)
		last := fx.frames[len(fx.frames)-1]
		for _, tc := range tests {
			t.Run(mode.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				dir := copyDir(t, tmpl)
				path := filepath.Join(dir, last.seg)
				editFile(t, path, tc.edit(last))
				keep := upTo(fx.want, last.first)
				off := last.off
				if tc.keepLast {
					keep, off = fx.want, last.end()
				}
				torn := &Cut{Segment: path, Offset: off, Bytes: tc.cutBytes(last), Reason: tc.reason}
				checkRecovered(t, dir, mode.opts, keep, torn, nil)
			})
		}
	}
}

func appendZeros(n int) func([]byte) []byte {
	return func(b []byte) []byte { return append(b, make([]byte, n)...) }
}

// TestZerosInsideEarlierFrame writes 512 zero bytes into a frame that has
// valid frames after it: not a torn write.
func TestZerosInsideEarlierFrame(t *testing.T) {
	t.Parallel()
	const zeros = 512
	tests := []struct {
		name  string
		frame int                     // the damaged frame
		at    func(f frameInfo) int64 // where the zeros start
		want  error                   // sentinel of the damage
	}{
		{name: "payload of frame 1", frame: 1, at: func(f frameInfo) int64 { return f.off + frameHeaderSize + 40 }, want: ErrChecksum},
		{name: "header of frame 1", frame: 1, at: func(f frameInfo) int64 { return f.off }, want: ErrBadHeader},
		{name: "end of frame 1 into frame 2", frame: 1, at: func(f frameInfo) int64 { return f.end() - 100 }, want: ErrChecksum},
		{name: "inside the header of frame 2", frame: 2, at: func(f frameInfo) int64 { return f.off + 4 }, want: ErrBadHeader}, // count 0
		{name: "first frame of the log", frame: 0, at: func(f frameInfo) int64 { return f.off + 60 }, want: ErrChecksum},
	}
	for _, mode := range compressionModes {
		tmpl := t.TempDir()
		rng := newRand(12)
		// Frames of ~1 KiB on disk either way, so 512 zeros stay within
		// about one frame and several valid frames follow.
		size := 480
		if mode.compressed {
			size = 1000
		}
		fx := writeLog(t, tmpl, mode.opts, batches(rng, 6, 2, size, halfBytes))
		checkFrameEncoding(t, fx, mode.compressed)
		for _, tc := range tests {
			t.Run(mode.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				dir := copyDir(t, tmpl)
				f := fx.frames[tc.frame]
				path := filepath.Join(dir, f.seg)
				at := tc.at(f)
				if at+zeros > fx.frames[tc.frame+2].off {
					t.Fatalf("zeros at %d reach frame %d at %d: no valid frame would follow", at, tc.frame+2, fx.frames[tc.frame+2].off)
				}
				editFile(t, path, zeroRange(at, zeros))
				size := fx.frames[len(fx.frames)-1].end()
				removed := []Cut{{Segment: path, Offset: f.off, Bytes: size - f.off, Reason: tc.want}}
				if f.off == segmentHeaderSize { // nothing valid left: the file goes
					removed[0].Offset, removed[0].Bytes, removed[0].Deleted = 0, size, true
				}
				checkDamaged(t, dir, mode.opts, path, f.off, tc.want, upTo(fx.want, f.first), removed)
			})
		}
	}
}

// TestBitFlips flips one bit in each field of a frame's header and in its
// payload, in the last frame (a torn tail: cut) and in a middle frame
// (damage: Open fails; Repair keeps the frames before it).
func TestBitFlips(t *testing.T) {
	t.Parallel()
	// Field offsets from frameHeader's layout. Every frame holds 2
	// records, far fewer than 2^31 and than its raw length, and starts at
	// a sequence > 1, so each flip below is rejected deterministically.
	tests := []struct {
		name string
		at   int // byte in the frame; -1 is the frame's last byte
		mask byte
		// wantRaw, wantZstd: the sentinel for a raw and a compressed
		// frame; wantZstdLast for a compressed last frame, when it differs
		// (a longer stored length runs past the end of the file there).
		wantRaw, wantZstd, wantZstdLast error
	}{
		{name: "type 1->0", at: 0, mask: 0x01, wantRaw: ErrBadHeader, wantZstd: ErrBadHeader},
		{name: "type high bit", at: 0, mask: 0x80, wantRaw: ErrBadHeader, wantZstd: ErrBadHeader},
		{name: "flags zstd bit", at: 1, mask: flagZstd, wantRaw: ErrBadHeader, wantZstd: ErrBadHeader},
		{name: "flags unknown bit", at: 1, mask: 0x10, wantRaw: ErrBadHeader, wantZstd: ErrBadHeader},
		{name: "reserved low byte", at: 2, mask: 0x01, wantRaw: ErrBadHeader, wantZstd: ErrBadHeader},
		{name: "reserved high byte", at: 3, mask: 0x80, wantRaw: ErrBadHeader, wantZstd: ErrBadHeader},
		{name: "count 2->3", at: 4, mask: 0x01, wantRaw: ErrChecksum, wantZstd: ErrChecksum},
		{name: "count high bit", at: 7, mask: 0x80, wantRaw: ErrBadHeader, wantZstd: ErrBadHeader},
		{name: "first seq low bit", at: 8, mask: 0x01, wantRaw: ErrChecksum, wantZstd: ErrChecksum},
		{name: "first seq high bit", at: 15, mask: 0x80, wantRaw: ErrChecksum, wantZstd: ErrChecksum},
		{name: "stored low bit", at: 16, mask: 0x01, wantRaw: ErrBadHeader, wantZstd: ErrChecksum, wantZstdLast: errAnyCorruption},
		{name: "stored bit 30", at: 19, mask: 0x40, wantRaw: ErrBadHeader, wantZstd: ErrBadHeader},
		{name: "raw length low bit", at: 20, mask: 0x01, wantRaw: ErrBadHeader, wantZstd: ErrChecksum},
		{name: "raw length bit 30", at: 23, mask: 0x40, wantRaw: ErrBadHeader, wantZstd: ErrBadHeader},
		{name: "crc low bit", at: 24, mask: 0x01, wantRaw: ErrChecksum, wantZstd: ErrChecksum},
		{name: "crc high bit", at: 27, mask: 0x80, wantRaw: ErrChecksum, wantZstd: ErrChecksum},
		{name: "payload first byte", at: frameHeaderSize, mask: 0x01, wantRaw: ErrChecksum, wantZstd: ErrChecksum},
		{name: "payload last byte", at: -1, mask: 0x80, wantRaw: ErrChecksum, wantZstd: ErrChecksum},
	}
	for _, mode := range compressionModes {
		tmpl := t.TempDir()
		rng := newRand(13)
		size := 30
		if mode.compressed {
			size = 400
		}
		fx := writeLog(t, tmpl, mode.opts, batches(rng, 4, 2, size, halfBytes))
		checkFrameEncoding(t, fx, mode.compressed)
		fileSize := fx.frames[len(fx.frames)-1].end()
		for _, tc := range tests {
			for _, pos := range []string{"middle", "last"} {
				t.Run(fmt.Sprintf("%s/%s/%s", mode.name, pos, tc.name), func(t *testing.T) {
					t.Parallel()
					dir := copyDir(t, tmpl)
					f := fx.frames[1]
					if pos == "last" {
						f = fx.frames[len(fx.frames)-1]
					}
					path := filepath.Join(dir, f.seg)
					at := f.off + int64(tc.at)
					if tc.at < 0 {
						at = f.end() - 1
					}
					editFile(t, path, flipBits(at, tc.mask))
					want := tc.wantRaw
					if mode.compressed {
						want = tc.wantZstd
						if pos == "last" && tc.wantZstdLast != nil {
							want = tc.wantZstdLast
						}
					}
					keep := upTo(fx.want, f.first)
					if pos == "last" {
						torn := &Cut{Segment: path, Offset: f.off, Bytes: f.size, Reason: want}
						checkRecovered(t, dir, mode.opts, keep, torn, nil)
						return
					}
					removed := []Cut{{Segment: path, Offset: f.off, Bytes: fileSize - f.off, Reason: want}}
					checkDamaged(t, dir, mode.opts, path, f.off, want, keep, removed)
				})
			}
		}
	}
}

// segmentedFixture writes a log of several 1 KiB segments of several
// frames each.
func segmentedFixture(t *testing.T) (string, Options, logFixture) {
	t.Helper()
	o := Options{SegmentSize: 1024, Compression: CompressNone}
	tmpl := t.TempDir()
	fx := writeLog(t, tmpl, o, batches(newRand(14), 20, 2, 100, randomBytes))
	if len(fx.segs) < 5 {
		t.Fatalf("only %d segments", len(fx.segs))
	}
	for _, name := range fx.segs {
		if len(fx.framesIn(name)) < 3 {
			t.Fatalf("segment %s holds %d frames, want >= 3", name, len(fx.framesIn(name)))
		}
	}
	return tmpl, o, fx
}

// deletedAfter lists the Cuts of Repair deleting segs[i:] of fx; the first
// carries reason.
func deletedAfter(t testing.TB, dir string, fx logFixture, i int, reason error) []Cut {
	sizes := segSizes(t, dir)
	var out []Cut
	for _, name := range fx.segs[i:] {
		size, ok := sizes[name]
		if !ok {
			continue
		}
		c := Cut{Segment: filepath.Join(dir, name), Bytes: size, Deleted: true}
		if out == nil {
			c.Reason = reason
		}
		out = append(out, c)
	}
	return out
}

func TestMissingSegment(t *testing.T) {
	t.Parallel()
	tmpl, o, fx := segmentedFixture(t)
	for _, idx := range []int{1, 2, len(fx.segs) - 2} {
		t.Run(fmt.Sprintf("segment %d of %d", idx, len(fx.segs)), func(t *testing.T) {
			t.Parallel()
			dir := copyDir(t, tmpl)
			gone := fx.framesIn(fx.segs[idx])[0]
			if err := os.Remove(filepath.Join(dir, fx.segs[idx])); err != nil {
				t.Fatal(err)
			}
			next := filepath.Join(dir, fx.segs[idx+1])
			removed := deletedAfter(t, dir, fx, idx+1, ErrSequenceGap)
			checkDamaged(t, dir, o, next, 0, ErrSequenceGap, upTo(fx.want, gone.first), removed)
		})
	}
}

func TestTruncatedOlderSegment(t *testing.T) {
	t.Parallel()
	tmpl, o, fx := segmentedFixture(t)
	const idx = 1 // the truncated segment; later ones exist
	frames := fx.framesIn(fx.segs[idx])
	segFirst := frames[0].first
	segEnd := frames[len(frames)-1].end()
	tests := []struct {
		name   string
		cutAt  int64
		failAt func(dir string) (seg string, off int64)
		err    error
		keep   uint64 // records with seq < keep survive a repair
		// truncated: Repair cuts segment idx back to a frame boundary.
		truncated bool
		// deleteFrom: index of the first segment Repair deletes.
		deleteFrom int
	}{
		{
			name:  "mid-frame",
			cutAt: frames[1].off + 50,
			failAt: func(dir string) (string, int64) {
				return filepath.Join(dir, fx.segs[idx]), frames[1].off
			},
			err: ErrShortFrame, keep: frames[1].first, truncated: true, deleteFrom: idx + 1,
		},
		{
			name:  "mid-header",
			cutAt: frames[2].off + 5,
			failAt: func(dir string) (string, int64) {
				return filepath.Join(dir, fx.segs[idx]), frames[2].off
			},
			err: ErrShortFrame, keep: frames[2].first, truncated: true, deleteFrom: idx + 1,
		},
		{
			name:  "last frame half gone",
			cutAt: segEnd - 1,
			failAt: func(dir string) (string, int64) {
				return filepath.Join(dir, fx.segs[idx]), frames[len(frames)-1].off
			},
			err: ErrShortFrame, keep: frames[len(frames)-1].first, truncated: true, deleteFrom: idx + 1,
		},
		{
			name:  "frame boundary",
			cutAt: frames[1].off,
			failAt: func(dir string) (string, int64) {
				return filepath.Join(dir, fx.segs[idx+1]), 0
			},
			err: ErrSequenceGap, keep: frames[1].first, deleteFrom: idx + 1,
		},
		{
			name:  "only the segment header left",
			cutAt: segmentHeaderSize,
			failAt: func(dir string) (string, int64) {
				return filepath.Join(dir, fx.segs[idx+1]), 0
			},
			err: ErrSequenceGap, keep: segFirst, deleteFrom: idx + 1,
		},
		{
			name:  "inside the segment header",
			cutAt: 10,
			failAt: func(dir string) (string, int64) {
				return filepath.Join(dir, fx.segs[idx]), 0
			},
			err: ErrBadSegmentHeader, keep: segFirst, deleteFrom: idx,
		},
		{
			name:  "empty file",
			cutAt: 0,
			failAt: func(dir string) (string, int64) {
				return filepath.Join(dir, fx.segs[idx]), 0
			},
			err: ErrBadSegmentHeader, keep: segFirst, deleteFrom: idx,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := copyDir(t, tmpl)
			path := filepath.Join(dir, fx.segs[idx])
			editFile(t, path, truncateTo(tc.cutAt))
			var removed []Cut
			if tc.truncated {
				_, off := tc.failAt(dir)
				removed = append(removed, Cut{Segment: path, Offset: off, Bytes: tc.cutAt - off, Reason: tc.err})
			}
			reason := tc.err
			if removed != nil {
				reason = nil
			}
			removed = append(removed, deletedAfter(t, dir, fx, tc.deleteFrom, reason)...)
			seg, off := tc.failAt(dir)
			checkDamaged(t, dir, o, seg, off, tc.err, upTo(fx.want, tc.keep), removed)
		})
	}
}

func TestDamagedSegmentHeader(t *testing.T) {
	t.Parallel()
	tmpl, o, fx := segmentedFixture(t)
	tests := []struct {
		name string
		edit func([]byte) []byte
	}{
		{name: "magic", edit: flipBits(0, 0x20)},
		{name: "version", edit: func(b []byte) []byte {
			// A future version, with a valid header checksum.
			binary.LittleEndian.PutUint32(b[8:], segmentVersion+1)
			binary.LittleEndian.PutUint32(b[12:], crc32.Checksum(b[:12], castagnoli))
			return b
		}},
		{name: "header checksum", edit: flipBits(13, 0x01)},
		{name: "zeroed header", edit: zeroRange(0, segmentHeaderSize)},
	}
	last := len(fx.segs) - 1
	for _, tc := range tests {
		for _, idx := range []int{1, last} {
			t.Run(fmt.Sprintf("%s of segment %d of %d", tc.name, idx, len(fx.segs)), func(t *testing.T) {
				t.Parallel()
				dir := copyDir(t, tmpl)
				path := filepath.Join(dir, fx.segs[idx])
				editFile(t, path, tc.edit)
				first := fx.framesIn(fx.segs[idx])[0].first
				checkDamaged(t, dir, o, path, 0, ErrBadSegmentHeader, upTo(fx.want, first), deletedAfter(t, dir, fx, idx, ErrBadSegmentHeader))
			})
		}
	}

	t.Run("only segment", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		fx := writeLog(t, dir, Options{}, [][][]byte{{[]byte("a")}, {[]byte("b")}})
		path := filepath.Join(dir, fx.segs[0])
		editFile(t, path, flipBits(3, 0x01))
		// Repair deletes the segment and starts an empty one at sequence 1.
		removed := []Cut{{Segment: path, Bytes: fx.frames[1].end(), Deleted: true, Reason: ErrBadSegmentHeader}}
		checkDamaged(t, dir, Options{}, path, 0, ErrBadSegmentHeader, nil, removed)
	})
}

// TestParseFrameHeader checks every range check of a frame header on its
// own, including those that a CRC would also catch on disk.
func TestParseFrameHeader(t *testing.T) {
	t.Parallel()
	valid := frameHeader{count: 2, first: 7, stored: 10, raw: 10}
	tests := []struct {
		name string
		h    frameHeader
		edit func(b []byte) // applied after putFrameHeader
		room int64          // bytes left in the file; 0 means exactly the frame
		want error
	}{
		{name: "valid raw", h: valid},
		{name: "valid zstd", h: frameHeader{flags: flagZstd, count: 2, first: 7, stored: 9, raw: 10}},
		{name: "valid, more room", h: valid, room: 1000},
		{name: "valid, one record per byte", h: frameHeader{count: 10, first: 1, stored: 10, raw: 10}},
		{name: "valid, max raw", h: frameHeader{count: 1, first: 1, stored: MaxFrameBytes, raw: MaxFrameBytes}},
		{name: "valid, last usable sequence", h: frameHeader{count: 1, first: ^uint64(0) - 1, stored: 1, raw: 1}},
		// A frame ending at MaxUint64 is rejected: the next sequence would wrap.
		{name: "ends at MaxUint64", h: frameHeader{count: 1, first: ^uint64(0), stored: 1, raw: 1}, want: ErrBadHeader},
		{name: "type 0", h: valid, edit: func(b []byte) { b[0] = 0 }, want: ErrBadHeader},
		{name: "type 2", h: valid, edit: func(b []byte) { b[0] = 2 }, want: ErrBadHeader},
		{name: "unknown flag", h: frameHeader{flags: 0x02, count: 2, first: 7, stored: 10, raw: 10}, want: ErrBadHeader},
		{name: "reserved byte 2", h: valid, edit: func(b []byte) { b[2] = 1 }, want: ErrBadHeader},
		{name: "reserved byte 3", h: valid, edit: func(b []byte) { b[3] = 1 }, want: ErrBadHeader},
		{name: "count 0", h: frameHeader{count: 0, first: 7, stored: 10, raw: 10}, want: ErrBadHeader},
		{name: "first 0", h: frameHeader{count: 2, first: 0, stored: 10, raw: 10}, want: ErrBadHeader},
		{name: "sequence overflow", h: frameHeader{count: 2, first: ^uint64(0), stored: 10, raw: 10}, want: ErrBadHeader},
		{name: "raw over MaxFrameBytes", h: frameHeader{count: 1, first: 1, stored: MaxFrameBytes + 1, raw: MaxFrameBytes + 1}, want: ErrBadHeader},
		{name: "more records than bytes", h: frameHeader{count: 11, first: 1, stored: 10, raw: 10}, want: ErrBadHeader},
		{name: "raw with stored != raw", h: frameHeader{count: 2, first: 7, stored: 9, raw: 10}, want: ErrBadHeader},
		{name: "zstd with stored 0", h: frameHeader{flags: flagZstd, count: 2, first: 7, stored: 0, raw: 10}, want: ErrBadHeader},
		{name: "zstd with stored == raw", h: frameHeader{flags: flagZstd, count: 2, first: 7, stored: 10, raw: 10}, want: ErrBadHeader},
		{name: "zstd with stored > raw", h: frameHeader{flags: flagZstd, count: 2, first: 7, stored: 11, raw: 10}, want: ErrBadHeader},
		{name: "payload past the end", h: valid, room: frameHeaderSize + 9, want: ErrShortFrame},
		{name: "header past the end", h: valid, room: frameHeaderSize - 1, want: ErrShortFrame},
		{name: "nothing left", h: valid, room: -1, want: ErrShortFrame},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := make([]byte, frameHeaderSize)
			putFrameHeader(b, tc.h)
			binary.LittleEndian.PutUint32(b[24:], 0xdeadbeef)
			if tc.edit != nil {
				tc.edit(b)
			}
			room := tc.room
			switch room {
			case 0:
				room = tc.h.size()
			case -1:
				room = 0
			}
			h, err := parseFrameHeader(b, room)
			if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Fatalf("parseFrameHeader: %v, want %v", err, tc.want)
			}
			if err != nil {
				return
			}
			want := tc.h
			want.crc = 0xdeadbeef
			if h != want {
				t.Errorf("parseFrameHeader = %+v, want %+v", h, want)
			}
		})
	}
}
