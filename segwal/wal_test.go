package segwal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// ---------------------------------------------------------------------------
// Helpers shared by wal_test.go, corruption_test.go and fuzz_test.go.

// record is one record as the tests expect it back from Replay.
type record struct {
	seq  uint64
	data []byte
}

// frameInfo is one frame as found on disk by scanFrames.
type frameInfo struct {
	seg         string // segment file name (base name, so it can be joined to a copied dir)
	off         int64  // offset of the frame header in the segment
	size        int64  // header + stored payload
	first, last uint64
	compressed  bool
}

func (f frameInfo) end() int64 { return f.off + f.size }

// logFixture is what writeLog wrote.
type logFixture struct {
	want   []record    // every record, seq 1..n
	frames []frameInfo // every frame, in order
	segs   []string    // segment file names, in order
	stats  Stats       // Stats() just before Close
}

// framesIn returns the frames of segment name.
func (fx logFixture) framesIn(name string) []frameInfo {
	var out []frameInfo
	for _, f := range fx.frames {
		if f.seg == name {
			out = append(out, f)
		}
	}
	return out
}

// upTo returns the records with seq < seq.
func upTo(recs []record, seq uint64) []record {
	var out []record
	for _, r := range recs {
		if r.seq < seq {
			out = append(out, r)
		}
	}
	return out
}

// testOptions routes the log's recovery reports into the test output.
func testOptions(t testing.TB, o Options) Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	return o
}

// mustOpen opens dir or fails the test; the log is closed at cleanup.
func mustOpen(t testing.TB, dir string, o Options) *Log {
	t.Helper()
	l, err := Open(dir, testOptions(t, o))
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// mustAppend appends one frame and checks the returned sequence.
func mustAppend(t testing.TB, l *Log, recs ...[]byte) uint64 {
	t.Helper()
	before := l.Last()
	last, err := l.Append(recs...)
	if err != nil {
		t.Fatalf("Append(%d records): %v", len(recs), err)
	}
	if want := before + uint64(len(recs)); last != want {
		t.Fatalf("Append(%d records) after %d = %d, want %d", len(recs), before, last, want)
	}
	return last
}

// writeLog creates a log in dir, appends each batch as one frame, closes it
// and returns what is on disk.
func writeLog(t testing.TB, dir string, o Options, batches [][][]byte) logFixture {
	t.Helper()
	l := mustOpen(t, dir, o)
	var fx logFixture
	for _, b := range batches {
		first := l.Last() + 1
		mustAppend(t, l, b...)
		for i, r := range b {
			fx.want = append(fx.want, record{seq: first + uint64(i), data: r})
		}
	}
	fx.stats = l.Stats()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	fx.frames, fx.segs = scanFrames(t, dir)
	if len(fx.frames) != len(batches) {
		t.Fatalf("writeLog: %d frames on disk, appended %d", len(fx.frames), len(batches))
	}
	return fx
}

// scanFrames parses every segment of dir with the package's own frame
// reader and fails the test on anything that is not a whole, valid frame
// or a sequence that does not follow.
func scanFrames(t testing.TB, dir string) ([]frameInfo, []string) {
	t.Helper()
	segs, _, err := listDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var frames []frameInfo
	var names []string
	var next uint64
	for i, s := range segs {
		name := filepath.Base(s.path)
		names = append(names, name)
		if i > 0 && s.first != next {
			t.Fatalf("segment %s follows records up to %d", name, next-1)
		}
		next = s.first
		b, err := os.ReadFile(s.path)
		if err != nil {
			t.Fatal(err)
		}
		w := &window{r: bytes.NewReader(b), size: int64(len(b))}
		if err := checkSegmentHeader(w); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for off := int64(segmentHeaderSize); ; {
			h, _, err := w.readFrame(off)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s at %d: %v", name, off, err)
			}
			if h.first != next {
				t.Fatalf("%s at %d: frame starts at %d, want %d", name, off, h.first, next)
			}
			frames = append(frames, frameInfo{seg: name, off: off, size: h.size(), first: h.first, last: h.last(), compressed: h.compressed()})
			next = h.last() + 1
			off += h.size()
		}
	}
	return frames, names
}

// replayAll returns a copy of the records Replay(from) delivers.
func replayAll(l *Log, from uint64) ([]record, error) {
	var got []record
	err := l.Replay(from, func(seq uint64, rec []byte) error {
		got = append(got, record{seq: seq, data: slices.Clone(rec)})
		return nil
	})
	return got, err
}

// checkReplay fails the test unless Replay(from) returns exactly want.
func checkReplay(t testing.TB, l *Log, from uint64, want []record) {
	t.Helper()
	got, err := replayAll(l, from)
	if err != nil {
		t.Fatalf("Replay(%d): %v", from, err)
	}
	if d := diffRecords(got, want); d != "" {
		t.Fatalf("Replay(%d): %s", from, d)
	}
}

