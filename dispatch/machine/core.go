package machine

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	mathbits "math/bits"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"
)

// Errors returned to callers through acknowledgements.
var (
	// ErrConflict: a task with this id exists with a different spec.
	ErrConflict = errors.New("dispatch: a task with this id exists with a different spec")
	// ErrNotFound: no task with this id.
	ErrNotFound = errors.New("dispatch: task not found")
	// ErrStopped: the engine is closed or stopped after a fatal error.
	ErrStopped = errors.New("dispatch: engine stopped")
)

// Job is one attempt handed to an Executor.
type Job struct {
	Task    TaskID
	Run     RunID
	Handler string
	Input   []byte
	// InputRef and InputSize name the input in the payload store when it
	// is not inline: the engine reads it into Input before Execute.
	InputRef    string
	InputSize   int64
	Attempt     int // 1-based
	MaxAttempts int
	// DeadlineMs (unix ms) is when the attempt must end: its start plus
	// TimeoutMs. Core fills in the lease's time plus TimeoutMs; the worker
	// that starts the attempt sets it from its start (Engine.start), and
	// the context given to Execute ends then too, so a wait for a worker
	// never eats into the handler's time.
	DeadlineMs int64
	// TimeoutMs is the task's timeout (the span up to DeadlineMs), for
	// messages: an executor names the timeout that stopped the attempt.
	TimeoutMs int64
	Worker    string
	Labels    map[string]string
	Parent    TaskID // the task whose handler submitted this one, if any
	// Heartbeat tells the engine the attempt is alive and extends its
	// lease (timeout + grace from now). Safe to call from any goroutine;
	// nil outside an Engine.
	Heartbeat func()

	taskSeq uint64 // Task.submitSeq: the WAL sequence that must be durable before an early start
	ref     runRef // the leased run, for the attempt's start and result (Job.Started, Job.Result)
}

// runRef is the run a Job was leased from, so that the attempt's start and
// result find it without a lookup in State.Runs (a cache miss in a map of
// every retained run, on every result). It is used only while it is
// still the state's: a run removed from the state (its task dropped, a
// pruned cron run) loses its task pointer, and a ref from another State
// or none is looked up by id as before.
type runRef struct {
	r *Run
	s *State
}

// Started is the input reporting that j's attempt started at (unix ms).
func (j *Job) Started(at int64) StartedInput {
	return StartedInput{Run: j.Run, Attempt: j.Attempt, At: at, ref: j.ref}
}

// Result is the input carrying the result of j's attempt.
func (j *Job) Result(res Result) ResultInput {
	return ResultInput{Run: j.Run, Attempt: j.Attempt, Res: res, ref: j.ref}
}

// TaskSeq is the WAL sequence of the task's submission by the running
// engine (0 when recovered): the loop starts the attempt before its lease
// is durable only once this sequence is.
func (j Job) TaskSeq() uint64 { return j.taskSeq }

// Result is what an Executor reports for one attempt.
type Result struct {
	Outcome   Outcome
	Retryable bool // for OutcomeFailed: may the attempt be retried
	Error     string
	Output    []byte
	// OutputRef and OutputSize name the output in the payload store, where
	// the engine's worker put it (Output is then empty).
	OutputRef  string
	OutputSize int64
	Module     string // module version the attempt ran on (sha256:<hex>)
	// Children are task specs (JSON, the spec of docs/task-spec.md) the handler
	// submitted; they are committed with the attempt's success, in the same
	// WAL frame, and dropped otherwise. Each needs an id derived from the
	// run and its ordinal, so a retried attempt creates no duplicates.
	Children [][]byte
	// Log is what the handler logged; kept on the attempt (bounded by the
	// executor: the host's per-plugin log quota).
	Log []byte
	// Worker, when set, names who ran the attempt (a remote worker); it
	// replaces the engine's slot name on the attempt.
	Worker string
	// StartedAt and FinishedAt are when the attempt ran, measured by the
	// executor where it runs; the engine's worker fills them in (around
	// Execute) when the executor leaves them zero. They become the
	// attempt's started_at and finished_at; the tick that leased it is
	// LeasedAt.
	StartedAt, FinishedAt time.Time
}

// SubmitResult acknowledges a submission once it is durable.
type SubmitResult struct {
	Task      TaskID
	Duplicate bool // the same spec was already submitted under this id: nothing was written
}

