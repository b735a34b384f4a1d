package dispatch

import (
	"context"
	"fmt"
	"runtime"
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
	e *Engine
	// Read by the attempt watcher without the lock (watch.go), in the
	// engine's monotonic nanoseconds (Engine.mono); 0: nothing pending.
	reportAt atomic.Int64 // when the running attempt's start is to be reported
	deadline atomic.Int64 // when the running attempt is to be stopped

	next chan runnerJob // the attempt handed to it while idle (cap 1)

	mu      sync.Mutex
	started machine.StartedInput // the report the watcher sends; zero once sent or the attempt ended
	cur     *attemptCtx          // the attempt running, nil between attempts
}

// start hands job to an idle runner, to a new one while fewer than the
// runner bound (runnerBound) are alive, or else to the pool's queue, which
// the runners take from as they finish: the core may lease ahead of the
// runners (leaseAhead), and those attempts wait there, leased, for one.
func (e *Engine) start(job Job) {
	// The attempt's timeout counts from its start (runner.run), not from
	// the tick that leased it: under load a runner may start it well after
	// the lease (or after the lease's fsync), and that wait is not the
	// handler's time. Core renews the lease when the start comes late.
	ctx := &attemptCtx{attempt: job.Attempt}
	e.cancelsMu.Lock()
	if prev, ok := e.cancels[job.Run]; ok {
		prev.cancel() // the run's previous attempt is closed: release its context
	}
	e.cancels[job.Run] = ctx
	e.cancelsMu.Unlock()
	run, attempt := job.Run, job.Attempt // not job: a closure over it moved every Job to the heap
	job.Heartbeat = func() {
		select {
		case e.results <- machine.HeartbeatInput{Run: run, Attempt: attempt}:
		default: // the loop is busy; the next heartbeat renews the lease
		}
	}
	a := runnerJob{ctx: ctx, job: job}
	p := &e.pool
	p.mu.Lock()
	if len(p.idle) > 0 {
		if p.waking >= maxWaking() {
			// As many runners are being woken as can run at once: they
			// take this attempt from the queue, or wake another for it
			// (wakeNext), so a burst of short attempts wakes a few
			// runners, not one each.
			p.queue = append(p.queue, a)
			p.mu.Unlock()
			return
		}
		p.handOff(a) // unlocks
		return
	}
	if p.live < e.runnerBound() {
		p.live++
		p.mu.Unlock()
		e.launch(a)
		return
	}
	p.queue = append(p.queue, a)
	p.mu.Unlock()
}

// startQueued starts runners for queued attempts while fewer than the
// runner bound are alive. An attempt is queued when the bound is reached
// at its start; if the bound then rises (SetCapacity: a remote worker
// connected again), nothing else would start it until a busy runner
// finished, which for a remote attempt is when its worker reports
// (api TestWorkerLeaseCarriesResults waited out its 10 s for one: a
// worker's heartbeat came late under -race, the capacity fell to 0 and
// came back between the lease of an attempt and its start).
func (e *Engine) startQueued() {
	p := &e.pool
	for {
		p.mu.Lock()
		if e.stopping.Load() || p.live >= e.runnerBound() {
			p.mu.Unlock()
			return
		}
		a, ok := p.pop()
		if !ok {
			p.mu.Unlock()
			return
		}
		p.live++
		p.mu.Unlock()
		e.launch(a)
	}
}

// launch starts a runner for a (counted in the pool's live already), and
// the attempts' watcher with the first runner.
func (e *Engine) launch(a runnerJob) {
	if e.watching.CompareAndSwap(false, true) {
		e.workers.Add(1)
		go e.watchAttempts()
	}
	e.workers.Add(1)
	go e.runRunner(a)
}

// runnerJob is an attempt handed to a runner.
type runnerJob struct {
	ctx *attemptCtx
	job Job
}

// runPool holds the runners and the attempts waiting for one.
type runPool struct {
	mu    sync.Mutex
	queue []runnerJob // leased attempts waiting for a runner, oldest first from head
	head  int
	idle  []*runner // runners waiting for an attempt, the most recent last (reused first)
	live  int       // runners alive
	// waking counts the runners handed an attempt that have not yet
	// taken it: while maxWaking are, start queues attempts rather than
	// waking another idle runner.
	waking int
}

// handOff gives a to the most recent idle runner (p.mu held, and
// released here).
func (p *runPool) handOff(a runnerJob) {
	n := len(p.idle)
	r := p.idle[n-1]
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	p.waking++
	p.mu.Unlock()
	r.next <- a // never blocks: cap 1, and only this hand-off sends on it
}

