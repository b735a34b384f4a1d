package api

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/plugins"
)

// BrokerConfig configures a Broker.
type BrokerConfig struct {
	// Local runs attempts in this process (the host's executor); nil or
	// LocalWorkers 0: every attempt goes to a remote worker (serve
	// --workers 0).
	Local        dispatch.Executor
	LocalWorkers int
	// Plugins pins the version a remote attempt runs and says which
	// plugins are remote-only (manifest placement "remote"). Required.
	Plugins *plugins.Registry
	// LeaseTimeout: a remote lease not renewed by a heartbeat for this long
	// is lost, and so is a worker not heard from. Default 10s.
	LeaseTimeout time.Duration
	Logger       *slog.Logger
}

// Broker is the server side of remote workers, and the engine's executor
// when they may connect: Execute queues an attempt, and the server's own
// workers (LocalWorkers) and the lease requests of remote ones take
// attempts from that one queue, each exactly once. It tells the engine
// its capacity (local workers plus every connected remote worker's
// concurrency) and which handlers someone can run (Runnable), so the
// engine leases only attempts that someone will take.
//
// Leases are fenced: a lease id (run, attempt, random) is live from the
// lease until its result, its expiry (no heartbeat for LeaseTimeout: the
// attempt ends lost and the engine retries it) or the end of the attempt's
// context; a heartbeat or result for any other id is a conflict (409) and
// changes nothing, while a result repeated for a lease whose result was
// applied is answered "duplicate" and applied once.
type Broker struct {
	cfg    BrokerConfig
	log    *slog.Logger
	engine *dispatch.Engine

	mu    sync.Mutex
	queue []*brokerJob
	// changed is closed when a job is queued (or a worker drains), to wake
	// the lease requests waiting; a request that looks at the queue renews
	// it if it was closed (changedClosed), so a burst of jobs costs one
	// channel, not one each.
	changed       chan struct{}
	changedClosed bool
	localFree     int
	workers       map[string]*remoteWorker // by instance id
	leases        map[string]*brokerJob    // live leases by id
	closed        map[string]string        // recently closed lease id -> how (applied, lost, canceled)
	closedIDs     []string                 // closed's keys, a ring of closedMemory (closedNext: the oldest once full)
	closedNext    int
	idRand        *mrand.ChaCha8 // lease ids' random part (seeded from crypto/rand)
	stopping      bool

	refreshMu sync.Mutex // serializes refresh: the engine gets the capacities in order

	stop     chan struct{}
	done     chan struct{}
	attached atomic.Bool

	manifests manifestCache // the JSON of leased manifests
}

// closedMemory bounds the closed leases remembered for fencing answers
// ("duplicate" rather than "conflict" for a result posted twice).
const closedMemory = 1 << 16

// brokerJob is an attempt the engine handed the broker: queued until a
// worker takes it, then, if a remote worker took it, its lease. One
// object and one channel per attempt: the engine's runner waits on done
// alone, woken once, by the attempt's result (or by runLocally when a
// local worker takes it).
type brokerJob struct {
	ctx      context.Context
	job      dispatch.Job
	queuedAt time.Time
	local    bool                 // a local worker may run it
	done     chan dispatch.Result // buffered 1: the result, or runLocally
	taken    bool                 // no longer queued
	// async: the job came through ExecuteAsync, and its result goes to
	// this (settle) rather than to done: no runner waits for it, so the
	// broker stops it at its deadline (deadline, from ctx) and when ctx
	// ends itself (expire), where Execute's select did.
	async      func(dispatch.Result)
	deadline   time.Time
	canceledAt time.Time // when canceled was set

	// The remote lease, once a remote worker took it (worker not nil).
	id       string
	worker   *remoteWorker
	seen     time.Time // last heartbeat (or the lease)
	canceled bool      // the attempt's context ended: the worker is told to stop
}

// runLocally, sent on a brokerJob's done, tells its runner that a local
// worker took it (an outcome is never empty otherwise).
var runLocally = dispatch.Result{}