// diffRecords describes the first difference between got and want, or "".
// Records may be megabytes, so it never prints them whole.
func diffRecords(got, want []record) string {
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		if g.seq != w.seq {
			return fmt.Sprintf("record %d: seq %d, want %d", i, g.seq, w.seq)
		}
		if !bytes.Equal(g.data, w.data) {
			return fmt.Sprintf("record seq %d: %d bytes %q, want %d bytes %q", g.seq, len(g.data), clip(g.data), len(w.data), clip(w.data))
		}
	}
	if len(got) != len(want) {
		return fmt.Sprintf("%d records (seqs %s), want %d (seqs %s)", len(got), seqRange(got), len(want), seqRange(want))
	}
	return ""
}

func clip(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

func seqRange(r []record) string {
	if len(r) == 0 {
		return "none"
	}
	return fmt.Sprintf("%d..%d", r[0].seq, r[len(r)-1].seq)
}

// recordsFrom turns appended batches starting at seq first into records.
func recordsFrom(first uint64, batches ...[][]byte) []record {
	var out []record
	for _, b := range batches {
		for _, r := range b {
			out = append(out, record{seq: first, data: r})
			first++
		}
	}
	return out
}

// Record generators. All are deterministic for a given rng.

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x5e6a1)) }

// randomBytes does not compress.
func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// halfBytes is random 16-byte chunks, each written twice: zstd about
// halves it, so a frame of it is stored compressed but stays about half its
// raw size (unlike repetitiveBytes, whose frames shrink to a few bytes).
func halfBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, 0, n+32)
	for len(b) < n {
		chunk := randomBytes(rng, 16)
		b = append(append(b, chunk...), chunk...)
	}
	return b[:n]
}

// repetitiveBytes compresses to almost nothing.
func repetitiveBytes(tag string, n int) []byte {
	unit := []byte(tag + " is a task event; ")
	return bytes.Repeat(unit, n/len(unit)+1)[:n]
}

// batches makes nFrames batches of perFrame records of size bytes each.
func batches(rng *rand.Rand, nFrames, perFrame, size int, gen func(*rand.Rand, int) []byte) [][][]byte {
	out := make([][][]byte, nFrames)
	for i := range out {
		for range perFrame {
			out[i] = append(out[i], gen(rng, size))
		}
	}
	return out
}

// copyDir copies the segment files of src into a new temporary directory.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), segmentSuffix) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// segSizes returns the size of every segment file in dir.
func segSizes(t testing.TB, dir string) map[string]int64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), segmentSuffix) {
			fi, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			out[e.Name()] = fi.Size()
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// Functional tests.

func TestEmptyLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for round := range 2 {
		l := mustOpen(t, dir, Options{})
		if got := l.First(); got != 1 {
			t.Errorf("round %d: First() = %d, want 1", round, got)
		}
		if got := l.Last(); got != 0 {
			t.Errorf("round %d: Last() = %d, want 0", round, got)
		}
		checkReplay(t, l, 0, nil)
		checkReplay(t, l, 1, nil)
		if _, err := replayAll(l, 2); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("round %d: Replay(2) = %v, want ErrOutOfRange", round, err)
		}
		rec := l.Recovery()
		if rec.Records != 0 || rec.Segments != 1 || rec.TornTail != nil || rec.Removed != nil || rec.TempFilesRemoved != nil {
			t.Errorf("round %d: Recovery() = %+v, want 1 empty segment and nothing changed", round, rec)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		want := map[string]int64{segmentName(1): segmentHeaderSize}
		if got := segSizes(t, dir); !mapsEqual(got, want) {
			t.Errorf("round %d: segments %v, want %v", round, got, want)
		}
	}
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestRoundTripRecordSizes(t *testing.T) {
	t.Parallel()
	rng := newRand(1)
	big := randomBytes(rng, 5<<20)
	bigText := repetitiveBytes("big", 5<<20)
	tests := []struct {
		name    string
		batches [][][]byte
		// wantCompressed[i]: frame i is stored compressed under CompressZstd.
		wantCompressed []bool
	}{
		{name: "one empty record", batches: [][][]byte{{{}}}, wantCompressed: []bool{false}},
		{name: "many empty records", batches: [][][]byte{{{}, {}, {}, {}}, {{}}}, wantCompressed: []bool{false, false}},
		{name: "empty between others", batches: [][][]byte{{[]byte("a"), {}, []byte("b")}, {{}, []byte("c")}}, wantCompressed: []bool{false, false}},
		{name: "5 MiB random", batches: [][][]byte{{big}, {[]byte("after")}}, wantCompressed: []bool{false, false}},
		{name: "5 MiB compressible", batches: [][][]byte{{bigText}, {[]byte("after")}}, wantCompressed: []bool{true, false}},
		{name: "5 MiB of each in one frame", batches: [][][]byte{{{}, big, bigText, {}}}, wantCompressed: []bool{true}},
		{name: "exactly the compression threshold", batches: [][][]byte{{repetitiveBytes("t", compressMinBytes-2)}}, wantCompressed: []bool{true}},
		{name: "just below the compression threshold", batches: [][][]byte{{repetitiveBytes("t", compressMinBytes-3)}}, wantCompressed: []bool{false}},
	}
	for _, tc := range tests {
		for _, comp := range []Compression{CompressNone, CompressZstd} {
			t.Run(fmt.Sprintf("%s/compression=%d", tc.name, comp), func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				fx := writeLog(t, dir, Options{Compression: comp}, tc.batches)
				var compressed uint64
				for i, f := range fx.frames {
					want := comp == CompressZstd && tc.wantCompressed[i]
					if f.compressed != want {
						t.Errorf("frame %d compressed = %v, want %v", i, f.compressed, want)
					}
					if f.compressed {
						compressed++
					}
				}
				if fx.stats.CompressedFrames != compressed {
					t.Errorf("Stats().CompressedFrames = %d, frames on disk %d", fx.stats.CompressedFrames, compressed)
				}
				l := mustOpen(t, dir, Options{Compression: comp})
				checkReplay(t, l, 0, fx.want)
				checkReplay(t, l, uint64(len(fx.want)), fx.want[len(fx.want)-1:])
			})
		}
	}
}

