package host

import (
	"context"
	"fmt"
	goruntime "runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmtask/wasmtask/dispatch"
)

// InstanceMode says whether the attempts of a plugin version share
// instances. It is the "policy" of a manifest's "instances" setting.
type InstanceMode string

const (
	// InstancesFresh runs every attempt in a new instance, closed
	// afterwards: the strongest isolation, and the default.
	InstancesFresh InstanceMode = "fresh"
	// InstancesReuse keeps an instance alive between attempts of one plugin
	// version: globals and heap persist from one attempt to the next.
	InstancesReuse InstanceMode = "reuse"
	// InstancesReset keeps an instance alive too, but restores its memory
	// and mutable globals to their state right after _initialize before
	// each attempt: fresh semantics without instantiating (reset.go).
	InstancesReset InstanceMode = "reset"
)

// InstancePolicy is how a plugin version's instances live. Zero fields mean
// the defaults documented on each field.
type InstancePolicy struct {
	// Mode is fresh (default), reuse or reset.
	Mode InstanceMode
	// MaxUses discards a reused instance after that many attempts.
	// Default 1000.
	MaxUses int
	// MaxMemoryPages discards a reused instance whose linear memory grew
	// past that many 64 KiB pages. Default: three quarters of the plugin's
	// memory limit (an instance near its limit is the next one to run out
	// of memory; a Go guest settles around 7.5 MiB, within the default
	// limit's 12 MiB).
	MaxMemoryPages uint32
	// IdleTimeout closes an instance that waited that long for an attempt.
	// Default 60s.
	IdleTimeout time.Duration
}

// Defaults of InstancePolicy.
const (
	DefaultMaxUses     = 1000
	DefaultIdleTimeout = 60 * time.Second
)

// withDefaults fills the zero fields; limitPages is the plugin's memory limit.
func (p InstancePolicy) withDefaults(limitPages uint32) InstancePolicy {
	if p.Mode == "" {
		p.Mode = InstancesFresh
	}
	if p.MaxUses <= 0 {
		p.MaxUses = DefaultMaxUses
	}
	if p.MaxMemoryPages == 0 {
		p.MaxMemoryPages = max(limitPages/4*3, 1)
	}
	p.MaxMemoryPages = min(p.MaxMemoryPages, limitPages)
	if p.IdleTimeout <= 0 {
		p.IdleTimeout = DefaultIdleTimeout
	}
	return p
}

// Pool holds the warm instances of one plugin version (a compiled module
// with its limits and policy). The plugins registry creates one per
// version it loads and closes it when the version stops being active (a
// hot swap drains the old version's pool). Its idle instances count
// against the Host's Config.MaxIdleInstances; an instance is checked out
// by exactly one attempt at a time. Safe for concurrent use.
type Pool struct {
	h      *Host
	m      *Module
	policy InstancePolicy
	reset  *resetVariant // reset policy: the module with its globals exported

	// Guarded by h.idle.mu.
	idle     []*instance // oldest first; attempts take the newest (warm caches)
	stats    PoolStats
	live     int              // instances checked out by attempts, or being made for one
	waiters  []chan *instance // attempts waiting for one to come back (acquire)
	makeCost time.Duration    // moving average of making an instance (instantiate, _initialize)
	runCost  time.Duration    // moving average of an attempt's call

	closed atomic.Bool // by Close or Host.Close; read without the lock
}

// PoolStats counts what a pool did, for tests and metrics.
type PoolStats struct {
	Created    int // instances instantiated
	Reused     int // attempts that ran in an instance that had run one before
	Discarded  int // instances closed after an attempt (outcome, max uses, memory, pool full)
	IdleClosed int // instances closed after their idle timeout, or by Close
	Idle       int // instances waiting now
}

// instance is one warm module instance. Only the attempt that checked it
// out touches it.
type instance struct {
	mod     api.Module
	handle  api.Function // wasmtask_handle, looked up once
	stack   [1]uint64    // its result, without an allocation per call
	streams *instanceStreams
	fs      *attemptFS   // scratch directory of the manifest, if any
	initial *resetState  // reset policy: the state right after _initialize
	mem     *guestMemory // its linear memory (memory.go)
	uses    int
	ran     time.Duration // its last attempt's call
	idleAt  time.Time
	bytes   int64 // linear memory when it went idle
}