type remoteWorker struct {
	id, name, addr string
	handlers       []string // plugin names; empty: all
	concurrency    int
	ahead          int // attempts it holds beyond its concurrency (WorkerHello.Ahead)
	connectedAt    time.Time
	lastSeen       time.Time
	live           bool
	// stalled: one of its leases expired, so it is not processing (stopped,
	// cut off): a lease request it sent before does not take attempts, and
	// it is not connected, until a new request proves it alive.
	stalled  bool
	polls    int // lease requests waiting
	inFlight int
	stats    workerStats
	// draining: it said it is stopping (a heartbeat with draining): it
	// takes no attempts and is not counted in the capacity, and its lease
	// requests are answered at once.
	draining bool
}

type workerStats struct {
	leases, done, failed, lost, rejected uint64
	// wait: from the engine's lease to the worker's lease request taking
	// it; start: from the engine's lease to the attempt's start on the
	// worker (its clock). Both in latencyBuckets.
	wait, start latencyHist
}

// NewBroker returns a broker; Attach it to the engine it executes for.
func NewBroker(cfg BrokerConfig) *Broker {
	if cfg.LeaseTimeout <= 0 {
		cfg.LeaseTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Local == nil {
		cfg.LocalWorkers = 0
	}
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	return &Broker{cfg: cfg, log: cfg.Logger, changed: make(chan struct{}), localFree: cfg.LocalWorkers,
		workers: map[string]*remoteWorker{}, leases: map[string]*brokerJob{}, closed: map[string]string{},
		idRand: mrand.NewChaCha8(seed), stop: make(chan struct{}), done: make(chan struct{})}
}

var _ dispatch.Executor = (*Broker)(nil)

// Attach tells the broker its engine (opened with the broker as Executor
// and Runnable as Config.Runnable), sets the engine's capacity and starts
// expiring leases. Close stops that. In cluster mode it is called again
// with each engine the node starts as the leader.
func (b *Broker) Attach(e *dispatch.Engine) {
	b.mu.Lock()
	b.engine = e
	b.mu.Unlock()
	b.refresh()
	if b.attached.CompareAndSwap(false, true) {
		go b.expireLoop()
	}
}

// Close stops the expiry loop (if Attach started it).
func (b *Broker) Close() {
	select {
	case <-b.stop:
	default:
		close(b.stop)
		if b.attached.Load() {
			<-b.done
		}
	}
}

// LeaseTimeout is the lease timeout remote workers are held to.
func (b *Broker) LeaseTimeout() time.Duration { return b.cfg.LeaseTimeout }

// Runnable reports whether some worker can run handler now: a local one
// (unless the plugin is remote-only) or a connected remote worker serving
// it. It is the engine's Config.Runnable.
func (b *Broker) Runnable(handler string) bool {
	remoteOnly := b.cfg.Plugins != nil && b.cfg.Plugins.RemoteOnly(handler)
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cfg.LocalWorkers > 0 && !remoteOnly || b.servedLocked(handler)
}

// Refresh tells the engine that what workers can run may have changed
// (a plugin's placement changed with a deploy).
func (b *Broker) Refresh() { b.refresh() }

// refresh gives the engine the current capacity (and another look at the
// runs Runnable refused). Never called with b.mu held... it does not block,
// but the capacity is read under it. Refreshes are serialized: two that
// raced (a worker connecting while another's lease expired) could hand the
// engine their capacities in the other order, the older last, and it
// stayed until the next change (TestWorkerLeaseCarriesResults saw the
// engine at capacity 0 with a worker connected).
func (b *Broker) refresh() {
	b.refreshMu.Lock()
	defer b.refreshMu.Unlock()
	b.mu.Lock()
	e, n := b.engine, b.capacityLocked()
	b.mu.Unlock()
	if e != nil {
		e.SetCapacity(n)
	}
}

func (b *Broker) capacityLocked() int {
	n := b.cfg.LocalWorkers
	for _, w := range b.workers {
		if w.live && !w.draining {
			n += w.concurrency + w.ahead
		}
	}
	return n
}

func (w *remoteWorker) serves(handler string) bool {
	name, _, _ := strings.Cut(handler, "@")
	return len(w.handlers) == 0 || slices.Contains(w.handlers, name)
}

// Execute runs job on a local worker if one is free (and the plugin may
// run here), else queues it for the next worker, local or remote, that
// asks; it returns the attempt's result, or lost when the remote worker's
// lease expired.
func (b *Broker) Execute(ctx context.Context, job dispatch.Job) dispatch.Result {
	local := b.cfg.LocalWorkers > 0 && !(b.cfg.Plugins != nil && b.cfg.Plugins.RemoteOnly(job.Handler))
	b.mu.Lock()
	if local && b.localFree > 0 {
		b.localFree--
		b.mu.Unlock()
		return b.runLocal(ctx, job)
	}
	p := getBrokerJob()
	p.ctx, p.job, p.queuedAt, p.local = ctx, job, time.Now(), local
	b.queue = append(b.queue, p)
	b.wakeLeasesLocked()
	b.mu.Unlock()

	var res dispatch.Result
	select {
	case res = <-p.done:
		putBrokerJob(p)
		return b.settled(ctx, job, res)
	case <-ctx.Done():
	}
	b.mu.Lock()
	switch {
	case !p.taken:
		b.queue = slices.DeleteFunc(b.queue, func(q *brokerJob) bool { return q == p })
		b.mu.Unlock()
		putBrokerJob(p)
		return ended(ctx, "before a worker took it")
	case p.worker == nil || b.leases[p.id] != p:
		// Taken locally (or answered) as the context ended, or its result
		// or expiry came at the last moment: done is sent, or about to be.
		b.mu.Unlock()
		res = <-p.done
		putBrokerJob(p)
		return b.settled(ctx, job, res)
	}
	p.canceled = true
	b.mu.Unlock()
	res = b.awaitCanceled(ctx, p)
	putBrokerJob(p)
	return res
}

// brokerJobs recycles brokerJobs and their done channels: allocated per
// remote attempt they were, with the channel, 2.3 us of the server's
// 35 us per remote no-op (and a share of its GC). A job goes back once
// Execute has its result: nothing refers to it then (it is out of the
// queue and the leases, and whoever sent on done is done with it; lease
// answers are built under b.mu, in takeLocked).
var brokerJobs = sync.Pool{New: func() any { return &brokerJob{done: make(chan dispatch.Result, 1)} }}

func getBrokerJob() *brokerJob { return brokerJobs.Get().(*brokerJob) }

// putBrokerJob recycles p, whose done is drained.
func putBrokerJob(p *brokerJob) {
	*p = brokerJob{done: p.done}
	brokerJobs.Put(p)
}

var _ dispatch.AsyncExecutor = (*Broker)(nil)

// Async reports whether ExecuteAsync takes attempts: with no local
// workers (serve --workers 0).
func (b *Broker) Async() bool { return b.cfg.LocalWorkers == 0 }

// ExecuteAsync queues job for the next remote worker that asks, without
// the engine's runner waiting for it (dispatch.AsyncExecutor): done gets
// its result, or lost when the worker's lease expired, or a timeout or
// cancellation the broker sees at its next expiry pass or heartbeat. A
// server with local workers declines (they take queued attempts through
// the runners waiting in Execute).
func (b *Broker) ExecuteAsync(ctx context.Context, job dispatch.Job, done func(dispatch.Result)) bool {
	if b.cfg.LocalWorkers > 0 {
		return false
	}
	p := getBrokerJob()
	p.ctx, p.job, p.queuedAt, p.async = ctx, job, time.Now(), done
	p.deadline, _ = ctx.Deadline()
	b.mu.Lock()
	b.queue = append(b.queue, p)
	b.wakeLeasesLocked()
	b.mu.Unlock()
	return true
}

// settlement is a job's result, handed over once b.mu is released
// (settle): an async job's done sends to the engine's loop, which may be
// waiting for b.mu (Runnable).
type settlement struct {
	p   *brokerJob
	res dispatch.Result
}

// settle hands each job its result (b.mu not held).
func settle(list []settlement) {
	for _, st := range list {
		st.p.settle(st.res)
	}
}

// settle hands p its result: to its runner waiting in Execute, or to its
// done (async), after which p is recycled.
func (p *brokerJob) settle(res dispatch.Result) {
	if p.async == nil {
		p.done <- res
		return
	}
	done := p.async
	putBrokerJob(p)
	done(res)
}

// pastDeadline reports whether async job p's attempt ran out of time by now.
func (p *brokerJob) pastDeadline(now time.Time) bool {
	return !p.deadline.IsZero() && !now.Before(p.deadline)
}

// endedAsync is the result of async job p whose context ended or whose
// deadline passed.
func (p *brokerJob) endedAsync(now time.Time, when string) dispatch.Result {
	if p.ctx.Err() == context.DeadlineExceeded || p.ctx.Err() == nil && p.pastDeadline(now) {
		return dispatch.Result{Outcome: dispatch.OutcomeTimeout, Retryable: true, Error: "attempt timed out " + when}
	}
	return dispatch.Result{Outcome: dispatch.OutcomeCancelled, Error: "attempt canceled " + when}
}

// stopping reports whether async job p is to stop: its context ended or
// its deadline passed.
func (p *brokerJob) stopping(now time.Time) bool {
	return p.async != nil && (p.ctx.Err() != nil || p.pastDeadline(now))
}

// settled is what Execute returns for what came on a job's done.
func (b *Broker) settled(ctx context.Context, job dispatch.Job, res dispatch.Result) dispatch.Result {
	if res.Outcome == runLocally.Outcome {
		return b.runLocal(ctx, job)
	}
	return res
}

// ended is the result of an attempt whose context ended (timeout or cancel).
func ended(ctx context.Context, when string) dispatch.Result {
	if ctx.Err() == context.DeadlineExceeded {
		return dispatch.Result{Outcome: dispatch.OutcomeTimeout, Retryable: true, Error: "attempt timed out " + when}
	}
	return dispatch.Result{Outcome: dispatch.OutcomeCancelled, Error: "attempt canceled " + when}
}

// runLocal runs job on this process's executor, then hands the local
// worker to the oldest queued job it may run.
func (b *Broker) runLocal(ctx context.Context, job dispatch.Job) dispatch.Result {
	res := b.cfg.Local.Execute(ctx, job)
	b.mu.Lock()
	b.localFree++
	for i, p := range b.queue {
		if p.local {
			b.queue = slices.Delete(b.queue, i, i+1)
			b.localFree--
			p.taken = true
			p.done <- runLocally
			break
		}
	}
	b.mu.Unlock()
	return res
}

// stopGrace is how long a remote attempt whose context ended may take to
// report before the broker closes it itself: the worker learns of a
// cancellation at its next heartbeat, and stops at its deadline itself.
func (b *Broker) stopGrace() time.Duration { return min(2*time.Second, b.cfg.LeaseTimeout) }

// awaitCanceled waits, up to stopGrace, for the result of remote attempt
// l whose context ended (l.canceled is set: its worker's next heartbeat
// tells it to stop), then closes the lease itself.
func (b *Broker) awaitCanceled(ctx context.Context, l *brokerJob) dispatch.Result {
	t := time.NewTimer(b.stopGrace())
	defer t.Stop()
	select {
	case res := <-l.done:
		return res
	case <-t.C:
	}
	b.mu.Lock()
	if b.leases[l.id] == nil { // its result or expiry came at the last moment
		b.mu.Unlock()
		return <-l.done
	}
	b.closeLeaseLocked(l, "canceled")
	b.mu.Unlock()
	res := ended(ctx, "on worker "+l.worker.name+", which did not report in time")
	res.Worker = l.worker.name
	return res
}

func (b *Broker) closeLeaseLocked(l *brokerJob, how string) {
	delete(b.leases, l.id)
	l.worker.inFlight--
	if len(b.closedIDs) == 0 {
		// Sized for its bound at once: grown step by step, its rehashes
		// were 8 % of the server's CPU through the first closedMemory
		// remote attempts.
		b.closed = make(map[string]string, closedMemory)
	}
	b.closed[l.id] = how
	if len(b.closedIDs) < closedMemory {
		b.closedIDs = append(b.closedIDs, l.id)
		return
	}
	delete(b.closed, b.closedIDs[b.closedNext])
	b.closedIDs[b.closedNext] = l.id
	b.closedNext = (b.closedNext + 1) % closedMemory
}

// hello registers or refreshes a worker from a request. Called with b.mu
// held; reports whether the capacity changed.
func (b *Broker) helloLocked(h WorkerHello, addr string, now time.Time) (*remoteWorker, bool) {
	w := b.workers[h.Worker]
	changed := false
	if w == nil {
		w = &remoteWorker{id: h.Worker, connectedAt: now}
		b.workers[h.Worker] = w
	}
	w.stalled = false
	if !w.live {
		w.live, changed = true, true
		w.connectedAt = now
		b.log.Info("worker connected", "worker", h.Name, "addr", addr, "concurrency", h.Concurrency, "handlers", strings.Join(h.Handlers, ","))
	}
	if w.concurrency != h.Concurrency || w.ahead != h.Ahead || !slices.Equal(w.handlers, h.Handlers) {
		changed = true
	}
	w.name, w.addr, w.concurrency, w.ahead, w.lastSeen = h.Name, addr, h.Concurrency, h.Ahead, now
	if !slices.Equal(w.handlers, h.Handlers) {
		w.handlers = slices.Clone(h.Handlers)
	}
	return w, changed
}

// lease hands worker up to max queued attempts it serves, waiting up to
// wait for the first one. It returns no lease when none came or ctx ended.
func (b *Broker) lease(ctx context.Context, h WorkerHello, addr string, max int, wait time.Duration) ([]Lease, error) {
	b.mu.Lock()
	if b.stopping {
		b.mu.Unlock()
		return nil, &Error{Status: 503, Code: "unavailable", Message: "the server is shutting down"}
	}
	w, changed := b.helloLocked(h, addr, time.Now())
	w.polls++
	b.mu.Unlock()
	if changed {
		b.refresh()
	}
	defer func() {
		b.mu.Lock()
		w.polls--
		b.mu.Unlock()
	}()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		b.mu.Lock()
		got, ended := b.takeLocked(w, max)
		if b.changedClosed { // woken before: a new channel for the next change
			b.changed, b.changedClosed = make(chan struct{}), false
		}
		ch, draining := b.changed, w.draining
		b.mu.Unlock()
		settle(ended)
		if len(got) > 0 || draining {
			return got, nil
		}
		select {
		case <-ch:
		case <-timer.C:
			return nil, nil
		case <-ctx.Done():
			return nil, nil
		case <-b.stop:
			return nil, nil
		}
	}
}

