package segwal

import (
	"bytes"
	"testing"
)

// TestReaderKeepsSegmentsAgainstTruncateFront: a Reader sees the records
// that were in the log when it was created, even when TruncateFront
// removes, before the Reader gets to them, segments it has not opened
// yet; the segments go at a later TruncateFront once it is closed.
func TestReaderKeepsSegmentsAgainstTruncateFront(t *testing.T) {
	t.Parallel()
	o := Options{SegmentSize: 600, Compression: CompressNone}
	for _, tc := range []struct {
		name     string
		readHalf bool // the Reader has read half the log before the truncation
	}{
		{name: "nothing read yet"},
		{name: "half read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			fx := writeLog(t, dir, o, batches(newRand(7), 16, 2, 60, randomBytes))
			if len(fx.segs) < 5 {
				t.Fatalf("only %d segments", len(fx.segs))
			}
			l := mustOpen(t, dir, o)
			last := l.Last()
			r, err := l.NewReader(0)
			if err != nil {
				t.Fatal(err)
			}
			var got []record
			next := func() bool {
				if !r.Next() {
					return false
				}
				got = append(got, record{seq: r.Seq(), data: bytes.Clone(r.Record())})
				return true
			}
			if tc.readHalf {
				for len(got) < len(fx.want)/2 && next() {
				}
			}
			if err := l.TruncateFront(last); err != nil {
				t.Fatal(err)
			}
			for next() {
			}
			if err := r.Err(); err != nil {
				t.Fatalf("the Reader failed after TruncateFront: %v", err)
			}
			if d := diffRecords(got, fx.want); d != "" {
				t.Fatalf("the Reader after TruncateFront: %s", d)
			}
			r.Close()
			if err := l.TruncateFront(last); err != nil {
				t.Fatal(err)
			}
			if n := len(segSizes(t, dir)); n != 1 {
				t.Errorf("%d segments after the Reader closed and TruncateFront ran again, want 1", n)
			}
		})
	}
}