func TestRotation(t *testing.T) {
	t.Parallel()
	const segSize = 1024
	rng := newRand(2)
	// The first frame is bigger than a segment and goes into the empty
	// first segment; so does the one after ~210 byte frames.
	in := [][][]byte{{randomBytes(rng, 1500)}}
	in = append(in, batches(rng, 10, 2, 90, randomBytes)...) // ~210 bytes a frame
	bigIdx := len(in)
	in = append(in, [][]byte{randomBytes(rng, 3000)})
	in = append(in, batches(rng, 3, 1, 100, randomBytes)...)
	in = append(in, [][]byte{randomBytes(rng, 2000)}, [][]byte{randomBytes(rng, 1500)}) // two big ones in a row
	in = append(in, batches(rng, 2, 1, 10, randomBytes)...)

	dir := t.TempDir()
	o := Options{SegmentSize: segSize, Compression: CompressNone}
	fx := writeLog(t, dir, o, in)

	nameRE := regexp.MustCompile(`^[0-9]{20}\.seg$`)
	sizes := segSizes(t, dir)
	for _, name := range fx.segs {
		if !nameRE.MatchString(name) {
			t.Errorf("segment name %q is not 20 digits + .seg", name)
		}
		frames := fx.framesIn(name)
		if len(frames) == 0 {
			t.Fatalf("segment %s holds no frame", name)
		}
		if want := segmentName(frames[0].first); name != want {
			t.Errorf("segment %s starts with sequence %d, want name %s", name, frames[0].first, want)
		}
		// A segment is whole frames: it ends where its last frame ends.
		if end := frames[len(frames)-1].end(); sizes[name] != end {
			t.Errorf("segment %s is %d bytes, its last frame ends at %d", name, sizes[name], end)
		}
		if sizes[name] > segSize && len(frames) != 1 {
			t.Errorf("segment %s is %d bytes > SegmentSize with %d frames; only a single big frame may exceed it", name, sizes[name], len(frames))
		}
	}
	// A new segment starts exactly when the next frame would not fit.
	for i := 1; i < len(fx.frames); i++ {
		prev, f := fx.frames[i-1], fx.frames[i]
		fits := prev.end()+f.size <= segSize
		if rotated := f.seg != prev.seg; rotated == fits {
			t.Errorf("frame %d (%d bytes) after a segment of %d bytes: rotated=%v, but fits=%v", i, f.size, prev.end(), rotated, fits)
		}
	}
	for _, i := range []int{0, bigIdx} {
		if big := fx.frames[i]; len(fx.framesIn(big.seg)) != 1 {
			t.Errorf("the %d byte frame %d shares segment %s", big.size, i, big.seg)
		}
	}
	if fx.segs[0] != segmentName(1) {
		t.Errorf("first segment %s, want %s", fx.segs[0], segmentName(1))
	}
	if len(fx.segs) < 6 {
		t.Fatalf("only %d segments; the test needs several", len(fx.segs))
	}
	if fx.stats.Rotations != uint64(len(fx.segs)-1) || fx.stats.Segments != len(fx.segs) {
		t.Errorf("Stats() Rotations=%d Segments=%d, want %d and %d", fx.stats.Rotations, fx.stats.Segments, len(fx.segs)-1, len(fx.segs))
	}

	l := mustOpen(t, dir, o)
	if rec := l.Recovery(); rec.Segments != len(fx.segs) || rec.Records != uint64(len(fx.want)) {
		t.Errorf("Recovery() Segments=%d Records=%d, want %d and %d", rec.Segments, rec.Records, len(fx.segs), len(fx.want))
	}
	checkReplay(t, l, 0, fx.want)
}

