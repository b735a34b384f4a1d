package machine

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestWorkflowChildrenCommitWithSuccess checks at the core that children
// are written in the same batch (one WAL frame) as the attempt's success,
// before it, and that a failing attempt writes none.
func TestWorkflowChildrenCommitWithSuccess(t *testing.T) {
	kids := func(run RunID) [][]byte {
		return childrenOf(t, run, []SpecJSON{{Handler: "h"}, {Handler: "h"}, {Handler: "h"}})
	}
	tests := []struct {
		name    string
		results []Result // of P's attempts, in order
		want    TaskState
	}{
		{name: "ok", results: []Result{{Outcome: OutcomeOK}}, want: TaskWaitingChildren},
		{name: "failed then ok", results: []Result{{Outcome: OutcomeFailed, Retryable: true}, {Outcome: OutcomeOK}}, want: TaskWaitingChildren},
		{name: "trap then failed", results: []Result{{Outcome: OutcomeTrap}, {Outcome: OutcomeFailed}}, want: TaskFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newCoreRig(t, coreOpts{})
			r.mustSubmit(TaskSpec{ID: "P", Handler: "h", MaxAttempts: 2, Backoff: Backoff{Kind: BackoffFixed}})
			for i, res := range tc.results {
				res.Children = kids("P#1")
				b := r.finish("P#1", res)
				var submitted []TaskID
				finished := -1
				for k, e := range b.Events {
					switch {
					case e.Type == EvTaskSubmitted:
						submitted = append(submitted, e.Task)
						if e.Spec.Parent != "P" {
							t.Errorf("child %s has parent %q", e.Task, e.Spec.Parent)
						}
						if finished >= 0 {
							t.Errorf("child %s written after the parent's attempt ended", e.Task)
						}
					case e.Type == EvAttemptFinished && e.Run == "P#1":
						finished = k
					}
				}
				if finished < 0 {
					t.Fatalf("attempt %d: no EvAttemptFinished in its batch", i+1)
				}
				want := []TaskID(nil)
				if res.Outcome == OutcomeOK {
					want = []TaskID{childID("P#1", 1), childID("P#1", 2), childID("P#1", 3)}
				}
				if !slices.Equal(submitted, want) {
					t.Errorf("attempt %d (%s) submitted %v, want %v", i+1, res.Outcome, submitted, want)
				}
				if i < len(tc.results)-1 {
					r.step() // the retry becomes due and is leased
				}
			}
			if got := r.s.StateOf(r.s.Tasks["P"]); got != tc.want {
				t.Errorf("P is %s, want %s", got, tc.want)
			}
		})
	}
}

// childID is the id the host derives for the n-th child of run.
func childID(run RunID, n int) TaskID {
	return TaskID(strings.Replace(string(run), "#", "-r", 1) + "-c" + strconv.Itoa(n))
}

// childrenOf stages specs as the host does: each gets the id derived from
// run and its ordinal unless it names one.
func childrenOf(t testing.TB, run RunID, specs []SpecJSON) [][]byte {
	var out [][]byte
	for i, s := range specs {
		if s.ID == "" {
			s.ID = string(childID(run, i+1))
		}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}
