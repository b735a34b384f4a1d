package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
)

func TestWriteTask(t *testing.T) {
	now := time.Date(2026, 12, 4, 5, 0, 0, 0, time.UTC)
	past, future := now.Add(-time.Minute).Format(time.RFC3339Nano), now.Add(time.Hour).Format(time.RFC3339Nano)
	cronRuns := func(n int) []api.RunView {
		var runs []api.RunView
		for i := 1; i <= n; i++ {
			r := api.RunView{ID: fmt.Sprintf("c#%d", i), Index: i, State: "completed"}
			if i == 2 {
				r.State, r.Reason = "canceled", "misfire: skipped, a later occurrence is already due"
			}
			runs = append(runs, r)
		}
		return runs
	}
	tests := []struct {
		name      string
		view      api.TaskView
		maxRuns   int
		want      []string
		wantNot   []string
		wantLines int // 0: not checked
	}{
		{
			name: "blocked on a prerequisite, due in the past",
			view: api.TaskView{ID: "build", State: "pending", Handler: "h", After: []string{"fetch", "lint"}, WaitingFor: []string{"lint"},
				Runs: []api.RunView{{ID: "build#1", State: "scheduled", DueAt: past}}},
			want:    []string{"after: fetch, lint  (blocked: waiting for lint)", "run build#1  blocked\n"},
			wantNot: []string{"due=", "scheduled"},
		},
		{
			name: "blocked and due later",
			view: api.TaskView{ID: "p", State: "pending", Handler: "h", After: []string{"a"}, WaitingFor: []string{"a"},
				Runs: []api.RunView{{ID: "p#1", State: "scheduled", DueAt: future}}},
			want: []string{"run p#1  blocked  due=" + future},
		},
		{
			name: "no longer blocked",
			view: api.TaskView{ID: "p", State: "pending", Handler: "h", After: []string{"a"},
				Runs: []api.RunView{{ID: "p#1", State: "scheduled", DueAt: future}}},
			want:    []string{"after: a\n", "run p#1  scheduled  due="},
			wantNot: []string{"blocked"},
		},
		{
			name: "parent and children",
			view: api.TaskView{ID: "k", State: "waiting_children", Handler: "h", Parent: "root",
				Children: []string{"k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9", "k10", "k11", "k12"}},
			want: []string{"parent: root\n", "children: k1, k2, k3, k4, k5, k6, k7, k8, k9, k10 and 2 more\n"},
		},
		{
			name: "clamped timeout",
			view: api.TaskView{ID: "t", State: "pending", Handler: "h", Timeout: "2h0m0s", EffectiveTimeout: "1h0m0s",
				TimeoutNote: "clamped to 1h0m0s by the server's --max-timeout"},
			want: []string{"timeout: 2h0m0s, attempts get 1h0m0s (clamped to 1h0m0s by the server's --max-timeout)\n"},
		},
		{
			name: "timeout as asked",
			view: api.TaskView{ID: "t", State: "pending", Handler: "h", Timeout: "30s", EffectiveTimeout: "30s"},
			want: []string{"timeout: 30s\n"}, wantNot: []string{"attempts get"},
		},
		{
			name: "a cron task's latest runs", view: api.TaskView{ID: "c", State: "pending", Handler: "h", Runs: cronRuns(25)}, maxRuns: 10,
			want:      []string{"... 15 earlier runs not shown (--runs 0 shows them)\n", "run c#16  completed", "run c#25  completed"},
			wantNot:   []string{"run c#15 ", "run c#2 "},
			wantLines: 12,
		},
		{
			name: "every run with --runs 0", view: api.TaskView{ID: "c", State: "pending", Handler: "h", Runs: cronRuns(25)}, maxRuns: 0,
			want:      []string{"run c#1  completed", "run c#2  canceled  reason=\"misfire: skipped, a later occurrence is already due\"\n"},
			wantNot:   []string{"not shown"},
			wantLines: 26,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			writeTask(&b, tc.view, tc.maxRuns, now)
			out := b.String()
			for _, want := range tc.want {
				if !strings.Contains(out, want) {
					t.Errorf("missing %q in:\n%s", want, out)
				}
			}
			for _, not := range tc.wantNot {
				if strings.Contains(out, not) {
					t.Errorf("unexpected %q in:\n%s", not, out)
				}
			}
			if n := strings.Count(out, "\n"); tc.wantLines != 0 && n != tc.wantLines {
				t.Errorf("%d lines, want %d:\n%s", n, tc.wantLines, out)
			}
		})
	}
}
