package machine

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// TaskID names a task: chosen by the client or generated (a ULID).
type TaskID string

// RunID names one run of a task: "<task>#<index>", index from 1.
type RunID string

// MakeRunID returns the id of run index (from 1) of task.
func MakeRunID(task TaskID, index int) RunID { return RunID(string(task) + "#" + strconv.Itoa(index)) }

// isRunID reports whether id == runID(task, index) without building it.
func isRunID(id RunID, task TaskID, index int) bool {
	rest, ok := strings.CutPrefix(string(id), string(task))
	if !ok || len(rest) < 2 || rest[0] != '#' {
		return false
	}
	var buf [20]byte
	return rest[1:] == string(strconv.AppendInt(buf[:0], int64(index), 10))
}

// RunState is the state of one run. The JSON names are part of the API.
type RunState string

const (
	RunScheduled RunState = "scheduled"  // waiting for its due time (not_before, repeat interval)
	RunReady     RunState = "ready"      // due; waits for a worker
	RunLeased    RunState = "leased"     // handed to a worker, not yet started
	RunRunning   RunState = "running"    // an attempt is executing
	RunRetryWait RunState = "retry_wait" // last attempt failed retryably; waits for its backoff
	RunCompleted RunState = "completed"  // final: an attempt succeeded
	RunFailed    RunState = "failed"     // final: attempts exhausted or a permanent failure
	RunCanceled  RunState = "canceled"   // final: canceled
	RunSuspended RunState = "suspended"  // reserved
)

// Final reports whether no further change can happen to a run in s.
func (s RunState) Final() bool { return s == RunCompleted || s == RunFailed || s == RunCanceled }

// Outcome is how an attempt ended (see ABI.md, "Outcomes recorded on an attempt").
type Outcome string

const (
	OutcomeOK             Outcome = "ok"
	OutcomeFailed         Outcome = "failed"
	OutcomeTrap           Outcome = "trap"
	OutcomeTimeout        Outcome = "timeout"
	OutcomeCancelled      Outcome = "cancelled"
	OutcomeOOM            Outcome = "oom"
	OutcomeOutputTooLarge Outcome = "output_too_large"
	OutcomeABIViolation   Outcome = "abi_violation"
	OutcomeLost           Outcome = "lost" // the process died (or the lease expired) while the attempt ran
)

// Retryable reports whether an attempt ending in o may be retried. For
// OutcomeFailed the executor's Retryable flag decides.
func (o Outcome) Retryable(flag bool) bool {
	switch o {
	case OutcomeFailed:
		return flag
	case OutcomeTrap, OutcomeTimeout, OutcomeLost:
		return true
	}
	return false // ok, cancelled, and deterministic limits: oom, output_too_large, abi_violation
}

// PolicyKind selects how many runs a task has and when.
type PolicyKind string

const (
	PolicyOnce   PolicyKind = "once"
	PolicyRepeat PolicyKind = "repeat"
	PolicyCron   PolicyKind = "cron" // reserved for the workflow issue
)

// RunPolicy says how many runs a task has and when they are due.
type RunPolicy struct {
	Kind PolicyKind `cbor:"1,keyasint" json:"kind"`
	// Count of runs for PolicyRepeat, 1..MaxRepeatCount.
	Count int `cbor:"2,keyasint,omitempty" json:"count,omitempty"`
	// EveryMs between the due times of consecutive repeat runs.
	EveryMs int64 `cbor:"3,keyasint,omitempty" json:"every_ms,omitempty"`
	// CronExpr for PolicyCron: 6 fields with seconds, or 5 without.
	CronExpr string `cbor:"4,keyasint,omitempty" json:"cron,omitempty"`
	// TimeZone of the cron expression (IANA name); default UTC.
	TimeZone string `cbor:"5,keyasint,omitempty" json:"time_zone,omitempty"`
	// MaxRuns caps the runs of a cron task; 0 = no cap.
	MaxRuns int `cbor:"6,keyasint,omitempty" json:"max_runs,omitempty"`
	// Misfire is MisfireSkip (default) or MisfireCatchUp.
	Misfire string `cbor:"7,keyasint,omitempty" json:"misfire,omitempty"`
}

// BackoffKind selects how the wait before a retry grows.
type BackoffKind string

const (
	BackoffFixed       BackoffKind = "fixed"
	BackoffExponential BackoffKind = "exponential"
)