// Reply is what the loop sends back to a caller after the tick's fsync.
type Reply struct {
	Submit SubmitResult
	View   *TaskView // for Engine.SubmitView
	N      int       // tasks dropped by a delete or purge
	Err    error
}

// Inputs to Core.Step. The loop builds them from its channels.
type (
	SubmitInput struct {
		Spec  TaskSpec
		Reply chan Reply
		// Normalized: the caller ran spec.Normalize already (Engine.Submit
		// does, on its own goroutine, to keep that work out of the loop).
		Normalized bool
		// View: the caller wants the task's view as of this submission
		// (Engine.SubmitView), released with the reply once the tick is durable.
		View bool
		// Mem, if set, is memory for the task (new(Task), allocated on the
		// submitter's goroutine): a growing heap's page faults are then
		// taken there, beside the caller, not in the loop.
		Mem *Task
	}
	// SubmitManyInput is Engine.SubmitMany's: submissions handled in order
	// in one tick, their replies released in that order on one channel.
	SubmitManyInput []SubmitInput
	StartedInput    struct {
		Run     RunID
		Attempt int
		At      int64 // unix ms the worker started it; 0: unknown (the tick's time)
		ref     runRef
	}
	ResultInput struct {
		Run     RunID
		Attempt int
		Res     Result
		ref     runRef
	}
	HeartbeatInput struct {
		Run     RunID
		Attempt int
	}
	CancelInput struct {
		Task   TaskID
		Reason string
		Reply  chan Reply
	}
	AfterInput struct {
		Task  TaskID
		After []TaskID
		Reply chan Reply
	}
	PauseInput struct {
		Pause bool
		Reply chan Reply
	}
)

// Ack is a reply released only after the tick's events are durable.
type Ack struct {
	To chan Reply
	R  Reply
}

// AttemptRef names an attempt of a run: a cancel names the attempt it is
// for, so that it never reaches the run's next attempt (a lease that
// expired while its worker still ran is retried at once: the retry may
// start before the cancel of the expired attempt is released).
type AttemptRef struct {
	Run     RunID
	Attempt int
}

// Batch is what one Step decided: events to append (already applied to the
// state), replies to release after the fsync, attempts to start after it,
// running attempts to cancel, and when to wake up next (0: no timer).
type Batch struct {
	Events   []Event
	Acks     []Ack
	Starts   []Job
	Cancels  []AttemptRef
	NextWake int64
}

// Core is the deterministic engine: fed inputs and the time, it derives
// events, applies them through the reducer, and returns what the loop must
// persist and do. It does no I/O, reads no clock and starts no goroutine.
type Core struct {
	s     *State
	cfg   CoreConfig
	slots []RunID  // worker slot -> run holding it ("" = free)
	names []string // worker slot -> its worker id (built once, not per lease)
	free  []uint64 // bit i set: slot i is free (takeSlot takes the lowest)
	batch *Batch
	spare []Event // events of a batch the loop is done with, for reuse
	// SpareStarts and SpareAcks are arrays of a batch the committer
	// released, handed back for reuse (Engine.loop).
	SpareStarts []Job
	SpareAcks   []Ack
	// parked are ready runs whose handler no worker could run when they
	// came up (CoreConfig.Runnable); SetWorkers brings them back.
	parked []readyEntry
	// Lost: in-flight attempts of a previous process are still open; the
	// next Step closes them as lost. NewCore sets it; a State known to have
	// nothing in flight may clear it.
	Lost bool
	// Drain: lease nothing new (the engine is shutting down).
	Drain   bool
	dooming bool // cancelDoomed is running: nested emits leave doomed to it
	entropy io.Reader
	// idBuf holds a new task id's ULID while it is made (in the Core, so
	// that it does not escape to a new allocation); run1 is the id of the
	// first run of the task whose id was made last, built in the same
	// string (runID).
	idBuf ulid.ULID
	run1  RunID
}

