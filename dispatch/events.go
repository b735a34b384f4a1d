package dispatch

import (
	"errors"
	"fmt"

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
	EvTaskDropped     EventType = 12 // Task, At: removed by retention
)

var eventNames = [...]string{
	evInvalid: "invalid", EvTaskSubmitted: "task_submitted", EvRunCreated: "run_created",
	EvRunTransition: "run_transition", EvLeaseAcquired: "lease_acquired", EvAttemptStarted: "attempt_started",
	EvLeaseRenewed: "lease_renewed", EvAttemptFinished: "attempt_finished", EvLeaseExpired: "lease_expired",
	EvTaskCanceled: "task_canceled", EvEnginePaused: "engine_paused", EvEngineResumed: "engine_resumed",
	EvTaskDropped: "task_dropped",
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
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
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

// appendEvent appends the WAL record of e to dst: the type byte, then the
// CBOR body.
func appendEvent(dst []byte, e *Event) ([]byte, error) {
	if e.Type == evInvalid || int(e.Type) >= len(eventNames) {
		return dst, fmt.Errorf("dispatch: encode %v: %w", e.Type, ErrUnknownEvent)
	}
	dst = append(dst, byte(e.Type))
	body, err := encMode.Marshal(e)
	if err != nil {
		return dst, fmt.Errorf("dispatch: encode %v: %w", e.Type, err)
	}
	return append(dst, body...), nil
}

// decodeEvent parses one WAL record. Unknown types and trailing bytes are
// errors, never skipped.
func decodeEvent(rec []byte) (Event, error) {
	var e Event
	if len(rec) == 0 {
		return e, fmt.Errorf("%w: empty record", ErrUnknownEvent)
	}
	t := EventType(rec[0])
	if t == evInvalid || int(t) >= len(eventNames) {
		return e, fmt.Errorf("%w %d", ErrUnknownEvent, rec[0])
	}
	rest, err := decMode.UnmarshalFirst(rec[1:], &e)
	if err != nil {
		return e, fmt.Errorf("dispatch: decode %v: %w", t, err)
	}
	if len(rest) != 0 {
		return e, fmt.Errorf("dispatch: decode %v: %d unexpected bytes after the event", t, len(rest))
	}
	e.Type = t
	return e, nil
}