// wakeLeasesLocked wakes the lease requests waiting (b.mu held): each
// looks at the queue and its worker again.
func (b *Broker) wakeLeasesLocked() {
	if !b.changedClosed {
		close(b.changed)
		b.changedClosed = true
	}
}

// takeLocked takes up to max queued jobs w serves, oldest first, and
// returns their leases. They are built here, under b.mu: once the lock is
// released a job may end (canceled, expired) and be recycled. ended: the
// jobs it took that end without a lease (settle them once b.mu is
// released).
func (b *Broker) takeLocked(w *remoteWorker, most int) (got []Lease, ended []settlement) {
	if !w.live || w.draining {
		return nil, nil // stalled or gone: its request may be answered to no one; or stopping
	}
	now := time.Now()
	nowMs := now.UnixMilli()
	kept := b.queue[:0]
	for _, p := range b.queue {
		if len(got) >= most || !w.serves(p.job.Handler) {
			kept = append(kept, p)
			continue
		}
		if p.stopping(now) { // canceled, or out of time, while queued: no worker runs it
			p.taken = true
			ended = append(ended, settlement{p, p.endedAsync(now, "before a worker took it")})
			continue
		}
		pin, err := b.cfg.Plugins.Pin(p.job.Handler)
		if err != nil {
			// As the local executor does: the plugin may be deployed later.
			p.taken = true
			ended = append(ended, settlement{p, dispatch.Result{Outcome: dispatch.OutcomeFailed, Retryable: true, Error: err.Error()}})
			continue
		}
		p.taken = true
		p.id, p.worker, p.seen = b.leaseIDLocked(&p.job), w, now
		b.leases[p.id] = p
		w.inFlight++
		w.stats.leases++
		w.stats.wait.observe(now.Sub(p.queuedAt))
		if got == nil {
			got = make([]Lease, 0, min(most, len(b.queue)))
		}
		j := &p.job
		got = append(got, Lease{Lease: p.id, Task: string(j.Task), Run: string(j.Run), Attempt: j.Attempt, MaxAttempts: j.MaxAttempts,
			Handler: j.Handler, Plugin: pin.Name, Version: pin.Version, Manifest: pin.Manifest, Input: j.Input,
			TimeoutMs: j.TimeoutMs, RemainingMs: max(j.DeadlineMs-nowMs, 1), Labels: j.Labels, Parent: string(j.Parent)})
	}
	clear(b.queue[len(kept):])
	b.queue = kept
	return got, ended
}

