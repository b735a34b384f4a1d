package segwal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Large frames are stored S2-compressed (flagS2): they round-trip, their
// damage is caught like any other frame's, and a header claiming both
// compressions is rejected.
func TestS2Frames(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{Logger: discardLogger})
	if err != nil {
		t.Fatal(err)
	}
	var want [][]byte
	for f := 0; f < 3; f++ {
		var recs [][]byte
		for i := 0; i < 512; i++ {
			recs = append(recs, []byte(fmt.Sprintf(`{"type":"attempt_finished","task":"t-%d-%d","run":"t-%d-%d#1","outcome":"ok","at":%d}`, f, i, f, i, 1700000000000+i)))
		}
		if _, err := l.Append(recs...); err != nil {
			t.Fatal(err)
		}
		want = append(want, recs...)
	}
	if st := l.Stats(); st.CompressedFrames != 3 {
		t.Fatalf("compressed frames %d, want 3", st.CompressedFrames)
	}
	l.Close()

	seg := filepath.Join(dir, segmentName(1))
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	var offsets []int64
	w := &window{r: bytes.NewReader(b), size: int64(len(b))}
	for off := int64(segmentHeaderSize); off < int64(len(b)); {
		h, _, err := w.readFrame(off)
		if err != nil {
			t.Fatal(err)
		}
		if h.flags != flagS2 {
			t.Fatalf("frame at %d has flags %#x, want S2", off, h.flags)
		}
		offsets = append(offsets, off)
		off += h.size()
	}

	t.Run("round trip", func(t *testing.T) {
		l, err := Open(dir, Options{Logger: discardLogger})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		var got [][]byte
		if err := l.Replay(0, func(_ uint64, rec []byte) error { got = append(got, bytes.Clone(rec)); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%d records, want %d", len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("record %d differs", i+1)
			}
		}
	})
	t.Run("payload byte of a middle frame flipped", func(t *testing.T) {
		d := t.TempDir()
		c := bytes.Clone(b)
		c[offsets[1]+frameHeaderSize+100] ^= 0x40
		if err := os.WriteFile(filepath.Join(d, segmentName(1)), c, 0o640); err != nil {
			t.Fatal(err)
		}
		_, err := Open(d, Options{Logger: discardLogger})
		var ce *CorruptionError
		if !errors.As(err, &ce) || !errors.Is(err, ErrChecksum) || ce.Offset != offsets[1] {
			t.Fatalf("Open: %v, want a checksum CorruptionError at offset %d", err, offsets[1])
		}
	})
	t.Run("both compression flags", func(t *testing.T) {
		hb := make([]byte, frameHeaderSize)
		putFrameHeader(hb, frameHeader{flags: flagZstd | flagS2, count: 1, first: 1, stored: 5, raw: 10})
		if _, err := parseFrameHeader(hb, 100); !errors.Is(err, ErrBadHeader) {
			t.Fatalf("parse: %v, want ErrBadHeader", err)
		}
	})
}