func TestReplayFromEverySequence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
		gen  func(*rand.Rand, int) []byte
	}{
		{name: "raw", opts: Options{SegmentSize: 512, Compression: CompressNone}, gen: randomBytes},
		{name: "zstd", opts: Options{SegmentSize: 512}, gen: func(_ *rand.Rand, n int) []byte { return repetitiveBytes("r", n) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rng := newRand(3)
			var in [][][]byte
			for i := range 15 {
				in = append(in, batches(rng, 1, 1+i%4, 60+i*7, tc.gen)...)
			}
			dir := t.TempDir()
			fx := writeLog(t, dir, tc.opts, in)
			if len(fx.segs) < 3 {
				t.Fatalf("only %d segments", len(fx.segs))
			}
			if tc.opts.Compression == CompressZstd && fx.stats.CompressedFrames == 0 {
				t.Fatal("no compressed frame")
			}
			l := mustOpen(t, dir, tc.opts)
			last := l.Last()
			if last != uint64(len(fx.want)) {
				t.Fatalf("Last() = %d, want %d", last, len(fx.want))
			}
			checkReplay(t, l, 0, fx.want)
			for from := uint64(1); from <= last+1; from++ {
				checkReplay(t, l, from, fx.want[from-1:])
			}
			// The same through a Reader.
			for from := uint64(1); from <= last+1; from++ {
				r, err := l.NewReader(from)
				if err != nil {
					t.Fatalf("NewReader(%d): %v", from, err)
				}
				var got []record
				for r.Next() {
					got = append(got, record{seq: r.Seq(), data: slices.Clone(r.Record())})
				}
				if err := r.Err(); err != nil {
					t.Fatalf("Reader(%d).Err() = %v", from, err)
				}
				if err := r.Close(); err != nil {
					t.Fatal(err)
				}
				if d := diffRecords(got, fx.want[from-1:]); d != "" {
					t.Fatalf("Reader(%d): %s", from, d)
				}
			}
			for _, from := range []uint64{last + 2, last + 100, ^uint64(0)} {
				if _, err := replayAll(l, from); !errors.Is(err, ErrOutOfRange) {
					t.Errorf("Replay(%d) with Last()=%d: %v, want ErrOutOfRange", from, last, err)
				}
				if _, err := l.NewReader(from); !errors.Is(err, ErrOutOfRange) {
					t.Errorf("NewReader(%d) with Last()=%d: %v, want ErrOutOfRange", from, last, err)
				}
			}
		})
	}
}

func TestTruncateFront(t *testing.T) {
	t.Parallel()
	rng := newRand(4)
	tmpl := t.TempDir()
	o := Options{SegmentSize: 600, Compression: CompressNone}
	fx := writeLog(t, tmpl, o, batches(rng, 16, 2, 60, randomBytes))
	if len(fx.segs) < 5 {
		t.Fatalf("only %d segments", len(fx.segs))
	}
	segFirst := func(i int) uint64 {
		if i < 0 {
			i += len(fx.segs)
		}
		return fx.framesIn(fx.segs[i])[0].first
	}
	last := uint64(len(fx.want))
	tests := []struct {
		name      string
		seq       uint64
		wantFirst uint64 // First() afterwards; segments below it are gone
	}{
		{name: "zero", seq: 0, wantFirst: 1},
		{name: "first", seq: 1, wantFirst: 1},
		{name: "inside the first segment", seq: segFirst(1) - 1, wantFirst: 1},
		{name: "first of the second segment", seq: segFirst(1), wantFirst: segFirst(1)},
		{name: "one past the second segment's first", seq: segFirst(2) + 1, wantFirst: segFirst(2)},
		{name: "first of the active segment", seq: segFirst(-1), wantFirst: segFirst(-1)},
		{name: "last record", seq: last, wantFirst: segFirst(-1)},
		{name: "past the end keeps the active segment", seq: last + 1000, wantFirst: segFirst(-1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := copyDir(t, tmpl)
			l := mustOpen(t, dir, o)
			for range 2 { // idempotent
				if err := l.TruncateFront(tc.seq); err != nil {
					t.Fatalf("TruncateFront(%d): %v", tc.seq, err)
				}
				if got := l.First(); got != tc.wantFirst {
					t.Fatalf("First() = %d, want %d", got, tc.wantFirst)
				}
			}
			if got := l.Last(); got != last {
				t.Errorf("Last() = %d, want %d", got, last)
			}
			sizes := segSizes(t, dir)
			for _, name := range fx.segs {
				first := fx.framesIn(name)[0].first
				if _, ok := sizes[name]; ok != (first >= tc.wantFirst) {
					t.Errorf("segment %s (first %d) exists=%v after TruncateFront(%d)", name, first, ok, tc.seq)
				}
			}
			keep := fx.want[tc.wantFirst-1:]
			checkReplay(t, l, 0, keep)
			checkReplay(t, l, tc.wantFirst, keep)
			for _, from := range []uint64{1, tc.wantFirst - 1} {
				if from == 0 || from >= tc.wantFirst {
					continue
				}
				if _, err := replayAll(l, from); !errors.Is(err, ErrCompacted) {
					t.Errorf("Replay(%d) with First()=%d: %v, want ErrCompacted", from, tc.wantFirst, err)
				}
			}
			newRec := []byte("after truncate")
			mustAppend(t, l, newRec)
			keep = append(slices.Clone(keep), record{seq: last + 1, data: newRec})
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = mustOpen(t, dir, o)
			if got := l.First(); got != tc.wantFirst {
				t.Errorf("after reopen First() = %d, want %d", got, tc.wantFirst)
			}
			if rec := l.Recovery(); rec.Records != uint64(len(keep)) {
				t.Errorf("after reopen Recovery().Records = %d, want %d", rec.Records, len(keep))
			}
			checkReplay(t, l, 0, keep)
		})
	}
}

