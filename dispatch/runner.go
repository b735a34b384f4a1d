package dispatch

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmtask/wasmtask/dispatch/machine"
)

// Attempts run on runners: goroutines that run one attempt after another
// and wait, idle, for the next. A goroutine per attempt cost its creation,
// a closure and a fresh stack on every attempt, a share of the loop's
// allocations that the garbage collector paid for again.
//
// An attempt reports that it started (EvAttemptStarted: its run goes from
// leased to running) only once it has run for startedReportDelay. Most
// attempts of short handlers end sooner, and then their result alone
// closes the lease: the finish event carries when the attempt started
// (Result.StartedAt), so the attempt's times are the same, and a short
// attempt costs the loop one input and the WAL four events instead of two
// inputs and five. Leased and running are alike for every rule (leases,
// heartbeats, cancellation, recovery); only views tell them apart, and a
// view shows a run running once its attempt ran that long.
const startedReportDelay = time.Millisecond

// runner is one of the goroutines that run attempts.
type runner struct {
	e        *Engine
	timer    *time.Timer // fires reportStarted startedReportDelay after an attempt began
	deadline *time.Timer // fires expire at the attempt's deadline

	mu      sync.Mutex
	started machine.StartedInput // the report the timer sends; zero once sent or the attempt ended
	cur     *attemptCtx          // the attempt running, nil between attempts
}

// start runs job on an idle runner, or on a new one when none is idle. The
// number in flight is bounded by the core's lease accounting (Config.Workers).
func (e *Engine) start(job Job) {
	// The attempt's timeout counts from its start (runner.run), not from
	// the tick that leased it: under load a runner may start it well after
	// the lease (or after the lease's fsync), and that wait is not the
	// handler's time. Core renews the lease when the start comes late.
	inner, cancel := context.WithCancel(context.Background())
	ctx := &attemptCtx{inner: inner, cancel: cancel}
	e.cancelsMu.Lock()
	if prev, ok := e.cancels[job.Run]; ok {
		prev() // the run's previous attempt is closed: release its context
	}
	e.cancels[job.Run] = cancel
	e.cancelsMu.Unlock()
	job.Heartbeat = func() {
		select {
		case e.results <- machine.HeartbeatInput{Run: job.Run, Attempt: job.Attempt}:
		default: // the loop is busy; the next heartbeat renews the lease
		}
	}
	a := runnerJob{ctx: ctx, job: job}
	select {
	case e.idleRunners <- a: // an idle runner was waiting for it (unbuffered)
	default:
		e.workers.Add(1)
		go e.runRunner(a)
	}
}

// runnerJob is an attempt handed to a runner.
type runnerJob struct {
	ctx *attemptCtx
	job Job
}

// runRunner runs a, then the attempts handed to it while idle, until the
// engine stops. Beyond Config.Workers idle runners it ends (attempts of
// remote workers can take the count in flight past it for a while).
func (e *Engine) runRunner(a runnerJob) {
	defer e.workers.Done()
	r := &runner{e: e}
	r.timer = time.AfterFunc(time.Hour, r.reportStarted)
	r.timer.Stop()
	defer r.timer.Stop()
	r.deadline = time.AfterFunc(time.Hour, r.expire)
	r.deadline.Stop()
	defer r.deadline.Stop()
	for {
		r.run(a.ctx, a.job)
		if e.runnersIdle.Add(1) > int64(e.cfg.Workers) {
			e.runnersIdle.Add(-1)
			return
		}
		select {
		case a = <-e.idleRunners:
			e.runnersIdle.Add(-1)
		case <-e.done:
			e.runnersIdle.Add(-1)
			return
		}
	}
}

