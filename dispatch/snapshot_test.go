package dispatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/wasmtask/wasmtask/segwal"

	"github.com/wasmtask/wasmtask/dispatch/machine"
)

// workloadExecutor fails or succeeds by the task's input.
func workloadExecutor(_ context.Context, j Job) Result {
	switch string(j.Input) {
	case "fail-once":
		if j.Attempt == 1 {
			return Result{Outcome: OutcomeTrap, Error: "first attempt traps"}
		}
	case "fail-always":
		return Result{Outcome: OutcomeFailed, Retryable: true, Error: "always"}
	case "perm":
		return Result{Outcome: OutcomeABIViolation, Error: "bad guest"}
	}
	return Result{Outcome: OutcomeOK, Output: []byte("out " + string(j.Run)), Module: "sha256:00"}
}

// runWorkload submits n tasks of every kind (once, repeat, retried,
// failing, canceled, dropped by retention) and drives the clock until
// they settle; a few stay scheduled or in retry_wait on purpose.
func runWorkload(t *testing.T, r *engineRig, n int) {
	t.Helper()
	r.ex.set(workloadExecutor)
	inputs := []string{"ok", "fail-once", "fail-always", "perm", "ok", "fail-once"}
	for i := range n {
		spec := TaskSpec{ID: TaskID(fmt.Sprintf("w%03d", i)), Input: []byte(inputs[i%len(inputs)]), MaxAttempts: 3,
			Priority: i % 3, Backoff: Backoff{Kind: BackoffExponential, BaseMs: 200, MaxMs: 1000, Jitter: 0.5},
			Labels: map[string]string{"i": fmt.Sprint(i)}}
		if i%4 == 1 {
			spec.Policy = RunPolicy{Kind: PolicyRepeat, Count: 3, EveryMs: 700}
		}
		if i%9 == 5 {
			spec.NotBeforeMs = r.clock.Now().Add(90 * time.Second).UnixMilli()
		}
		r.submit(spec)
		if i%10 == 9 {
			r.advance(150 * time.Millisecond)
		}
	}
	for i := range n {
		if i%9 == 5 && i%2 == 0 {
			if err := r.e.Cancel(r.ctx(), TaskID(fmt.Sprintf("w%03d", i)), "workload"); err != nil {
				t.Fatal(err)
			}
		}
	}
	for range 20 {
		r.advance(250 * time.Millisecond)
	}
	// Left open: a run in retry_wait and a scheduled one.
	r.submit(TaskSpec{ID: "waiting-retry", Input: []byte("fail-always"), MaxAttempts: 2, Backoff: Backoff{Kind: BackoffFixed, BaseMs: 3_600_000}})
	r.submit(TaskSpec{ID: "waiting-due", NotBeforeMs: r.clock.Now().Add(time.Hour).UnixMilli()})
	r.idle()
	settleSnapshots(r)
}

// settleSnapshots returns once no snapshot is being written and none is
// due. The loop skips a snapshot while the previous one is still being
// written, so how many a workload leaves depends on timing; after this,
// the last one covers the state up to less than SnapshotEvery events.
func settleSnapshots(r *engineRig) {
	r.t.Helper()
	for {
		// A tick starts a due snapshot (setting running) before it
		// answers the probe; so not running after it means none is due
		// or the one it started is already written.
		r.barrier()
		if !r.e.snapshots.running.Load() {
			return
		}
		runtime.Gosched()
	}
}

