package dispatch

import (
	"errors"
	"testing"
)

func mustValidate(t *testing.T, spec TaskSpec) ValidSpec {
	t.Helper()
	v, err := Validate(spec)
	if err != nil {
		t.Fatalf("Validate(%+v): %v", spec, err)
	}
	return v
}

// TestSubmitValid: SubmitValidView and SubmitValidMany submit specs
// checked once (ValidSpec) as SubmitView and SubmitMany submit TaskSpecs:
// the task holds the normalized spec, a resubmission is a duplicate, a
// different spec under the same id a conflict, an id is generated.
func TestSubmitValid(t *testing.T) {
	r := newEngineRig(t, func(c *Config) { c.Workers = 1 })
	ctx := r.ctx()
	res, v, err := r.e.SubmitValidView(ctx, mustValidate(t, TaskSpec{ID: "a", Handler: "h", Input: []byte("in")}))
	if err != nil {
		t.Fatalf("SubmitValidView: %v", err)
	}
	if res.Task != "a" || res.Duplicate || v.State != TaskPending || string(v.Spec.Input) != "in" ||
		v.Spec.MaxAttempts != DefaultMaxAttempts || v.Spec.TimeoutMs != DefaultTimeoutMs || len(v.Runs) != 1 {
		t.Fatalf("SubmitValidView = %+v, %+v; want a new pending task with the defaults and one run", res, v)
	}
	r.idle()
	if res, v, err = r.e.SubmitValidView(ctx, mustValidate(t, TaskSpec{ID: "a", Handler: "h", Input: []byte("in")})); err != nil || !res.Duplicate || v.State != TaskCompleted {
		t.Fatalf("resubmission: %+v, state %s, %v; want a duplicate of the completed task", res, v.State, err)
	}
	// A TaskSpec with the defaults left out is the same submission.
	if res, _, err = r.e.SubmitView(ctx, TaskSpec{ID: "a", Handler: "h", Input: []byte("in")}); err != nil || !res.Duplicate {
		t.Fatalf("resubmission through SubmitView: %+v, %v; want a duplicate", res, err)
	}

	r.pause()
	ticks := r.e.Stats().Ticks
	many := []ValidSpec{
		mustValidate(t, TaskSpec{ID: "b", Handler: "h"}),
		mustValidate(t, TaskSpec{ID: "a", Handler: "h", Input: []byte("in")}), // duplicate
		mustValidate(t, TaskSpec{ID: "a", Handler: "other"}),                  // conflict
		mustValidate(t, TaskSpec{Handler: "h"}),                               // id generated
	}
	results, errs, err := r.e.SubmitValidMany(ctx, many)
	if err != nil {
		t.Fatalf("SubmitValidMany: %v", err)
	}
	switch {
	case errs[0] != nil || results[0].Task != "b" || results[0].Duplicate:
		t.Errorf("b: %+v %v, want new", results[0], errs[0])
	case errs[1] != nil || !results[1].Duplicate:
		t.Errorf("a again: %+v %v, want a duplicate", results[1], errs[1])
	case !errors.Is(errs[2], ErrConflict):
		t.Errorf("a, other handler: %v, want ErrConflict", errs[2])
	case errs[3] != nil || results[3].Task == "":
		t.Errorf("no id: %+v %v, want a generated id", results[3], errs[3])
	}
	if n := r.e.Stats().Ticks - ticks; n != 1 {
		t.Errorf("the batch took %d ticks, want 1", n)
	}
	r.resume()
	r.idle()
	r.checkStates(map[TaskID]TaskState{"a": TaskCompleted, "b": TaskCompleted, results[3].Task: TaskCompleted})
}