// instanceStreams are an instance's WASI stdout and stderr: they write to
// the log of the attempt running in it now (set per attempt), since the
// instance outlives every attempt.
type instanceStreams struct {
	st *attemptState
}

func (s *instanceStreams) stdout() *streamRouter { return &streamRouter{s: s, stderr: false} }
func (s *instanceStreams) stderr() *streamRouter { return &streamRouter{s: s, stderr: true} }

type streamRouter struct {
	s      *instanceStreams
	stderr bool
}

func (w *streamRouter) Write(p []byte) (int, error) {
	st := w.s.st
	if st == nil { // between attempts nothing runs; drop rather than misattribute
		return len(p), nil
	}
	if w.stderr {
		return st.log.stderr.Write(p)
	}
	return st.log.stdout.Write(p)
}

// NewPool returns the pool of a plugin version: m run under policy. A
// reuse policy needs a handler-mode module: a command module's _start runs
// once per instance. wasm is the bytes m was loaded from: the reset policy
// compiles a variant of them (a Module does not keep its bytes, so that a
// large module is not held in memory beside wazero's copy); the other
// policies take nil.
func (h *Host) NewPool(m *Module, policy InstancePolicy, wasm []byte) (*Pool, error) {
	switch policy.Mode {
	case "", InstancesFresh, InstancesReuse, InstancesReset:
	default:
		return nil, fmt.Errorf("host: instance policy %q, want %q, %q or %q", policy.Mode, InstancesFresh, InstancesReuse, InstancesReset)
	}
	if policy.Mode.warm() && m.Mode != ModeHandler {
		return nil, fmt.Errorf("instance policy %q needs a handler-mode module (exporting %s); this is a %s module (a command runs _start once per instance), use %q",
			policy.Mode, handleExport, m.Mode, InstancesFresh)
	}
	p := &Pool{h: h, m: m, policy: policy.withDefaults(m.rt.pages)}
	if policy.Mode == InstancesReset {
		var err error
		if p.reset, err = compileReset(context.Background(), m, wasm); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// warm reports whether instances outlive attempts.
func (m InstanceMode) warm() bool { return m == InstancesReuse || m == InstancesReset }

// resetVariant is what a reset pool instantiates.
type resetVariant struct {
	compiled wazero.CompiledModule
	globals  []string // exports of the mutable globals
}

// Policy returns the pool's policy with its defaults filled in.
func (p *Pool) Policy() InstancePolicy { return p.policy }

// Module returns the module the pool runs.
func (p *Pool) Module() *Module { return p.m }

// Stats returns the pool's counters.
func (p *Pool) Stats() PoolStats {
	p.h.idle.mu.Lock()
	defer p.h.idle.mu.Unlock()
	s := p.stats
	s.Idle = len(p.idle)
	return s
}

// Close drains the pool: idle instances are closed now, instances running
// an attempt when that attempt ends. Attempts that still reach a closed
// pool run in a fresh instance each.
func (p *Pool) Close() {
	s := &p.h.idle
	s.mu.Lock()
	victims := p.idle
	p.idle = nil
	p.closed.Store(true)
	p.stats.IdleClosed += len(victims)
	s.forget(p, victims)
	s.mu.Unlock()
	closeInstances(victims)
	if p.reset != nil {
		// Safe with instances still running (wazero): they finish, and
		// are not kept.
		p.reset.compiled.Close(context.Background())
	}
}

// Run executes one attempt: in a fresh instance (policy fresh, or a closed
// pool), else in a warm instance of the pool, or a new one that joins it.
// An instance goes back to the pool only after an ok or failed outcome,
// below MaxUses and MaxMemoryPages; any other outcome discards it, so the
// next attempt sees fresh state.
func (p *Pool) Run(ctx context.Context, a Attempt) Result {
	if !p.policy.Mode.warm() || p.closed.Load() {
		return p.h.Run(ctx, p.m, a)
	}
	at := p.h.begin(ctx, p.m, a)
	defer at.end()
	inst := p.acquire()
	if inst != nil && inst.initial != nil && !inst.initial.restore(inst.mod) {
		p.put(inst, false)
		p.reserve()
		inst = nil
	}
	if inst == nil {
		var res Result
		if inst, res = p.instantiate(at.ctx, at.st, a.Command); inst == nil {
			p.unreserve()
			if p.closed.Load() { // closed meanwhile (a reset pool's variant with it)
				return p.h.Run(ctx, p.m, a)
			}
			return at.finish(res)
		}
	}
	inst.streams.st = at.st
	if inst.mem != nil {
		inst.mem.refused.Store(0) // refusals of earlier attempts are not this one's
	}
	at.st.mem = inst.mem
	start := time.Now()
	err := inst.handle.CallWithStack(at.ctx, inst.stack[:])
	ran := time.Since(start)
	inst.ran = ran
	inst.streams.st = nil
	code := int64(0)
	if err == nil {
		code = int64(api.DecodeI32(inst.stack[0]))
	}
	mem := inst.mod.Memory()
	res := classify(at.ctx, at.st, mem, code, err)
	inst.uses++
	keep := err == nil && (res.Outcome == dispatch.OutcomeOK || res.Outcome == dispatch.OutcomeFailed) &&
		!inst.mod.IsClosed() && // stopped at a deadline the instant the call returned
		inst.uses < p.policy.MaxUses &&
		mem.Size() <= p.policy.MaxMemoryPages*65536
	if keep && ran >= stackRefreshAfter {
		inst.handle = inst.mod.ExportedFunction(handleExport)
	}
	p.put(inst, keep)
	return at.finish(res)
}

// stackRefreshAfter: an instance whose attempt ran this long gets a new
// call handle before it goes idle. wazero grows a handle's stack by
// doubling (up to 84 MB, host/doc.go) and never shrinks it, so a deep
// recursion would stay with the idle instance; a new handle starts at
// 10 KiB. Within this time a guest can grow its stack to a few MB at
// most, and a 10 KiB allocation is nothing beside such an attempt.
const stackRefreshAfter = time.Millisecond

// acquire checks out the idle instance used last. When there is none it
// returns nil, and the caller makes one (the pool counts it as live
// already; unreserve when making it fails), unless the pool's attempts are
// short and it has as many instances running as there are cores: then an
// instance will come back sooner than a new one could be made (a Go
// guest's takes milliseconds, its attempts microseconds), and the attempt
// waits for it, at most as long as making one takes. So a burst of
// attempts from many workers does not make one instance per worker.
func (p *Pool) acquire() *instance {
	s := &p.h.idle
	s.mu.Lock()
	if inst := p.takeLocked(); inst != nil {
		s.mu.Unlock()
		return inst
	}
	wait := p.waitLocked()
	if wait <= 0 {
		p.live++
		s.mu.Unlock()
		return nil
	}
	ch := make(chan *instance, 1)
	p.waiters = append(p.waiters, ch)
	s.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case inst := <-ch:
		return inst
	case <-t.C:
	}
	s.mu.Lock()
	if i := slices.Index(p.waiters, ch); i >= 0 {
		p.waiters = slices.Delete(p.waiters, i, i+1)
		p.live++
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	return <-ch // handed over meanwhile
}

// Waiting for an instance: only with at least waitAtLive instances
// running, for at most the average time making one took (or
// defaultMakeWait before the first), and not when attempts take half as
// long as that or more.
var waitAtLive = goruntime.GOMAXPROCS(0)

const defaultMakeWait = 5 * time.Millisecond

// waitLocked is how long an attempt that found no idle instance waits for
// one; 0: make one now.
func (p *Pool) waitLocked() time.Duration {
	if p.live < waitAtLive || p.closed.Load() || p.h.idle.max <= 0 {
		return 0
	}
	cost := p.makeCost
	if cost <= 0 {
		cost = defaultMakeWait
	}
	if p.runCost >= cost/2 {
		return 0
	}
	return cost
}

// reserve and unreserve count an instance being made outside acquire.
func (p *Pool) reserve() {
	p.h.idle.mu.Lock()
	p.live++
	p.h.idle.mu.Unlock()
}

func (p *Pool) unreserve() {
	p.h.idle.mu.Lock()
	p.live--
	p.h.idle.mu.Unlock()
}

// average moves a moving average an eighth of the way to d.
func average(avg, d time.Duration) time.Duration {
	if avg == 0 {
		return d
	}
	return avg + (d-avg)/8
}

// takeLocked checks out the idle instance used last, if any.
func (p *Pool) takeLocked() (inst *instance) {
	s := &p.h.idle
	if n := len(p.idle); n > 0 {
		inst = p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		s.n--
		s.bytes -= inst.bytes
		if len(p.idle) == 0 {
			delete(s.pools, p)
		}
		p.stats.Reused++
		p.live++
	}
	return inst
}

// instantiate makes a new instance for the pool, with its _initialize run
// under the attempt's context (its logs go to this attempt). When that
// fails, inst is nil and res says why.
func (p *Pool) instantiate(ctx context.Context, st *attemptState, c Command) (inst *instance, res Result) {
	s := &p.h.idle
	began := time.Now()
	// The manifest's arguments, environment and mounts are the version's,
	// the same for every attempt; a scratch directory lives as long as the
	// instance.
	streams := &instanceStreams{st: st}
	cfg, afs, err := commandConfig(p.m.cfg, &c, p.m.Mode, pluginName(st.task.Handler), st.input, func(msg string) {
		if cur := streams.st; cur != nil { // the attempt running now, not the one that made the instance
			cur.hostLog(msg)
		}
	})
	if err != nil {
		return nil, Result{Outcome: dispatch.OutcomeFailed, Retryable: true, Error: "host error: " + err.Error()}
	}
	cfg = cfg.WithStdout(streams.stdout()).WithStderr(streams.stderr())
	inst = &instance{streams: streams, fs: afs}
	compiled := p.m.compiled
	if p.reset != nil {
		compiled = p.reset.compiled
	}
	inst.mod, err = p.m.rt.rt.InstantiateModule(p.m.withMemory(ctx, &inst.mem), compiled, cfg)
	st.mem = inst.mem
	if err != nil {
		res := classify(ctx, st, memoryOf(inst.mod), 0, err)
		inst.close()
		return nil, res
	}
	if p.m.hasInit {
		if _, err := inst.mod.ExportedFunction("_initialize").Call(ctx); err != nil {
			res := classify(ctx, st, inst.mod.Memory(), 0, fmt.Errorf("_initialize: %w", err))
			inst.close()
			return nil, res
		}
	}
	if p.reset != nil {
		if inst.initial, err = snapshotInstance(inst.mod, p.reset.globals); err != nil {
			inst.close()
			return nil, Result{Outcome: dispatch.OutcomeFailed, Retryable: true, Error: "host error: " + err.Error()}
		}
	}
	inst.handle = inst.mod.ExportedFunction(handleExport)
	s.mu.Lock()
	p.stats.Created++
	p.makeCost = average(p.makeCost, time.Since(began))
	s.mu.Unlock()
	return inst, Result{}
}

// close closes the instance, then its attempt directory if any.
func (inst *instance) close() {
	if inst.mod != nil {
		inst.mod.Close(context.Background())
	}
	inst.fs.close()
}

// put returns inst to the pool, or closes it.
func (p *Pool) put(inst *instance, keep bool) {
	s := &p.h.idle
	now := time.Now()
	var victims []*instance
	s.mu.Lock()
	p.runCost = average(p.runCost, inst.ran)
	if keep && len(p.waiters) > 0 && !p.closed.Load() && !s.closed {
		// Straight to an attempt waiting for one (acquire): still live.
		ch := p.waiters[0]
		p.waiters = slices.Delete(p.waiters, 0, 1)
		p.stats.Reused++
		s.mu.Unlock()
		ch <- inst
		return
	}
	p.live--
	if !keep || p.closed.Load() || s.closed || s.max <= 0 {
		p.stats.Discarded++
		s.mu.Unlock()
		closeInstances([]*instance{inst})
		return
	}
	if s.n >= s.max {
		// The host keeps no more idle instances than its workers can use:
		// make room by closing the one idle the longest, in any pool.
		if old, op := s.oldest(); old != nil {
			op.idle = op.idle[1:]
			op.stats.Discarded++
			s.forget(op, []*instance{old})
			victims = append(victims, old)
		}
	}
	inst.idleAt = now
	inst.bytes = int64(inst.mod.Memory().Size())
	p.idle = append(p.idle, inst)
	s.pools[p] = struct{}{}
	s.n++
	s.bytes += inst.bytes
	s.arm(now.Add(p.policy.IdleTimeout))
	s.mu.Unlock()
	closeInstances(victims)
}

func closeInstances(insts []*instance) {
	for _, inst := range insts {
		inst.close()
	}
}

// idleSet is the Host's account of idle instances across pools: their
// number (bounded by Config.MaxIdleInstances), their memory, and one timer
// that closes those idle past their pool's IdleTimeout.
type idleSet struct {
	// mu guards this and every Pool's idle list, closed flag and stats.
	mu     sync.Mutex
	max    int
	n      int
	bytes  int64
	pools  map[*Pool]struct{} // pools with idle instances
	timer  *time.Timer
	wake   time.Time // when timer fires; zero when not armed
	closed bool
}

// oldest returns the instance idle the longest, and its pool. Pools keep
// their idle instances oldest first.
func (s *idleSet) oldest() (*instance, *Pool) {
	var best *instance
	var bestPool *Pool
	for p := range s.pools {
		if len(p.idle) > 0 && (best == nil || p.idle[0].idleAt.Before(best.idleAt)) {
			best, bestPool = p.idle[0], p
		}
	}
	return best, bestPool
}

// forget takes removed instances of p off the counts.
func (s *idleSet) forget(p *Pool, removed []*instance) {
	for _, inst := range removed {
		s.n--
		s.bytes -= inst.bytes
	}
	if len(p.idle) == 0 {
		delete(s.pools, p)
	}
}

// arm makes sure the sweep runs by at.
func (s *idleSet) arm(at time.Time) {
	if s.closed || (!s.wake.IsZero() && !at.Before(s.wake)) {
		return
	}
	s.wake = at
	d := time.Until(at)
	if s.timer == nil {
		s.timer = time.AfterFunc(d, func() { s.sweep(time.Now()) })
		return
	}
	s.timer.Reset(d)
}

// sweep closes the instances idle past their pool's IdleTimeout at now and
// re-arms the timer for the next one.
func (s *idleSet) sweep(now time.Time) {
	var victims []*instance
	s.mu.Lock()
	s.wake = time.Time{}
	var next time.Time
	for p := range s.pools {
		i := 0
		for i < len(p.idle) && !now.Before(p.idle[i].idleAt.Add(p.policy.IdleTimeout)) {
			i++
		}
		if i > 0 {
			expired := p.idle[:i:i]
			p.idle = p.idle[i:]
			p.stats.IdleClosed += len(expired)
			victims = append(victims, expired...)
			s.forget(p, expired)
		}
		if len(p.idle) > 0 {
			if at := p.idle[0].idleAt.Add(p.policy.IdleTimeout); next.IsZero() || at.Before(next) {
				next = at
			}
		}
	}
	if !next.IsZero() {
		s.arm(next)
	}
	s.mu.Unlock()
	closeInstances(victims)
}

// close closes every idle instance and stops the timer (Host.Close).
func (s *idleSet) close() {
	s.mu.Lock()
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
	}
	var victims []*instance
	for p := range s.pools {
		victims = append(victims, p.idle...)
		p.stats.IdleClosed += len(p.idle)
		p.idle = nil
		p.closed.Store(true)
	}
	s.pools = map[*Pool]struct{}{}
	s.n, s.bytes = 0, 0
	s.mu.Unlock()
	closeInstances(victims)
}

// IdleStats describes the idle instances the Host holds across pools.
type IdleStats struct {
	Instances   int   // idle instances, at most Config.MaxIdleInstances
	MemoryBytes int64 // their linear memory
}

// Idle returns what the Host's idle instances hold now.
func (h *Host) Idle() IdleStats {
	h.idle.mu.Lock()
	defer h.idle.mu.Unlock()
	return IdleStats{Instances: h.idle.n, MemoryBytes: h.idle.bytes}
}
