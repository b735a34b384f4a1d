package machine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
)

// EventType is the first byte of every WAL record. Values are on disk:
// never renumber; a changed encoding is a new type.
type EventType uint8

const (
	evInvalid         EventType = 0
	EvTaskSubmitted   EventType = 1  // Task, Spec, At
	EvRunCreated      EventType = 2  // Run, Task, Index, To (scheduled|ready), DueAt, At
	EvRunTransition   EventType = 3  // Run, From, To, At, DueAt, Reason: promotions and cancels
	EvLeaseAcquired   EventType = 4  // Run, From=ready, Attempt, Worker, At, LeaseExp
	EvAttemptStarted  EventType = 5  // Run, Attempt, At (leased -> running)
	EvLeaseRenewed    EventType = 6  // Run, Attempt, At, LeaseExp
	EvAttemptFinished EventType = 7  // Run, From, To, Attempt, At, Outcome..., DueAt (retry), Reason
	EvLeaseExpired    EventType = 8  // as EvAttemptFinished with Outcome lost: the lease ran out
	EvTaskCanceled    EventType = 9  // Task, At, Reason
	EvEnginePaused    EventType = 10 // At
	EvEngineResumed   EventType = 11 // At
	EvTaskDropped     EventType = 12 // Task, At, Reason: removed by retention ("") or a client (delete, purge)
	EvDependencyAdded EventType = 13 // Task, After, At: prerequisites declared after submission
	EvTaskRetried     EventType = 14 // Task, At, Reason: a client retries a failed or canceled task (new runs follow)
	// EvRunSkipped: Run, From=scheduled, To=canceled, At, Reason: a cron
	// misfire skipped. It does not count toward max_runs; logs written
	// before it existed record skips as EvRunTransition, which does.
	EvRunSkipped EventType = 15
)

var eventNames = [...]string{
	evInvalid: "invalid", EvTaskSubmitted: "task_submitted", EvRunCreated: "run_created",
	EvRunTransition: "run_transition", EvLeaseAcquired: "lease_acquired", EvAttemptStarted: "attempt_started",
	EvLeaseRenewed: "lease_renewed", EvAttemptFinished: "attempt_finished", EvLeaseExpired: "lease_expired",
	EvTaskCanceled: "task_canceled", EvEnginePaused: "engine_paused", EvEngineResumed: "engine_resumed",
	EvTaskDropped: "task_dropped", EvDependencyAdded: "dependency_added", EvTaskRetried: "task_retried",
	EvRunSkipped: "run_skipped",
}

func (t EventType) String() string {
	if int(t) < len(eventNames) && eventNames[t] != "" {
		return eventNames[t]
	}
	return fmt.Sprintf("event_type(%d)", uint8(t))
}