// leaseIDLocked is the fencing token: run, attempt and 64 random bits (16
// hex digits), so that no two leases share an id, across restarts too.
// The bits come from a ChaCha8 stream seeded from crypto/rand: ids need
// to be unique, not secret (the token authorizes), and a read of the
// system's source per lease cost more than the rest of the id.
func (b *Broker) leaseIDLocked(j *dispatch.Job) string {
	var room [96]byte // on the stack: the id's one allocation is the string
	buf := append(room[:0], j.Run...)
	buf = append(buf, '.')
	buf = strconv.AppendInt(buf, int64(j.Attempt), 10)
	buf = append(buf, '.')
	var r [8]byte
	binary.LittleEndian.PutUint64(r[:], b.idRand.Uint64())
	buf = hex.AppendEncode(buf, r[:])
	return string(buf)
}

// heartbeat renews w's leases in ids; it returns those to stop (their
// attempt's context ended) and those no longer live (fenced off). With
// draining, w takes no more attempts, and its lease requests waiting are
// answered now: a stopping worker need not wait out its long poll.
func (b *Broker) heartbeat(h WorkerHello, addr string, ids []string, draining bool) (cancel, lost []string) {
	now := time.Now()
	b.mu.Lock()
	w, changed := b.helloLocked(h, addr, now)
	if draining && !w.draining {
		w.draining, changed = true, true
		b.log.Info("worker draining: no more leases for it", "worker", w.name, "addr", addr, "in_flight", w.inFlight)
		b.wakeLeasesLocked() // its waiting lease requests look again, and end
	}
	var beats []func()
	for _, id := range ids {
		l := b.leases[id]
		if l == nil || l.worker != w {
			lost = append(lost, id)
			continue
		}
		l.seen = now
		if !l.canceled && l.stopping(now) {
			l.canceled, l.canceledAt = true, now
		}
		if l.canceled {
			cancel = append(cancel, id)
		} else if l.job.Heartbeat != nil {
			beats = append(beats, l.job.Heartbeat)
		}
	}
	b.mu.Unlock()
	for _, beat := range beats {
		beat()
	}
	if changed {
		b.refresh()
	}
	return cancel, lost
}