// wakeNext hands the oldest queued attempt to an idle runner unless
// maxWaking are being woken already, or else the queued attempts to new
// runners while fewer than the runner bound are alive (e.pool.mu held, and
// released here): a runner that takes an attempt while more wait wakes
// one more, so the runners at work grow with the queue, a wake at a time,
// while short attempts are run by the runners already awake.
func (e *Engine) wakeNext() {
	p := &e.pool
	if p.waking >= maxWaking() || p.head == len(p.queue) || e.stopping.Load() ||
		len(p.idle) == 0 && p.live >= e.runnerBound() {
		p.mu.Unlock()
		return
	}
	if len(p.idle) > 0 {
		a, _ := p.pop()
		p.handOff(a)
		return
	}
	// No runner idle: new ones for what is queued, up to the bound (a
	// new runner takes its attempt at once, no wake to wait for).
	p.mu.Unlock()
	e.startQueued()
}

// pop takes the oldest queued attempt (p.mu held).
func (p *runPool) pop() (runnerJob, bool) {
	if p.head == len(p.queue) {
		return runnerJob{}, false
	}
	a := p.queue[p.head]
	p.queue[p.head] = runnerJob{}
	p.head++
	if p.head == len(p.queue) {
		p.queue, p.head = p.queue[:0], 0
	}
	return a, true
}

// idleRunners is the number of runners waiting for an attempt.
func (e *Engine) idleRunners() int {
	e.pool.mu.Lock()
	defer e.pool.mu.Unlock()
	return len(e.pool.idle)
}

// runnerBound is the number of attempts that run at once: Config.Workers,
// or SetCapacity's bound once called (a server with remote workers: its
// runners call the broker, which hands the attempts on), at least one so
// that attempts leased before a capacity of 0 still run.
func (e *Engine) runnerBound() int {
	return max(e.workerBound(), 1)
}

// workerBound is SetCapacity's bound once called, else Config.Workers.
func (e *Engine) workerBound() int {
	if n := int(e.capacity.Load()); n >= 0 {
		return n
	}
	return e.cfg.Workers
}

// runRunner runs a, then the queued attempts and those handed to it while
// idle, until the engine stops, or ends once more runners are alive than
// runnerBound (the capacity went down). Idle runners stay: a server whose
// attempts run on remote workers has Config.Workers 1 and a capacity of
// their slots, and a runner per attempt was a new goroutine, its stack
// grown again and the watch list copied twice.
func (e *Engine) runRunner(a runnerJob) {
	defer e.workers.Done()
	r := &runner{e: e, next: make(chan runnerJob, 1)}
	e.watch.add(r)
	defer e.watch.remove(r)
	for {
		r.run(a.ctx, a.job)
		var ok bool
		if a, ok = e.nextJob(r); !ok {
			return
		}
	}
}