// Backoff is the wait before attempt n+1 after a retryable failure of
// attempt n: fixed BaseMs, or BaseMs*2^(n-1) capped at MaxMs; then reduced
// by a random fraction of up to Jitter (0..1) so retries spread out.
type Backoff struct {
	Kind   BackoffKind `cbor:"1,keyasint" json:"kind"`
	BaseMs int64       `cbor:"2,keyasint" json:"base_ms"`
	MaxMs  int64       `cbor:"3,keyasint,omitempty" json:"max_ms,omitempty"`
	Jitter float64     `cbor:"4,keyasint,omitempty" json:"jitter,omitempty"`
}

// delay returns the backoff before the attempt after attempt n (1-based),
// given a uniform random draw u in [0,1).
func (b Backoff) delay(n int, u float64) int64 {
	d := b.BaseMs
	if b.Kind == BackoffExponential {
		for i := 1; i < n && (b.MaxMs == 0 || d < b.MaxMs); i++ {
			d *= 2
		}
		if b.MaxMs > 0 && d > b.MaxMs {
			d = b.MaxMs
		}
	}
	return d - int64(float64(d)*b.Jitter*u)
}

// TaskSpec is what a client submits. The engine stores it as given, after
// Normalize filled in the defaults.
type TaskSpec struct {
	ID TaskID `cbor:"1,keyasint,omitempty" json:"id,omitempty"`
	// Handler is the plugin name, optionally pinned: name@sha256:<hex>.
	Handler string    `cbor:"2,keyasint" json:"handler"`
	Input   []byte    `cbor:"3,keyasint,omitempty" json:"input,omitempty"`
	Policy  RunPolicy `cbor:"4,keyasint" json:"run_policy"`
	// MaxAttempts bounds the attempts of each run that end with a verdict
	// (ok, failed, trap, timeout, ...); lost attempts do not count
	// (MaxLostAttempts).
	// MaxAttempts per run, 1..MaxMaxAttempts; 0 in a Go TaskSpec means
	// DefaultMaxAttempts (the JSON spec rejects an explicit 0).
	MaxAttempts int               `cbor:"5,keyasint" json:"max_attempts"`
	TimeoutMs   int64             `cbor:"6,keyasint" json:"timeout_ms"`
	Backoff     Backoff           `cbor:"7,keyasint" json:"backoff"`
	Priority    int               `cbor:"8,keyasint,omitempty" json:"priority,omitempty"`
	NotBeforeMs int64             `cbor:"9,keyasint,omitempty" json:"not_before_ms,omitempty"` // unix ms; 0 = now
	Labels      map[string]string `cbor:"10,keyasint,omitempty" json:"labels,omitempty"`
	// After lists tasks this one waits for: its runs become ready only once
	// all of them completed; if one fails or is canceled, this task is
	// canceled too.
	After []TaskID `cbor:"11,keyasint,omitempty" json:"after,omitempty"`
	// ConcurrencyKey: at most one run with this key is leased or running
	// (held through retry_wait) at a time.
	ConcurrencyKey string `cbor:"12,keyasint,omitempty" json:"concurrency_key,omitempty"`
	// Parent is the task whose handler submitted this one (set by the
	// engine when it commits a child; never by clients).
	Parent TaskID `cbor:"13,keyasint,omitempty" json:"parent,omitempty"`
	// TolerateChildFailures lets this task complete even when a child
	// failed or was canceled.
	TolerateChildFailures bool `cbor:"14,keyasint,omitempty" json:"tolerate_child_failures,omitempty"`
	// InputRef names the input in the engine's payload store ("sha256:" and
	// the hex SHA-256 of its InputSize bytes) when it was too large to keep
	// in the WAL record and in memory; Input is then empty. Set by the
	// engine, never by clients.
	InputRef  string `cbor:"15,keyasint,omitempty" json:"input_ref,omitempty"`
	InputSize int64  `cbor:"16,keyasint,omitempty" json:"input_size,omitempty"`
}

