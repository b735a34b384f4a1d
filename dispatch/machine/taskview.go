package machine

import "slices"

// TaskView is a read-only copy of a task and its runs.
type TaskView struct {
	ID          TaskID    `json:"id"`
	Handler     string    `json:"handler"`
	State       TaskState `json:"state"`
	Spec        TaskSpec  `json:"spec"`
	SubmittedAt int64     `json:"submitted_at_ms"`
	FinalAt     int64     `json:"final_at_ms,omitempty"`
	Canceled    bool      `json:"canceled,omitempty"`
	CancelNote  string    `json:"cancel_reason,omitempty"`
	Parent      TaskID    `json:"parent,omitempty"`
	Children    []TaskID  `json:"children,omitempty"`
	After       []TaskID  `json:"after,omitempty"`
	// WaitingFor lists the prerequisites that have not completed: while it
	// is not empty the task's runs do not start, whatever their due time.
	WaitingFor []TaskID `json:"waiting_for,omitempty"`
	Runs       []Run    `json:"runs"`
	// Retries counts client retries; runs from index RetryFrom on are the
	// latest retry's.
	Retries int `json:"retries,omitempty"`
	// PrunedRuns counts old final runs of a cron task no longer listed.
	PrunedRuns int `json:"pruned_runs,omitempty"`
	// Output of the last successful attempt, if any. When it is in the
	// payload store, OutputRef and OutputSize name it and the engine reads
	// it into Output.
	Output     []byte `json:"output,omitempty"`
	OutputRef  string `json:"output_ref,omitempty"`
	OutputSize int64  `json:"output_size,omitempty"`
	// PayloadError says why an input or output in the payload store could
	// not be read (a damaged file, named); the rest of the view is sound.
	PayloadError string `json:"payload_error,omitempty"`
	seq          uint64
}

// Final reports whether the task can no longer change.
func (v TaskView) Final() bool {
	return v.State == TaskCompleted || v.State == TaskFailed || v.State == TaskCanceled
}

// ViewOf returns a copy of t and its runs as callers see it.
func ViewOf(s *State, t *Task) TaskView {
	v := TaskView{ID: t.Spec.ID, Handler: t.Spec.Handler, Spec: t.Spec, SubmittedAt: t.SubmittedAt,
		FinalAt: t.FinalAt, Canceled: t.Canceled, CancelNote: t.more().CancelNote, Parent: t.Spec.Parent,
		Children: slices.Clone(t.linked().children), After: t.prereqs(), seq: t.SubmitSeq, State: s.StateOf(t),
		Retries: t.more().Retries, PrunedRuns: t.more().Pruned}
	if t.linked().waiting > 0 && !t.IsFinal() {
		for _, p := range v.After {
			if pt := s.Tasks[p]; pt == nil || !pt.IsFinal() || pt.result() != TaskCompleted {
				v.WaitingFor = append(v.WaitingFor, p)
			}
		}
	}
	for _, id := range t.Runs {
		r := *s.Runs[id]
		r.Attempts = slices.Clone(r.Attempts)
		v.Runs = append(v.Runs, r)
		if r.State == RunCompleted {
			if a := r.Current(); a != nil {
				v.Output, v.OutputRef, v.OutputSize = a.Output, a.OutputRef, a.OutputSize
			}
		}
	}
	return v
}
