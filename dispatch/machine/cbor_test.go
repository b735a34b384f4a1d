package machine

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// The hand-written encoders of cbor.go against the library they stand in
// for: the same bytes for random values, edge cases included.

func randomCBORSpec(r *rand.Rand) *TaskSpec {
	ints := []int64{0, 1, -1, 23, 24, -25, 255, 256, 65536, 1 << 40, math.MaxInt64, math.MinInt64}
	i := func() int64 { return ints[r.IntN(len(ints))] }
	strs := []string{"", "a", "ü", strings.Repeat("k", 24), strings.Repeat("l", 300)}
	str := func() string { return strs[r.IntN(len(strs))] }
	floats := []float64{0, 0.1, 0.25, 0.5, 1, 1e-10, 3.4e38, 1e300, -0.0, math.NaN(), math.Inf(1), math.Inf(-1), 0.3333333333, 65504, 65505, 1.0 / 3}
	s := &TaskSpec{ID: TaskID(str()), Handler: str(), Policy: RunPolicy{Kind: PolicyKind(str()), Count: int(i()), EveryMs: i()},
		MaxAttempts: int(i()), TimeoutMs: i(), Backoff: Backoff{Kind: BackoffKind(str()), BaseMs: i(), MaxMs: i(), Jitter: floats[r.IntN(len(floats))]},
		Priority: int(i()), NotBeforeMs: i()}
	switch r.IntN(3) {
	case 0:
		s.Input = []byte(str())
	case 1: // in the payload store
		s.InputRef, s.InputSize = PayloadRefOf([]byte(str())), i()
	}
	switch r.IntN(3) {
	case 0:
		s.Labels = map[string]string{}
	case 1:
		s.Labels = map[string]string{}
		for range r.IntN(6) {
			s.Labels[str()+str()] = str()
		}
	}
	return s
}

func randomCBORRun(r *rand.Rand, task TaskID, index int) *Run {
	run := &Run{ID: MakeRunID(task, index), Task: task, Index: index, State: []RunState{RunReady, RunRunning, RunCompleted, RunFailed, ""}[r.IntN(5)],
		DueAt: r.Int64N(1 << 42), UpdateAt: r.Int64N(1<<42) - 1<<41}
	if r.IntN(2) == 0 {
		run.LeaseExp = r.Int64N(1 << 42)
	}
	if r.IntN(3) == 0 {
		run.Reason = "misfire: skipped ü"
	}
	switch r.IntN(3) {
	case 0:
		run.Attempts = []Attempt{}
	case 1:
		for n := range 1 + r.IntN(3) {
			a := Attempt{Number: n + 1, LeasedAt: r.Int64N(1 << 42)}
			if r.IntN(2) == 0 {
				a = Attempt{Number: n + 1, Worker: "pid1/w2", LeasedAt: 5, StartedAt: 6, FinishedAt: 7, Outcome: OutcomeTrap,
					Retryable: true, Error: "boom ü", Output: []byte{0, 1, 2}, Module: "sha256:00"}
			}
			if r.IntN(3) == 0 {
				a.Output, a.OutputRef, a.OutputSize = nil, PayloadRefOf([]byte{byte(n)}), r.Int64N(1<<24)
			}
			run.Attempts = append(run.Attempts, a)
		}
	}
	return run
}

func randomCBORState(r *rand.Rand, tasks int) *State {
	s := NewState()
	s.Applied, s.NextSubmitSeq, s.Paused = r.Uint64(), uint64(tasks+1), r.IntN(2) == 0
	for i := range tasks {
		id := TaskID(fmt.Sprintf("t%05d", i))
		t := &Task{Spec: *randomCBORSpec(r), SubmitSeq: uint64(tasks - i), SubmittedAt: r.Int64N(1 << 42)}
		t.Spec.ID = id
		if r.IntN(3) == 0 {
			t.Canceled = true
			t.editMore().CancelNote = "why"
		}
		if r.IntN(2) == 0 {
			t.FinalAt = r.Int64N(1 << 42)
		}
		for k := range 1 + r.IntN(3) {
			run := randomCBORRun(r, id, k+1)
			t.Runs = append(t.Runs, run.ID)
			s.Runs[run.ID] = run
			if run.State.Final() {
				t.finalRuns++
			}
		}
		s.Tasks[id] = t
	}
	return s
}

func TestCBOREncodersMatchLibrary(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	check := func(what string, v any, got []byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		want, err := encMode.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s %+v:\nfast    %x\nlibrary %x", what, v, got, want)
		}
	}
	for range 3000 {
		spec := randomCBORSpec(r)
		got, err := appendSpec(nil, spec)
		check("spec", spec, got, err)
		task := &Task{Spec: *spec, SubmitSeq: r.Uint64(), SubmittedAt: -r.Int64N(9), Runs: []RunID{"a#1", "a#2"}[:r.IntN(3)],
			Canceled: r.IntN(2) == 0, FinalAt: r.Int64N(3)}
		switch r.IntN(3) { // none, set but empty, a cancel reason
		case 1:
			task.TaskMore = &TaskMore{}
		case 2:
			task.TaskMore = &TaskMore{CancelNote: "n"}
		}
		if r.IntN(4) == 0 {
			task.Runs = nil
		}
		got, err = appendTask(nil, task)
		check("task", task, got, err)
		run := randomCBORRun(r, "a", 1+r.IntN(30))
		check("run", run, appendRun(nil, run), nil)
	}
	for _, n := range []int{0, 1, 7, 300} {
		s := randomCBORState(r, n)
		s.Paused = n%2 == 0
		got, err := EncodeState(s)
		want, _ := EncodeStateLibrary(s)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("state of %d tasks: err %v, fast %d bytes, library %d bytes", n, err, len(got), len(want))
		}
	}
}