// ValidPayloadRef reports whether ref has the form of a payload store
// reference: "sha256:" and 64 lower-case hex digits.
func ValidPayloadRef(ref string) bool {
	h, ok := strings.CutPrefix(ref, "sha256:")
	if !ok || len(h) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// PayloadRefOf returns the payload store reference of b.
func PayloadRefOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// sameInput reports whether two specs carry the same input, inline or by
// reference (a log written before payloads spilled holds it inline).
func (s *TaskSpec) sameInput(o *TaskSpec) bool {
	switch {
	case s.InputRef == "" && o.InputRef == "":
		return string(s.Input) == string(o.Input)
	case s.InputRef != "" && o.InputRef != "":
		return s.InputRef == o.InputRef && s.InputSize == o.InputSize
	case s.InputRef != "":
		return int64(len(o.Input)) == s.InputSize && PayloadRefOf(o.Input) == s.InputRef
	default:
		return int64(len(s.Input)) == o.InputSize && PayloadRefOf(s.Input) == o.InputRef
	}
}

// workflowFields reports whether s uses fields the hand-written encoder
// leaves to the CBOR library.
func (s *TaskSpec) workflowFields() bool {
	return len(s.After) > 0 || s.ConcurrencyKey != "" || s.Parent != "" || s.TolerateChildFailures ||
		s.Policy.CronExpr != "" || s.Policy.TimeZone != "" || s.Policy.MaxRuns != 0 || s.Policy.Misfire != ""
}

// Limits and defaults of a TaskSpec.
const (
	DefaultMaxAttempts = 1
	MaxMaxAttempts     = 100
	// MaxLostAttempts bounds the attempts of one run that end lost (the
	// engine stopped or crashed while it ran, or its lease expired). Lost
	// attempts do not use the task's max_attempts: the handler never
	// reported, so a crash does not fail a task that would have succeeded.
	// The MaxLostAttempts-th lost attempt fails the run, so that a handler
	// that takes the engine down with it cannot crash it forever.
	MaxLostAttempts   = 5
	DefaultTimeoutMs  = 30_000
	MaxTimeoutMs      = 24 * 3600_000
	MaxRepeatCount    = 10_000
	MaxInputBytes     = 16 << 20
	DefaultBackoffMs  = 1_000
	DefaultBackoffMax = 60_000
	DefaultJitter     = 0.1
	MaxAfter          = 1000 // prerequisites per task
	MaxDepth          = 16   // nesting of child tasks
	MaxChildren       = 10_000
)

// validID reports whether id is a task id: 1-128 characters of letters,
// digits, '.', '_', ':' or '-', starting with a letter or digit
// (^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$, without a regexp: Normalize runs
// on every submission, and the regexp was a third of its time).
func validID(id string) bool {
	if len(id) == 0 || len(id) > 128 || !isAlnum(id[0]) {
		return false
	}
	for i := 1; i < len(id); i++ {
		if c := id[i]; !isAlnum(c) && c != '.' && c != '_' && c != ':' && c != '-' {
			return false
		}
	}
	return true
}

// validHandler reports whether h is a handler name, optionally pinned:
// ^[a-z0-9][a-z0-9_\-]{0,62}(@sha256:[0-9a-f]{64})?$.
func validHandler(h string) bool {
	name, pin, pinned := strings.Cut(h, "@")
	if len(name) == 0 || len(name) > 63 || !isLowerAlnum(name[0]) {
		return false
	}
	for i := 1; i < len(name); i++ {
		if c := name[i]; !isLowerAlnum(c) && c != '_' && c != '-' {
			return false
		}
	}
	return !pinned || ValidPayloadRef(pin) // the same form: sha256:<64 lower-case hex>
}

func isLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }
func isAlnum(c byte) bool      { return isLowerAlnum(c) || 'A' <= c && c <= 'Z' }

// ValidationError names the field of a spec that is wrong and says why.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Reason }