// liveState encodes the engine's state once it is idle.
func liveState(t *testing.T, e *Engine) []byte {
	t.Helper()
	e.mu.RLock()
	defer e.mu.RUnlock()
	b, err := machine.EncodeState(e.state)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// replayWAL rebuilds a state from the WAL in dir alone (the engine must be
// closed): NewState, then decodeEvent and apply for every record from 1
// up to upto (0: all).
func replayWAL(t *testing.T, dir string, upto uint64) *State {
	t.Helper()
	l, err := segwal.Open(filepath.Join(dir, "wal"), segwal.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.First() != 1 {
		t.Fatalf("the WAL starts at %d: cannot replay it alone", l.First())
	}
	s := NewState()
	err = l.Replay(1, func(seq uint64, rec []byte) error {
		if upto != 0 && seq > upto {
			return errStopReplay
		}
		e, err := machine.DecodeEvent(rec)
		if err != nil {
			return err
		}
		if err := machine.Apply(s, &e); err != nil {
			return err
		}
		s.Applied = seq
		return nil
	})
	if err != nil && !errors.Is(err, errStopReplay) {
		t.Fatal(err)
	}
	return s
}

var errStopReplay = errors.New("stop replay")

func viewsOf(s *State) []TaskView {
	var out []TaskView
	for _, id := range slices.Sorted(maps.Keys(s.Tasks)) {
		out = append(out, machine.ViewOf(s, s.Tasks[id]))
	}
	return out
}

// compareStates fails unless got and want hold the same tasks, runs,
// attempts and derived indexes.
func compareStates(t *testing.T, what string, want, got *State) {
	t.Helper()
	bw, err := machine.EncodeState(want)
	if err != nil {
		t.Fatal(err)
	}
	bg, err := machine.EncodeState(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bw, bg) {
		if diff := cmp.Diff(viewsOf(want), viewsOf(got), viewCmp...); diff != "" {
			t.Errorf("%s: task views differ (-want +got):\n%s", what, diff)
		} else {
			t.Errorf("%s: encoded states differ (applied %d vs %d, next seq %d vs %d, paused %v vs %v)",
				what, want.Applied, got.Applied, want.NextSubmitSeq, got.NextSubmitSeq, want.Paused, got.Paused)
		}
	}
	if a, b := want.IndexSummary(), got.IndexSummary(); a != b {
		t.Errorf("%s: derived indexes differ:\nwant %s\ngot  %s", what, a, b)
	}
}

func snapshotRig(t *testing.T, segmentSize int64, retain int) *engineRig {
	return newEngineRig(t, func(c *Config) {
		c.SnapshotEvery = 25
		c.SnapshotStateRatio = -1 // every 25 events, however large the state
		c.SnapshotRetain = retain
		c.RetainCount = 12
		c.Rand = func() float64 { return 0.25 }
		c.WAL.SegmentSize = segmentSize
	})
}

func snapshotSeqs(t *testing.T, dir string) []uint64 {
	t.Helper()
	seqs, err := (&snapshotter{dir: filepath.Join(dir, "snapshots")}).list()
	if err != nil {
		t.Fatal(err)
	}
	return seqs
}

// ensureSnapshots makes sure n snapshots exist. How many a workload leaves
// depends on timing (a due snapshot is skipped while the previous one is
// still being written), so a test that needs n forces the missing ones
// with Engine.Snapshot, each after one more event so it gets its own
// sequence.
func ensureSnapshots(t *testing.T, r *engineRig, n int) {
	t.Helper()
	for i := 0; len(snapshotSeqs(t, r.cfg.Dir)) < n; i++ {
		if i > n {
			t.Fatalf("snapshots %v after %d forced ones, want %d", snapshotSeqs(t, r.cfg.Dir), i, n)
		}
		r.submit(TaskSpec{ID: TaskID(fmt.Sprintf("forced-snapshot-%d", i)), Input: []byte("ok")})
		r.idle()
		if err := r.e.Snapshot(r.ctx()); err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
	}
}

func TestSnapshotRecoveryEqualsFullReplay(t *testing.T) {
	r := snapshotRig(t, 0, 2) // one WAL segment: nothing is truncated
	runWorkload(t, r, 60)
	ensureSnapshots(t, r, 2)
	live := liveState(t, r.e)
	applied := r.e.Stats().Applied
	r.close()
	seqs := snapshotSeqs(t, r.cfg.Dir)
	if len(seqs) != 2 {
		t.Fatalf("snapshots %v, want the 2 newest kept", seqs)
	}
	full := replayWAL(t, r.cfg.Dir, 0)
	if full.Applied != applied {
		t.Fatalf("replay reached %d, the engine had %d", full.Applied, applied)
	}
	// Every snapshot on its own equals the replay of the WAL up to it.
	for _, seq := range seqs {
		s, err := readSnapshot(filepath.Join(r.cfg.Dir, "snapshots", snapName(seq)), seq)
		if err != nil {
			t.Fatal(err)
		}
		compareStates(t, fmt.Sprintf("snapshot %d vs replay to %d", seq, seq), replayWAL(t, r.cfg.Dir, seq), s)
	}
	r.open()
	r.idle()
	info := r.e.Recovery()
	if info.SnapshotSeq != seqs[1] || len(info.SnapshotErrors) != 0 {
		t.Errorf("recovery used snapshot %d (errors %v), want %d", info.SnapshotSeq, info.SnapshotErrors, seqs[1])
	}
	if info.SnapshotSeq+info.EventsReplayed != applied || info.EventsReplayed == applied {
		t.Errorf("snapshot %d + %d events replayed, want a tail up to %d", info.SnapshotSeq, info.EventsReplayed, applied)
	}
	r.e.mu.RLock()
	compareStates(t, "snapshot+tail vs full replay", full, r.e.state)
	r.e.mu.RUnlock()
	if got := liveState(t, r.e); !bytes.Equal(got, live) {
		t.Error("recovered state differs from the state before Close")
	}
}

func TestSnapshotTruncatesWAL(t *testing.T) {
	tests := []struct {
		name   string
		retain int
	}{
		{name: "retain 2", retain: 2},
		{name: "retain 1", retain: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := snapshotRig(t, 1024, tc.retain)
			runWorkload(t, r, 60)
			live := liveState(t, r.e)
			r.close()
			seqs := snapshotSeqs(t, r.cfg.Dir)
			if len(seqs) != tc.retain {
				t.Fatalf("snapshots %v, want %d kept", seqs, tc.retain)
			}
			r.open()
			r.idle()
			first := r.e.wal.First()
			if first <= 1 || first > seqs[0]+1 {
				t.Errorf("WAL starts at %d; want segments truncated, up to the oldest snapshot %d", first, seqs[0])
			}
			if info := r.e.Recovery(); info.SnapshotSeq != seqs[len(seqs)-1] {
				t.Errorf("recovered from snapshot %d, want %d", info.SnapshotSeq, seqs[len(seqs)-1])
			}
			if got := liveState(t, r.e); !bytes.Equal(got, live) {
				t.Error("recovered state differs from the state before Close")
			}
			// The engine goes on after such a recovery, and recovers again.
			r.ex.set(nil)
			r.submit(TaskSpec{ID: "after"})
			r.wait("after")
			r.idle()
			live = liveState(t, r.e)
			r.reopen()
			r.idle()
			if got := liveState(t, r.e); !bytes.Equal(got, live) {
				t.Error("second recovery differs")
			}
		})
	}
}

func TestDamagedSnapshot(t *testing.T) {
	flip := func(off func(n int) int) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[off(len(b))] ^= 0x40
			if err := os.WriteFile(path, b, 0o640); err != nil {
				t.Fatal(err)
			}
		}
	}
	truncate := func(size func(n int64) int64) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, size(fi.Size())); err != nil {
				t.Fatal(err)
			}
		}
	}
	payloadByte := flip(func(n int) int { return n - 3 })
	magic := flip(func(int) int { return 0 })
	headerSeq := flip(func(int) int { return 8 })
	half := truncate(func(n int64) int64 { return n / 2 })
	short := truncate(func(int64) int64 { return 10 })
	empty := truncate(func(int64) int64 { return 0 })

	const newest, older = 1, 0
	tests := []struct {
		name        string
		segmentSize int64 // 0: one segment, the WAL keeps every record
		damage      map[int]func(t *testing.T, path string)
		wantFrom    int // index of the snapshot recovery uses; -1: the WAL alone
		wantOpenErr string
	}{
		{name: "newest payload byte flipped", segmentSize: 1024, damage: map[int]func(*testing.T, string){newest: payloadByte}, wantFrom: older},
		{name: "newest magic flipped", segmentSize: 1024, damage: map[int]func(*testing.T, string){newest: magic}, wantFrom: older},
		{name: "newest header sequence flipped", segmentSize: 1024, damage: map[int]func(*testing.T, string){newest: headerSeq}, wantFrom: older},
		{name: "newest cut in half", segmentSize: 1024, damage: map[int]func(*testing.T, string){newest: half}, wantFrom: older},
		{name: "newest cut inside the header", segmentSize: 1024, damage: map[int]func(*testing.T, string){newest: short}, wantFrom: older},
		{name: "newest empty", segmentSize: 1024, damage: map[int]func(*testing.T, string){newest: empty}, wantFrom: older},
		{name: "only the older damaged", segmentSize: 1024, damage: map[int]func(*testing.T, string){older: payloadByte}, wantFrom: newest},
		{name: "both damaged, WAL complete", damage: map[int]func(*testing.T, string){newest: half, older: payloadByte}, wantFrom: -1},
		{name: "both damaged, WAL truncated", segmentSize: 1024, damage: map[int]func(*testing.T, string){newest: magic, older: half},
			wantOpenErr: "no usable snapshot"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := snapshotRig(t, tc.segmentSize, 2)
			runWorkload(t, r, 40)
			ensureSnapshots(t, r, 2)
			live := liveState(t, r.e)
			if tc.segmentSize != 0 && r.e.wal.First() <= 1 {
				t.Fatalf("setup: the WAL was not truncated (first %d)", r.e.wal.First())
			}
			r.close()
			seqs := snapshotSeqs(t, r.cfg.Dir)
			if len(seqs) != 2 {
				t.Fatalf("setup: snapshots %v, want 2", seqs)
			}
			var damaged []string
			for i, fn := range tc.damage {
				name := snapName(seqs[i])
				fn(t, filepath.Join(r.cfg.Dir, "snapshots", name))
				damaged = append(damaged, name)
			}
			e, err := Open(r.cfg)
			if tc.wantOpenErr != "" {
				if err == nil {
					e.Close()
					t.Fatal("Open succeeded without a usable snapshot or a complete WAL")
				}
				if !strings.Contains(err.Error(), tc.wantOpenErr) {
					t.Errorf("Open: %v, want %q", err, tc.wantOpenErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			r.e = e
			r.idle()
			info := e.Recovery()
			wantSeq := uint64(0)
			if tc.wantFrom >= 0 {
				wantSeq = seqs[tc.wantFrom]
			}
			if info.SnapshotSeq != wantSeq {
				t.Errorf("recovered from snapshot %d, want %d (errors %v)", info.SnapshotSeq, wantSeq, info.SnapshotErrors)
			}
			// Damage newer than the snapshot used is reported, by file name.
			wantNamed := damaged
			if tc.wantFrom == newest {
				wantNamed = nil // the older one is never read
			}
			if len(info.SnapshotErrors) != len(wantNamed) {
				t.Errorf("SnapshotErrors %v, want %d", info.SnapshotErrors, len(wantNamed))
			}
			for _, name := range wantNamed {
				found := false
				for _, err := range info.SnapshotErrors {
					found = found || strings.Contains(err.Error(), name)
				}
				if !found {
					t.Errorf("no SnapshotError names %s: %v", name, info.SnapshotErrors)
				}
			}
			if got := liveState(t, e); !bytes.Equal(got, live) {
				t.Error("recovered state differs from the state before Close")
			}
		})
	}
}

func TestSnapshotterLoadNewest(t *testing.T) {
	dir := t.TempDir()
	sn := &snapshotter{dir: dir, retain: 3}
	write := func(applied uint64) {
		s := NewState()
		s.Applied = applied
		b, err := machine.EncodeState(s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sn.write(applied, b); err != nil {
			t.Fatal(err)
		}
	}
	for _, seq := range []uint64{5, 10, 20, 30} {
		write(seq)
	}
	if seqs, _ := sn.list(); !slices.Equal(seqs, []uint64{10, 20, 30}) {
		t.Fatalf("kept %v, want the 3 newest", seqs)
	}
	// Leftovers of an interrupted write are ignored and removed.
	tmp := filepath.Join(dir, snapName(40)+".tmp")
	if err := os.WriteFile(tmp, []byte("partial"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o640); err != nil {
		t.Fatal(err)
	}
	// A snapshot named for another sequence than its header says.
	if err := os.Rename(filepath.Join(dir, snapName(30)), filepath.Join(dir, snapName(35))); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		walFirst uint64
		want     uint64 // 0: none usable
		errs     []string
	}{
		{name: "WAL from 1", walFirst: 1, want: 20, errs: []string{snapName(35)}},
		{name: "WAL from 21", walFirst: 21, want: 20, errs: []string{snapName(35)}},
		{name: "WAL from 22: the snapshot leaves a gap", walFirst: 22, want: 0, errs: []string{snapName(35), snapName(20) + ": covers up to 20 but the WAL starts at 22", snapName(10)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, errs := sn.loadNewest(tc.walFirst)
			var got uint64
			if s != nil {
				got = s.Applied
			}
			if got != tc.want {
				t.Errorf("loaded %d, want %d", got, tc.want)
			}
			if len(errs) != len(tc.errs) {
				t.Fatalf("errors %v, want %d", errs, len(tc.errs))
			}
			for i, want := range tc.errs {
				if !strings.Contains(errs[i].Error(), want) {
					t.Errorf("error %d %q does not contain %q", i, errs[i], want)
				}
			}
		})
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("leftover %s not removed: %v", tmp, err)
	}
}

func TestRecoveryWithoutSnapshotNeedsWholeWAL(t *testing.T) {
	r := snapshotRig(t, 1024, 1)
	runWorkload(t, r, 30)
	if first := r.e.wal.First(); first <= 1 {
		t.Fatalf("setup: the WAL was not truncated (first %d)", first)
	}
	r.close()
	if err := os.RemoveAll(filepath.Join(r.cfg.Dir, "snapshots")); err != nil {
		t.Fatal(err)
	}
	e, err := Open(r.cfg)
	if err == nil {
		e.Close()
		t.Fatal("Open recovered from a truncated WAL without its snapshot")
	}
	if !strings.Contains(err.Error(), "no usable snapshot") {
		t.Errorf("Open: %v", err)
	}
}

func TestSnapshotDue(t *testing.T) {
	state := func(tasks, runs int) *State {
		s := NewState()
		for i := range tasks {
			s.Tasks[TaskID(fmt.Sprint("t", i))] = &Task{}
		}
		for i := range runs {
			s.Runs[RunID(fmt.Sprint("r", i))] = &Run{}
		}
		return s
	}
	for _, tc := range []struct {
		name          string
		every         int
		ratio         float64
		tasks, runs   int
		sinceSnapshot int
		want          bool
	}{
		{"disabled", -1, -1, 0, 0, 1 << 30, false},
		{"below SnapshotEvery", 100, -1, 0, 0, 99, false},
		{"at SnapshotEvery", 100, -1, 0, 0, 100, true},
		{"small state: SnapshotEvery decides", 100, 2, 10, 10, 100, true},
		{"large state defers", 100, 2, 1000, 1000, 3999, false},
		{"large state: ratio reached", 100, 2, 1000, 1000, 4000, true},
		{"ratio off: large state does not defer", 100, -1, 1000, 1000, 100, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &Engine{cfg: Config{SnapshotEvery: tc.every, SnapshotStateRatio: tc.ratio},
				state: state(tc.tasks, tc.runs), sinceSnapshot: tc.sinceSnapshot}
			if got := e.snapshotDue(); got != tc.want {
				t.Errorf("snapshotDue() = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSnapshotCadenceAcrossRestarts restarts the engine 20 times with less
// work in between than a snapshot interval: the count since the last
// snapshot goes on across processes, so snapshots still come and each
// recovery replays at most about one interval (before, every process
// counted from 0 and recovery replayed the whole history).
func TestSnapshotCadenceAcrossRestarts(t *testing.T) {
	tests := []struct {
		name      string
		edit      func(*Config)
		input     []byte
		maxEvents uint64 // per recovery
		maxBytes  uint64
	}{
		{name: "events", edit: func(c *Config) { c.SnapshotEvery, c.SnapshotEveryBytes = 200, -1 },
			maxEvents: 200 + 100}, // one interval plus one cycle's ticks
		{name: "bytes", edit: func(c *Config) { c.SnapshotEvery, c.SnapshotEveryBytes, c.SnapshotStateRatio = 1_000_000, 64<<10, -1 },
			input: bytes.Repeat([]byte("0123456789abcdef"), 256), maxBytes: 64<<10 + 10*4096 + 4096},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newEngineRig(t, func(c *Config) { c.RetainCount = 20; tc.edit(c) })
			var replayed []uint64
			total := uint64(0)
			for cycle := range 20 {
				for i := range 10 {
					r.submit(TaskSpec{ID: TaskID(fmt.Sprintf("c%d-%d", cycle, i)), Input: tc.input})
				}
				for i := range 10 {
					r.wait(TaskID(fmt.Sprintf("c%d-%d", cycle, i)))
				}
				r.reopen()
				rec := r.e.Recovery()
				total = r.e.wal.Last()
				if tc.maxEvents > 0 {
					replayed = append(replayed, rec.EventsReplayed)
					if rec.EventsReplayed > tc.maxEvents {
						t.Errorf("restart %d replayed %d events, want at most %d", cycle+1, rec.EventsReplayed, tc.maxEvents)
					}
				} else {
					replayed = append(replayed, rec.BytesReplayed)
					if rec.BytesReplayed > tc.maxBytes {
						t.Errorf("restart %d replayed %d bytes, want at most %d", cycle+1, rec.BytesReplayed, tc.maxBytes)
					}
				}
			}
			if rec := r.e.Recovery(); rec.SnapshotSeq == 0 || total < 800 { // several intervals of work
				t.Errorf("after 20 restarts: snapshot at %d of %d events", rec.SnapshotSeq, total)
			}
			t.Logf("replayed per restart: %v (of %d events)", replayed, total)
		})
	}
}