// Event is one durable change. Which fields are set depends on Type (see
// the constants). Every decision (next state, retry time, jitter, generated
// ids) is made before the event is written, so applying it is pure.
type Event struct {
	Type      EventType `cbor:"-" json:"-"`
	At        int64     `cbor:"1,keyasint,omitempty" json:"at,omitempty"` // unix ms of the tick that decided it
	Task      TaskID    `cbor:"2,keyasint,omitempty" json:"task,omitempty"`
	Run       RunID     `cbor:"3,keyasint,omitempty" json:"run,omitempty"`
	From      RunState  `cbor:"4,keyasint,omitempty" json:"from,omitempty"`
	To        RunState  `cbor:"5,keyasint,omitempty" json:"to,omitempty"`
	Spec      *TaskSpec `cbor:"6,keyasint,omitempty" json:"spec,omitempty"`
	Index     int       `cbor:"7,keyasint,omitempty" json:"index,omitempty"`
	DueAt     int64     `cbor:"8,keyasint,omitempty" json:"due_at,omitempty"`
	Attempt   int       `cbor:"9,keyasint,omitempty" json:"attempt,omitempty"`
	Worker    string    `cbor:"10,keyasint,omitempty" json:"worker,omitempty"`
	LeaseExp  int64     `cbor:"11,keyasint,omitempty" json:"lease_exp,omitempty"`
	Outcome   Outcome   `cbor:"12,keyasint,omitempty" json:"outcome,omitempty"`
	Retryable bool      `cbor:"13,keyasint,omitempty" json:"retryable,omitempty"`
	Error     string    `cbor:"14,keyasint,omitempty" json:"error,omitempty"`
	Output    []byte    `cbor:"15,keyasint,omitempty" json:"output,omitempty"`
	Module    string    `cbor:"16,keyasint,omitempty" json:"module,omitempty"`
	Reason    string    `cbor:"17,keyasint,omitempty" json:"reason,omitempty"`
	After     []TaskID  `cbor:"18,keyasint,omitempty" json:"after,omitempty"`
	Log       []byte    `cbor:"19,keyasint,omitempty" json:"log,omitempty"`
	// ExecStart and ExecEnd (unix ms) are when the attempt started and
	// ended where it ran, as its executor measured them (EvAttemptStarted:
	// ExecStart; EvAttemptFinished: both). At stays the deciding tick's
	// time. Zero in logs written before they existed.
	ExecStart int64 `cbor:"20,keyasint,omitempty" json:"exec_start,omitempty"`
	ExecEnd   int64 `cbor:"21,keyasint,omitempty" json:"exec_end,omitempty"`
	// OutputRef and OutputSize (EvAttemptFinished) name an output kept in
	// the payload store instead of Output.
	OutputRef  string `cbor:"22,keyasint,omitempty" json:"output_ref,omitempty"`
	OutputSize int64  `cbor:"23,keyasint,omitempty" json:"output_size,omitempty"`
}