// newTaskID returns a new ULID task id. It and its first run's id are
// one string ("<ulid>#1"): one allocation instead of three.
func (c *Core) newTaskID(now int64) (TaskID, error) {
	if err := c.idBuf.SetTime(uint64(now)); err != nil {
		return "", err
	}
	var err error
	switch e := c.entropy.(type) { // as ulid.New
	case nil:
		clear(c.idBuf[6:])
	case ulid.MonotonicReader:
		err = e.MonotonicRead(uint64(now), c.idBuf[6:])
	default:
		_, err = io.ReadFull(e, c.idBuf[6:])
	}
	if err != nil {
		return "", err
	}
	var text [ulid.EncodedSize]byte
	if err := c.idBuf.MarshalTextTo(text[:]); err != nil {
		return "", err
	}
	var b strings.Builder
	b.Grow(ulid.EncodedSize + 2)
	b.Write(text[:])
	b.WriteString("#1")
	c.run1 = RunID(b.String())
	return TaskID(c.run1[:ulid.EncodedSize]), nil
}

// runID is MakeRunID(task, index), without building the first run's id
// of the task newTaskID made last.
func (c *Core) runID(task TaskID, index int) RunID {
	if index == 1 && len(c.run1) == len(task)+2 && string(c.run1[:len(task)]) == string(task) {
		return c.run1
	}
	return MakeRunID(task, index)
}

// CoreConfig sets up a Core: times are milliseconds.
type CoreConfig struct {
	Workers     int            // attempts in flight at most (worker slots)
	Node        string         // names the worker slots in leases ("node/w3")
	LeaseGrace  int64          // added to an attempt's timeout to form its lease
	RetainMs    int64          // final tasks are dropped this long after they end (0: kept)
	RetainCount int            // at most this many final root tasks are kept (0: no limit)
	Rand        func() float64 // uniform [0,1), for backoff jitter
	// ValidateHandler checks a handler name (deployed plugin); nil accepts any.
	ValidateHandler func(handler string) error
	// Runnable reports whether some worker can run handler now; nil: all.
	Runnable func(handler string) bool
}

// NewCore returns a Core that changes s; entropy feeds the ULIDs of
// tasks submitted without an id.
func NewCore(s *State, cfg CoreConfig, entropy io.Reader) *Core {
	c := &Core{s: s, cfg: cfg, Lost: true, entropy: entropy}
	c.addSlots(cfg.Workers)
	return c
}

// SetWorkers sets the bound on attempts in flight (remote workers come and
// go) and gives the runs parked for want of a worker another chance. A
// bound below the attempts in flight lets them finish.
func (c *Core) SetWorkers(n int) {
	c.cfg.Workers = max(n, 0)
	c.addSlots(c.cfg.Workers)
	for _, e := range c.parked {
		c.s.ready.push(e) // stale ones (canceled meanwhile) drop out at peekValid
	}
	clear(c.parked)
	c.parked = c.parked[:0]
}

// Step runs one tick at time now (unix ms) over inputs.
func (c *Core) Step(now int64, inputs []any) (Batch, error) {
	c.batch = &Batch{Events: c.spare, Starts: c.SpareStarts, Acks: c.SpareAcks}
	c.spare, c.SpareStarts, c.SpareAcks = nil, nil, nil
	defer func() { c.batch = nil }()
	if c.Lost {
		if err := c.closeLostAttempts(now); err != nil {
			return Batch{}, err
		}
		c.Lost = false
	}
	for _, in := range inputs {
		var err error
		switch in := in.(type) {
		case *SubmitInput:
			err = c.handleSubmit(now, in)
		case SubmitManyInput:
			for i := 0; i < len(in) && err == nil; i++ {
				err = c.handleSubmit(now, &in[i])
			}
		case SubmitInput:
			err = c.handleSubmit(now, &in)
		case StartedInput:
			err = c.handleStarted(now, in)
		case ResultInput:
			err = c.handleResult(now, in)
		case *ResultInput:
			err = c.handleResult(now, *in)
		case HeartbeatInput:
			err = c.handleHeartbeat(now, in)
		case CancelInput:
			err = c.handleCancel(now, in)
		case PauseInput:
			err = c.handlePause(now, in)
		case AfterInput:
			err = c.handleAfter(now, in)
		case RetryInput:
			err = c.handleRetry(now, in)
		case DeleteInput:
			err = c.handleDelete(now, in)
		case PurgeInput:
			err = c.handlePurge(now, in)
		default:
			err = fmt.Errorf("dispatch: unknown input %T", in)
		}
		if err != nil {
			return Batch{}, err
		}
	}
	if err := c.expireLeases(now); err != nil {
		return Batch{}, err
	}
	if err := c.promoteDue(now); err != nil {
		return Batch{}, err
	}
	if err := c.leaseReady(now); err != nil {
		return Batch{}, err
	}
	if err := c.dropRetained(now); err != nil {
		return Batch{}, err
	}
	c.batch.NextWake = c.nextWake()
	return *c.batch, nil
}

