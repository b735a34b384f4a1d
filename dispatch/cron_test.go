package dispatch

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// Tests of cron run policies on an Engine with a ManualClock (rigEpoch is
// Wednesday 2030-01-02 03:04:05 UTC), and of the catch-up bound on a Core.

func cronSpec(expr, tz string) TaskSpec {
	return TaskSpec{ID: "cron", Policy: RunPolicy{Kind: PolicyCron, CronExpr: expr, TimeZone: tz}}
}

func utc(s string) time.Time {
	t, err := time.Parse(time.DateTime, s)
	if err != nil {
		panic(err)
	}
	return t
}

// dueTimes returns the due times of v's runs in the given states.
func dueTimes(v TaskView, states ...RunState) []time.Time {
	var out []time.Time
	for _, r := range v.Runs {
		if slices.Contains(states, r.State) {
			out = append(out, time.UnixMilli(r.DueAt).UTC())
		}
	}
	return out
}

func TestCronWindow(t *testing.T) {
	tests := []struct {
		name     string
		expr, tz string
		want     []string // UTC due times of the first CronWindow runs
	}{
		{name: "6 fields: every 15 seconds", expr: "*/15 * * * * *",
			want: []string{"2030-01-02 03:04:15", "2030-01-02 03:04:30", "2030-01-02 03:04:45"}},
		{name: "5 fields: every 15 minutes", expr: "*/15 * * * *",
			want: []string{"2030-01-02 03:15:00", "2030-01-02 03:30:00", "2030-01-02 03:45:00"}},
		{name: "5 fields: 0 12 is noon every day", expr: "0 12 * * *",
			want: []string{"2030-01-02 12:00:00", "2030-01-03 12:00:00", "2030-01-04 12:00:00"}},
		{name: "6 fields: 0 12 is minute 12 of every hour", expr: "0 12 * * * *",
			want: []string{"2030-01-02 03:12:00", "2030-01-02 04:12:00", "2030-01-02 05:12:00"}},
		{name: "6 fields: second 30 past every hour", expr: "30 0 * * * *",
			want: []string{"2030-01-02 04:00:30", "2030-01-02 05:00:30", "2030-01-02 06:00:30"}},
		{name: "descriptor @hourly", expr: "@hourly",
			want: []string{"2030-01-02 04:00:00", "2030-01-02 05:00:00", "2030-01-02 06:00:00"}},
		{name: "time zone: 9:00 on Mondays and Fridays in New York (EST, UTC-5)", expr: "0 9 * * 1,5", tz: "America/New_York",
			want: []string{"2030-01-04 14:00:00", "2030-01-07 14:00:00", "2030-01-11 14:00:00"}},
		{name: "time zone: midnight in Kolkata (UTC+5:30)", expr: "0 0 * * *", tz: "Asia/Kolkata",
			want: []string{"2030-01-02 18:30:00", "2030-01-03 18:30:00", "2030-01-04 18:30:00"}},
		{name: "time zone, 6 fields: 8:00:10 in Berlin (CET, UTC+1)", expr: "10 0 8 * * *", tz: "Europe/Berlin",
			want: []string{"2030-01-02 07:00:10", "2030-01-03 07:00:10", "2030-01-04 07:00:10"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, x := newWorkflowRig(t, nil, nil)
			r.submit(cronSpec(tc.expr, tc.tz))
			r.idle()
			var want []time.Time
			for _, s := range tc.want {
				want = append(want, utc(s))
			}
			v := r.view("cron")
			if got := dueTimes(v, RunScheduled); !slices.Equal(got, want) || len(v.Runs) != CronWindow {
				t.Fatalf("scheduled %v (%d runs), want %v", got, len(v.Runs), want)
			}
			// The first occurrence runs on time and the window moves on.
			r.advance(want[0].Sub(r.clock.Now()))
			v = r.view("cron")
			if got := dueTimes(v, RunCompleted); !slices.Equal(got, want[:1]) {
				t.Errorf("completed %v, want %v", got, want[:1])
			}
			if got := dueTimes(v, RunScheduled); len(got) != CronWindow || !slices.Equal(got[:2], want[1:]) || !got[2].After(want[2]) {
				t.Errorf("scheduled after the first run: %v, want %v and one later", got, want[1:])
			}
			if s := x.all(); len(s) != 1 || s[0].job.Run != "cron#1" {
				t.Errorf("attempts %v, want cron#1 once", s)
			}
			if v.State != TaskPending {
				t.Errorf("cron task is %s, want pending", v.State)
			}
		})
	}
}

func TestCronMaxRuns(t *testing.T) {
	tests := []struct {
		name         string
		maxRuns      int
		restartAfter int // restart after this many minutes (0: none)
	}{
		{name: "max_runs 1", maxRuns: 1},
		{name: "max_runs 2, below the window", maxRuns: 2},
		{name: "max_runs 5", maxRuns: 5},
		{name: "max_runs 5 with a restart", maxRuns: 5, restartAfter: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, x := newWorkflowRig(t, nil, nil)
			spec := cronSpec("0 * * * * *", "")
			spec.Policy.MaxRuns = tc.maxRuns
			r.submit(spec)
			r.idle()
			if n := len(r.view("cron").Runs); n != min(tc.maxRuns, CronWindow) {
				t.Errorf("%d runs at submit, want %d", n, min(tc.maxRuns, CronWindow))
			}
			for i := 1; i <= tc.maxRuns+3; i++ {
				r.advance(time.Minute)
				if i == tc.restartAfter {
					r.reopen()
					r.idle()
				}
				if n := len(x.all()); n != min(i, tc.maxRuns) {
					t.Fatalf("after %d minutes %d attempts, want %d", i, n, min(i, tc.maxRuns))
				}
			}
			v := r.view("cron")
			if v.State != TaskCompleted || len(v.Runs) != tc.maxRuns {
				t.Errorf("cron task %s with %d runs, want completed with %d", v.State, len(v.Runs), tc.maxRuns)
			}
			if got := dueTimes(v, RunCompleted); len(got) != tc.maxRuns || !got[0].Equal(utc("2030-01-02 03:05:00")) {
				t.Errorf("completed runs due %v", got)
			}
		})
	}
}

