package main

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/wasmtask/wasmtask/segwal"
)

// TestFsyncHistogram: the fsync latency is exported as a histogram with
// cumulative buckets, its count and sum the WAL's fsync counters.
func TestFsyncHistogram(t *testing.T) {
	var w segwal.Stats
	w.Syncs, w.SyncTime = 6, 1500*time.Millisecond
	w.SyncHist[0], w.SyncHist[3], w.SyncHist[len(segwal.SyncBuckets)] = 2, 3, 1 // 1 above every bound
	var m dto.Metric
	if err := fsyncHistogram(w).Write(&m); err != nil {
		t.Fatal(err)
	}
	h := m.GetHistogram()
	if h.GetSampleCount() != 6 || h.GetSampleSum() != 1.5 || len(h.GetBucket()) != len(segwal.SyncBuckets) {
		t.Fatalf("histogram count %d sum %g with %d buckets", h.GetSampleCount(), h.GetSampleSum(), len(h.GetBucket()))
	}
	want := []uint64{2, 2, 2, 5, 5, 5, 5, 5, 5}
	for i, b := range h.GetBucket() {
		if b.GetUpperBound() != segwal.SyncBuckets[i].Seconds() || b.GetCumulativeCount() != want[i] {
			t.Errorf("bucket %d: le=%g count %d, want le=%g count %d", i, b.GetUpperBound(), b.GetCumulativeCount(), segwal.SyncBuckets[i].Seconds(), want[i])
		}
	}
}