// Recycle hands back the events of a batch whose caller is done with them
// (the loop, once they are in the WAL), so the next Step reuses the array.
func (c *Core) Recycle(events []Event) {
	clear(events)
	c.spare = events[:0]
}

// emit applies e and records it for the WAL. The loop appends the batch
// before releasing anything that depends on it; a failed append stops the
// engine, so state that got ahead of the disk is never observed by a
// caller that was acknowledged.
func (c *Core) emit(e Event) error {
	err := Apply(c.s, &e)
	c.s.runHint, c.s.taskHint = nil, nil
	if err != nil {
		return err
	}
	c.batch.Events = append(c.batch.Events, e)
	if len(c.s.Doomed) > 0 && !c.dooming {
		return c.cancelDoomed(e.At)
	}
	return nil
}

// emitRun is emit for an event that names r, a run the Core just found
// in its state: Apply takes r rather than looking its id up in Runs.
func (c *Core) emitRun(r *Run, e Event) error {
	c.s.runHint = r
	return c.emit(e)
}

func (c *Core) reply(to chan Reply, r Reply) {
	if to != nil {
		c.batch.Acks = append(c.batch.Acks, Ack{To: to, R: r})
	}
}

// handleSubmit owns in: its spec is the one the submitted event points to
// (Engine.Submit hands over a pointer, so the spec is never copied on its way).
func (c *Core) handleSubmit(now int64, in *SubmitInput) error {
	spec := &in.Spec
	if !in.Normalized {
		if err := spec.Normalize(); err != nil {
			c.reply(in.Reply, Reply{Err: err})
			return nil
		}
	}
	if spec.ID == "" {
		id, err := c.newTaskID(now)
		if err != nil {
			c.reply(in.Reply, Reply{Err: fmt.Errorf("dispatch: generate task id: %w", err)})
			return nil
		}
		spec.ID = id
	}
	if t, ok := c.s.Tasks[spec.ID]; ok {
		if t.Spec.SameAs(spec) {
			c.reply(in.Reply, Reply{Submit: SubmitResult{Task: spec.ID, Duplicate: true}, View: c.viewFor(in, t)})
		} else {
			c.reply(in.Reply, Reply{Err: fmt.Errorf("%w: %q", ErrConflict, spec.ID)})
		}
		return nil
	}
	if spec.Parent != "" {
		c.reply(in.Reply, Reply{Err: Invalid("parent", "is set by the engine for tasks submitted by handlers")})
		return nil
	}
	if err := c.checkSubmission(now, spec); err != nil {
		c.reply(in.Reply, Reply{Err: err})
		return nil
	}
	c.s.taskMem, c.s.newID = in.Mem, spec.ID // found absent above
	err := c.submitTask(now, spec)
	c.s.taskMem, c.s.newID = nil, ""
	if err != nil {
		return err
	}
	var view *TaskView
	if in.View { // the lookup only for a submitter that asked for the view
		view = c.viewFor(in, c.s.Tasks[spec.ID])
	}
	c.reply(in.Reply, Reply{Submit: SubmitResult{Task: spec.ID}, View: view})
	return nil
}

// viewFor is t's view for a submitter that asked for it: taken in the tick
// of the submission, so that it is durable when the reply is released,
// whereas a read after the reply waits for whatever the loop stepped since.
func (c *Core) viewFor(in *SubmitInput, t *Task) *TaskView {
	if !in.View || t == nil {
		return nil
	}
	v := ViewOf(c.s, t)
	return &v
}

// liveAttempt returns the run if attempt is its open attempt; results of
// attempts already closed (a lease that expired, a restart) are stale.
func (c *Core) liveAttempt(ref runRef, id RunID, attempt int, states ...RunState) *Run {
	r := ref.r
	if r == nil || ref.s != c.s || r.task == nil || r.ID != id {
		var ok bool
		if r, ok = c.s.Runs[id]; !ok {
			return nil
		}
	}
	if len(r.Attempts) != attempt || !slices.Contains(states, r.State) {
		return nil
	}
	return r
}

