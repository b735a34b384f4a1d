package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wasmtask/wasmtask/dispatch"
)

// TaskSpec is the JSON task spec of INTERFACE.md.
type TaskSpec struct {
	ID             string            `json:"id,omitempty"`
	Handler        string            `json:"handler"`
	Input          *string           `json:"input,omitempty"`
	InputB64       *string           `json:"input_b64,omitempty"`
	RunPolicy      *RunPolicy        `json:"run_policy,omitempty"`
	MaxAttempts    int               `json:"max_attempts,omitempty"`
	Timeout        string            `json:"timeout,omitempty"`
	Backoff        *Backoff          `json:"backoff,omitempty"`
	Priority       int               `json:"priority,omitempty"`
	ConcurrencyKey string            `json:"concurrency_key,omitempty"`
	NotBefore      string            `json:"not_before,omitempty"`
	After          []string          `json:"after,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
}

// RunPolicy is exactly one of once, repeat, cron.
type RunPolicy struct {
	Once   *struct{}   `json:"once,omitempty"`
	Repeat *RepeatSpec `json:"repeat,omitempty"`
	Cron   *CronSpec   `json:"cron,omitempty"`
}

type RepeatSpec struct {
	Count int    `json:"count"`
	Every string `json:"every,omitempty"`
}

type CronSpec struct {
	Expr     string `json:"expr"`
	MaxRuns  int    `json:"max_runs,omitempty"`
	TimeZone string `json:"time_zone,omitempty"`
	Misfire  string `json:"misfire,omitempty"`
}

type Backoff struct {
	Kind   string   `json:"kind,omitempty"`
	Base   string   `json:"base,omitempty"`
	Max    string   `json:"max,omitempty"`
	Jitter *float64 `json:"jitter,omitempty"`
}

// FieldError is a bad request naming the field at fault.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// DecodeTaskSpec parses a JSON task spec strictly: unknown fields and
// trailing data are errors naming them.
func DecodeTaskSpec(b []byte) (TaskSpec, error) {
	var s TaskSpec
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return s, jsonFieldError(err)
	}
	if dec.More() {
		return s, fieldErr("body", "unexpected data after the task spec")
	}
	return s, nil
}

// jsonFieldError turns encoding/json errors into FieldErrors.
func jsonFieldError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fieldErr(te.Field, "want %s, got JSON %s", te.Type, te.Value)
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return fieldErr(strings.Trim(f, `"`), "unknown field (see INTERFACE.md for the task spec)")
	}
	return fieldErr("body", "invalid JSON: %s", msg)
}

func parseDuration(field, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fieldErr(field, "want a Go duration such as \"30s\" or \"1m\", got %q", s)
	}
	if d > 0 && d < time.Millisecond {
		return 0, fieldErr(field, "must be at least 1ms, got %q", s)
	}
	return d.Milliseconds(), nil
}