func TestAppendNoRecords(t *testing.T) {
	t.Parallel()
	for _, pre := range []int{0, 3} {
		t.Run(fmt.Sprintf("after %d records", pre), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			l := mustOpen(t, dir, Options{})
			for i := range pre {
				mustAppend(t, l, []byte{byte(i)})
			}
			before, sizes := l.Stats(), segSizes(t, dir)
			for _, recs := range [][][]byte{nil, {}} {
				last, err := l.Append(recs...)
				if err != nil || last != uint64(pre) {
					t.Errorf("Append(no records) = %d, %v; want %d, nil", last, err, pre)
				}
			}
			if after := l.Stats(); after != before {
				t.Errorf("Stats changed by empty Appends: %+v -> %+v", before, after)
			}
			if got := segSizes(t, dir); !mapsEqual(got, sizes) {
				t.Errorf("files changed by empty Appends: %v -> %v", sizes, got)
			}
		})
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	mustAppend(t, l, []byte("x"))
	for i := range 3 {
		if err := l.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"Append", func() error { _, err := l.Append([]byte("y")); return err }},
		{"Append with no records", func() error { _, err := l.Append(); return err }},
		{"Sync", l.Sync},
		{"Replay", func() error { return l.Replay(0, func(uint64, []byte) error { return nil }) }},
		{"NewReader", func() error { _, err := l.NewReader(0); return err }},
		{"TruncateFront", func() error { return l.TruncateFront(1) }},
	}
	for _, tc := range tests {
		if err := tc.call(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", tc.name, err)
		}
	}
	// The lock was released and the record is there.
	l2 := mustOpen(t, dir, Options{})
	checkReplay(t, l2, 0, []record{{1, []byte("x")}})
}

func TestReplayCallbackError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: 100, Compression: CompressNone})
	for i := range 10 {
		mustAppend(t, l, []byte(strings.Repeat("r", 40+i)))
	}
	errStop := errors.New("stop here")
	for _, stopAt := range []uint64{1, 5, 10} {
		var seen []uint64
		err := l.Replay(0, func(seq uint64, _ []byte) error {
			seen = append(seen, seq)
			if seq == stopAt {
				return errStop
			}
			return nil
		})
		if err != errStop {
			t.Errorf("Replay stopping at %d returned %v, want the callback's error as is", stopAt, err)
		}
		if len(seen) != int(stopAt) || seen[len(seen)-1] != stopAt {
			t.Errorf("Replay stopping at %d called back for %v", stopAt, seen)
		}
	}
}

func TestStats(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
		gen  func(*rand.Rand, int) []byte
	}{
		{name: "raw, sync always", opts: Options{SegmentSize: 2048, Compression: CompressNone}, gen: randomBytes},
		{name: "zstd, sync always", opts: Options{SegmentSize: 2048}, gen: halfBytes},
		{name: "zstd, sync none", opts: Options{SegmentSize: 2048, Sync: SyncNone}, gen: halfBytes},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rng := newRand(5)
			in := batches(rng, 12, 3, 300, tc.gen)
			in = append(in, [][]byte{[]byte("tiny")})
			dir := t.TempDir()
			fx := writeLog(t, dir, tc.opts, in)
			var recs, recBytes, compressed uint64
			for _, b := range in {
				for _, r := range b {
					recs++
					recBytes += uint64(len(r))
				}
			}
			var frameBytes uint64
			for _, f := range fx.frames {
				frameBytes += uint64(f.size)
				if f.compressed {
					compressed++
				}
			}
			wantSyncs := uint64(len(in))
			if tc.opts.Sync == SyncNone {
				wantSyncs = 0
			}
			want := Stats{
				Appends:          uint64(len(in)),
				Records:          recs,
				RecordBytes:      recBytes,
				FrameBytes:       frameBytes,
				CompressedFrames: compressed,
				Syncs:            wantSyncs,
				Rotations:        uint64(len(fx.segs) - 1),
				Segments:         len(fx.segs),
			}
			got := fx.stats
			if tc.opts.Sync == SyncAlways && got.SyncTime <= 0 {
				t.Errorf("SyncTime = %v after %d syncs", got.SyncTime, got.Syncs)
			}
			var histCount uint64
			for _, c := range got.SyncHist {
				histCount += c
			}
			if histCount != got.Syncs {
				t.Errorf("the fsync histogram counts %d of %d fsyncs", histCount, got.Syncs)
			}
			got.SyncTime, got.SyncHist = 0, [len(SyncBuckets) + 1]uint64{} // timings vary
			if got != want {
				t.Errorf("Stats() = %+v\nwant      %+v", got, want)
			}
			if tc.opts.Compression == CompressZstd && compressed == 0 {
				t.Error("no frame was compressed")
			}
			if len(fx.segs) < 2 {
				t.Errorf("only %d segments", len(fx.segs))
			}

			// Counters start at zero on Open; Sync counts.
			l := mustOpen(t, dir, tc.opts)
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			if s := l.Stats(); s.Appends != 0 || s.Syncs != 1 || s.Segments != len(fx.segs) {
				t.Errorf("after reopen and Sync: %+v", s)
			}
		})
	}
}