func (c *Core) handleStarted(now int64, in StartedInput) error {
	r := c.liveAttempt(in.ref, in.Run, in.Attempt, RunLeased)
	if r == nil {
		return nil
	}
	if err := c.emitRun(r, Event{Type: EvAttemptStarted, At: now, Task: r.Task, Run: r.ID, Attempt: in.Attempt, ExecStart: in.At}); err != nil {
		return err
	}
	// The attempt's deadline counts from its start (Engine.start), which
	// comes after the lease by a worker's scheduling delay, or an fsync
	// (Config.DurableLeases): the lease must outlast start + timeout by
	// the grace, so a late start renews it. A start within half the grace
	// of the lease writes nothing more (the common case).
	start := now
	if in.At > 0 && in.At < now {
		start = in.At
	}
	exp := start + c.s.taskOf(r).Spec.TimeoutMs + c.cfg.LeaseGrace
	if exp-r.LeaseExp <= c.cfg.LeaseGrace/2 {
		return nil
	}
	return c.emitRun(r, Event{Type: EvLeaseRenewed, At: now, Task: r.Task, Run: r.ID, Attempt: in.Attempt, LeaseExp: exp})
}

func (c *Core) handleHeartbeat(now int64, in HeartbeatInput) error {
	r := c.liveAttempt(runRef{}, in.Run, in.Attempt, RunLeased, RunRunning)
	if r == nil {
		return nil
	}
	exp := now + c.s.taskOf(r).Spec.TimeoutMs + c.cfg.LeaseGrace
	if exp-r.LeaseExp < 1000 {
		return nil // renewing by less than a second is not worth a WAL record
	}
	return c.emit(Event{Type: EvLeaseRenewed, At: now, Task: r.Task, Run: r.ID, Attempt: in.Attempt, LeaseExp: exp})
}

func (c *Core) handleResult(now int64, in ResultInput) error {
	r := c.liveAttempt(in.ref, in.Run, in.Attempt, RunLeased, RunRunning)
	if r == nil {
		return nil
	}
	res := in.Res
	ran := [2]int64{unixMsOrZero(res.StartedAt), unixMsOrZero(res.FinishedAt)}
	// The WAL holds text as CBOR text strings, which must be valid UTF-8:
	// an executor's error or module string from a guest may not be.
	res.Error, res.Module = validUTF8(res.Error), validUTF8(res.Module)
	if res.Outcome == "" {
		res.Outcome, res.Error = OutcomeFailed, "executor returned no outcome"
	}
	if res.Outcome == OutcomeOK && len(res.Children) > 0 {
		if err := c.commitChildren(now, r, res.Children); err != nil {
			var inv *InvariantError
			if errors.As(err, &inv) {
				return err
			}
			res = Result{Outcome: OutcomeFailed, Error: "submitted children rejected: " + err.Error(), Module: res.Module, Worker: res.Worker}
		}
	}
	e := Event{Type: EvAttemptFinished, At: now, Task: r.Task, Run: r.ID, From: r.State, Attempt: in.Attempt,
		Outcome: res.Outcome, Retryable: res.Outcome.Retryable(res.Retryable), Error: res.Error,
		Output: res.Output, Module: res.Module, Log: res.Log, ExecStart: ran[0], ExecEnd: ran[1], Worker: validUTF8(res.Worker),
		OutputRef: res.OutputRef, OutputSize: res.OutputSize}
	c.decideAfterAttempt(now, r, &e)
	c.freeSlot(r)
	return c.emitRun(r, e)
}

// decideAfterAttempt sets e.To (and e.DueAt for a retry) for the attempt
// that e closes.
func (c *Core) decideAfterAttempt(now int64, r *Run, e *Event) {
	t := c.s.taskOf(r)
	used, lost := r.attemptCounts(e.Outcome)
	switch {
	case e.Outcome == OutcomeOK:
		e.To = RunCompleted
	case t.Canceled:
		e.To = RunCanceled
	case e.Outcome == OutcomeLost && lost >= MaxLostAttempts:
		e.To = RunFailed
		e.Error += fmt.Sprintf("; failed after %d lost attempts (the limit of lost attempts per run: the engine stopped or a lease expired while each ran)", lost)
	case e.Outcome == OutcomeLost || e.Retryable && used < t.Spec.MaxAttempts:
		// A lost attempt does not use max_attempts (MaxLostAttempts).
		e.To = RunRetryWait
		e.DueAt = now + t.Spec.Backoff.delay(e.Attempt, c.cfg.Rand())
	default:
		e.To = RunFailed
	}
}

