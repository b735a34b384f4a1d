package dispatch

// The model, events, state, reducer and workflow rules live in
// dispatch/machine, which does no I/O; these aliases keep them under their
// old names here, so that users of dispatch (api, host, plugins, cmd) need
// not know about the split.

import "github.com/wasmtask/wasmtask/dispatch/machine"

type (
	Attempt         = machine.Attempt
	Backoff         = machine.Backoff
	BackoffJSON     = machine.BackoffJSON
	BackoffKind     = machine.BackoffKind
	Batch           = machine.Batch
	Core            = machine.Core
	CronJSON        = machine.CronJSON
	Event           = machine.Event
	EventType       = machine.EventType
	InvariantError  = machine.InvariantError
	Job             = machine.Job
	Outcome         = machine.Outcome
	PolicyKind      = machine.PolicyKind
	PurgeFilter     = machine.PurgeFilter
	RepeatJSON      = machine.RepeatJSON
	Result          = machine.Result
	Run             = machine.Run
	RunID           = machine.RunID
	RunPolicy       = machine.RunPolicy
	RunPolicyJSON   = machine.RunPolicyJSON
	RunState        = machine.RunState
	SpecJSON        = machine.SpecJSON
	State           = machine.State
	SubmitResult    = machine.SubmitResult
	Task            = machine.Task
	TaskID          = machine.TaskID
	TaskSpec        = machine.TaskSpec
	TaskState       = machine.TaskState
	TaskView        = machine.TaskView
	ValidationError = machine.ValidationError
	ValidSpec       = machine.ValidSpec
)

const (
	BackoffExponential    = machine.BackoffExponential
	BackoffFixed          = machine.BackoffFixed
	CronRunsKept          = machine.CronRunsKept
	CronWindow            = machine.CronWindow
	DefaultBackoffMax     = machine.DefaultBackoffMax
	DefaultBackoffMs      = machine.DefaultBackoffMs
	DefaultJitter         = machine.DefaultJitter
	DefaultMaxAttempts    = machine.DefaultMaxAttempts
	DefaultTimeoutMs      = machine.DefaultTimeoutMs
	DropDeleted           = machine.DropDeleted
	DropPurged            = machine.DropPurged
	EvAttemptFinished     = machine.EvAttemptFinished
	EvAttemptStarted      = machine.EvAttemptStarted
	EvDependencyAdded     = machine.EvDependencyAdded
	EvEnginePaused        = machine.EvEnginePaused
	EvEngineResumed       = machine.EvEngineResumed
	EvLeaseAcquired       = machine.EvLeaseAcquired
	EvLeaseExpired        = machine.EvLeaseExpired
	EvLeaseRenewed        = machine.EvLeaseRenewed
	EvRunCreated          = machine.EvRunCreated
	EvRunSkipped          = machine.EvRunSkipped
	EvRunTransition       = machine.EvRunTransition
	EvTaskCanceled        = machine.EvTaskCanceled
	EvTaskDropped         = machine.EvTaskDropped
	EvTaskRetried         = machine.EvTaskRetried
	EvTaskSubmitted       = machine.EvTaskSubmitted
	MaxAfter              = machine.MaxAfter
	MaxCatchUp            = machine.MaxCatchUp
	MaxChildren           = machine.MaxChildren
	MaxDepth              = machine.MaxDepth
	MaxInputBytes         = machine.MaxInputBytes
	MaxLostAttempts       = machine.MaxLostAttempts
	MaxMaxAttempts        = machine.MaxMaxAttempts
	MaxPurge              = machine.MaxPurge
	MaxRepeatCount        = machine.MaxRepeatCount
	MaxTimeoutMs          = machine.MaxTimeoutMs
	MisfireCatchUp        = machine.MisfireCatchUp
	MisfireSkip           = machine.MisfireSkip
	OutcomeABIViolation   = machine.OutcomeABIViolation
	OutcomeCancelled      = machine.OutcomeCancelled
	OutcomeFailed         = machine.OutcomeFailed
	OutcomeLost           = machine.OutcomeLost
	OutcomeOK             = machine.OutcomeOK
	OutcomeOOM            = machine.OutcomeOOM
	OutcomeOutputTooLarge = machine.OutcomeOutputTooLarge
	OutcomeTimeout        = machine.OutcomeTimeout
	OutcomeTrap           = machine.OutcomeTrap
	PolicyCron            = machine.PolicyCron
	PolicyOnce            = machine.PolicyOnce
	PolicyRepeat          = machine.PolicyRepeat
	RunCanceled           = machine.RunCanceled
	RunCompleted          = machine.RunCompleted
	RunFailed             = machine.RunFailed
	RunLeased             = machine.RunLeased
	RunReady              = machine.RunReady
	RunRetryWait          = machine.RunRetryWait
	RunRunning            = machine.RunRunning
	RunScheduled          = machine.RunScheduled
	RunSuspended          = machine.RunSuspended
	TaskCanceled          = machine.TaskCanceled
	TaskCompleted         = machine.TaskCompleted
	TaskFailed            = machine.TaskFailed
	TaskPending           = machine.TaskPending
	TaskRunning           = machine.TaskRunning
	TaskWaitingChildren   = machine.TaskWaitingChildren
)

var (
	ErrConflict     = machine.ErrConflict
	ErrNotFinal     = machine.ErrNotFinal
	ErrNotFound     = machine.ErrNotFound
	ErrStopped      = machine.ErrStopped
	ErrUnknownEvent = machine.ErrUnknownEvent
)

// DecodeSpecJSON parses a JSON task spec strictly: unknown fields and
// trailing data are errors naming them.
func DecodeSpecJSON(b []byte) (SpecJSON, error) { return machine.DecodeSpecJSON(b) }

// JSONFieldError turns encoding/json errors into ValidationErrors naming the field.
func JSONFieldError(err error) error { return machine.JSONFieldError(err) }

// ParseSpecJSON decodes and validates a JSON task spec in one step.
func ParseSpecJSON(b []byte) (TaskSpec, error) { return machine.ParseSpecJSON(b) }

// Validate normalizes spec and seals it (ValidSpec).
func Validate(spec TaskSpec) (ValidSpec, error) { return machine.Validate(spec) }

// NewState returns an empty State.
func NewState() *State { return machine.NewState() }