// nextJob is the runner's next attempt: the oldest queued one, or the
// next one handed to it once idle. false: the runner ends.
func (e *Engine) nextJob(r *runner) (runnerJob, bool) {
	p := &e.pool
	p.mu.Lock()
	if e.stopping.Load() || p.live > e.runnerBound() {
		// Stopping: queued attempts are not started (the next Open closes
		// them as lost, as any attempt cut short).
		p.live--
		p.mu.Unlock()
		return runnerJob{}, false
	}
	if a, ok := p.pop(); ok {
		e.wakeNext() // unlocks
		return a, true
	}
	p.idle = append(p.idle, r)
	p.mu.Unlock()
	select {
	case a := <-r.next:
		p.mu.Lock()
		p.waking--
		e.wakeNext() // unlocks
		return a, true
	case <-e.done:
		return runnerJob{}, false
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
	begun := e.mono()
	ctx.deadlineMono = begun + int64(timeout)
	r.mu.Lock()
	r.started = job.Started(started.UnixMilli())
	r.cur = ctx
	r.mu.Unlock()
	// The watcher reports the start once the attempt ran for
	// startedReportDelay and stops it at its deadline: one goroutine for
	// every runner, where two timers per runner, reset and stopped on every
	// attempt, cost more than a short attempt itself.
	e.watch.due(r, begun+int64(startedReportDelay), ctx.deadlineMono)
	var res Result
	if ctx.Err() != nil {
		// Canceled while it waited in the queue for a runner (lease-ahead):
		// the handler never runs.
		res = Result{Outcome: OutcomeCancelled, Error: "canceled before the attempt started"}
	} else {
		// An input in the payload store is read now, held in the payload
		// budget while the attempt runs.
		release, failed := e.loadInput(&job)
		if failed != nil {
			res = *failed
		} else {
			if e.async != nil && r.handOn(e.async, ctx, job, started, begun, release) {
				return
			}
			res = safeExecute(ctx, e.cfg.Executor, job)
		}
		job.Input = nil
		release()
	}
	e.runNanos.Add(e.mono() - begun)
	e.runCount.Add(1)
	e.spillOutput(&res)
	r.unwatch()
	e.report(ctx, &job, started, res)
}

// unwatch tells the watcher that the runner's attempt ended (or went on
// to an AsyncExecutor).
func (r *runner) unwatch() {
	r.reportAt.Store(0)
	r.deadline.Store(0)
	r.mu.Lock()
	r.started = machine.StartedInput{}
	r.cur = nil
	r.mu.Unlock()
}

// report sends the result of job's attempt, started at started, to the loop.
func (e *Engine) report(ctx *attemptCtx, job *Job, started time.Time, res Result) {
	if res.StartedAt.IsZero() || res.FinishedAt.IsZero() {
		// The executor did not say when it ran: the runner's own times.
		res.StartedAt, res.FinishedAt = started, e.cfg.Clock.Now()
	}
	if ctx.Err() == context.DeadlineExceeded && res.Outcome != OutcomeOK && res.Outcome != OutcomeTimeout {
		res.Outcome, res.Error = OutcomeTimeout, fmt.Sprintf("attempt timed out (%s)", res.Error)
	}
	in := resultInputs.Get().(*machine.ResultInput)
	*in = job.Result(res)
	select {
	case e.results <- in:
	case <-e.done:
	}
}

// asyncAttempt is an attempt an AsyncExecutor took: what its result needs
// once the runner has gone on to the next.
type asyncAttempt struct {
	e       *Engine
	ctx     *attemptCtx
	job     Job // without its Input
	started time.Time
	begun   int64
	release func()
	beat    func()      // the engine's heartbeat of the attempt
	running atomic.Bool // its start was reported
}

// handOn offers the attempt to ax; true: ax took it, and reports through
// the attempt's done, while the runner goes on to the next.
func (r *runner) handOn(ax AsyncExecutor, ctx *attemptCtx, job Job, started time.Time, begun int64, release func()) bool {
	a := &asyncAttempt{e: r.e, ctx: ctx, job: job, started: started, begun: begun, release: release, beat: job.Heartbeat}
	a.job.Input = nil
	job.Heartbeat = a.heartbeat
	if !ax.ExecuteAsync(ctx, job, a.done) {
		return false
	}
	r.unwatch() // the watcher watches the runner's next attempt
	return true
}

// heartbeat reports the attempt running the first time (an attempt handed
// on is not reported after startedReportDelay: most end sooner, and their
// result says when they started), then renews its lease.
func (a *asyncAttempt) heartbeat() {
	if !a.running.Load() {
		select {
		case a.e.results <- a.job.Started(a.started.UnixMilli()):
			a.running.Store(true) // two at once both report: the second is ignored
		default: // the loop is busy: the next heartbeat reports it
		}
	}
	if a.beat != nil {
		a.beat()
	}
}

// done is the AsyncExecutor's report of the attempt's result.
func (a *asyncAttempt) done(res Result) {
	e := a.e
	a.release()
	if res.Outcome == "" {
		res = Result{Outcome: OutcomeFailed, Retryable: true, Error: "executor returned no outcome"}
	}
	e.runNanos.Add(e.mono() - a.begun)
	e.runCount.Add(1)
	select {
	case <-e.done:
		return // stopped: the next Open closes the attempt as lost
	default:
	}
	e.spillOutput(&res)
	e.report(a.ctx, &a.job, a.started, res)
}

// resultInputs hold results on their way to the loop, which puts them back
// once it stepped them (recycleInputs): a ResultInput sent as a value
// cost an allocation of its size per attempt.
var resultInputs = sync.Pool{New: func() any { return new(machine.ResultInput) }}

// recycleInputs returns the inputs of a tick whose events are encoded (so
// nothing refers to them any more: an event's spec points into its
// SubmitInput) to their pools.
func recycleInputs(inputs []any) {
	for _, in := range inputs {
		switch in := in.(type) {
		case *machine.ResultInput:
			*in = machine.ResultInput{}
			resultInputs.Put(in)
		case *machine.SubmitInput:
			putSubmitInput(in)
		}
	}
}

// reportStarted tells the loop that the runner's attempt started, if it
// still runs. A report that arrives after the result, or a report of the
// runner's next attempt (which is about to start), is harmless: the core
// ignores a start of an attempt that is not leased.
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

// expire ends the runner's attempt if its deadline (monotonic, at) has
// passed by now: the attempt the watcher saw may have ended meanwhile.
func (r *runner) expire(at, now int64) {
	r.mu.Lock()
	ctx := r.cur
	r.mu.Unlock()
	if ctx != nil && ctx.deadlineMono == at && at <= now {
		ctx.expire()
	}
}

// attemptCtx is the context an attempt runs under: canceled through
// Engine.cancels (a canceled task, a stopping engine), or at its deadline,
// which its runner sets as the attempt starts, so that the timeout counts
// from the start. It is its own cancelable context: one allocation per
// attempt (and its Done channel once asked for), where
// context.WithCancel under a wrapper cost three, and a context with a
// timeout a timer, a child registration and four more.
//
// It behaves as context.WithTimeout's would: Deadline reports the
// deadline, Err is context.DeadlineExceeded once it passed (Canceled when
// canceled first), and contexts derived from it learn that error too
// (they register through AfterFunc).
type attemptCtx struct {
	attempt      int       // the attempt's number: a cancel names it (machine.AttemptRef)
	deadline     time.Time // set by the runner before the attempt runs
	deadlineMono int64     // the same in Engine.mono's nanoseconds

	state  atomic.Int32 // ctxLive, ctxCanceled or ctxTimedOut
	done   atomic.Value // chan struct{}: made by the first Done, closedCh if the context ended first
	mu     sync.Mutex   // guards ending, done's creation and afters
	afters []afterFunc
	nextID uint64
}

const (
	ctxLive int32 = iota
	ctxCanceled
	ctxTimedOut
)

// afterFunc is a function registered through AfterFunc, run when the
// context ends.
type afterFunc struct {
	id uint64
	f  func()
}

func (c *attemptCtx) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }
func (c *attemptCtx) Value(any) any               { return nil }

