package dispatch

import (
	"context"
	"testing"
)

// Engine.Snapshot writes the current state at once; a restart then replays
// nothing from the WAL.
func TestEngineSnapshotNow(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	ok := ExecutorFunc(func(context.Context, Job) Result { return Result{Outcome: OutcomeOK} })
	e, err := Open(Config{Dir: dir, Executor: ok, SnapshotEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []TaskID{"a", "b", "c"} {
		if _, err := e.Submit(ctx, TaskSpec{ID: id, Handler: "h"}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Wait(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.RunUntilIdle(ctx); err != nil {
		t.Fatal(err)
	}
	applied := e.Stats().Applied
	if err := e.Snapshot(ctx); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if seqs := snapshotSeqs(t, dir); len(seqs) != 1 || seqs[0] != applied {
		t.Fatalf("snapshots %v, want one at %d", seqs, applied)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = Open(Config{Dir: dir, Executor: ok, SnapshotEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	rec := e.Recovery()
	if rec.SnapshotSeq != applied || rec.EventsReplayed != 0 {
		t.Fatalf("recovered from snapshot %d replaying %d events, want %d and 0", rec.SnapshotSeq, rec.EventsReplayed, applied)
	}
	if v, ok := e.Task("c"); !ok || v.State != TaskCompleted {
		t.Fatalf("task c after restart: %+v", v.State)
	}
}

// An attempt's log is kept through the WAL and through a snapshot.
func TestAttemptLogSurvivesRestart(t *testing.T) {
	for _, snapshot := range []bool{false, true} {
		t.Run(map[bool]string{false: "wal", true: "snapshot"}[snapshot], func(t *testing.T) {
			dir := t.TempDir()
			ctx := context.Background()
			ex := ExecutorFunc(func(_ context.Context, j Job) Result {
				return Result{Outcome: OutcomeOK, Log: []byte("[info] hello from " + string(j.Run) + "\n")}
			})
			e, err := Open(Config{Dir: dir, Executor: ex, SnapshotEvery: -1})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.Submit(ctx, TaskSpec{ID: "t", Handler: "h"}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.Wait(ctx, "t"); err != nil {
				t.Fatal(err)
			}
			if snapshot {
				if err := e.RunUntilIdle(ctx); err != nil {
					t.Fatal(err)
				}
				if err := e.Snapshot(ctx); err != nil {
					t.Fatal(err)
				}
			}
			e.Close()
			e, err = Open(Config{Dir: dir, Executor: ex, SnapshotEvery: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			v, _ := e.Task("t")
			if got := string(v.Runs[0].Attempts[0].Log); got != "[info] hello from t#1\n" {
				t.Fatalf("log after restart %q", got)
			}
		})
	}
}
