package dispatch

import (
	"context"
	"testing"
	"time"
)

// TestAttemptTimesFromEvents: started_at and finished_at come from the
// times the executor measured (ExecStart, ExecEnd); events written before
// those fields existed replay with the ticks' times, as before.
func TestAttemptTimesFromEvents(t *testing.T) {
	cases := []struct {
		name                   string
		started, finished      Event
		wantStarted, wantEnded int64
	}{
		{name: "old log: the ticks' times", started: evStarted1, finished: evCompleted1, wantStarted: 3, wantEnded: 4},
		{name: "measured where it ran",
			started:     withExec(evStarted1, 2, 0),
			finished:    withExec(evCompleted1, 2, 40),
			wantStarted: 2, wantEnded: 40},
		{name: "start known only from the result",
			started:     evStarted1,
			finished:    withExec(evCompleted1, 3, 35),
			wantStarted: 3, wantEnded: 35},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := applyChain(t, []Event{evSubmitted, evReady, evLeased1, tc.started, tc.finished})
			a := s.Runs["t#1"].Attempts[0]
			if a.LeasedAt != evLeased1.At || a.StartedAt != tc.wantStarted || a.FinishedAt != tc.wantEnded {
				t.Errorf("leased, started, finished = %d, %d, %d; want %d, %d, %d", a.LeasedAt, a.StartedAt, a.FinishedAt, evLeased1.At, tc.wantStarted, tc.wantEnded)
			}
		})
	}
}

func withExec(e Event, start, end int64) Event {
	e.ExecStart, e.ExecEnd = start, end
	return e
}

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