// TestCronMisfire: an every-minute cron task misses 10 hours (600
// occurrences, 03:05 to 13:04), the engine running or down.
func TestCronMisfire(t *testing.T) {
	const gap = 10 * time.Hour
	latest := utc("2030-01-02 13:04:00") // the last occurrence before 13:04:05
	tests := []struct {
		name    string
		misfire string
		maxRuns int
		// wantRan: attempts for the gap; wantDue: the due time of the first and last.
		wantRan             int
		wantFirst, wantLast time.Time
		// wantFuture: runs scheduled after the gap; wantState: the task's then.
		wantFuture int
		wantState  TaskState
	}{
		{name: "skip runs only the latest occurrence", misfire: MisfireSkip,
			wantRan: 1, wantFirst: latest, wantLast: latest, wantFuture: CronWindow, wantState: TaskPending},
		// 600 ran; the task lists the last CronRunsKept.
		{name: "catch_up runs every occurrence", misfire: MisfireCatchUp,
			wantRan: 600, wantFirst: latest.Add(-(CronRunsKept - 1) * time.Minute), wantLast: latest, wantFuture: CronWindow, wantState: TaskPending},
		{name: "catch_up stops at max_runs", misfire: MisfireCatchUp, maxRuns: 100,
			wantRan: 100, wantFirst: utc("2030-01-02 03:05:00"), wantLast: utc("2030-01-02 04:44:00"), wantState: TaskCompleted},
		// 3 runs skipped, which do not count: the latest, then 4 more.
		{name: "skip with max_runs: skipped runs do not count", misfire: MisfireSkip, maxRuns: 5,
			wantRan: 1, wantFirst: latest, wantLast: latest, wantFuture: CronWindow, wantState: TaskPending},
	}
	for _, tc := range tests {
		for _, restart := range []bool{false, true} {
			name := tc.name + ", engine running"
			if restart {
				name = tc.name + ", engine down"
			}
			t.Run(name, func(t *testing.T) {
				r, x := newWorkflowRig(t, nil, nil)
				spec := cronSpec("0 * * * * *", "")
				spec.Policy.Misfire, spec.Policy.MaxRuns = tc.misfire, tc.maxRuns
				r.submit(spec)
				r.idle()
				if restart {
					r.close()
					r.clock.Advance(gap)
					r.open()
					r.idle()
				} else {
					r.advance(gap)
				}
				v := r.view("cron")
				ran := dueTimes(v, RunCompleted)
				if len(ran)+v.PrunedRuns != tc.wantRan || len(x.all()) != tc.wantRan || len(ran) > CronRunsKept {
					t.Fatalf("%d runs completed and listed, %d pruned (%d attempts), want %d", len(ran), v.PrunedRuns, len(x.all()), tc.wantRan)
				}
				if !ran[0].Equal(tc.wantFirst) || !ran[len(ran)-1].Equal(tc.wantLast) {
					t.Errorf("ran occurrences %s .. %s, want %s .. %s", ran[0], ran[len(ran)-1], tc.wantFirst, tc.wantLast)
				}
				for i := 1; i < len(ran); i++ {
					if ran[i].Sub(ran[i-1]) != time.Minute {
						t.Errorf("occurrence %s follows %s", ran[i], ran[i-1])
						break
					}
				}
				if got := dueTimes(v, RunScheduled); len(got) != tc.wantFuture {
					t.Errorf("%d runs scheduled after the gap (%v), want %d", len(got), got, tc.wantFuture)
				} else if len(got) > 0 && !got[0].Equal(latest.Add(time.Minute)) {
					t.Errorf("next run due %s, want %s", got[0], latest.Add(time.Minute))
				}
				if v.State != tc.wantState {
					t.Errorf("cron task is %s, want %s", v.State, tc.wantState)
				}
				// A skipped occurrence says why it was canceled.
				for _, run := range v.Runs {
					if (run.State == RunCanceled) != strings.HasPrefix(run.Reason, "misfire: skipped") {
						t.Errorf("run %s %s has reason %q, want a misfire reason exactly on canceled runs", run.ID, run.State, run.Reason)
						break
					}
				}
				// The schedule goes on as before.
				r.advance(time.Minute)
				v = r.view("cron")
				if tc.maxRuns == 0 {
					if got := dueTimes(v, RunCompleted); len(got)+v.PrunedRuns != tc.wantRan+1 {
						t.Errorf("a minute later %d runs completed, want %d", len(got)+v.PrunedRuns, tc.wantRan+1)
					}
					return
				}
				for range tc.maxRuns {
					if v.State == TaskCompleted {
						break
					}
					r.advance(time.Minute)
					v = r.view("cron")
				}
				if got := dueTimes(v, RunCompleted); v.State != TaskCompleted || len(got) != tc.maxRuns || len(x.all()) != tc.maxRuns {
					t.Errorf("with max_runs %d: task %s with %d runs completed (%d attempts), want completed with %d", tc.maxRuns, v.State, len(got), len(x.all()), tc.maxRuns)
				}
			})
		}
	}
}
