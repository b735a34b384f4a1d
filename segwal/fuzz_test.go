package segwal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/klauspost/compress/s2"
)

// allocBytes returns the bytes f allocated (runtime.MemStats.TotalAlloc).
// Callers must not run in parallel with other tests, or their allocations
// count too.
func allocBytes(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// scanAllocBound is what scanning n bytes of frames may allocate. Measured
// worst cases: the record bounds of a raw frame of empty records (two ints
// a record of one byte, times ~5 for append's growth: ~84 bytes per input
// byte) and nextValidFrame's error values when 2 in 5 offsets pass its cheap
// header check (~48 per byte); the read window is at most the input. What
// the bound rules out is any allocation driven by a length read from the
// input rather than by the input's size, such as a header claiming 200 MiB.
func scanAllocBound(n int) uint64 { return 128*uint64(n) + 64<<10 }

// scannedFrame is a frame that readFrame accepted.
type scannedFrame struct {
	off     int64
	h       frameHeader
	payload []byte // a copy
}

// scanBody reads frames from the start of b as Open does: it returns the
// valid prefix (frames that pass every check and whose sequences follow
// from 1), where it ends, and the error that ended it (nil at a clean end).
// torn reports whether Open counts that error as a torn tail: no valid
// frame anywhere after it. The scan's allocations are checked against
// scanAllocBound.
func scanBody(t *testing.T, b []byte) (prefix []scannedFrame, end int64, stop error, torn bool) {
	t.Helper()
	w := &window{r: bytes.NewReader(b), size: int64(len(b))}
	var bounds []int
	// Room for every frame, so that the test's own bookkeeping does not
	// allocate inside the measurement.
	offs := make([]int64, 0, len(b)/frameHeaderSize+1)
	alloc := allocBytes(func() {
		next := uint64(1)
		for end = 0; ; {
			h, payload, err := w.readFrame(end)
			if err == io.EOF {
				return
			}
			if err != nil {
				if !isCorruption(err) {
					t.Fatalf("readFrame(%d): %v is not a corruption sentinel", end, err)
				}
				stop = err
				valid := w.nextValidFrame(end + 1)
				if valid >= 0 {
					if valid <= end || valid+frameHeaderSize > w.size {
						t.Fatalf("nextValidFrame(%d) = %d, outside the input of %d bytes", end+1, valid, w.size)
					}
					if _, _, err := w.readFrame(valid); err != nil {
						t.Fatalf("nextValidFrame(%d) = %d, but readFrame there: %v", end+1, valid, err)
					}
				}
				torn = valid < 0
				return
			}
			if end+h.size() > w.size || int64(len(payload)) != int64(h.stored) {
				t.Fatalf("readFrame(%d): frame of %d bytes with a %d byte payload in %d bytes", end, h.size(), len(payload), w.size)
			}
			if h.first != next {
				stop = ErrSequenceGap
				return
			}
			if !h.compressed() {
				var err error
				bounds, err = splitRecords(payload, h.count, bounds[:0])
				checkSplit(t, payload, h.count, bounds, err)
			}
			offs = append(offs, end)
			next = h.last() + 1
			end += h.size()
		}
	})
	if bound := scanAllocBound(len(b)); alloc > bound {
		t.Fatalf("scanning %d bytes allocated %d bytes, bound %d", len(b), alloc, bound)
	}
	for _, off := range offs {
		h, payload, err := w.readFrame(off)
		if err != nil {
			t.Fatalf("readFrame(%d) failed on the second read: %v", off, err)
		}
		prefix = append(prefix, scannedFrame{off: off, h: h, payload: bytes.Clone(payload)})
	}
	return prefix, end, stop, torn
}

// sentinelOf returns the corruption sentinel err carries.
func sentinelOf(err error) error {
	for _, s := range []error{ErrShortFrame, ErrBadHeader, ErrChecksum, ErrBadPayload, ErrSequenceGap, ErrBadSegmentHeader} {
		if errors.Is(err, s) {
			return s
		}
	}
	return nil
}

// checkSplit checks the result of splitRecords(payload, count).
func checkSplit(t *testing.T, payload []byte, count uint32, bounds []int, err error) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, ErrBadPayload) {
			t.Fatalf("splitRecords: %v, want ErrBadPayload", err)
		}
		return
	}
	if len(bounds) != 2*int(count) {
		t.Fatalf("splitRecords: %d bounds for %d records", len(bounds), count)
	}
	pos := 0
	for i := 0; i < len(bounds); i += 2 {
		start, end := bounds[i], bounds[i+1]
		if start <= pos || start > end || end > len(payload) {
			t.Fatalf("splitRecords: record %d at [%d,%d) after %d in %d bytes", i/2, start, end, pos, len(payload))
		}
		if n, w := binary.Uvarint(payload[pos:]); w != start-pos || int(n) != end-start {
			t.Fatalf("splitRecords: record %d at [%d,%d) does not match its length prefix", i/2, start, end)
		}
		pos = end
	}
	if pos != len(payload) {
		t.Fatalf("splitRecords: %d bytes after the last record", len(payload)-pos)
	}
}