// Invalid returns a *ValidationError naming field.
func Invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Normalize fills defaults and checks every field, returning a
// *ValidationError naming the first bad one. An empty ID stays empty (the
// engine generates one).
func (s *TaskSpec) Normalize() error {
	if s.ID != "" && !validID(string(s.ID)) {
		return Invalid("id", "must be 1-128 characters of letters, digits, '.', '_', ':' or '-' (starting with a letter or digit), got %q", s.ID)
	}
	if !validHandler(s.Handler) {
		return Invalid("handler", "must be a plugin name of lower-case letters, digits, '_' or '-' (optionally @sha256:<64 hex>), got %q", s.Handler)
	}
	if len(s.Input) > MaxInputBytes {
		return Invalid("input", "is %d bytes, the limit is %d", len(s.Input), MaxInputBytes)
	}
	if s.InputRef != "" || s.InputSize != 0 {
		switch {
		case !ValidPayloadRef(s.InputRef):
			return Invalid("input_ref", "must be sha256:<64 hex digits>, got %q", s.InputRef)
		case len(s.Input) > 0:
			return Invalid("input_ref", "given with an inline input")
		case s.InputSize < 0 || s.InputSize > MaxInputBytes:
			return Invalid("input_size", "must be between 0 and %d, got %d", MaxInputBytes, s.InputSize)
		}
	}
	switch s.Policy.Kind {
	case "", PolicyOnce:
		s.Policy = RunPolicy{Kind: PolicyOnce}
	case PolicyRepeat:
		if s.Policy.Count < 1 || s.Policy.Count > MaxRepeatCount {
			return Invalid("run_policy.repeat.count", "must be between 1 and %d, got %d", MaxRepeatCount, s.Policy.Count)
		}
		if s.Policy.EveryMs < 0 {
			return Invalid("run_policy.repeat.every", "must not be negative, got %dms", s.Policy.EveryMs)
		}
	case PolicyCron:
		if _, err := parseCron(s.Policy.CronExpr, s.Policy.TimeZone); err != nil {
			return err
		}
		if s.Policy.MaxRuns < 0 {
			return Invalid("run_policy.cron.max_runs", "must not be negative, got %d", s.Policy.MaxRuns)
		}
		switch s.Policy.Misfire {
		case "":
			s.Policy.Misfire = MisfireSkip
		case MisfireSkip, MisfireCatchUp:
		default:
			return Invalid("run_policy.cron.misfire", "want %q or %q, got %q", MisfireSkip, MisfireCatchUp, s.Policy.Misfire)
		}
	default:
		return Invalid("run_policy", "unknown kind %q (want once, repeat or cron)", s.Policy.Kind)
	}
	if s.Policy.Kind != PolicyCron && (s.Policy.CronExpr != "" || s.Policy.MaxRuns != 0 || s.Policy.Misfire != "" || s.Policy.TimeZone != "") {
		return Invalid("run_policy", "cron fields given for a %s policy", s.Policy.Kind)
	}
	if len(s.After) > MaxAfter {
		return Invalid("after", "at most %d prerequisites, got %d", MaxAfter, len(s.After))
	}
	seen := make(map[TaskID]bool, len(s.After))
	for _, id := range s.After {
		if !validID(string(id)) {
			return Invalid("after", "%q is not a task id", id)
		}
		if seen[id] {
			return Invalid("after", "lists %q twice", id)
		}
		seen[id] = true
	}
	if len(s.ConcurrencyKey) > 256 {
		return Invalid("concurrency_key", "is %d bytes, the limit is 256", len(s.ConcurrencyKey))
	}
	if s.MaxAttempts == 0 {
		s.MaxAttempts = DefaultMaxAttempts
	}
	if s.MaxAttempts < 1 || s.MaxAttempts > MaxMaxAttempts {
		return Invalid("max_attempts", "must be between 1 and %d, got %d", MaxMaxAttempts, s.MaxAttempts)
	}
	if s.TimeoutMs == 0 {
		s.TimeoutMs = DefaultTimeoutMs
	}
	if s.TimeoutMs < 1 || s.TimeoutMs > MaxTimeoutMs {
		return Invalid("timeout", "must be between 1ms and 24h, got %dms", s.TimeoutMs)
	}
	switch s.Backoff.Kind {
	case "":
		if s.Backoff.BaseMs == 0 && s.Backoff.MaxMs == 0 && s.Backoff.Jitter == 0 {
			s.Backoff = Backoff{Kind: BackoffExponential, BaseMs: DefaultBackoffMs, MaxMs: DefaultBackoffMax, Jitter: DefaultJitter}
		} else {
			s.Backoff.Kind = BackoffExponential
		}
	case BackoffFixed, BackoffExponential:
	default:
		return Invalid("backoff.kind", "unknown kind %q (want fixed or exponential)", s.Backoff.Kind)
	}
	if s.Backoff.BaseMs < 0 || s.Backoff.MaxMs < 0 {
		return Invalid("backoff", "base and max must not be negative")
	}
	if s.Backoff.MaxMs > 0 && s.Backoff.MaxMs < s.Backoff.BaseMs {
		return Invalid("backoff.max", "must be at least backoff.base (%dms), got %dms", s.Backoff.BaseMs, s.Backoff.MaxMs)
	}
	if s.Backoff.Jitter < 0 || s.Backoff.Jitter > 1 {
		return Invalid("backoff.jitter", "must be between 0 and 1, got %g", s.Backoff.Jitter)
	}
	if s.NotBeforeMs < 0 {
		return Invalid("not_before", "must not be negative")
	}
	if !utf8.ValidString(s.ConcurrencyKey) {
		return Invalid("concurrency_key", "must be valid UTF-8")
	}
	for k := range s.Labels {
		if !utf8.ValidString(k) || !utf8.ValidString(s.Labels[k]) {
			return Invalid("labels", "keys and values must be valid UTF-8 (key %q)", k)
		}
		if k == "" || len(k) > 128 || len(s.Labels[k]) > 1024 {
			return Invalid("labels", "keys must be 1-128 bytes and values at most 1024 bytes (key %q)", k)
		}
	}
	return nil
}