func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func (c *Core) handleCancel(now int64, in CancelInput) error {
	in.Reason = validUTF8(in.Reason)
	t, ok := c.s.Tasks[in.Task]
	if !ok {
		c.reply(in.Reply, Reply{Err: fmt.Errorf("%w: %q", ErrNotFound, in.Task)})
		return nil
	}
	if err := c.cancelTask(now, t, in.Reason, true); err != nil {
		return err
	}
	c.reply(in.Reply, Reply{Submit: SubmitResult{Task: in.Task}})
	return nil
}

func (c *Core) handlePause(now int64, in PauseInput) error {
	if in.Pause != c.s.Paused {
		typ := EvEngineResumed
		if in.Pause {
			typ = EvEnginePaused
		}
		if err := c.emit(Event{Type: typ, At: now}); err != nil {
			return err
		}
	}
	c.reply(in.Reply, Reply{})
	return nil
}

// closeLostAttempts ends, as lost, every attempt that was leased or running
// when the previous process stopped, in submission order.
func (c *Core) closeLostAttempts(now int64) error {
	var open []*Run
	for _, r := range c.s.Runs {
		if r.State == RunLeased || r.State == RunRunning {
			open = append(open, r)
		}
	}
	slices.SortFunc(open, func(a, b *Run) int {
		sa, sb := c.s.Tasks[a.Task].SubmitSeq, c.s.Tasks[b.Task].SubmitSeq
		if sa != sb {
			return cmp.Compare(sa, sb)
		}
		return cmp.Compare(a.Index, b.Index)
	})
	for _, r := range open {
		if err := c.closeAsLost(now, r, EvAttemptFinished, "the engine stopped while the attempt ran"); err != nil {
			return err
		}
	}
	return nil
}

func (c *Core) closeAsLost(now int64, r *Run, typ EventType, why string) error {
	e := Event{Type: typ, At: now, Task: r.Task, Run: r.ID, From: r.State, Attempt: len(r.Attempts),
		Outcome: OutcomeLost, Retryable: true, Error: why}
	c.decideAfterAttempt(now, r, &e)
	c.freeSlot(r)
	return c.emit(e)
}

func (c *Core) expireLeases(now int64) error {
	for {
		e, ok := c.s.leases.peekValid()
		if !ok || e.at > now {
			return nil
		}
		c.s.leases.pop()
		if err := c.closeAsLost(now, e.run, EvLeaseExpired, "lease expired: the worker did not finish or renew in time"); err != nil {
			return err
		}
		c.batch.Cancels = append(c.batch.Cancels, AttemptRef{Run: e.run.ID, Attempt: len(e.run.Attempts)})
	}
}

func (c *Core) promoteDue(now int64) error {
	for {
		e, ok := c.s.timers.peekValid()
		if !ok || e.at > now {
			return nil
		}
		c.s.timers.pop()
		r := e.run
		if t := c.s.taskOf(r); t.Spec.Policy.Kind == PolicyCron && r.State == RunScheduled {
			if err := c.promoteCron(now, r, t); err != nil {
				return err
			}
			continue
		}
		if err := c.emit(Event{Type: EvRunTransition, At: now, Task: r.Task, Run: r.ID, From: r.State, To: RunReady, DueAt: r.DueAt}); err != nil {
			return err
		}
	}
}