// run executes one attempt and sends its result to the loop.
func (r *runner) run(ctx *attemptCtx, job Job) {
	e := r.e
	started := e.cfg.Clock.Now()
	// DeadlineMs is in the engine clock's time; the context counts the
	// same span on the real clock (the same thing for SystemClock, and what
	// keeps a ManualClock test's attempts from expiring at once).
	span := job.TimeoutMs
	if span <= 0 { // a Job not made by Core: keep its deadline
		span = max(job.DeadlineMs-started.UnixMilli(), 0)
	}
	job.DeadlineMs = started.UnixMilli() + span
	timeout := time.Duration(span) * time.Millisecond
	ctx.deadline = time.Now().Add(timeout)
	r.mu.Lock()
	r.started = machine.StartedInput{Run: job.Run, Attempt: job.Attempt, At: started.UnixMilli()}
	r.cur = ctx
	r.mu.Unlock()
	r.deadline.Reset(timeout)
	r.timer.Reset(startedReportDelay)
	// An input in the payload store is read now, held in the payload
	// budget while the attempt runs.
	release, failed := e.loadInput(&job)
	var res Result
	if failed != nil {
		res = *failed
	} else {
		res = safeExecute(ctx, e.cfg.Executor, job)
	}
	job.Input = nil
	release()
	e.spillOutput(&res)
	r.mu.Lock()
	r.started = machine.StartedInput{}
	r.cur = nil
	r.mu.Unlock()
	r.timer.Stop()
	r.deadline.Stop()
	if res.StartedAt.IsZero() || res.FinishedAt.IsZero() {
		// The executor did not say when it ran: the runner's own times.
		res.StartedAt, res.FinishedAt = started, e.cfg.Clock.Now()
	}
	if ctx.Err() == context.DeadlineExceeded && res.Outcome != OutcomeOK && res.Outcome != OutcomeTimeout {
		res.Outcome, res.Error = OutcomeTimeout, fmt.Sprintf("attempt timed out (%s)", res.Error)
	}
	select {
	case e.results <- machine.ResultInput{Run: job.Run, Attempt: job.Attempt, Res: res}:
	case <-e.done:
	}
}

// reportStarted tells the loop that the runner's attempt started, if it
// still runs. A report that arrives after the result, or a stale timer's
// report of the runner's next attempt (which is about to start), is
// harmless: the core ignores a start of an attempt that is not leased.
func (r *runner) reportStarted() {
	r.mu.Lock()
	in := r.started
	r.started = machine.StartedInput{}
	r.mu.Unlock()
	if in.Run == "" {
		return
	}
	select {
	case r.e.results <- in:
	case <-r.e.done:
	}
}

// expire ends the runner's attempt once its deadline has passed (a stale
// timer of an earlier attempt finds the next one's deadline ahead).
func (r *runner) expire() {
	r.mu.Lock()
	ctx := r.cur
	r.mu.Unlock()
	if ctx != nil && !time.Now().Before(ctx.deadline) {
		ctx.expire()
	}
}

// attemptCtx is the context an attempt runs under: canceled through
// Engine.cancels (a canceled task, a stopping engine), or at its deadline,
// which its runner sets as the attempt starts, so that the timeout counts
// from the start. One cancelable context and a runner's reused timer, where
// a context with a timeout under the cancelable one cost a timer, a child
// registration and four more allocations per attempt.
//
// It behaves as context.WithTimeout's would: Deadline reports the
// deadline, Err is context.DeadlineExceeded once it passed, and contexts
// derived from it learn that error too (they register through AfterFunc,
// as the inner context is not exposed through Value).
type attemptCtx struct {
	inner    context.Context // context.WithCancel(context.Background())
	cancel   context.CancelFunc
	deadline time.Time // set by the runner before the attempt runs
	timedOut atomic.Bool
}

func (c *attemptCtx) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }
func (c *attemptCtx) Done() <-chan struct{}       { return c.inner.Done() }
func (c *attemptCtx) Value(any) any               { return nil }

func (c *attemptCtx) Err() error {
	err := c.inner.Err()
	if err != nil && c.timedOut.Load() {
		return context.DeadlineExceeded
	}
	return err
}

// AfterFunc lets context.AfterFunc and contexts derived from c register
// without a goroutine of their own.
func (c *attemptCtx) AfterFunc(f func()) func() bool { return context.AfterFunc(c.inner, f) }

// expire ends the context at its deadline (unless it was canceled before).
func (c *attemptCtx) expire() {
	if c.inner.Err() == nil {
		c.timedOut.Store(true)
		c.cancel()
	}
}

func (c *attemptCtx) String() string { return "dispatch.attemptCtx" }