// decodeFrames decodes scanned frames into records, as Replay should; err
// is the first frame whose payload does not decode.
func decodeFrames(t *testing.T, frames []scannedFrame) ([]record, error) {
	dec, err := newDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	var recs []record
	for _, f := range frames {
		data := f.payload
		if f.h.compressed() {
			if f.h.flags&flagS2 != 0 {
				data, err = s2.Decode(nil, f.payload)
			} else {
				data, err = dec.DecodeAll(f.payload, nil)
			}
			if err != nil {
				return recs, err
			}
			if len(data) != int(f.h.raw) {
				return recs, ErrBadPayload
			}
		}
		bounds, err := splitRecords(data, f.h.count, nil)
		if err != nil {
			return recs, err
		}
		for i := 0; i < len(bounds); i += 2 {
			recs = append(recs, record{seq: f.h.first + uint64(i/2), data: data[bounds[i]:bounds[i+1]]})
		}
	}
	return recs, nil
}

// checkOpenBody writes b as the body of a segment and checks Open, Open
// with Repair, Replay and a clean reopen against the scan of b.
func checkOpenBody(t *testing.T, b []byte) {
	prefix, end, stop, torn := scanBody(t, b)
	wantRecs, wantErr := decodeFrames(t, prefix)
	var wantLast uint64
	if len(prefix) > 0 {
		wantLast = prefix[len(prefix)-1].h.last()
	}
	dir := t.TempDir()
	path := filepath.Join(dir, segmentName(1))
	file := append(segmentHeader(), b...)
	if err := os.WriteFile(path, file, 0o640); err != nil {
		t.Fatal(err)
	}
	quiet := Options{Logger: discardLogger}

	checkReplayed := func(l *Log, what string) {
		t.Helper()
		if l.Last() != wantLast {
			t.Fatalf("%s: Last() = %d, want %d", what, l.Last(), wantLast)
		}
		got, err := replayAll(l, 0)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("%s: Replay error %v, want %v", what, err, wantErr)
		}
		var ce *CorruptionError
		if err != nil && (!errors.As(err, &ce) || !errors.Is(err, ErrBadPayload) || ce.Segment != path) {
			t.Fatalf("%s: Replay: %v, want a *CorruptionError with ErrBadPayload", what, err)
		}
		if d := diffRecords(got, wantRecs); d != "" {
			t.Fatalf("%s: Replay: %s", what, d)
		}
	}

	l, err := Open(dir, quiet)
	if err != nil {
		var ce *CorruptionError
		if !errors.As(err, &ce) {
			t.Fatalf("Open: %v, want a *CorruptionError", err)
		}
		if stop == nil || torn {
			t.Fatalf("Open: %v; the scan found a valid log or a torn tail (stop=%v)", err, stop)
		}
		if ce.Segment != path || ce.Offset != segmentHeaderSize+end || !errors.Is(err, sentinelOf(stop)) {
			t.Fatalf("Open: %v; want %v at offset %d", err, stop, segmentHeaderSize+end)
		}
		got, rerr := os.ReadFile(path)
		if rerr != nil || !bytes.Equal(got, file) {
			t.Fatalf("failed Open changed the segment (%v)", rerr)
		}
	} else {
		if stop != nil && !torn {
			t.Fatalf("Open succeeded past %v at offset %d, which valid frames follow", stop, segmentHeaderSize+end)
		}
		cut := l.Recovery().TornTail
		if (cut != nil) != (stop != nil) || cut != nil && (cut.Offset != segmentHeaderSize+end || cut.Bytes != int64(len(b))-end) {
			t.Fatalf("Recovery().TornTail = %+v after %v at %d", cut, stop, segmentHeaderSize+end)
		}
		checkReplayed(l, "Open")
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}

	repair := quiet
	repair.Repair = true
	l, err = Open(dir, repair)
	if err != nil {
		t.Fatalf("Open with Repair: %v", err)
	}
	checkReplayed(l, "Open with Repair")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != segmentHeaderSize+end {
		t.Fatalf("after repair the segment is %v (%v), want %d bytes", fi.Size(), err, segmentHeaderSize+end)
	}

	l, err = Open(dir, quiet)
	if err != nil {
		t.Fatalf("reopen after repair: %v", err)
	}
	defer l.Close()
	if rec := l.Recovery(); rec.TornTail != nil || rec.Removed != nil {
		t.Fatalf("reopen after repair: %+v, want nothing to fix", rec)
	}
	checkReplayed(l, "reopen")
}