// SameAs reports whether two normalized specs are the same submission.
func (s *TaskSpec) SameAs(o *TaskSpec) bool {
	return s.ID == o.ID && s.Handler == o.Handler && s.sameInput(o) &&
		s.Policy == o.Policy && s.MaxAttempts == o.MaxAttempts && s.TimeoutMs == o.TimeoutMs &&
		s.Backoff == o.Backoff && s.Priority == o.Priority && s.NotBeforeMs == o.NotBeforeMs &&
		maps.Equal(s.Labels, o.Labels) && slices.Equal(s.After, o.After) && s.ConcurrencyKey == o.ConcurrencyKey &&
		s.Parent == o.Parent && s.TolerateChildFailures == o.TolerateChildFailures
}

// RunCount is how many runs the policy creates.
func (s *TaskSpec) RunCount() int {
	if s.Policy.Kind == PolicyRepeat {
		return s.Policy.Count
	}
	return 1
}

// Attempt is one execution of a run.
type Attempt struct {
	Number     int     `cbor:"1,keyasint" json:"number"`
	Worker     string  `cbor:"2,keyasint,omitempty" json:"worker,omitempty"`
	LeasedAt   int64   `cbor:"3,keyasint" json:"leased_at_ms"`
	StartedAt  int64   `cbor:"4,keyasint,omitempty" json:"started_at_ms,omitempty"`
	FinishedAt int64   `cbor:"5,keyasint,omitempty" json:"finished_at_ms,omitempty"`
	Outcome    Outcome `cbor:"6,keyasint,omitempty" json:"outcome,omitempty"`
	Retryable  bool    `cbor:"7,keyasint,omitempty" json:"retryable,omitempty"`
	Error      string  `cbor:"8,keyasint,omitempty" json:"error,omitempty"`
	Output     []byte  `cbor:"9,keyasint,omitempty" json:"output,omitempty"`
	Module     string  `cbor:"10,keyasint,omitempty" json:"module,omitempty"`
	// Log is what the handler logged (log import, stdout, stderr), bounded
	// by the plugin's log quota.
	Log []byte `cbor:"11,keyasint,omitempty" json:"log,omitempty"`
	// OutputRef names the output in the engine's payload store when it was
	// too large to keep inline (Output is then empty); OutputSize is its
	// length.
	OutputRef  string `cbor:"12,keyasint,omitempty" json:"output_ref,omitempty"`
	OutputSize int64  `cbor:"13,keyasint,omitempty" json:"output_size,omitempty"`
}

// Run is one occurrence of a task. Retries are attempts of the same run.
type Run struct {
	ID       RunID     `cbor:"1,keyasint" json:"id"`
	Task     TaskID    `cbor:"2,keyasint" json:"task"`
	Index    int       `cbor:"3,keyasint" json:"index"`
	State    RunState  `cbor:"4,keyasint" json:"state"`
	DueAt    int64     `cbor:"5,keyasint" json:"due_at_ms"` // when scheduled/retry_wait becomes ready; ready order
	LeaseExp int64     `cbor:"6,keyasint,omitempty" json:"lease_expires_at_ms,omitempty"`
	Attempts []Attempt `cbor:"7,keyasint,omitempty" json:"attempts"`
	UpdateAt int64     `cbor:"8,keyasint" json:"updated_at_ms"`
	// Reason says why a canceled run was canceled (a cancel's reason, a
	// skipped cron misfire); empty otherwise.
	Reason string `cbor:"9,keyasint,omitempty" json:"reason,omitempty"`
	gen    uint64 // bumped on every state change; invalidates index entries
	task   *Task  // its task, kept by apply and reindex (saves a map lookup per event)
	slot   int    // the worker slot (from 1) its open attempt holds in the Core that leased it; 0: none
	// att0 is room for the first attempt (apply): a snapshot's capture
	// and views clone Attempts, so nothing shares it but the run itself.
	att0 [1]Attempt
}

