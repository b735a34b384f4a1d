package main

import (
	"strings"
	"testing"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/cluster"
)

// cluster status prints each member's lag; add and remove answer the
// configuration only, whose zero lags are not measurements, so they print
// no lag (they said "applied 0, lag 0" for every member).
func TestWriteClusterStatus(t *testing.T) {
	st := api.ClusterStatus{Status: cluster.Status{NodeID: "n1", Role: "leader", Term: 2, Leader: "n1", CommitIndex: 12,
		Servers: []cluster.Server{
			{ID: "n1", RaftAddr: "127.0.0.1:7101", HTTP: "http://127.0.0.1:7070", Voter: true, Leader: true, AppliedIndex: 12},
			{ID: "n2", RaftAddr: "127.0.0.1:7102", HTTP: "http://127.0.0.1:7071", Voter: true, AppliedIndex: 9, Lag: 3},
			{ID: "n4", RaftAddr: "127.0.0.1:7104", Voter: true, Error: "its HTTP address is not known yet"},
		}}}
	for _, tc := range []struct {
		name      string
		lags      bool
		want, not []string
	}{
		{"status", true,
			[]string{"  n1         127.0.0.1:7101         http://127.0.0.1:7070        voter, leader  applied 12, lag 0\n",
				"  n2         127.0.0.1:7102         http://127.0.0.1:7071        voter  applied 9, lag 3\n",
				"voter  unreachable: its HTTP address is not known yet\n"},
			[]string{"cluster status shows"}},
		{"membership change", false,
			[]string{"  n1         127.0.0.1:7101         http://127.0.0.1:7070        voter, leader\n",
				"  n4         127.0.0.1:7104         -                            voter\n",
				"(wasmtask cluster status shows how far each member is behind)\n"},
			[]string{"applied", "lag", "unreachable", " \n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			writeClusterStatus(&b, st, tc.lags)
			out := b.String()
			if !strings.HasPrefix(out, "node n1: leader, term 2, leader n1\n") {
				t.Errorf("first line:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(strings.SplitN(out, "\n", 3)[2], n) {
					t.Errorf("output's member lines hold %q:\n%s", n, out)
				}
			}
		})
	}
}
