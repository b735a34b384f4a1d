package segwal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// TestS2WalkAgreesWithDecode: s2Walk accepts exactly the blocks s2.Decode
// decodes, with the same length: valid blocks of every S2 encoder, and
// those blocks with random bytes flipped.
func TestS2WalkAgreesWithDecode(t *testing.T) {
	t.Parallel()
	rng := newRand(11)
	inputs := map[string][]byte{
		"empty":  {},
		"zeros":  make([]byte, 300_000),
		"random": randomBytes(rng, 100_000),
		"text":   bytes.Repeat([]byte("the run id is the idempotency key; "), 3000),
	}
	mixed := make([]byte, 0, 200_000)
	for len(mixed) < 200_000 {
		mixed = append(mixed, randomBytes(rng, 1+rng.IntN(64))...)
		mixed = append(mixed, make([]byte, rng.IntN(5000))...)
	}
	inputs["mixed"] = mixed
	encoders := map[string]func(dst, src []byte) []byte{"Encode": s2.Encode, "EncodeBetter": s2.EncodeBetter, "EncodeBest": s2.EncodeBest}
	for in, data := range inputs {
		for en, enc := range encoders {
			block := enc(nil, data)
			check := func(block []byte) (agreed bool) {
				want, decErr := s2.Decode(nil, block)
				n, hdr := binary.Uvarint(block)
				var got int
				walkErr := errors.New("bad varint")
				if hdr > 0 {
					got, walkErr = s2Walk(block[hdr:], int(min(n, 1<<30)))
				}
				walkOK := walkErr == nil && uint64(got) == n
				if walkOK != (decErr == nil) || walkOK && got != len(want) {
					t.Errorf("%s/%s: s2Walk %d, %v (varint %d); s2.Decode %d bytes, %v", in, en, got, walkErr, n, len(want), decErr)
					return false
				}
				return true
			}
			if !check(block) {
				continue
			}
			for range 200 {
				bad := bytes.Clone(block)
				if len(bad) == 0 {
					break
				}
				bad[rng.IntN(len(bad))] ^= byte(1 + rng.IntN(255))
				if !check(bad) {
					break
				}
			}
		}
	}
}

// TestForgedFrameAllocation: a frame with a valid CRC whose header claims
// a 200 MiB payload that its few bytes do not decode to is reported as
// damage, and replay does not allocate the claimed size first.
func TestForgedFrameAllocation(t *testing.T) {
	const claimed = 200 << 20
	zenc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		flags   uint8
		payload []byte
	}{
		// A length varint that agrees with the header, then one 2-byte literal.
		{name: "s2", flags: flagS2, payload: append(binary.AppendUvarint(nil, claimed), 0x04, 'a', 'b')},
		{name: "zstd", flags: flagZstd, payload: zenc.EncodeAll([]byte("\x02ab"), nil)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o := Options{Compression: CompressNone}
			l := mustOpen(t, dir, o)
			mustAppend(t, l, []byte("ok"))
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
			if len(segs) != 1 {
				t.Fatalf("segments %v", segs)
			}
			st, err := os.Stat(segs[0])
			if err != nil {
				t.Fatal(err)
			}
			// Write the forged frame where the next frame would go (past
			// any preallocated zeros: cut the file to its frames first).
			frame := make([]byte, frameHeaderSize, frameHeaderSize+len(tc.payload))
			putFrameHeader(frame, frameHeader{flags: tc.flags, count: 1, first: 2, stored: uint32(len(tc.payload)), raw: claimed})
			crc := crc32.Update(0, castagnoli, frame[:24])
			crc = crc32.Update(crc, castagnoli, tc.payload)
			binary.LittleEndian.PutUint32(frame[24:], crc)
			frame = append(frame, tc.payload...)
			end := int64(segmentHeaderSize + frameHeaderSize + 1 + len("ok")) // header, one raw frame of one record
			if st.Size() < end {
				t.Fatalf("segment of %d bytes", st.Size())
			}
			if err := os.Truncate(segs[0], end); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(segs[0], os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(frame)
			f.Close()

			l, err = Open(dir, o)
			if err != nil {
				t.Fatalf("Open: %v", err) // the frame's CRC is valid: Open keeps it
			}
			defer l.Close()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			var n int
			err = l.Replay(0, func(uint64, []byte) error { n++; return nil })
			runtime.ReadMemStats(&after)
			var ce *CorruptionError
			if !errors.As(err, &ce) || !errors.Is(err, ErrBadPayload) || n != 1 {
				t.Errorf("Replay: %d records, %v; want 1 record, then a CorruptionError (ErrBadPayload)", n, err)
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > 16<<20 {
				t.Errorf("replaying a forged frame allocated %d MiB (its header claims %d MiB)", got>>20, claimed>>20)
			}
		})
	}
}