// ToDispatch converts a JSON spec into the engine's spec and validates it.
func (s TaskSpec) ToDispatch() (dispatch.TaskSpec, error) {
	d := dispatch.TaskSpec{ID: dispatch.TaskID(s.ID), Handler: s.Handler, MaxAttempts: s.MaxAttempts,
		Priority: s.Priority, Labels: s.Labels}
	if s.Handler == "" {
		return d, fieldErr("handler", "is required: the name of a deployed plugin")
	}
	switch {
	case s.Input != nil && s.InputB64 != nil:
		return d, fieldErr("input", "give exactly one of input and input_b64")
	case s.Input != nil:
		d.Input = []byte(*s.Input)
	case s.InputB64 != nil:
		b, err := base64.StdEncoding.DecodeString(*s.InputB64)
		if err != nil {
			return d, fieldErr("input_b64", "is not valid base64: %v", err)
		}
		d.Input = b
	}
	if p := s.RunPolicy; p != nil {
		n := 0
		for _, set := range []bool{p.Once != nil, p.Repeat != nil, p.Cron != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			return d, fieldErr("run_policy", "give exactly one of once, repeat, cron")
		}
		switch {
		case p.Once != nil:
			d.Policy = dispatch.RunPolicy{Kind: dispatch.PolicyOnce}
		case p.Repeat != nil:
			every, err := parseDuration("run_policy.repeat.every", p.Repeat.Every)
			if err != nil {
				return d, err
			}
			d.Policy = dispatch.RunPolicy{Kind: dispatch.PolicyRepeat, Count: p.Repeat.Count, EveryMs: every}
		case p.Cron != nil:
			return d, fieldErr("run_policy.cron", "is not supported yet (cron arrives with workflows)")
		}
	}
	var err error
	if d.TimeoutMs, err = parseDuration("timeout", s.Timeout); err != nil {
		return d, err
	}
	if s.Timeout != "" && d.TimeoutMs == 0 {
		return d, fieldErr("timeout", "must be positive, got %q", s.Timeout)
	}
	if b := s.Backoff; b != nil {
		d.Backoff.Kind = dispatch.BackoffKind(b.Kind)
		if d.Backoff.BaseMs, err = parseDuration("backoff.base", b.Base); err != nil {
			return d, err
		}
		if d.Backoff.MaxMs, err = parseDuration("backoff.max", b.Max); err != nil {
			return d, err
		}
		if b.Jitter != nil {
			d.Backoff.Jitter = *b.Jitter
		} else {
			d.Backoff.Jitter = dispatch.DefaultJitter
		}
		if d.Backoff.BaseMs == 0 {
			d.Backoff.BaseMs = dispatch.DefaultBackoffMs
		}
		if d.Backoff.Kind == "" {
			d.Backoff.Kind = dispatch.BackoffExponential
		}
		if d.Backoff.Kind == dispatch.BackoffExponential && d.Backoff.MaxMs == 0 {
			d.Backoff.MaxMs = max(dispatch.DefaultBackoffMax, d.Backoff.BaseMs)
		}
	}
	if s.NotBefore != "" {
		t, err := time.Parse(time.RFC3339Nano, s.NotBefore)
		if err != nil {
			return d, fieldErr("not_before", "want an RFC 3339 time such as \"2026-01-02T15:04:05Z\", got %q", s.NotBefore)
		}
		d.NotBeforeMs = t.UnixMilli()
	}
	if s.ConcurrencyKey != "" {
		return d, fieldErr("concurrency_key", "is not supported yet (concurrency keys arrive with workflows)")
	}
	if len(s.After) > 0 {
		return d, fieldErr("after", "is not supported yet (dependencies arrive with workflows)")
	}
	if err := d.Normalize(); err != nil {
		var ve *dispatch.ValidationError
		if errors.As(err, &ve) {
			return d, &FieldError{Field: ve.Field, Reason: ve.Reason}
		}
		return d, err
	}
	return d, nil
}

// TaskView is the JSON view of a task (INTERFACE.md).
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
}

type RunView struct {
	ID       string        `json:"id"`
	Index    int           `json:"index"`
	State    string        `json:"state"`
	DueAt    string        `json:"due_at,omitempty"`
	Attempts []AttemptView `json:"attempts"`
}

type AttemptView struct {
	Number     int     `json:"number"`
	Outcome    string  `json:"outcome,omitempty"`
	Retryable  bool    `json:"retryable,omitempty"`
	Error      string  `json:"error,omitempty"`
	Module     string  `json:"module,omitempty"`
	Worker     string  `json:"worker,omitempty"`
	StartedAt  string  `json:"started_at,omitempty"`
	FinishedAt string  `json:"finished_at,omitempty"`
	Output     *string `json:"output,omitempty"`
	OutputB64  *string `json:"output_b64,omitempty"`
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
	out := TaskView{ID: string(v.ID), Handler: v.Handler, State: string(v.State), Children: []string{},
		SubmittedAt: msTime(v.SubmittedAt), FinishedAt: msTime(v.FinalAt), MaxAttempts: v.Spec.MaxAttempts,
		Priority: v.Spec.Priority, Labels: v.Spec.Labels, Runs: []RunView{}}
	if v.State == dispatch.TaskCompleted || v.Output != nil {
		b := v.Output
		if b == nil {
			b = []byte{}
		}
		out.Output, out.OutputB64 = textOrB64(b)
	}
	for _, r := range v.Runs {
		rv := RunView{ID: string(r.ID), Index: r.Index, State: string(r.State), Attempts: []AttemptView{}}
		if r.State == dispatch.RunScheduled || r.State == dispatch.RunRetryWait {
			rv.DueAt = msTime(r.DueAt)
		}
		for _, a := range r.Attempts {
			av := AttemptView{Number: a.Number, Outcome: string(a.Outcome), Retryable: a.Retryable, Error: a.Error,
				Module: a.Module, Worker: a.Worker, StartedAt: msTime(a.StartedAt), FinishedAt: msTime(a.FinishedAt)}
			if av.StartedAt == "" {
				av.StartedAt = msTime(a.LeasedAt)
			}
			av.Output, av.OutputB64 = textOrB64(a.Output)
			rv.Attempts = append(rv.Attempts, av)
		}
		out.Runs = append(out.Runs, rv)
	}
	return out
}
