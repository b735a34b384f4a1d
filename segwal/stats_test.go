package segwal

import (
	"testing"
	"time"
)

// TestSyncHistogram: every fsync lands in exactly one latency bucket,
// bounds inclusive, the slowest past the last bound.
func TestSyncHistogram(t *testing.T) {
	tests := []struct {
		took       time.Duration
		wantBucket int
	}{
		{took: 0, wantBucket: 0},
		{took: 50 * time.Microsecond, wantBucket: 0},
		{took: 51 * time.Microsecond, wantBucket: 1},
		{took: 3 * time.Millisecond, wantBucket: 3},
		{took: 3276800 * time.Microsecond, wantBucket: len(SyncBuckets) - 1},
		{took: time.Minute, wantBucket: len(SyncBuckets)},
	}
	var s Stats
	for i, tc := range tests {
		s.observeSync(tc.took)
		if s.SyncHist[tc.wantBucket] == 0 {
			t.Errorf("fsync of %v not in bucket %d: %v", tc.took, tc.wantBucket, s.SyncHist)
		}
		var n uint64
		for _, c := range s.SyncHist {
			n += c
		}
		if n != uint64(i+1) || s.Syncs != n {
			t.Errorf("after %d fsyncs the histogram counts %d (Syncs %d)", i+1, n, s.Syncs)
		}
	}
	// Through the log: every fsync of SyncAlways appends is counted.
	l := mustOpen(t, t.TempDir(), Options{Sync: SyncAlways})
	for range 5 {
		mustAppend(t, l, []byte("x"))
	}
	st := l.Stats()
	var n uint64
	for _, c := range st.SyncHist {
		n += c
	}
	if st.Syncs < 5 || n != st.Syncs {
		t.Errorf("%d fsyncs, histogram counts %d", st.Syncs, n)
	}
}