func TestReaderSeesRecordsUpToItsCreation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: 300, Compression: CompressNone})
	rng := newRand(6)
	in := batches(rng, 8, 2, 50, randomBytes)
	for _, b := range in[:4] {
		mustAppend(t, l, b...)
	}
	all := recordsFrom(1, in...)
	early, err := l.NewReader(0)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	mid, err := l.NewReader(3)
	if err != nil {
		t.Fatal(err)
	}
	defer mid.Close()
	// Read one record before the appends, so the reader has a segment open.
	if !mid.Next() || mid.Seq() != 3 {
		t.Fatalf("mid.Next() gave seq %d, err %v", mid.Seq(), mid.Err())
	}
	for _, b := range in[4:] { // rotates several times
		mustAppend(t, l, b...)
	}
	if l.Stats().Rotations == 0 {
		t.Fatal("no rotation while the readers were open")
	}
	collect := func(r *Reader) []record {
		var got []record
		for r.Next() {
			got = append(got, record{seq: r.Seq(), data: slices.Clone(r.Record())})
		}
		if err := r.Err(); err != nil {
			t.Fatalf("Reader: %v", err)
		}
		return got
	}
	if d := diffRecords(collect(early), all[:8]); d != "" {
		t.Errorf("reader created at Last()=8: %s", d)
	}
	if d := diffRecords(collect(mid), all[3:8]); d != "" {
		t.Errorf("reader from 3 created at Last()=8: %s", d)
	}
	checkReplay(t, l, 0, all)
}

// TestConcurrentAppendAndReplay is mostly for the race detector: every
// replay that runs while appends go on sees a prefix of the log.
func TestConcurrentAppendAndReplay(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: 4096, Sync: SyncNone})
	rng := newRand(7)
	in := batches(rng, 200, 3, 100, halfBytes)
	all := recordsFrom(1, in...)
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Go(func() {
		for _, b := range in {
			if _, err := l.Append(b...); err != nil {
				errc <- err
				return
			}
		}
	})
	for {
		done := l.Last() == uint64(len(all))
		got, err := replayAll(l, 0)
		if err != nil {
			t.Fatalf("Replay during appends: %v", err)
		}
		if d := diffRecords(got, all[:len(got)]); d != "" {
			t.Fatalf("Replay during appends is not a prefix: %s", d)
		}
		if done {
			break
		}
		select {
		case err := <-errc:
			t.Fatalf("Append: %v", err)
		default:
		}
	}
	wg.Wait()
	checkReplay(t, l, 0, all)
}

func TestOptionsValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
	}{
		{"negative segment size", Options{SegmentSize: -1}},
		{"unknown compression", Options{Compression: 7}},
		{"compression level too high", Options{CompressionLevel: 5}},
		{"negative compression level", Options{CompressionLevel: -1}},
		{"unknown sync policy", Options{Sync: 9}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			l, err := Open(dir, testOptions(t, tc.opts))
			if err == nil {
				l.Close()
				t.Fatalf("Open(%+v) succeeded", tc.opts)
			}
			if got := segSizes(t, dir); len(got) != 0 {
				t.Errorf("a failed Open left segments: %v", got)
			}
		})
	}
}

func TestLocked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	mustAppend(t, l, []byte("held"))
	for range 2 {
		l2, err := Open(dir, testOptions(t, Options{}))
		if err == nil {
			l2.Close()
			t.Fatal("second Open of a locked dir succeeded")
		}
		if !errors.Is(err, ErrLocked) {
			t.Errorf("second Open: %v, want ErrLocked", err)
		}
		if lock := filepath.Join(dir, lockName); !strings.Contains(err.Error(), lock) {
			t.Errorf("error %q does not name %s", err, lock)
		}
	}
	// The first log still works.
	mustAppend(t, l, []byte("still mine"))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, Options{})
	checkReplay(t, l, 0, []record{{1, []byte("held")}, {2, []byte("still mine")}})
}

func TestTempFilesRemoved(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		existing bool // a log with records is already there
		temps    []string
	}{
		{name: "fresh dir", temps: []string{segmentName(1) + tempSuffix}},
		{name: "after records", existing: true, temps: []string{segmentName(4) + tempSuffix}},
		{name: "several", existing: true, temps: []string{segmentName(4) + tempSuffix, segmentName(9) + tempSuffix}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			var want []record
			if tc.existing {
				fx := writeLog(t, dir, Options{}, [][][]byte{{[]byte("a"), []byte("b")}, {[]byte("c")}})
				want = fx.want
			}
			for _, name := range tc.temps {
				// A half-written segment header, as a crash in createSegment leaves it.
				if err := os.WriteFile(filepath.Join(dir, name), segmentHeader()[:5], 0o640); err != nil {
					t.Fatal(err)
				}
			}
			l := mustOpen(t, dir, Options{})
			rec := l.Recovery()
			if !slices.Equal(rec.TempFilesRemoved, tc.temps) {
				t.Errorf("TempFilesRemoved = %q, want %q", rec.TempFilesRemoved, tc.temps)
			}
			if rec.TornTail != nil || rec.Removed != nil {
				t.Errorf("Recovery() = %+v, want only temp files removed", rec)
			}
			for _, name := range tc.temps {
				if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s still there: %v", name, err)
				}
			}
			checkReplay(t, l, 0, want)
			mustAppend(t, l, []byte("next"))
			checkReplay(t, l, 0, append(want, record{seq: uint64(len(want)) + 1, data: []byte("next")}))
		})
	}
}