var (
	encMode cbor.EncMode
	DecMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	DecMode, err = cbor.DecOptions{
		MaxArrayElements:  1 << 20,
		MaxMapPairs:       1 << 16,
		MaxNestedLevels:   16,
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// ErrUnknownEvent is returned when a record's type byte is not known to
// this build: the log was written by a newer wasmtask, or is damaged.
var ErrUnknownEvent = errors.New("dispatch: unknown event type")

// AppendEvent appends the WAL record of e to dst: the type byte, then the
// CBOR body. The body is built by appendEventBody, which writes exactly
// the bytes encMode.Marshal(e) would (canonical CBOR), without reflection.
func AppendEvent(dst []byte, e *Event) ([]byte, error) {
	if e.Type == evInvalid || int(e.Type) >= len(eventNames) {
		return dst, fmt.Errorf("dispatch: encode %v: %w", e.Type, ErrUnknownEvent)
	}
	start := len(dst)
	dst = append(dst, byte(e.Type))
	dst, err := appendEventBody(dst, e)
	if err != nil {
		return dst[:start], fmt.Errorf("dispatch: encode %v: %w", e.Type, err)
	}
	return dst, nil
}

// DecodeEvent parses one WAL record. Unknown types and trailing bytes are
// errors, never skipped.
func DecodeEvent(rec []byte) (Event, error) { return decodeEvent(rec, nil, nil) }

// DecodeEventIn is DecodeEvent for a record that is applied to s next (a
// replica's path, every event of the log on every follower): the task and
// run ids s holds already are its own strings rather than a copy per
// event, and a submission's spec is decoded straight into the memory of
// its task, which Apply then fills (one allocation rather than a spec
// copied into a task). The caller applies the event to s before decoding
// another.
func DecodeEventIn(s *State, rec []byte) (Event, error) {
	var mem *Task
	var spec *TaskSpec
	if len(rec) > 0 && EventType(rec[0]) == EvTaskSubmitted {
		mem = new(Task)
		spec = &mem.Spec
	}
	e, err := decodeEvent(rec, s, spec)
	if err == nil && mem != nil && e.Spec == spec {
		s.taskMem = mem
	}
	return e, err
}

// decodeEvent decodes rec; with s, ids s holds are its strings; with spec,
// a submission's spec is decoded there.
func decodeEvent(rec []byte, s *State, spec *TaskSpec) (Event, error) {
	var e Event
	if len(rec) == 0 {
		return e, fmt.Errorf("%w: empty record", ErrUnknownEvent)
	}
	t := EventType(rec[0])
	if t == evInvalid || int(t) >= len(eventNames) {
		return e, fmt.Errorf("%w %d", ErrUnknownEvent, rec[0])
	}
	rest, ok := decodeEventBody(rec[1:], &e, s, spec)
	if !ok {
		// Anything the fast path does not fully understand (and every
		// error) goes through the CBOR library, which decides.
		// (A variable of its own: e, whose address the library keeps,
		// would otherwise be allocated for every record.)
		var le Event
		var err error
		rest, err = DecMode.UnmarshalFirst(rec[1:], &le)
		e = le
		if err != nil {
			return e, fmt.Errorf("dispatch: decode %v: %w", t, err)
		}
	}
	if len(rest) != 0 {
		return e, fmt.Errorf("dispatch: decode %v: %d unexpected bytes after the event", t, len(rest))
	}
	e.Type = t
	return e, nil
}

// The event codec's fast path. Every event of every tick is encoded, and
// every event of the log decoded at recovery, so the body of an Event
// (a CBOR map with small integer keys) is written and read here by hand.
// The bytes are those of encMode (CoreDetEncOptions): keys in ascending
// order, zero fields omitted, shortest heads (helpers in cbor.go). The
// nested TaskSpec of EvTaskSubmitted is decoded by the library.

// appendEventBody appends the CBOR map of e's fields.
func appendEventBody(dst []byte, e *Event) ([]byte, error) {
	if len(e.After) > 0 || len(e.Log) > 0 || e.Spec != nil && e.Spec.workflowFields() {
		// Workflow fields are rarer: the CBOR library encodes them (the
		// same canonical form the fast path writes).
		b, err := encMode.Marshal(e)
		return append(dst, b...), err
	}
	n := 0
	for _, set := range [...]bool{e.At != 0, e.Task != "", e.Run != "", e.From != "", e.To != "", e.Spec != nil,
		e.Index != 0, e.DueAt != 0, e.Attempt != 0, e.Worker != "", e.LeaseExp != 0, e.Outcome != "",
		e.Retryable, e.Error != "", len(e.Output) > 0, e.Module != "", e.Reason != "", e.ExecStart != 0, e.ExecEnd != 0,
		e.OutputRef != "", e.OutputSize != 0} {
		if set {
			n++
		}
	}
	dst = appendHead(dst, cborMap, uint64(n))
	if e.At != 0 {
		dst = appendInt(dst, 1, e.At)
	}
	if e.Task != "" {
		dst = appendText(dst, 2, string(e.Task))
	}
	if e.Run != "" {
		dst = appendText(dst, 3, string(e.Run))
	}
	if e.From != "" {
		dst = appendText(dst, 4, string(e.From))
	}
	if e.To != "" {
		dst = appendText(dst, 5, string(e.To))
	}
	if e.Spec != nil {
		var err error
		if dst, err = appendSpec(append(dst, 6), e.Spec); err != nil {
			return dst, err
		}
	}
	if e.Index != 0 {
		dst = appendInt(dst, 7, int64(e.Index))
	}
	if e.DueAt != 0 {
		dst = appendInt(dst, 8, e.DueAt)
	}
	if e.Attempt != 0 {
		dst = appendInt(dst, 9, int64(e.Attempt))
	}
	if e.Worker != "" {
		dst = appendText(dst, 10, e.Worker)
	}
	if e.LeaseExp != 0 {
		dst = appendInt(dst, 11, e.LeaseExp)
	}
	if e.Outcome != "" {
		dst = appendText(dst, 12, string(e.Outcome))
	}
	if e.Retryable {
		dst = append(dst, 13, cborTrue)
	}
	if e.Error != "" {
		dst = appendText(dst, 14, e.Error)
	}
	if len(e.Output) > 0 {
		dst = appendHead(append(dst, 15), cborBytes, uint64(len(e.Output)))
		dst = append(dst, e.Output...)
	}
	if e.Module != "" {
		dst = appendText(dst, 16, e.Module)
	}
	if e.Reason != "" {
		dst = appendText(dst, 17, e.Reason)
	}
	if e.ExecStart != 0 {
		dst = appendInt(dst, 20, e.ExecStart)
	}
	if e.ExecEnd != 0 {
		dst = appendInt(dst, 21, e.ExecEnd)
	}
	if e.OutputRef != "" {
		dst = appendText(dst, 22, e.OutputRef)
	}
	if e.OutputSize != 0 {
		dst = appendInt(dst, 23, e.OutputSize)
	}
	return dst, nil
}

// readHead reads a CBOR head with a definite argument in its shortest
// form; ok is false for anything else (the library then decides).
func readHead(b []byte) (major byte, v uint64, rest []byte, ok bool) {
	if len(b) == 0 {
		return 0, 0, nil, false
	}
	major, info := b[0]&0xe0, b[0]&0x1f
	switch {
	case info < 24:
		return major, uint64(info), b[1:], true
	case info == 24 && len(b) >= 2:
		v = uint64(b[1])
		return major, v, b[2:], v >= 24
	case info == 25 && len(b) >= 3:
		v = uint64(binary.BigEndian.Uint16(b[1:]))
		return major, v, b[3:], v > 0xff
	case info == 26 && len(b) >= 5:
		v = uint64(binary.BigEndian.Uint32(b[1:]))
		return major, v, b[5:], v > 0xffff
	case info == 27 && len(b) >= 9:
		v = binary.BigEndian.Uint64(b[1:])
		return major, v, b[9:], v > 0xffffffff
	}
	return 0, 0, nil, false
}

func readInt(b []byte) (int64, []byte, bool) {
	major, v, rest, ok := readHead(b)
	if !ok || v > math.MaxInt64 {
		return 0, nil, false
	}
	switch major {
	case cborUint:
		return int64(v), rest, true
	case cborNeg:
		return -1 - int64(v), rest, true
	}
	return 0, nil, false
}

// readString reads a definite string of the given major type whose bytes
// are valid UTF-8 when it is text.
func readString(b []byte, want byte) ([]byte, []byte, bool) {
	major, n, rest, ok := readHead(b)
	if !ok || major != want || n > uint64(len(rest)) {
		return nil, nil, false
	}
	s := rest[:n]
	if want == cborText && !utf8.Valid(s) {
		return nil, nil, false
	}
	return s, rest[n:], true
}

// decodeEventBody decodes the CBOR map of an event in the form
// appendEventBody writes: ascending keys 1..17, shortest heads, definite
// lengths. It returns ok false, having decided nothing, for any other
// input, valid or not: the caller then hands it to the library, so this
// path never accepts what the library would reject or read differently.
func decodeEventBody(b []byte, e *Event, s *State, specMem *TaskSpec) (rest []byte, ok bool) {
	major, n, b, ok := readHead(b)
	if !ok || major != cborMap || n > 21 {
		return nil, false
	}
	prev := byte(0)
	for range n {
		if len(b) == 0 || b[0] <= prev || b[0] > 23 || b[0] == 18 || b[0] == 19 {
			return nil, false // not a known key in ascending order (18, 19: the library's)
		}
		key := b[0]
		prev, b = key, b[1:]
		var iv int64
		var sv []byte
		switch key {
		case 1, 7, 8, 9, 11, 20, 21, 23:
			iv, b, ok = readInt(b)
			if ok && (key == 7 || key == 9) && int64(int(iv)) != iv {
				ok = false
			}
		case 15:
			sv, b, ok = readString(b, cborBytes)
			ok = ok && len(sv) > 0
		case 13:
			ok = len(b) > 0 && (b[0] == cborTrue || b[0] == cborFalse)
			if ok {
				e.Retryable = b[0] == cborTrue
				b = b[1:]
			}
		case 6:
			if len(b) == 0 || b[0]&0xe0 != cborMap {
				return nil, false
			}
			spec := specMem
			if spec == nil {
				spec = new(TaskSpec)
			}
			*spec = TaskSpec{}
			if rest, ok := decodeSpec(b, spec, e.Task); ok {
				b = rest
			} else {
				*spec = TaskSpec{}
				var err error
				if b, err = DecMode.UnmarshalFirst(b, spec); err != nil {
					return nil, false
				}
			}
			e.Spec = spec
		default:
			sv, b, ok = readString(b, cborText)
		}
		if !ok {
			return nil, false
		}
		switch key {
		case 1:
			e.At = iv
		case 2:
			e.Task = s.taskID(sv)
		case 3:
			e.Run = s.runID(sv)
		case 4:
			e.From = runStateOf(sv)
		case 5:
			e.To = runStateOf(sv)
		case 7:
			e.Index = int(iv)
		case 8:
			e.DueAt = iv
		case 9:
			e.Attempt = int(iv)
		case 10:
			e.Worker = string(sv)
		case 11:
			e.LeaseExp = iv
		case 12:
			e.Outcome = outcomeOf(sv)
		case 14:
			e.Error = string(sv)
		case 15:
			e.Output = bytes.Clone(sv)
		case 16:
			e.Module = string(sv)
		case 17:
			e.Reason = string(sv)
		case 20:
			e.ExecStart = iv
		case 21:
			e.ExecEnd = iv
		case 22:
			e.OutputRef = string(sv)
		case 23:
			e.OutputSize = iv
		}
	}
	return b, true
}

// taskID is b as a TaskID: s's own string when s (if not nil) holds the
// task (a lookup without a copy, rather than a string per event).
func (s *State) taskID(b []byte) TaskID {
	if s != nil {
		if t, ok := s.Tasks[TaskID(b)]; ok {
			return t.Spec.ID
		}
	}
	return TaskID(b)
}

// runID is taskID for a run.
func (s *State) runID(b []byte) RunID {
	if s != nil {
		if r, ok := s.Runs[RunID(b)]; ok {
			return r.ID
		}
	}
	return RunID(b)
}

// mapKeys reads the head of a map of at most max pairs whose keys are the
// integers 1..max in ascending order, and calls field for each pair with
// the bytes at its value; field returns the bytes after the value. Like
// decodeEventBody, it reports false for anything else.
func mapKeys(b []byte, max byte, field func(key byte, b []byte) ([]byte, bool)) ([]byte, bool) {
	major, n, b, ok := readHead(b)
	if !ok || major != cborMap || n > uint64(max) {
		return nil, false
	}
	prev := byte(0)
	for range n {
		if len(b) == 0 || b[0] <= prev || b[0] > max {
			return nil, false
		}
		prev = b[0]
		if b, ok = field(prev, b[1:]); !ok {
			return nil, false
		}
	}
	return b, true
}

func readIntField(b []byte, dst *int64) ([]byte, bool) {
	v, rest, ok := readInt(b)
	*dst = v
	return rest, ok
}

func readIntField32(b []byte, dst *int) ([]byte, bool) {
	v, rest, ok := readInt(b)
	*dst = int(v)
	return rest, ok && int64(int(v)) == v
}

func readTextField(b []byte, dst *string) ([]byte, bool) {
	v, rest, ok := readString(b, cborText)
	*dst = string(v)
	return rest, ok
}

// decodeSpec decodes a TaskSpec in the form appendSpec writes, with the
// same rule as decodeEventBody: anything else is reported, not decided.
// Floats are read only as float64 (what a jitter like 0.1 needs); labels
// only with keys in the encoded order, which rules out duplicates.
func decodeSpec(b []byte, s *TaskSpec, task TaskID) ([]byte, bool) {
	return mapKeys(b, 16, func(key byte, b []byte) ([]byte, bool) {
		switch key {
		case 11, 12, 13, 14:
			return nil, false // workflow fields: the library's
		case 15:
			return readTextField(b, &s.InputRef)
		case 16:
			return readIntField(b, &s.InputSize)
		case 1:
			v, rest, ok := readString(b, cborText)
			if string(v) == string(task) {
				s.ID = task // the event's task (read first): one string
			} else {
				s.ID = TaskID(v)
			}
			return rest, ok
		case 2:
			return readTextField(b, &s.Handler)
		case 3:
			v, rest, ok := readString(b, cborBytes)
			s.Input = bytes.Clone(v)
			return rest, ok && len(v) > 0
		case 4:
			return mapKeys(b, 3, func(key byte, b []byte) ([]byte, bool) {
				switch key {
				case 1:
					var kind string
					b, ok := readTextField(b, &kind)
					s.Policy.Kind = PolicyKind(kind)
					return b, ok
				case 2:
					return readIntField32(b, &s.Policy.Count)
				default:
					return readIntField(b, &s.Policy.EveryMs)
				}
			})
		case 5:
			return readIntField32(b, &s.MaxAttempts)
		case 6:
			return readIntField(b, &s.TimeoutMs)
		case 7:
			return mapKeys(b, 4, func(key byte, b []byte) ([]byte, bool) {
				switch key {
				case 1:
					var kind string
					b, ok := readTextField(b, &kind)
					s.Backoff.Kind = BackoffKind(kind)
					return b, ok
				case 2:
					return readIntField(b, &s.Backoff.BaseMs)
				case 3:
					return readIntField(b, &s.Backoff.MaxMs)
				default:
					if len(b) < 9 || b[0] != 0xfb {
						return nil, false
					}
					f := math.Float64frombits(binary.BigEndian.Uint64(b[1:]))
					if math.IsNaN(f) || math.IsInf(f, 0) {
						return nil, false
					}
					s.Backoff.Jitter = f
					return b[9:], true
				}
			})
		case 8:
			return readIntField32(b, &s.Priority)
		case 9:
			return readIntField(b, &s.NotBeforeMs)
		default:
			major, n, b, ok := readHead(b)
			if !ok || major != cborMap || n == 0 || n > uint64(len(b)) || n > 1<<16 { // decMode's MaxMapPairs
				return nil, false
			}
			s.Labels = make(map[string]string, n)
			var prev []byte
			for i := range n {
				k, rest, ok := readString(b, cborText)
				if !ok || i > 0 && (len(k) < len(prev) || len(k) == len(prev) && string(k) <= string(prev)) {
					return nil, false
				}
				v, rest, ok := readString(rest, cborText)
				if !ok {
					return nil, false
				}
				s.Labels[string(k)] = string(v)
				prev, b = k, rest
			}
			return b, true
		}
	})
}

// runStateOf and outcomeOf return the constant for a known name, so that
// decoding the same few names a million times allocates none of them.
func runStateOf(b []byte) RunState {
	switch string(b) {
	case "scheduled":
		return RunScheduled
	case "ready":
		return RunReady
	case "leased":
		return RunLeased
	case "running":
		return RunRunning
	case "retry_wait":
		return RunRetryWait
	case "completed":
		return RunCompleted
	case "failed":
		return RunFailed
	case "canceled":
		return RunCanceled
	}
	return RunState(b)
}

func outcomeOf(b []byte) Outcome {
	switch string(b) {
	case "ok":
		return OutcomeOK
	case "failed":
		return OutcomeFailed
	case "trap":
		return OutcomeTrap
	case "timeout":
		return OutcomeTimeout
	case "lost":
		return OutcomeLost
	}
	return Outcome(b)
}
