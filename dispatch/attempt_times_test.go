package dispatch

import (
	"context"
	"testing"
	"time"
)

// TestAttemptTimesMeasuredByTheWorker: a 30 ms attempt shows at least
// 30 ms between started_at and finished_at, whether the executor reports
// its times or the worker measures them; an executor's own times are kept
// as reported, and survive a restart (replay).
func TestAttemptTimesMeasuredByTheWorker(t *testing.T) {
	ranAt := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	cases := []struct {
		name string
		ex   ExecutorFunc
		want func(a Attempt) string // "" when fine
	}{
		{name: "worker measures a 30 ms attempt", ex: func(context.Context, Job) Result {
			time.Sleep(30 * time.Millisecond)
			return Result{Outcome: OutcomeOK}
		}},
		{name: "executor reports its own times", ex: func(context.Context, Job) Result {
			time.Sleep(30 * time.Millisecond)
			return Result{Outcome: OutcomeOK, StartedAt: ranAt, FinishedAt: ranAt.Add(30 * time.Millisecond)}
		}, want: func(a Attempt) string {
			if a.StartedAt != ranAt.UnixMilli() || a.FinishedAt != ranAt.UnixMilli()+30 {
				return "want the executor's times"
			}
			return ""
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			open := func() *Engine {
				e, err := Open(Config{Dir: dir, Executor: tc.ex, Workers: 2, Logger: quietLogger(), SnapshotEvery: -1})
				if err != nil {
					t.Fatal(err)
				}
				return e
			}
			e := open()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if _, err := e.Submit(ctx, TaskSpec{ID: "t", Handler: "h"}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.Wait(ctx, "t"); err != nil {
				t.Fatal(err)
			}
			for pass, reopen := range []bool{false, true} {
				if reopen {
					if err := e.Close(); err != nil {
						t.Fatal(err)
					}
					e = open()
				}
				v, _ := e.Task("t")
				a := v.Runs[0].Attempts[0]
				if d := a.FinishedAt - a.StartedAt; d < 30 {
					t.Errorf("pass %d: %d ms between started_at and finished_at of a 30 ms attempt", pass, d)
				}
				if a.LeasedAt == 0 || (tc.want == nil && a.LeasedAt > a.StartedAt) {
					t.Errorf("pass %d: leased at %d, started at %d", pass, a.LeasedAt, a.StartedAt)
				}
				if tc.want != nil {
					if msg := tc.want(a); msg != "" {
						t.Errorf("pass %d: started %d, finished %d: %s", pass, a.StartedAt, a.FinishedAt, msg)
					}
				}
			}
			e.Close()
		})
	}
}
