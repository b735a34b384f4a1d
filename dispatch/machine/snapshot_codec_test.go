package machine

import (
	"bytes"
	"github.com/google/go-cmp/cmp"
	"testing"
)

func TestSnapshotRoundTrip(t *testing.T) {
	// A state with runs in every state, canceled, paused, with labels and outputs.
	r := newCoreRig(t, coreOpts{workers: 3})
	r.mustSubmit(TaskSpec{ID: "done", Handler: "h", Labels: map[string]string{"a": "b"}})
	r.finish("done#1", Result{Outcome: OutcomeOK, Output: []byte{0, 1}, Module: "sha256:ff"})
	r.mustSubmit(TaskSpec{ID: "failed", Handler: "h"})
	r.finish("failed#1", Result{Outcome: OutcomeOOM, Error: "oom"})
	r.mustSubmit(TaskSpec{ID: "retry", Handler: "h", MaxAttempts: 3, Backoff: Backoff{Kind: BackoffFixed, BaseMs: 99}})
	r.finish("retry#1", Result{Outcome: OutcomeTrap})
	r.mustSubmit(TaskSpec{ID: "running", Handler: "h"})
	r.step(StartedInput{Run: "running#1", Attempt: 1})
	r.mustSubmit(TaskSpec{ID: "leased", Handler: "h"})
	r.mustSubmit(TaskSpec{ID: "busy", Handler: "h"})
	r.mustSubmit(TaskSpec{ID: "ready", Handler: "h", Priority: 3})
	r.mustSubmit(TaskSpec{ID: "rep", Handler: "h", Policy: RunPolicy{Kind: PolicyRepeat, Count: 3, EveryMs: 1000}})
	r.mustSubmit(TaskSpec{ID: "gone", Handler: "h", NotBeforeMs: rigStart + 5000})
	if _, err := r.cancel("gone"); err != nil {
		t.Fatal(err)
	}
	ch := make(chan Reply, 1)
	r.ask(PauseInput{Pause: true, Reply: ch}, ch)
	r.s.Applied = 12345
	states := map[RunState]bool{}
	for _, run := range r.s.Runs {
		states[run.State] = true
	}
	for _, st := range []RunState{RunScheduled, RunReady, RunLeased, RunRunning, RunRetryWait, RunCompleted, RunFailed, RunCanceled} {
		if !states[st] {
			t.Fatalf("setup: no run is %s", st)
		}
	}
	got := rebuilt(t, r.s)
	bw, err := EncodeState(r.s)
	if err != nil {
		t.Fatal(err)
	}
	bg, err := EncodeState(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bw, bg) {
		t.Errorf("decodeState(encodeState(s)) encodes differently: %d bytes vs %d", len(bw), len(bg))
	}
	if a, b := r.s.IndexSummary(), got.IndexSummary(); a != b {
		t.Errorf("decodeState(encodeState(s)): derived indexes differ:\nwant %s\ngot  %s", a, b)
	}
	if !got.Paused || got.NextSubmitSeq != r.s.NextSubmitSeq || got.Applied != 12345 {
		t.Errorf("paused %v next seq %d applied %d", got.Paused, got.NextSubmitSeq, got.Applied)
	}
	// The rebuilt state drives a core exactly as the original does.
	a := newCoreRig(t, coreOpts{workers: 3, state: r.s})
	b := newCoreRig(t, coreOpts{workers: 3, state: got})
	for _, x := range []*coreRig{a, b} {
		x.now = rigStart + 100_000
		x.step(PauseInput{Pause: false})
		x.drive(x.now+100_000, okResult)
	}
	if diff := cmp.Diff(a.events, b.events); diff != "" {
		t.Errorf("events after the original and the rebuilt state (-original +rebuilt):\n%s", diff)
	}
}