// Result outcomes of a posted result.
const (
	resultApplied   = "applied"
	resultDuplicate = "duplicate"
	resultConflict  = "conflict"
)

// applyResults applies a worker's results, each once, and says what became
// of each (in order): applied, duplicate or conflict (with why).
func (b *Broker) applyResults(h WorkerHello, addr string, results []WorkerResult) []ResultStatus {
	out := make([]ResultStatus, len(results))
	done := make([]*brokerJob, len(results)) // applied: handed their result after the unlock
	res := make([]dispatch.Result, len(results))
	now := time.Now()
	b.mu.Lock()
	w, changed := b.helloLocked(h, addr, now)
	for i, r := range results {
		out[i].Lease = r.Lease
		out[i].Status, out[i].Error, done[i], res[i] = b.resultLocked(w, r)
	}
	name := w.name
	b.mu.Unlock()
	for i, l := range done {
		if l != nil {
			l.settle(res[i])
		} else if out[i].Status == resultConflict {
			b.log.Info("worker result rejected", "worker", name, "lease", out[i].Lease, "reason", out[i].Error)
		}
	}
	if changed {
		b.refresh()
	}
	return out
}

// resultLocked applies r from w, once: it returns the lease to hand res to
// when the result is applied.
func (b *Broker) resultLocked(w *remoteWorker, r WorkerResult) (status, why string, _ *brokerJob, res dispatch.Result) {
	l := b.leases[r.Lease]
	switch {
	case l == nil && b.closed[r.Lease] == "applied":
		return resultDuplicate, "", nil, res
	case l == nil:
		w.stats.rejected++
		switch b.closed[r.Lease] {
		case "lost":
			why = "its lease expired (no heartbeat within the lease timeout): the attempt was closed lost and retried"
		case "canceled":
			why = "the attempt was canceled or timed out on the server before the result came"
		default:
			why = "no such live lease (the server restarted, or the lease was never given)"
		}
		return resultConflict, why, nil, res
	case l.worker != w:
		w.stats.rejected++
		return resultConflict, "the lease belongs to another worker", nil, res
	}
	b.closeLeaseLocked(l, "applied")
	res = r.toResult()
	res.Worker = w.name
	if res.Outcome == dispatch.OutcomeOK {
		w.stats.done++
	} else {
		w.stats.failed++
	}
	if !res.StartedAt.IsZero() {
		w.stats.start.observe(res.StartedAt.Sub(l.queuedAt))
	}
	return resultApplied, "", l, res
}

