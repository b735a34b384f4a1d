package dispatch

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// countingHandler counts log records with a given message.
type countingHandler struct {
	msg string
	n   *atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

// TestFailedSnapshotKeepsItsCount: a snapshot that cannot be written (here
// its directory cannot be made) does not reset the count of events since
// the last snapshot: once the cause is gone, the next one is written after
// a tenth of the interval, not after another whole SnapshotEvery events;
// while the cause lasts, it is retried every tenth of the interval, not on
// every tick.
func TestFailedSnapshotKeepsItsCount(t *testing.T) {
	const every = 200
	var failures atomic.Int64
	r := newEngineRig(t, func(c *Config) {
		c.SnapshotEvery, c.SnapshotEveryBytes, c.SnapshotStateRatio = every, -1, -1
		c.Logger = slog.New(countingHandler{msg: "dispatch: snapshot write failed", n: &failures})
	})
	snapDir := filepath.Join(r.cfg.Dir, "snapshots")
	if err := os.RemoveAll(snapDir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(snapDir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	work := func(prefix string, n int) {
		for i := range n {
			r.submit(TaskSpec{ID: TaskID(fmt.Sprintf("%s-%d", prefix, i)), Input: []byte("ok")})
		}
		r.idle()
		settleSnapshots(r)
	}
	work("before", every/3) // several events per task: past the interval
	if r.e.wal.Last() < every {
		t.Fatalf("only %d events: the test did not reach the interval", r.e.wal.Last())
	}
	first := r.e.wal.Last()
	if n, most := failures.Load(), 1+int64(first-every)/(every/10); n < 1 || n > most {
		t.Errorf("%d failed snapshots over %d events, want 1 to %d (one, then one per tenth of the interval)", n, first, most)
	}
	if err := os.Remove(snapDir); err != nil {
		t.Fatal(err)
	}
	work("after", every/20) // more than a tenth of the interval, far less than one
	if n := r.e.wal.Last() - first; n < every/10 || n >= every/2 {
		t.Fatalf("%d events after the cause was removed; the test wants between %d and %d", n, every/10, every/2)
	}
	if seqs := snapshotSeqs(t, r.cfg.Dir); len(seqs) == 0 {
		t.Errorf("no snapshot %d events after a failed one (at %d events, interval %d): the failure reset the count", r.e.wal.Last()-first, first, every)
	}
}
