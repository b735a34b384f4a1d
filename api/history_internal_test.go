package api

import (
	"testing"
	"time"
)

// TestHistoryRing: past its capacity the ring drops the oldest samples and
// returns the rest oldest first.
func TestHistoryRing(t *testing.T) {
	var h history
	t0 := time.Unix(0, 0)
	for i := range 7 {
		h.add(HistoryPoint{Time: t0.Add(time.Duration(i) * time.Second), Submitted: uint64(i)}, 3)
		got := h.snapshot().Points
		want := min(i+1, 3)
		if len(got) != want {
			t.Fatalf("after %d samples: %d points, want %d", i+1, len(got), want)
		}
		for j, p := range got {
			if p.Submitted != uint64(i+1-want+j) {
				t.Fatalf("after %d samples, point %d is sample %d, want %d", i+1, j, p.Submitted, i+1-want+j)
			}
		}
	}
}