// expireLoop closes leases not renewed within the lease timeout as lost
// and forgets workers not heard from for as long.
func (b *Broker) expireLoop() {
	defer close(b.done)
	tick := time.NewTicker(min(max(b.cfg.LeaseTimeout/20, 20*time.Millisecond), 500*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-tick.C:
		}
		changed, ended := b.expire(time.Now())
		settle(ended)
		if changed {
			b.refresh()
		}
	}
}

// expire does one pass of expireLoop; it reports whether the capacity
// changed, and returns the jobs that ended, to settle once b.mu is
// released.
func (b *Broker) expire(now time.Time) (changed bool, ended []settlement) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.leases {
		if now.Sub(l.seen) <= b.cfg.LeaseTimeout {
			if l.async == nil {
				continue
			}
			// An async attempt whose context ended or whose deadline
			// passed: its worker is told to stop at its next heartbeat,
			// and has stopGrace to report before the broker closes it,
			// as awaitCanceled does for Execute.
			if !l.canceled && l.stopping(now) {
				l.canceled, l.canceledAt = true, now
			}
			if l.canceled && now.Sub(l.canceledAt) >= b.stopGrace() {
				b.closeLeaseLocked(l, "canceled")
				res := l.endedAsync(now, "on worker "+l.worker.name+", which did not report in time")
				res.Worker = l.worker.name
				ended = append(ended, settlement{l, res})
			}
			continue
		}
		b.closeLeaseLocked(l, "lost")
		l.worker.stats.lost++
		l.worker.stalled = true
		b.log.Warn("worker lease expired: the attempt is lost and will be retried", "worker", l.worker.name, "task", l.job.Task,
			"run", l.job.Run, "attempt", l.job.Attempt, "silent_for", now.Sub(l.seen).Round(time.Millisecond))
		ended = append(ended, settlement{l, dispatch.Result{Outcome: dispatch.OutcomeLost, Retryable: true, Worker: l.worker.name,
			Error: fmt.Sprintf("lease expired: worker %s (%s) sent no heartbeat for %s", l.worker.name, l.worker.addr, b.cfg.LeaseTimeout)}})
	}
	// Async jobs still queued whose context ended or whose deadline passed.
	kept := b.queue[:0]
	for _, p := range b.queue {
		if p.stopping(now) {
			p.taken = true
			ended = append(ended, settlement{p, p.endedAsync(now, "before a worker took it")})
			continue
		}
		kept = append(kept, p)
	}
	clear(b.queue[len(kept):])
	b.queue = kept
	for id, w := range b.workers {
		if !w.live || !w.stalled && (w.polls > 0 || now.Sub(w.lastSeen) <= b.cfg.LeaseTimeout) {
			if !w.live && now.Sub(w.lastSeen) > time.Hour {
				delete(b.workers, id) // gone for long: no longer listed
			}
			continue
		}
		w.live, changed = false, true
		b.log.Warn("worker gone: not heard from within the lease timeout", "worker", w.name, "addr", w.addr, "timeout", b.cfg.LeaseTimeout, "lease_expired", w.stalled)
	}
	if changed {
		ended = b.failUnservedLocked(ended)
	}
	return changed, ended
}