// attemptCounts counts r's attempts against its two budgets, the open
// attempt included as if it ended with closing: used is the attempts that
// count against the task's max_attempts (every outcome but lost), lost the
// attempts lost to an engine stop or an expired lease (MaxLostAttempts).
func (r *Run) attemptCounts(closing Outcome) (used, lost int) {
	for i := range r.Attempts {
		o := r.Attempts[i].Outcome
		if i == len(r.Attempts)-1 {
			o = closing
		}
		if o == OutcomeLost {
			lost++
		} else {
			used++
		}
	}
	return used, lost
}

// IsFinal reports whether the task can no longer change (derived by apply).
func (t *Task) IsFinal() bool { return t.res != resNone }

// FinalRuns counts the task's runs that are final (derived by apply).
func (t *Task) FinalRuns() int { return t.finalRuns }

// Current returns the open or last attempt, or nil.
func (r *Run) Current() *Attempt {
	if len(r.Attempts) == 0 {
		return nil
	}
	return &r.Attempts[len(r.Attempts)-1]
}

// Task is a submitted spec and its runs.
type Task struct {
	Spec        TaskSpec `cbor:"1,keyasint" json:"spec"`
	SubmitSeq   uint64   `cbor:"2,keyasint" json:"submit_seq"` // submission order, ties in dispatch order
	SubmittedAt int64    `cbor:"3,keyasint" json:"submitted_at_ms"`
	Runs        []RunID  `cbor:"4,keyasint" json:"runs"`
	FinalAt     int64    `cbor:"7,keyasint,omitempty" json:"final_at_ms,omitempty"` // when the task became final
	Canceled    bool     `cbor:"5,keyasint,omitempty" json:"canceled,omitempty"`
	// res is derived by apply and reindex (workflow.go), never encoded:
	// resNone while the task is live, its result once final (IsFinal).
	res taskResult

	// TaskMore holds the fields few tasks set (a cancel reason, retries,
	// cron bookkeeping), nil until one is: apart they cost a pointer in
	// every task rather than 96 bytes. Encoded inline, under the keys they
	// had as Task's own fields, so snapshots and events read the same
	// either way. Read them through more(), change them through
	// editMore(): a snapshot's capture and a retried task's original may
	// share the old ones.
	*TaskMore

	finalRuns int
	// links are the task's workflow relations, nil for a task in none
	// (most tasks): apart they cost a pointer rather than 72 bytes in every
	// task (the tasks a server retains are most of its heap).
	links *taskLinks
	runs  []*Run // the runs named by Runs, in the same order: an index kept by apply and reindex
	// submitSeq is the WAL sequence of the task's submission when the
	// running engine submitted it (0 when recovered: durable). The loop
	// starts an attempt before its lease is durable only once this is.
	submitSeq uint64

	// Room for the task's first run and the first entries of Runs and
	// runs (apply): most tasks have one run, which then costs no
	// allocation of its own. A copy of the Task (a snapshot's capture, a
	// retry) still shares them by pointer, as it would separate ones.
	run0  Run
	ids0  [1]RunID
	runs0 [1]*Run
}

