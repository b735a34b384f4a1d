package api

import (
	"encoding/base64"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wasmtask/wasmtask/dispatch"
)

// The JSON task spec lives in dispatch (the same shape over HTTP, in the CLI
// and in the submit host import); these aliases keep the client's names.
type (
	TaskSpec   = dispatch.SpecJSON
	RunPolicy  = dispatch.RunPolicyJSON
	RepeatSpec = dispatch.RepeatJSON
	CronSpec   = dispatch.CronJSON
	Backoff    = dispatch.BackoffJSON
)

// FieldError is a bad request naming the field at fault.
type FieldError = dispatch.ValidationError

// DecodeTaskSpec parses a JSON task spec strictly.
func DecodeTaskSpec(b []byte) (TaskSpec, error) {
	if spec, ok := decodeSpecFast(b); ok {
		return spec, nil
	}
	return dispatch.DecodeSpecJSON(b)
}

func jsonFieldError(err error) error { return dispatch.JSONFieldError(err) }

// TaskView is the JSON view of a task (docs/task-spec.md, "Task view").
type TaskView struct {
	ID          string            `json:"id"`
	Handler     string            `json:"handler"`
	State       string            `json:"state"`
	Runs        []RunView         `json:"runs"`
	Output      *string           `json:"output,omitempty"`
	OutputB64   *string           `json:"output_b64,omitempty"`
	Children    []string          `json:"children"`
	Parent      string            `json:"parent"`
	SubmittedAt string            `json:"submitted_at"`
	FinishedAt  string            `json:"finished_at,omitempty"`
	MaxAttempts int               `json:"max_attempts"`
	Priority    int               `json:"priority"`
	Labels      map[string]string `json:"labels,omitempty"`
	CancelNote  string            `json:"cancel_reason,omitempty"`
	After       []string          `json:"after,omitempty"`
	// WaitingFor: the prerequisites not completed yet; while there are any
	// the task is blocked and its runs do not start.
	WaitingFor []string `json:"waiting_for,omitempty"`
	// Timeout is the spec's attempt timeout (default 30s); EffectiveTimeout
	// what an attempt gets now, after the plugin's limits.timeout and the
	// server's --max-timeout; TimeoutNote says which lowered it.
	Timeout          string     `json:"timeout,omitempty"`
	EffectiveTimeout string     `json:"effective_timeout,omitempty"`
	TimeoutNote      string     `json:"timeout_note,omitempty"`
	ConcurrencyKey   string     `json:"concurrency_key,omitempty"`
	RunPolicy        *RunPolicy `json:"run_policy,omitempty"`
	// Retries counts client retries (POST /v1/tasks/{id}/retry); each
	// added new runs after the earlier ones.
	Retries int `json:"retries,omitempty"`
	// PrunedRuns counts old final runs of a cron task no longer listed.
	PrunedRuns int `json:"pruned_runs,omitempty"`
	// PayloadError names a payload file (an output kept in the data dir's
	// payload store) that could not be read back; the output is left out.
	PayloadError string `json:"payload_error,omitempty"`
}

type RunView struct {
	ID       string        `json:"id"`
	Index    int           `json:"index"`
	State    string        `json:"state"`
	DueAt    string        `json:"due_at,omitempty"`
	Reason   string        `json:"reason,omitempty"` // why a canceled run was canceled
	Attempts []AttemptView `json:"attempts"`
}

type AttemptView struct {
	Number    int    `json:"number"`
	Outcome   string `json:"outcome,omitempty"`
	Retryable bool   `json:"retryable,omitempty"`
	Error     string `json:"error,omitempty"`
	Module    string `json:"module,omitempty"`
	Worker    string `json:"worker,omitempty"`
	LeasedAt  string `json:"leased_at,omitempty"`  // the tick that leased it to a worker
	StartedAt string `json:"started_at,omitempty"` // when it started and ended where it ran

	FinishedAt string  `json:"finished_at,omitempty"`
	Output     *string `json:"output,omitempty"`
	OutputB64  *string `json:"output_b64,omitempty"`
	Log        string  `json:"log,omitempty"`
}

func msTime(ms int64) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

func textOrB64(b []byte) (*string, *string) {
	if b == nil {
		return nil, nil
	}
	s := string(b)
	if utf8.Valid(b) {
		return &s, nil
	}
	e := base64.StdEncoding.EncodeToString(b)
	return nil, &e
}

// viewFrom renders an engine task view.
func viewFrom(v dispatch.TaskView) TaskView {
	out := TaskView{ID: string(v.ID), Handler: v.Handler, State: string(v.State), Children: []string{}, Parent: string(v.Parent),
		CancelNote:  v.CancelNote,
		SubmittedAt: msTime(v.SubmittedAt), FinishedAt: msTime(v.FinalAt), MaxAttempts: v.Spec.MaxAttempts,
		Priority: v.Spec.Priority, Labels: v.Spec.Labels, Runs: []RunView{}, Retries: v.Retries, PrunedRuns: v.PrunedRuns,
		PayloadError: v.PayloadError}
	if (v.State == dispatch.TaskCompleted || v.Output != nil) && (v.Output != nil || v.OutputRef == "") {
		b := v.Output
		if b == nil {
			b = []byte{}
		}
		out.Output, out.OutputB64 = textOrB64(b)
	}
	for _, c := range v.Children {
		out.Children = append(out.Children, string(c))
	}
	for _, a := range v.After {
		out.After = append(out.After, string(a))
	}
	for _, a := range v.WaitingFor {
		out.WaitingFor = append(out.WaitingFor, string(a))
	}
	if v.Spec.TimeoutMs > 0 {
		out.Timeout = (time.Duration(v.Spec.TimeoutMs) * time.Millisecond).String()
	}
	if k := v.Spec.ConcurrencyKey; k != "" {
		out.ConcurrencyKey = k
	}
	out.RunPolicy = policyJSON(v.Spec.Policy)
	for _, r := range v.Runs {
		rv := RunView{ID: string(r.ID), Index: r.Index, State: string(r.State), Reason: r.Reason, Attempts: []AttemptView{}}
		if r.State == dispatch.RunScheduled || r.State == dispatch.RunRetryWait {
			rv.DueAt = msTime(r.DueAt)
		}
		for _, a := range r.Attempts {
			av := AttemptView{Number: a.Number, Outcome: string(a.Outcome), Retryable: a.Retryable, Error: a.Error,
				Module: a.Module, Worker: a.Worker, LeasedAt: msTime(a.LeasedAt), StartedAt: msTime(a.StartedAt), FinishedAt: msTime(a.FinishedAt)}
			av.Output, av.OutputB64 = textOrB64(a.Output)
			av.Log = strings.ToValidUTF8(string(a.Log), "\uFFFD")
			rv.Attempts = append(rv.Attempts, av)
		}
		out.Runs = append(out.Runs, rv)
	}
	return out
}

// policyJSON is the spec's run policy in the task spec's JSON shape.
func policyJSON(p dispatch.RunPolicy) *RunPolicy {
	switch p.Kind {
	case dispatch.PolicyRepeat:
		r := &RepeatSpec{Count: p.Count}
		if p.EveryMs > 0 {
			r.Every = (time.Duration(p.EveryMs) * time.Millisecond).String()
		}
		return &RunPolicy{Repeat: r}
	case dispatch.PolicyCron:
		return &RunPolicy{Cron: &CronSpec{Expr: p.CronExpr, MaxRuns: p.MaxRuns, TimeZone: p.TimeZone, Misfire: p.Misfire}}
	default:
		return &RunPolicy{Once: &struct{}{}}
	}
}