// failUnservedLocked hands back, as lost, queued attempts no worker left
// can run: the engine retries them, and keeps them ready (Runnable) until
// a worker that serves them connects.
func (b *Broker) failUnservedLocked(ended []settlement) []settlement {
	kept := b.queue[:0]
	for _, p := range b.queue {
		if p.local || b.servedLocked(p.job.Handler) {
			kept = append(kept, p)
			continue
		}
		p.taken = true
		ended = append(ended, settlement{p, dispatch.Result{Outcome: dispatch.OutcomeLost, Retryable: true,
			Error: fmt.Sprintf("no connected worker serves handler %q any more", p.job.Handler)}})
	}
	clear(b.queue[len(kept):])
	b.queue = kept
	return ended
}

// servedLocked reports whether a connected remote worker serves handler.
func (b *Broker) servedLocked(handler string) bool {
	for _, w := range b.workers {
		if w.live && w.serves(handler) {
			return true
		}
	}
	return false
}

// isStopping reports whether StopLeasing was called.
func (b *Broker) isStopping() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stopping
}

// StopLeasing answers lease requests with 503 from now on (the server is
// draining; remote attempts in flight may still report).
func (b *Broker) StopLeasing() {
	b.mu.Lock()
	b.stopping = true
	b.mu.Unlock()
}