// ---------------------------------------------------------------------------
// Fault injection through Options.openFile.

var errInjected = errors.New("injected fault")

// faultPlan says which call of a faultFS fails.
type faultPlan struct {
	failOpenAt  int  // fail the n-th open (1-based), 0 never
	failWriteAt int  // fail the n-th Write
	shortWrite  bool // the failing Write first writes half its bytes
	failSyncAt  int  // fail the n-th Sync
	// loseUnsynced: the failing Sync also drops what was written since the
	// last good one, as a kernel may drop dirty pages after a failed fsync.
	loseUnsynced bool
	// errno, when set, is the failing Write's error (ENOSPC: a full disk)
	// instead of errInjected.
	errno syscall.Errno
}

// faultFS hands out segment files that fail one Write, Sync or open as
// planned. Writes go to the real file; Sync is the real fsync unless it is
// the one to fail.
type faultFS struct {
	faultPlan
	mu                   sync.Mutex
	opens, writes, syncs int
}

func (fs *faultFS) open(path string) (appendFile, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.opens++
	if fs.opens == fs.failOpenAt {
		return nil, fmt.Errorf("open %s: %w", path, errInjected)
	}
	f, size, err := openForAppend(path)
	if err != nil {
		return nil, err
	}
	return &faultFile{fs: fs, f: f, synced: size}, nil
}

// openForAppend opens a segment for appends as segwal does and returns its size.
func openForAppend(path string) (*os.File, int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

type faultFile struct {
	fs     *faultFS
	f      *os.File
	synced int64 // size at the last good Sync
}

func (ff *faultFile) Write(p []byte) (int, error) {
	fs := ff.fs
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.writes++
	if fs.writes == fs.failWriteAt {
		n := 0
		if fs.shortWrite {
			n, _ = ff.f.Write(p[:len(p)/2])
		}
		if fs.errno != 0 {
			return n, &os.PathError{Op: "write", Path: ff.f.Name(), Err: fs.errno}
		}
		return n, fmt.Errorf("write: %w", errInjected)
	}
	return ff.f.Write(p)
}

// Truncate lets the log cut a partial write (it does so after ENOSPC only).
func (ff *faultFile) Truncate(size int64) error { return ff.f.Truncate(size) }

func (ff *faultFile) Sync() error {
	fs := ff.fs
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.syncs++
	if fs.syncs == fs.failSyncAt {
		if fs.loseUnsynced {
			if err := ff.f.Truncate(ff.synced); err != nil {
				return err
			}
		}
		return fmt.Errorf("fsync: %w", errInjected)
	}
	if err := ff.f.Sync(); err != nil {
		return err
	}
	fi, err := ff.f.Stat()
	if err != nil {
		return err
	}
	ff.synced = fi.Size()
	return nil
}

func (ff *faultFile) Close() error { return ff.f.Close() }

func TestFaultInjection(t *testing.T) {
	t.Parallel()
	const nAppends = 8
	tests := []struct {
		name string
		plan faultPlan
		opts Options
		// failAt is the 1-based Append that fails (0: the explicit Sync
		// after syncAfter appends fails).
		failAt    int
		syncAfter int
		// failedSurvives: the failed Append's records are on disk after
		// reopening (written, but the fsync failed without losing them).
		failedSurvives bool
		wantTorn       bool
	}{
		{name: "write error", plan: faultPlan{failWriteAt: 3}, failAt: 3},
		{name: "short write", plan: faultPlan{failWriteAt: 3, shortWrite: true}, failAt: 3, wantTorn: true},
		{name: "fsync error losing the frame", plan: faultPlan{failSyncAt: 3, loseUnsynced: true}, failAt: 3},
		{name: "fsync error keeping the frame", plan: faultPlan{failSyncAt: 3}, failAt: 3, failedSurvives: true},
		{name: "first write", plan: faultPlan{failWriteAt: 1, shortWrite: true}, failAt: 1, wantTorn: true},
		// SegmentSize 700 holds 3 frames of ~200 bytes: Append 4 rotates.
		{name: "write error in a new segment", plan: faultPlan{failWriteAt: 4}, opts: Options{SegmentSize: 700}, failAt: 4},
		{name: "short write in a new segment", plan: faultPlan{failWriteAt: 4, shortWrite: true}, opts: Options{SegmentSize: 700}, failAt: 4, wantTorn: true},
		{name: "open error on rotation", plan: faultPlan{failOpenAt: 2}, opts: Options{SegmentSize: 700}, failAt: 4},
		{name: "explicit Sync error", plan: faultPlan{failSyncAt: 1, loseUnsynced: true}, opts: Options{Sync: SyncNone}, syncAfter: 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			fs := &faultFS{faultPlan: tc.plan}
			o := tc.opts
			o.Compression = CompressNone
			o.openFile = fs.open
			l := mustOpen(t, dir, o)
			rng := newRand(8)
			in := batches(rng, nAppends, 2, 90, randomBytes)
			var acked []record
			var failed error
			for i, b := range in {
				last, err := l.Append(b...)
				if failed != nil {
					if err != failed {
						t.Fatalf("Append %d after the failure: %v, want the same error %v", i+1, err, failed)
					}
					continue
				}
				if i+1 == tc.failAt {
					if !errors.Is(err, errInjected) {
						t.Fatalf("Append %d: %v, want the injected error", i+1, err)
					}
					failed = err
					continue
				}
				if err != nil {
					t.Fatalf("Append %d: %v", i+1, err)
				}
				acked = append(acked, recordsFrom(last-uint64(len(b))+1, b)...)
				if i+1 == tc.syncAfter {
					err := l.Sync()
					if !errors.Is(err, errInjected) {
						t.Fatalf("Sync: %v, want the injected error", err)
					}
					failed = err
					// Under SyncNone and a lost page cache only what was
					// synced survives: nothing.
					acked = nil
				}
			}
			if failed == nil {
				t.Fatal("no fault was injected")
			}
			if err := l.Sync(); err != failed {
				t.Errorf("Sync on a poisoned log: %v, want %v", err, failed)
			}
			if tc.syncAfter == 0 {
				if got := l.Last(); got != uint64(len(acked)) {
					t.Errorf("Last() on the poisoned log = %d, want %d", got, len(acked))
				}
				checkReplay(t, l, 0, acked)
			}
			l.Close()

			want := acked
			if tc.failedSurvives {
				want = append(slices.Clone(acked), recordsFrom(uint64(len(acked))+1, in[tc.failAt-1])...)
			}
			l = mustOpen(t, dir, Options{Compression: CompressNone, SegmentSize: tc.opts.SegmentSize})
			rec := l.Recovery()
			if (rec.TornTail != nil) != tc.wantTorn || rec.Removed != nil {
				t.Errorf("Recovery() = %+v, want torn tail %v and nothing removed", rec, tc.wantTorn)
			}
			checkReplay(t, l, 0, want)
			next := []byte("after reopen")
			mustAppend(t, l, next)
			want = append(slices.Clone(want), record{seq: uint64(len(want)) + 1, data: next})
			checkReplay(t, l, 0, want)
		})
	}
}