func (c *Core) leaseReady(now int64) error {
	if c.s.Paused || c.Drain {
		return nil
	}
	for c.s.Inflight < c.cfg.Workers {
		e, ok := c.s.ready.peekValid()
		if !ok {
			return nil
		}
		c.s.ready.pop()
		r := e.run
		t := c.s.taskOf(r)
		if c.cfg.Runnable != nil && !c.cfg.Runnable(t.Spec.Handler) {
			// No worker can run it now (remote-only, or no worker serves
			// the handler): leasing it would burn its timeout in a queue.
			c.parked = append(c.parked, e)
			continue
		}
		if k := t.Spec.ConcurrencyKey; k != "" {
			if h, held := c.s.keyHolder[k]; held && h != r.ID {
				// Park it with its key so it does not block other runs;
				// releaseKey brings the best one back.
				b := c.s.blocked[k]
				if b == nil {
					b = &readyHeap{}
					c.s.blocked[k] = b
				}
				b.push(e)
				continue
			}
		}
		slot := c.takeSlot(r)
		worker := c.workerName(slot)
		attempt := len(r.Attempts) + 1
		exp := now + t.Spec.TimeoutMs + c.cfg.LeaseGrace
		if err := c.emitRun(r, Event{Type: EvLeaseAcquired, At: now, Task: r.Task, Run: r.ID, From: RunReady, Attempt: attempt, Worker: worker, LeaseExp: exp}); err != nil {
			return err
		}
		c.batch.Starts = append(c.batch.Starts, Job{
			Task: r.Task, Run: r.ID, Handler: t.Spec.Handler, Input: t.Spec.Input, Attempt: attempt,
			InputRef: t.Spec.InputRef, InputSize: t.Spec.InputSize,
			MaxAttempts: t.Spec.MaxAttempts, DeadlineMs: now + t.Spec.TimeoutMs, Worker: worker, Labels: t.Spec.Labels,
			Parent: t.Spec.Parent, TimeoutMs: t.Spec.TimeoutMs, taskSeq: t.submitSeq, ref: runRef{r: r, s: c.s},
		})
	}
	return nil
}

// addSlots grows the worker slots to n (free).
func (c *Core) addSlots(n int) {
	for i := len(c.slots); i < n; i++ {
		c.slots = append(c.slots, "")
		if i/64 >= len(c.free) {
			c.free = append(c.free, 0)
		}
		c.free[i/64] |= 1 << (i % 64)
	}
}

// takeSlot gives r the lowest free worker slot and returns its number
// (from 1). A bitmap of free slots and the slot kept on the run replace a
// scan of every slot and a map from run to slot.
func (c *Core) takeSlot(r *Run) int {
	for w, bits := range c.free {
		if bits != 0 {
			b := mathbits.TrailingZeros64(bits)
			i := w*64 + b
			c.free[w] &^= 1 << b
			c.slots[i] = r.ID
			r.slot = i + 1
			return i + 1
		}
	}
	return 0 // unreachable while inflight <= workers
}

// freeSlot frees r's slot, if r holds one in this Core (a Run of a state
// an earlier Core stepped may name a slot it no longer holds).
func (c *Core) freeSlot(r *Run) {
	if i := r.slot - 1; i >= 0 && i < len(c.slots) && c.slots[i] == r.ID {
		c.slots[i] = ""
		c.free[i/64] |= 1 << (i % 64)
	}
	r.slot = 0
}

// dropRetained removes final tasks older than the retention time, and the
// oldest final tasks beyond the retention count.
func (c *Core) dropRetained(now int64) error {
	for {
		fs := c.s.Finals()
		if len(fs) == 0 {
			return nil
		}
		over := c.cfg.RetainCount > 0 && len(fs) > c.cfg.RetainCount
		old := c.cfg.RetainMs > 0 && c.s.finalKeys[c.s.finalsHead].at+c.cfg.RetainMs <= now
		if !over && !old {
			return nil
		}
		id := fs[0]
		t, ok := c.s.Tasks[id]
		if !ok {
			c.s.dropFinal(0) // already dropped
			continue
		}
		c.s.taskHint = t // Apply takes it without a second lookup
		if err := c.emit(Event{Type: EvTaskDropped, At: now, Task: id}); err != nil {
			return err
		}
	}
}

func (c *Core) nextWake() int64 {
	var next int64
	consider := func(at int64) {
		if next == 0 || at < next {
			next = at
		}
	}
	if e, ok := c.s.timers.peekValid(); ok {
		consider(e.at)
	}
	if e, ok := c.s.leases.peekValid(); ok {
		consider(e.at)
	}
	if len(c.s.Finals()) > 0 && c.cfg.RetainMs > 0 {
		consider(c.s.finalKeys[c.s.finalsHead].at + c.cfg.RetainMs)
	}
	return next
}

// unixMsOrZero is t in unix ms, 0 for the zero time.
func unixMsOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// workerName is the worker id of slot: "<node>/w<slot>".
func (c *Core) workerName(slot int) string {
	for len(c.names) <= slot {
		c.names = append(c.names, c.cfg.Node+"/w"+strconv.Itoa(len(c.names)))
	}
	return c.names[slot]
}