// Workers lists the remote workers, connected ones first, then by name.
func (b *Broker) Workers() []WorkerInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]WorkerInfo, 0, len(b.workers))
	for _, w := range b.workers {
		out = append(out, WorkerInfo{ID: w.id, Name: w.name, Address: w.addr, Handlers: slices.Clone(w.handlers), Concurrency: w.concurrency,
			Ahead: w.ahead, InFlight: w.inFlight, Connected: w.live, Draining: w.draining, ConnectedAt: w.connectedAt.UTC().Format(time.RFC3339Nano),
			LastHeartbeat: w.lastSeen.UTC().Format(time.RFC3339Nano),
			Leases:        w.stats.leases, Done: w.stats.done, Failed: w.stats.failed, Lost: w.stats.lost, Rejected: w.stats.rejected,
			LeaseWait: w.stats.wait.summary(), LeaseToStart: w.stats.start.summary(),
			leaseWaitHist: w.stats.wait, startHist: w.stats.start})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Connected != out[j].Connected {
			return out[i].Connected
		}
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// LocalWorkers is the number of attempts this process runs at once.
func (b *Broker) LocalWorkers() int { return b.cfg.LocalWorkers }

// Queued is the number of attempts leased by the engine and waiting for a worker.
func (b *Broker) Queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

// latencyBuckets are the upper bounds (seconds) of latencyHist's buckets.
var latencyBuckets = []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// latencyHist counts latencies in latencyBuckets (the last count is above
// every bound).
type latencyHist struct {
	counts [15]uint64
	sum    float64
	n      uint64
}

func (h *latencyHist) observe(d time.Duration) {
	s := max(d.Seconds(), 0)
	i := sort.SearchFloat64s(latencyBuckets, s)
	h.counts[i]++
	h.sum += s
	h.n++
}

// Buckets returns the cumulative counts per bound, the count and the sum
// (for a Prometheus histogram).
func (h latencyHist) Buckets() (map[float64]uint64, uint64, float64) {
	m := make(map[float64]uint64, len(latencyBuckets))
	var c uint64
	for i, bound := range latencyBuckets {
		c += h.counts[i]
		m[bound] = c
	}
	return m, h.n, h.sum
}

// quantile is the upper bound of the bucket holding quantile q (an
// estimate good to the bucket).
func (h latencyHist) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	want := uint64(q*float64(h.n) + 0.5)
	var c uint64
	for i, n := range h.counts {
		c += n
		if c >= max(want, 1) {
			if i < len(latencyBuckets) {
				return latencyBuckets[i]
			}
			return latencyBuckets[len(latencyBuckets)-1]
		}
	}
	return latencyBuckets[len(latencyBuckets)-1]
}

func (h latencyHist) summary() *LatencySummary {
	if h.n == 0 {
		return nil
	}
	return &LatencySummary{Count: h.n, MeanMs: h.sum / float64(h.n) * 1000, P50Ms: h.quantile(0.5) * 1000, P99Ms: h.quantile(0.99) * 1000}
}