// TestReaderAfterClose: a Reader created before Close has its own files and
// snapshot, so it reads every record, compressed or not, after Close; it
// must never report damage that is not there.
func TestReaderAfterClose(t *testing.T) {
	t.Parallel()
	for _, mode := range compressionModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			o := mode.opts
			o.SegmentSize = 1024
			l := mustOpen(t, dir, o)
			var in [][][]byte
			for i := range 6 {
				b := [][]byte{repetitiveBytes(fmt.Sprint("rec", i), 700)}
				mustAppend(t, l, b...)
				in = append(in, b)
			}
			if mode.compressed && l.Stats().CompressedFrames == 0 {
				t.Fatal("no compressed frame")
			}
			r, err := l.NewReader(0)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			var got []record
			for r.Next() {
				got = append(got, record{seq: r.Seq(), data: slices.Clone(r.Record())})
			}
			if err := r.Err(); err != nil {
				t.Fatalf("Reader after Close: %v", err)
			}
			if d := diffRecords(got, recordsFrom(1, in...)); d != "" {
				t.Fatalf("Reader after Close: %s", d)
			}
		})
	}
}

// TestReplayDuringClose runs replays of compressed frames while the log is
// closed under them (mostly for the race detector): each replay delivers
// the whole log or fails with ErrClosed, and never reports damage.
func TestReplayDuringClose(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	var in [][][]byte
	for i := range 20 {
		b := [][]byte{repetitiveBytes(fmt.Sprint("rec", i), 600)}
		mustAppend(t, l, b...)
		in = append(in, b)
	}
	want := recordsFrom(1, in...)
	var wg sync.WaitGroup
	started := make(chan struct{})
	errc := make(chan error, 2)
	for range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				if i == 1 {
					started <- struct{}{}
				}
				got, err := replayAll(l, 0)
				if errors.Is(err, ErrClosed) {
					errc <- nil
					return
				}
				if err != nil {
					errc <- err
					return
				}
				if d := diffRecords(got, want); d != "" {
					errc <- errors.New(d)
					return
				}
			}
		})
	}
	<-started
	<-started
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for range 2 {
		if err := <-errc; err != nil {
			t.Errorf("Replay while closing: %v", err)
		}
	}
}

// TestFrameTooLarge: one Append over MaxFrameBytes is refused before any
// byte is copied or written, and does not poison the log. (The records are
// never touched, so their pages are never faulted in.)
func TestFrameTooLarge(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	mustAppend(t, l, []byte("before"))
	huge := make([]byte, MaxFrameBytes)
	tests := []struct {
		name    string
		records [][]byte
	}{
		{"one record of MaxFrameBytes (plus its length prefix)", [][]byte{huge}},
		{"two halves and one byte", [][]byte{huge[:MaxFrameBytes/2], huge[:MaxFrameBytes/2-5], {1}}},
	}
	for _, tc := range tests {
		if _, err := l.Append(tc.records...); !errors.Is(err, ErrFrameTooLarge) {
			t.Errorf("%s: Append: %v, want ErrFrameTooLarge", tc.name, err)
		}
	}
	mustAppend(t, l, []byte("after"))
	checkReplay(t, l, 0, []record{{1, []byte("before")}, {2, []byte("after")}})
}
