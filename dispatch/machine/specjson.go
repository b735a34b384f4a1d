package machine

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"time"
)

// SpecJSON is the JSON task spec of docs/task-spec.md: the same shape over HTTP,
// in the CLI and in the submit host import.
type SpecJSON struct {
	ID             string            `json:"id,omitempty"`
	Handler        string            `json:"handler"`
	Input          *string           `json:"input,omitempty"`
	InputB64       *string           `json:"input_b64,omitempty"`
	RunPolicy      *RunPolicyJSON    `json:"run_policy,omitempty"`
	MaxAttempts    int               `json:"max_attempts,omitempty"`
	Timeout        string            `json:"timeout,omitempty"`
	Backoff        *BackoffJSON      `json:"backoff,omitempty"`
	Priority       int               `json:"priority,omitempty"`
	ConcurrencyKey string            `json:"concurrency_key,omitempty"`
	NotBefore      string            `json:"not_before,omitempty"`
	After          []string          `json:"after,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	// TolerateChildFailures lets the task complete when a child failed.
	TolerateChildFailures bool `json:"tolerate_child_failures,omitempty"`
}

// RunPolicyJSON is exactly one of once, repeat, cron.
type RunPolicyJSON struct {
	Once   *struct{}   `json:"once,omitempty"`
	Repeat *RepeatJSON `json:"repeat,omitempty"`
	Cron   *CronJSON   `json:"cron,omitempty"`
}

type RepeatJSON struct {
	Count int    `json:"count"`
	Every string `json:"every,omitempty"`
}

type CronJSON struct {
	Expr     string `json:"expr"`
	MaxRuns  int    `json:"max_runs,omitempty"`
	TimeZone string `json:"time_zone,omitempty"`
	Misfire  string `json:"misfire,omitempty"`
}

type BackoffJSON struct {
	Kind   string   `json:"kind,omitempty"`
	Base   string   `json:"base,omitempty"`
	Max    string   `json:"max,omitempty"`
	Jitter *float64 `json:"jitter,omitempty"`
}

func fieldErr(field, format string, args ...any) error { return Invalid(field, format, args...) }

// DecodeSpecJSON parses a JSON task spec strictly: unknown fields and
// trailing data are errors naming them.
func DecodeSpecJSON(b []byte) (SpecJSON, error) {
	var s SpecJSON
	if err := checkSpecUTF8(b); err != nil {
		return s, err
	}
	// json.Unmarshal reads b where it is; a Decoder would first copy it
	// into a buffer grown by doubling: four times a 1 MiB input in
	// garbage. Unknown fields are then found by knownFields.
	if err := json.Unmarshal(b, &s); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) && strings.Contains(se.Error(), "after top-level value") {
			return s, fieldErr("body", "unexpected data after the task spec")
		}
		return s, JSONFieldError(err)
	}
	if err := knownFields(b, reflect.TypeFor[SpecJSON]()); err != nil {
		return s, err
	}
	if s.MaxAttempts == 0 && bytes.Contains(b, []byte(`"max_attempts"`)) {
		// Omitted means the default; an explicit 0 is a mistake (it used
		// to mean the default silently). Decoded again only in this case.
		var given struct {
			MaxAttempts *int `json:"max_attempts"`
		}
		if json.Unmarshal(b, &given) == nil && given.MaxAttempts != nil {
			return s, fieldErr("max_attempts", "must be between 1 and %d, got 0 (omit it for the default, %d)", MaxMaxAttempts, DefaultMaxAttempts)
		}
	}
	return s, nil
}

// JSONFieldError turns encoding/json errors into ValidationErrors naming the field.
func JSONFieldError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fieldErr(te.Field, "want %s, got JSON %s", te.Type, te.Value)
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return fieldErr(strings.Trim(f, `"`), "unknown field (see docs/task-spec.md for the task spec)")
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

// ToSpec converts a JSON spec into the engine's spec and validates it
// (Normalize), returning a *ValidationError naming the field.
func (s SpecJSON) ToSpec() (TaskSpec, error) {
	var d TaskSpec
	if err := s.convertTo(&d); err != nil {
		return d, err
	}
	if err := d.Normalize(); err != nil {
		return d, err
	}
	return d, nil
}

// ToValidSpec is ToSpec returning the spec sealed (ValidSpec), for a
// caller that hands it to the engine: Normalize runs once. (The spec is
// made and checked in place: a spec is a few hundred bytes, and copies of
// it were a tenth of a batch element's decoding.)
func (s SpecJSON) ToValidSpec() (ValidSpec, error) {
	var v ValidSpec
	if err := s.convertTo(&v.spec); err != nil {
		return ValidSpec{}, err
	}
	if err := v.spec.Normalize(); err != nil {
		return ValidSpec{}, err
	}
	return v, nil
}

// convertTo is ToSpec before Normalize, into d: the JSON-only checks (a
// required handler, one input, durations and times that parse).
func (s *SpecJSON) convertTo(d *TaskSpec) error {
	*d = TaskSpec{ID: TaskID(s.ID), Handler: s.Handler, MaxAttempts: s.MaxAttempts,
		Priority: s.Priority, Labels: s.Labels}
	if s.Handler == "" {
		return fieldErr("handler", "is required: the name of a deployed plugin")
	}
	switch {
	case s.Input != nil && s.InputB64 != nil:
		return fieldErr("input", "give exactly one of input and input_b64")
	case s.Input != nil:
		d.Input = []byte(*s.Input)
	case s.InputB64 != nil:
		b, err := base64.StdEncoding.DecodeString(*s.InputB64)
		if err != nil {
			return fieldErr("input_b64", "is not valid base64: %v", err)
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
			return fieldErr("run_policy", "give exactly one of once, repeat, cron")
		}
		switch {
		case p.Once != nil:
			d.Policy = RunPolicy{Kind: PolicyOnce}
		case p.Repeat != nil:
			every, err := parseDuration("run_policy.repeat.every", p.Repeat.Every)
			if err != nil {
				return err
			}
			d.Policy = RunPolicy{Kind: PolicyRepeat, Count: p.Repeat.Count, EveryMs: every}
		case p.Cron != nil:
			if p.Cron.Expr == "" {
				return fieldErr("run_policy.cron.expr", "is required, e.g. \"0 */5 * * * *\" (6 fields with seconds) or \"*/5 * * * *\"")
			}
			d.Policy = RunPolicy{Kind: PolicyCron, CronExpr: p.Cron.Expr, MaxRuns: p.Cron.MaxRuns, TimeZone: p.Cron.TimeZone, Misfire: p.Cron.Misfire}
		}
	}
	var err error
	if d.TimeoutMs, err = parseDuration("timeout", s.Timeout); err != nil {
		return err
	}
	if s.Timeout != "" && d.TimeoutMs == 0 {
		return fieldErr("timeout", "must be positive, got %q", s.Timeout)
	}
	if b := s.Backoff; b != nil {
		d.Backoff.Kind = BackoffKind(b.Kind)
		if d.Backoff.BaseMs, err = parseDuration("backoff.base", b.Base); err != nil {
			return err
		}
		if d.Backoff.MaxMs, err = parseDuration("backoff.max", b.Max); err != nil {
			return err
		}
		if b.Jitter != nil {
			d.Backoff.Jitter = *b.Jitter
		} else {
			d.Backoff.Jitter = DefaultJitter
		}
		if d.Backoff.BaseMs == 0 {
			d.Backoff.BaseMs = DefaultBackoffMs
		}
		if d.Backoff.Kind == "" {
			d.Backoff.Kind = BackoffExponential
		}
		if d.Backoff.Kind == BackoffExponential && d.Backoff.MaxMs == 0 {
			d.Backoff.MaxMs = max(DefaultBackoffMax, d.Backoff.BaseMs)
		}
	}
	if s.NotBefore != "" {
		t, err := time.Parse(time.RFC3339Nano, s.NotBefore)
		if err != nil {
			return fieldErr("not_before", "want an RFC 3339 time such as \"2026-01-02T15:04:05Z\", got %q", s.NotBefore)
		}
		d.NotBeforeMs = t.UnixMilli()
	}
	d.ConcurrencyKey = s.ConcurrencyKey
	d.TolerateChildFailures = s.TolerateChildFailures
	for _, id := range s.After {
		d.After = append(d.After, TaskID(id))
	}
	return nil
}

// ParseSpecJSON decodes and validates a JSON task spec in one step.
func ParseSpecJSON(b []byte) (TaskSpec, error) {
	js, err := DecodeSpecJSON(b)
	if err != nil {
		return TaskSpec{}, err
	}
	return js.ToSpec()
}

// rawValue keeps the bytes of a JSON value where they are (a slice of the
// document being decoded, which outlives it): no copy of a large input.
type rawValue []byte

func (r *rawValue) UnmarshalJSON(b []byte) error {
	*r = b
	return nil
}

// knownFields reports the first member of the JSON object b, or of an
// object nested in it, that typ (a struct) has no field for: what
// Decoder.DisallowUnknownFields would, matching names as encoding/json
// does (case-insensitively).
func knownFields(b []byte, typ reflect.Type) error {
	// Members in document order (not a map's), so that of two unknown
	// members the error always names the first.
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil // not an object: the typed decode reported it
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil
		}
		name, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil
		}
		f, ok := jsonField(typ, name)
		if !ok {
			return fieldErr(name, "unknown field (see docs/task-spec.md for the task spec)")
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && len(raw) > 0 && raw[0] == '{' {
			if err := knownFields(raw, ft); err != nil {
				return err
			}
		}
	}
	return nil
}

// jsonField finds the field of struct typ that encoding/json decodes
// member name into.
func jsonField(typ reflect.Type, name string) (reflect.StructField, bool) {
	for f := range typ.Fields() {
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "-" || !f.IsExported() {
			continue
		}
		if tag == "" {
			tag = f.Name
		}
		if strings.EqualFold(tag, name) {
			return f, true
		}
	}
	return reflect.StructField{}, false
}
