package machine

import (
	"testing"
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