var discardLogger = slog.New(slog.DiscardHandler)

// FuzzReader feeds arbitrary bytes to the frame scanner (readFrame,
// nextValidFrame, splitRecords) and, as the body of a segment, to Open,
// Open with Repair and Replay. Nothing may panic; every outcome is a
// prefix of the records or a corruption error, and agrees with the scan;
// scanning allocates at most scanAllocBound.
//
//	go test -run='^$' -fuzz=FuzzReader ./segwal/
func FuzzReader(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// The payload alone through splitRecords, count from the first byte.
		if len(b) > 0 {
			bounds, err := splitRecords(b[1:], uint32(b[0]), nil)
			checkSplit(t, b[1:], uint32(b[0]), bounds, err)
		}
		checkOpenBody(t, b)
	})
}

// fuzzSeeds returns segment bodies: real frames, raw and compressed, and
// damaged versions of them.
func fuzzSeeds(t testing.TB) [][]byte {
	rng := newRand(20)
	dir := t.TempDir()
	in := [][][]byte{
		{[]byte("a"), {}, []byte("ccc")},
		{repetitiveBytes("seed", 700)},                   // compressed
		{halfBytes(rng, 300), halfBytes(rng, 300)},       // compressed
		{randomBytes(rng, 40)},                           // raw
		{{}, {}, repetitiveBytes("x", 600), []byte("y")}, // compressed
	}
	fx := writeLog(t, dir, Options{}, in)
	if fx.stats.CompressedFrames == 0 {
		t.Fatal("no compressed seed frame")
	}
	seg, err := os.ReadFile(filepath.Join(dir, fx.segs[0]))
	if err != nil {
		t.Fatal(err)
	}
	body := seg[segmentHeaderSize:]
	frame := func(i int) []byte {
		f := fx.frames[i]
		return body[f.off-segmentHeaderSize : f.end()-segmentHeaderSize]
	}
	edit := func(f func([]byte) []byte) []byte { return f(bytes.Clone(body)) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	f1 := fx.frames[1].off - segmentHeaderSize

	seeds := [][]byte{
		{},
		body,
		frame(0),
		frame(1),
		body[:len(body)-1],
		body[:f1+frameHeaderSize/2],
		edit(flipBits(f1+3, 0x01)), // reserved byte
		edit(flipBits(f1+frameHeaderSize+2, 0x10)),     // compressed payload
		edit(flipBits(f1+24, 0x01)),                    // crc
		edit(zeroRange(f1, 64)),                        // zeros over a middle frame
		cat(body, make([]byte, 100)),                   // zero tail
		cat(frame(0), frame(2)),                        // sequence gap
		cat(frame(1)),                                  // starts at the wrong sequence
		cat([]byte{1, 0, 0}, body),                     // garbage before valid frames
		hugeClaimFrame(200<<20, 200<<20, 0, 56),        // raw, claims 200 MiB
		hugeClaimFrame(100<<20, 200<<20, flagZstd, 56), // zstd, claims 200 MiB
		cat(hugeClaimFrame(1<<30, 1<<30, 0, 0), body),
		crcFrame(1, []byte{5, 'a'}),               // CRC-valid, the record runs past the payload
		crcFrame(2, []byte{1, 'a', 1, 'b', 0}),    // CRC-valid, a byte left over
		cat(crcFrame(2, []byte{1, 'a', 0}), body), // valid frame, then frames at the wrong sequence
	}
	return seeds
}

// hugeClaimFrame is a frame header whose lengths claim far more than the
// pad bytes that follow it; its header CRC is valid.
func hugeClaimFrame(stored, raw uint32, flags uint8, pad int) []byte {
	b := make([]byte, frameHeaderSize+pad)
	putFrameHeader(b, frameHeader{flags: flags, count: 1, first: 1, stored: stored, raw: raw})
	binary.LittleEndian.PutUint32(b[24:], crc32.Checksum(b[:24], castagnoli))
	return b
}

// crcFrame is a raw frame with a correct CRC around payload, which need
// not hold count records.
func crcFrame(count uint32, payload []byte) []byte {
	b := make([]byte, frameHeaderSize, frameHeaderSize+len(payload))
	n := uint32(len(payload))
	putFrameHeader(b, frameHeader{count: count, first: 1, stored: n, raw: n})
	b = append(b, payload...)
	crc := crc32.Update(crc32.Update(0, castagnoli, b[:24]), castagnoli, payload)
	binary.LittleEndian.PutUint32(b[24:], crc)
	return b
}

// TestHugeLengthClaims: a frame header that claims hundreds of MiB in a
// file of 100 bytes must not make Open or Replay allocate them.
func TestHugeLengthClaims(t *testing.T) {
	// Not parallel: allocBytes counts every goroutine's allocations.
	valid := crcFrame(1, []byte{1, 'v'}) // a valid frame
	tests := []struct {
		name  string
		body  []byte
		torn  bool  // Open cuts it as a torn tail; otherwise Open fails
		cause error // the sentinel of the damage
	}{
		{name: "raw, 200 MiB", body: hugeClaimFrame(200<<20, 200<<20, 0, 56), torn: true, cause: ErrShortFrame},
		{name: "zstd, 100 MiB stored, 200 MiB raw", body: hugeClaimFrame(100<<20, 200<<20, flagZstd, 56), torn: true, cause: ErrShortFrame},
		{name: "raw, MaxFrameBytes", body: hugeClaimFrame(MaxFrameBytes, MaxFrameBytes, 0, 56), torn: true, cause: ErrShortFrame},
		{name: "raw, 4 GiB", body: hugeClaimFrame(1<<32-1, 1<<32-1, 0, 56), torn: true, cause: ErrBadHeader},
		{name: "200 MiB claim before a valid frame", body: append(hugeClaimFrame(200<<20, 200<<20, 0, 20), valid...), cause: ErrShortFrame},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, segmentName(1))
			file := append(segmentHeader(), tc.body...)
			if err := os.WriteFile(path, file, 0o640); err != nil {
				t.Fatal(err)
			}
			const bound = 1 << 20
			var openErr error
			var recs []record
			alloc := allocBytes(func() {
				l, err := Open(dir, Options{Logger: discardLogger})
				if openErr = err; err != nil {
					return
				}
				recs, err = replayAll(l, 0)
				if err != nil {
					t.Errorf("Replay: %v", err)
				}
				l.Close()
			})
			if alloc > bound {
				t.Errorf("Open and Replay of a %d byte file allocated %d bytes, want < %d", len(file), alloc, bound)
			}
			if tc.torn {
				if openErr != nil {
					t.Fatalf("Open: %v; want the claim cut as a torn tail", openErr)
				}
				if len(recs) != 0 {
					t.Errorf("Replay gave %d records, want none", len(recs))
				}
			} else if !errors.Is(openErr, tc.cause) {
				t.Fatalf("Open: %v; want %v", openErr, tc.cause)
			}

			// The scanner alone, on the body.
			w := &window{r: bytes.NewReader(tc.body), size: int64(len(tc.body))}
			alloc = allocBytes(func() {
				if _, _, err := w.readFrame(0); !errors.Is(err, tc.cause) {
					t.Errorf("readFrame: %v, want %v", err, tc.cause)
				}
				if got, want := w.nextValidFrame(1), int64(len(tc.body)-len(valid)); tc.torn && got != -1 || !tc.torn && got != want {
					t.Errorf("nextValidFrame(1) = %d", got)
				}
			})
			if bound := scanAllocBound(len(tc.body)); alloc > bound {
				t.Errorf("scanning %d bytes allocated %d, bound %d", len(tc.body), alloc, bound)
			}
		})
	}
}