// TaskMore are the fields of a Task that few tasks set (Task.TaskMore).
type TaskMore struct {
	CancelNote string `cbor:"6,keyasint,omitempty" json:"cancel_reason,omitempty"`
	// AddedAfter are prerequisites declared after submission.
	AddedAfter []TaskID `cbor:"8,keyasint,omitempty" json:"added_after,omitempty"`
	// Retries counts client retries (EvTaskRetried) of the task.
	Retries int `cbor:"9,keyasint,omitempty" json:"retries,omitempty"`
	// RetryFrom is the index of the first run of the latest retry and
	// RetrySeq the submission order from which children belong to it: the
	// task's result depends only on those runs and children.
	RetryFrom int    `cbor:"10,keyasint,omitempty" json:"retry_from,omitempty"`
	RetrySeq  uint64 `cbor:"11,keyasint,omitempty" json:"retry_seq,omitempty"`
	// Skipped counts cron runs canceled as skipped misfires: they do not
	// count toward max_runs.
	Skipped int `cbor:"12,keyasint,omitempty" json:"skipped,omitempty"`
	// Pruned counts final cron runs forgotten beyond CronRunsKept;
	// PrunedFailed is set when one of them failed (the task then fails).
	Pruned       int  `cbor:"13,keyasint,omitempty" json:"pruned_runs,omitempty"`
	PrunedFailed bool `cbor:"14,keyasint,omitempty" json:"pruned_failed,omitempty"`
	// CronLast is the latest occurrence a run of this cron task was
	// created for: the schedule goes on from it, not from the runs' due
	// times, which a retry's backoff moves. 0 in snapshots written before
	// it was kept (the runs' due times stand in then).
	CronLast int64 `cbor:"15,keyasint,omitempty" json:"cron_last_ms,omitempty"`
}

// more returns t's rarely set fields to read: for a task that set none,
// the zero ones (shared, never written: a change goes through editMore).
func (t *Task) more() *TaskMore {
	if t.TaskMore == nil {
		return &noMore
	}
	return t.TaskMore
}

var noMore TaskMore

// MoreFields returns a copy of t's rarely set fields, zero when it set
// none: the embedded *TaskMore is nil then, and reading its fields through
// t would panic.
func (t *Task) MoreFields() TaskMore { return *t.more() }

// editMore returns t's rarely set fields to change: a copy of its own,
// since a snapshot's capture of t (captured while t is not final) or the
// original of a retried task may share the current ones.
func (t *Task) editMore() *TaskMore {
	m := new(TaskMore)
	if t.TaskMore != nil {
		*m = *t.TaskMore
	}
	t.TaskMore = m
	return m
}

// taskResult is a final task's result in a byte (Task.res).
type taskResult uint8

const (
	resNone taskResult = iota // not final
	resCompleted
	resFailed
	resCanceled
)

// result is t's result when final: completed, failed or canceled ("" before).
func (t *Task) result() TaskState {
	switch t.res {
	case resCompleted:
		return TaskCompleted
	case resFailed:
		return TaskFailed
	case resCanceled:
		return TaskCanceled
	}
	return ""
}

// setResult records st (completed, failed or canceled; "" when t is live
// again) as t's result.
func (t *Task) setResult(st TaskState) {
	switch st {
	case TaskCompleted:
		t.res = resCompleted
	case TaskFailed:
		t.res = resFailed
	case TaskCanceled:
		t.res = resCanceled
	default:
		t.res = resNone
	}
}

// taskLinks are the workflow relations of a task, derived by apply and
// reindex (workflow.go). A copy of a Task shares them, as it shared the
// slices before: applyRetried gives its copy links of its own.
type taskLinks struct {
	waiting         int      // prerequisites not yet completed
	dependents      []TaskID // tasks that wait for this one
	children        []TaskID
	pendingChildren int // children not yet final
	depth           int // 0 for a root task
}

// own returns t's links for a change, made on first use.
func (t *Task) own() *taskLinks {
	if t.links == nil {
		t.links = &taskLinks{}
	}
	return t.links
}

// linked returns t's links to read: for a task in no workflow, the zero
// links (shared, never written: a change goes through own).
func (t *Task) linked() *taskLinks {
	if t.links == nil {
		return &noLinks
	}
	return t.links
}

var noLinks taskLinks

// nextRunIndex is the index of the task's next run. Runs are kept in
// index order and the newest is never pruned (pruneCronRuns), so it is
// one past the last run's, however many older runs were pruned.
func (t *Task) nextRunIndex() int {
	if len(t.runs) > 0 {
		return t.runs[len(t.runs)-1].Index + 1
	}
	return len(t.Runs) + 1
}

// TaskState summarizes a task for views (docs/task-spec.md).
type TaskState string

const (
	TaskPending TaskState = "pending"
	TaskRunning TaskState = "running"
	// TaskWaitingChildren: the task's own runs completed; some child is not final.
	TaskWaitingChildren TaskState = "waiting_children"
	TaskCompleted       TaskState = "completed"
	TaskFailed          TaskState = "failed"
	TaskCanceled        TaskState = "canceled"
)