func (c *attemptCtx) Done() <-chan struct{} {
	if d, ok := c.done.Load().(chan struct{}); ok {
		return d
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := c.done.Load().(chan struct{}); ok {
		return d
	}
	d := make(chan struct{})
	c.done.Store(d)
	return d
}

func (c *attemptCtx) Err() error {
	switch c.state.Load() {
	case ctxCanceled:
		return context.Canceled
	case ctxTimedOut:
		return context.DeadlineExceeded
	}
	return nil
}

// AfterFunc lets context.AfterFunc and contexts derived from c register
// without a goroutine of their own: f runs in its own goroutine once c
// ends (at once if it has). The returned stop reports whether it kept f
// from running.
func (c *attemptCtx) AfterFunc(f func()) func() bool {
	c.mu.Lock()
	if c.state.Load() != ctxLive {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	c.nextID++
	id := c.nextID
	c.afters = append(c.afters, afterFunc{id: id, f: f})
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, a := range c.afters {
			if a.id == id {
				c.afters = append(c.afters[:i], c.afters[i+1:]...)
				return true
			}
		}
		return false
	}
}

// cancel ends the context as canceled (unless it ended before).
func (c *attemptCtx) cancel() { c.end(ctxCanceled) }

// expire ends the context at its deadline (unless it ended before).
func (c *attemptCtx) expire() { c.end(ctxTimedOut) }

func (c *attemptCtx) end(state int32) {
	c.mu.Lock()
	if c.state.Load() != ctxLive {
		c.mu.Unlock()
		return
	}
	c.state.Store(state)
	if d, ok := c.done.Load().(chan struct{}); ok {
		close(d)
	} else {
		c.done.Store(closedCh)
	}
	afters := c.afters
	c.afters = nil
	c.mu.Unlock()
	for _, a := range afters {
		go a.f()
	}
}

func (c *attemptCtx) String() string { return "dispatch.attemptCtx" }

// maxWaking is how many runners may be waking at once: one per processor,
// so that the runners woken can all run at once (NumCPU is read once by
// the runtime; GOMAXPROCS(0) takes the scheduler's lock).
func maxWaking() int { return runtime.NumCPU() }
