package dispatch

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/wasmtask/wasmtask/dispatch/payload"
	"github.com/wasmtask/wasmtask/segwal"

	"github.com/wasmtask/wasmtask/dispatch/machine"
)

// Config configures an Engine. Zero values are defaults.
type Config struct {
	// Dir is the data directory: the WAL lives in Dir/wal, snapshots in
	// Dir/snapshots. Required.
	Dir string
	// Executor runs attempts. Required.
	Executor Executor
	// Workers bounds the attempts in flight. Default 2 x GOMAXPROCS.
	Workers int
	// Clock defaults to SystemClock.
	Clock Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Node names this process in attempts' worker ids. Default "pid<pid>".
	Node string
	// LeaseGrace is added to an attempt's timeout to form its lease. Default 5s.
	LeaseGrace time.Duration
	// RetainFor keeps final tasks this long before dropping them. Default 24h.
	RetainFor time.Duration
	// RetainCount keeps at most this many final tasks. Default 100,000.
	RetainCount int
	// SnapshotEvery writes a snapshot after this many events. Default 100,000;
	// negative disables snapshots.
	SnapshotEvery int
	// SnapshotStateRatio defers a snapshot until the events since the last
	// one number at least this many times the tasks and runs the state
	// holds. A snapshot costs in proportion to the state, so this bounds
	// its cost per event (a state of 100k retained tasks is not re-encoded
	// every 100k events), while the WAL to replay stays proportional to the
	// state too. Default 2; negative: SnapshotEvery alone decides.
	SnapshotStateRatio float64
	// SnapshotEveryBytes also writes a snapshot once the WAL records since
	// the last one hold this many bytes (and, under SnapshotStateRatio,
	// that many times the last snapshot file's size), so that a WAL of few
	// large events (1 MB inputs) is replayed in bounded time too. Default
	// 64 MiB; negative: events alone decide.
	SnapshotEveryBytes int64
	// SnapshotRetain keeps this many snapshots. Default 2.
	SnapshotRetain int
	// WAL options (segment size, compression, sync policy, repair).
	WAL segwal.Options
	// Rand draws backoff jitter; tests inject a seeded source. Default: random.
	Rand func() float64
	// MaxBatch bounds the inputs one tick drains. Default 4096.
	MaxBatch int
	// DurableLeases starts an attempt only once its lease is durable. By
	// default an attempt of a task whose submission is durable starts as
	// soon as its lease is written, while the lease's fsync is under way: a
	// crash of the process keeps the written lease (the attempt is closed as
	// lost, as usual), but a crash of the machine before the fsync can lose
	// it, and the attempt then runs again under the same number. Set
	// DurableLeases when that must never happen; each attempt then waits
	// for one fsync before it starts (dispatch/doc.go, "Attempts start
	// before their lease is durable").
	DurableLeases bool
	// MaxPayloadMemory bounds the payload bytes held in memory for work in
	// progress: submissions being received and written (AdmitPayload),
	// inputs of running attempts, outputs on their way to the payload
	// store. Submissions that do not fit are refused (the API answers 429
	// with Retry-After); accepted work always runs. Default 256 MiB.
	MaxPayloadMemory int64
	// InlinePayloadBytes: inputs and outputs up to this size stay in the
	// WAL record and in memory while the inline payloads the state holds
	// take less than half of MaxPayloadMemory (beyond it, only those up to
	// SmallPayloadBytes); larger ones go to the payload store
	// (Dir/payloads) and are read when an attempt starts or a view asks
	// for them, so memory grows with the number of tasks, not with their
	// payloads. A write to the store costs two fsyncs (the WAL's group
	// commit shares one among many submissions), hence the inline room.
	// Default 16 KiB; negative keeps every payload inline (as cluster
	// mode, Config.Log, always does: the log must replicate them).
	InlinePayloadBytes int
	// Runnable reports whether some worker can run a handler now (remote
	// workers serve some handlers, or none is connected); a ready run whose
	// handler it refuses stays ready, unleased, until SetCapacity is called
	// again. nil: every handler. Called by the loop: it must be quick and
	// must not call the Engine.
	Runnable func(handler string) bool
	// ValidateHandler checks a task's handler at submission (for tasks from
	// clients and children from handlers): the plugin registry's check that
	// the plugin is deployed. nil accepts any name.
	ValidateHandler func(handler string) error
	// MinFreeDisk: below this many free bytes on the data dir's filesystem
	// (statfs, every DiskCheckEvery) new submissions are refused with a
	// *DiskFullError until space is back; running attempts go on. A write
	// that fails for lack of space (ENOSPC) does the same whatever the
	// threshold. Default DefaultMinFreeDisk, at most 5% of the
	// filesystem's size; negative: no threshold, ENOSPC alone.
	MinFreeDisk int64
	// DiskCheckEvery is how often the free space is read (a statfs: cheap,
	// and the sooner a full disk is seen, the fewer submissions land in the
	// WAL's headroom). Default 250ms.
	DiskCheckEvery time.Duration

	// Log, when set, replaces the WAL in Dir/wal (cluster mode: the raft
	// log, see package cluster): the committer appends each tick's records
	// to it and Commit makes them durable (committed by a majority). State
	// is then the state to start from, which the caller recovered (nil: an
	// empty one); the engine writes no snapshots of its own (the Log's
	// owner does). A Log that implements EarlyStartGate decides when
	// attempts may start before their lease is durable.
	Log Log
	// State is the state to start from with Log; ignored without it.
	State *State

	// freeSpace, for tests, stands in for FreeSpace.
	freeSpace func(dir string) (avail, size int64, err error)
	// beforeCommit, for tests, runs in the committer before each fsync
	// (where it would be under SyncNone); an error stands for a failed fsync.
	beforeCommit func() error
}

// Log is where the committer writes the ticks' events: the segwal WAL in
// single-node mode, the raft log in cluster mode (Config.Log). Records get
// consecutive sequences; Append returns the sequence of the last one.
// Append may be called while a Commit is in flight and must copy records,
// whose buffer the engine reuses. Commit makes every record appended so far
// durable and returns the sequence they reach; an error stops the engine.
type Log interface {
	Append(records ...[]byte) (last uint64, err error)
	Commit() (durable uint64, err error)
	Close() error
}

// CommitterTo is implemented by a Log that can make records durable up to
// a sequence without waiting for the ones written after it (the raft log,
// whose entries commit one by one): the committer then waits only for the
// ticks it releases.
type CommitterTo interface {
	CommitTo(seq uint64) (durable uint64, err error)
}

// Pipeliner is implemented by a Log that commits frames one after another
// without waiting for the previous one (the raft log): while it wants
// more, the loop writes each tick's frame at once rather than holding it
// for the next commit.
type Pipeliner interface {
	WantsFrame() bool
}

func (e *Engine) pipelines() bool {
	p, ok := e.out.(Pipeliner)
	return ok && p.WantsFrame()
}

// EarlyStartGate is implemented by a Log that must sometimes hold every
// attempt until its lease is durable (as DurableLeases does always): the
// raft log while its node cannot be sure it still leads, so that a deposed
// leader starts nothing the cluster did not agree to.
type EarlyStartGate interface {
	EarlyStartOK() bool
}

func (c *Config) normalize() error {
	if c.Log != nil {
		if c.Dir == "" {
			c.Dir = "(cluster)"
		}
		c.SnapshotEvery = -1
		c.InlinePayloadBytes = -1 // the log is all a replica gets: payloads travel in it
	}
	if c.Dir == "" {
		return errors.New("dispatch: Config.Dir is required")
	}
	if c.Executor == nil {
		return errors.New("dispatch: Config.Executor is required")
	}
	if c.Workers < 0 {
		return fmt.Errorf("dispatch: Config.Workers must be positive, got %d", c.Workers)
	}
	if c.Workers == 0 {
		c.Workers = 2 * runtime.GOMAXPROCS(0)
	}
	if c.Clock == nil {
		c.Clock = SystemClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Node == "" {
		c.Node = fmt.Sprintf("pid%d", os.Getpid())
	}
	if c.LeaseGrace == 0 {
		c.LeaseGrace = 5 * time.Second
	}
	if c.RetainFor == 0 {
		c.RetainFor = 24 * time.Hour
	}
	if c.RetainCount == 0 {
		c.RetainCount = 100_000
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = 100_000
	}
	if c.SnapshotEveryBytes == 0 {
		c.SnapshotEveryBytes = 64 << 20
	}
	if c.SnapshotStateRatio == 0 {
		c.SnapshotStateRatio = 2
	}
	if c.SnapshotRetain <= 0 {
		c.SnapshotRetain = 2
	}
	if c.Rand == nil {
		c.Rand = mrand.Float64
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 4096
	}
	if c.MaxPayloadMemory <= 0 {
		c.MaxPayloadMemory = DefaultMaxPayloadMemory
	}
	if c.InlinePayloadBytes == 0 {
		c.InlinePayloadBytes = DefaultInlinePayloadBytes
	}
	if c.WAL.Logger == nil {
		c.WAL.Logger = c.Logger
	}
	if c.DiskCheckEvery <= 0 {
		c.DiskCheckEvery = 250 * time.Millisecond
	}
	if c.freeSpace == nil {
		c.freeSpace = FreeSpace
	}
	return nil
}

// Defaults of Config's payload fields.
const (
	DefaultMaxPayloadMemory   = 256 << 20
	DefaultInlinePayloadBytes = 16 << 10
	// SmallPayloadBytes: payloads up to this size stay inline whatever the
	// inline payloads held (a few per task, like its id and labels).
	SmallPayloadBytes = 1 << 10
)

// minFreeDisk resolves Config.MinFreeDisk for the filesystem of dir.
func (c *Config) minFreeDisk() int64 {
	switch {
	case c.MinFreeDisk < 0:
		return 0
	case c.MinFreeDisk > 0:
		return c.MinFreeDisk
	}
	if _, size, err := c.freeSpace(c.Dir); err == nil && size > 0 {
		return min(DefaultMinFreeDisk, size/20)
	}
	return DefaultMinFreeDisk
}

// RecoveryInfo reports what Open did to rebuild the state.
type RecoveryInfo struct {
	SnapshotSeq    uint64 // WAL sequence covered by the snapshot loaded (0: none)
	SnapshotErrors []error
	EventsReplayed uint64
	BytesReplayed  uint64 // record bytes of the events replayed
	// PayloadErrors name the payload files the state needs that are
	// missing or of the wrong size (each a *payload.DamagedError).
	PayloadErrors []error
	Duration      time.Duration
	WAL           segwal.Recovery
}

// Engine runs the dispatch loop: the only goroutine that changes state and
// the only writer of the WAL.
type Engine struct {
	cfg  Config
	wal  *segwal.Log // nil with Config.Log
	out  Log         // where the committer writes: wal, or Config.Log
	core *Core
	log  *slog.Logger

	mu    sync.RWMutex // guards state for readers; the loop writes under it
	state *State

	inbox   chan any
	results chan any
	stop    chan struct{}
	done    chan struct{}

	changedMu sync.Mutex
	changed   chan struct{} // closed and replaced after every commit

	// The committer (commitLoop) fsyncs appended ticks and releases them.
	commits       chan []*committedTick
	commitReady   chan struct{}       // holds a token while the committer is free
	early         []Job               // loop-owned: the attempts a tick starts before its fsync (reused)
	pending       pendingTicks        // loop-owned: ticks stepped but not handed to the committer
	spareArrays   chan releasedArrays // back from the committer, for the next Steps
	committerDone chan struct{}
	commitFailed  chan struct{} // closed when an fsync failed; commitErr says why
	commitErr     error         // written by the committer before closing commitFailed
	durable       atomic.Uint64 // the WAL is on disk up to here
	groupCommit   bool          // Config.WAL.Sync is SyncAlways: fsync each commit
	stopping      atomic.Bool

	cancelsMu sync.Mutex
	cancels   map[RunID]context.CancelFunc // contexts of attempts in flight
	workers   sync.WaitGroup
	err       error // fatal error that stopped the loop (set before done closes)
	recovery  RecoveryInfo

	// Runners (runner.go): an idle one waits on idleRunners; runnersIdle counts them.
	idleRunners chan runnerJob
	runnersIdle atomic.Int64

	waits waiters
	// Events and record bytes written since the last snapshot, counted from
	// the sequence of the snapshot recovery loaded (not from 0 in each
	// process, or a server restarted often would never snapshot).
	sinceSnapshot      int
	sinceSnapshotBytes int64
	// A snapshot being written took these counts with it; if it fails
	// (snapFailed), they are added back and retryFloor defers the retry
	// by a tenth of the interval, so a failure neither resets the count
	// nor retries on every tick. All loop-owned but snapFailed.
	snapTakenEvents   int
	snapTakenBytes    int64
	snapRetryFloor    int
	snapFailed        atomic.Bool
	lastSnapshotBytes atomic.Int64  // size of the newest snapshot file
	snapFinished      chan struct{} // closed when the snapshot being written is done (loop-owned)
	snapshots         *snapshotter
	stats             engineCounters

	payloads  *payload.Store  // Dir/payloads: inputs and outputs too large to keep inline
	budget    *payload.Budget // payload bytes held in memory for work in progress
	throttled atomic.Uint64   // submissions refused by AdmitPayload
	// inlineHeld estimates the inline payload bytes the state holds: set
	// from the state at recovery and at each snapshot's capture, raised by
	// every payload kept inline since (drops lower it at the next
	// snapshot). inlineAdded counts the bytes kept inline, ever.
	inlineHeld, inlineAdded atomic.Int64

	disk *diskGuard // watches the data dir's free space (diskguard.go)

	capacity  atomic.Int64  // SetCapacity's bound; -1: Config.Workers
	poke      chan struct{} // SetCapacity wakes the loop
	collector collector     // collects after payload bytes were freed
}

type engineCounters struct {
	ticks, events, appends atomic.Uint64
}

// Open recovers the state in cfg.Dir (newest valid snapshot plus the WAL
// tail, through the same reducer as live ticks) and starts the loop.
func Open(cfg Config) (*Engine, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if cfg.Log != nil {
		return openOnLog(cfg)
	}
	start := time.Now()
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("dispatch: %w", err)
	}
	// The engine fsyncs through Commit, beside its appends (group commit).
	walOpts := cfg.WAL
	walOpts.Sync = segwal.SyncNone
	// With fsyncs on, preallocated segments lower their latency (segwal/prealloc.go
	// and its benchmarks): under load that latency bounds the rate.
	walOpts.Preallocate = walOpts.Preallocate || cfg.WAL.Sync == segwal.SyncAlways
	payloads, err := payload.Open(filepath.Join(cfg.Dir, "payloads"))
	if err != nil {
		return nil, fmt.Errorf("dispatch: %w", err)
	}
	wal, err := segwal.Open(filepath.Join(cfg.Dir, "wal"), walOpts)
	if err != nil {
		return nil, fmt.Errorf("dispatch: open WAL: %w", err)
	}
	e := newEngine(cfg, wal, payloads)
	e.recovery.WAL = wal.Recovery()
	state, err := e.recover()
	if err != nil {
		wal.Close()
		return nil, err
	}
	e.setState(state)
	e.sinceSnapshot = int(state.Applied - e.recovery.SnapshotSeq)
	e.sinceSnapshotBytes = int64(e.recovery.BytesReplayed)
	e.recovery.PayloadErrors = e.checkPayloads(state)
	e.inlineHeld.Store(inlineBytes(state.Tasks, state.Runs))
	e.recovery.Duration = time.Since(start)
	// Debug: the program embedding the engine reports recovery (wasmtask
	// serve logs "recovered" with the WAL's repairs); this is the detail.
	e.log.Debug("dispatch: recovered", "snapshot_seq", e.recovery.SnapshotSeq,
		"events_replayed", e.recovery.EventsReplayed, "bytes_replayed", e.recovery.BytesReplayed, "tasks", len(state.Tasks),
		"duration", e.recovery.Duration, "torn_tail", e.recovery.WAL.TornTail != nil)
	e.disk.check(wal.Reserve) // a server started on a full disk refuses work from the start
	e.startCollector()
	go e.loop()
	e.workers.Add(1) // Close waits for the watcher as for the workers
	go func() {
		defer e.workers.Done()
		e.disk.watch(wal.Reserve, e.done)
	}()
	return e, nil
}

func newEngine(cfg Config, wal *segwal.Log, payloads *payload.Store) *Engine {
	e := &Engine{
		cfg: cfg, wal: wal, out: cfg.Log, log: cfg.Logger,
		inbox: make(chan any, cfg.MaxBatch), results: make(chan any, 4*cfg.Workers+64),
		stop: make(chan struct{}), done: make(chan struct{}), changed: make(chan struct{}),
		cancels: map[RunID]context.CancelFunc{}, idleRunners: make(chan runnerJob),
		// One group of ticks is committed at a time; the loop holds the next
		// one (pending) until the committer gives back its token.
		commits: make(chan []*committedTick, 1), commitReady: make(chan struct{}, 1), spareArrays: make(chan releasedArrays, 4), committerDone: make(chan struct{}), commitFailed: make(chan struct{}),
		groupCommit: cfg.Log != nil || cfg.WAL.Sync == segwal.SyncAlways,
		snapshots:   &snapshotter{dir: filepath.Join(cfg.Dir, "snapshots"), retain: cfg.SnapshotRetain},
		payloads:    payloads, budget: payload.NewBudget(cfg.MaxPayloadMemory),
		disk: newDiskGuard(cfg.Dir, cfg.minFreeDisk(), cfg.DiskCheckEvery, cfg.Logger, cfg.freeSpace),
		poke: make(chan struct{}, 1),
	}
	e.capacity.Store(-1)
	if wal != nil {
		e.out = wal
	}
	return e
}

func (e *Engine) setState(state *State) {
	e.state = state
	e.durable.Store(state.Applied)
	e.core = machine.NewCore(state, machine.CoreConfig{
		Workers: e.cfg.Workers, Node: e.cfg.Node, LeaseGrace: e.cfg.LeaseGrace.Milliseconds(),
		RetainMs: e.cfg.RetainFor.Milliseconds(), RetainCount: e.cfg.RetainCount, Rand: e.cfg.Rand,
		ValidateHandler: e.cfg.ValidateHandler, Runnable: e.cfg.Runnable,
	}, ulidEntropy())
	if n := e.capacity.Load(); n >= 0 {
		e.core.SetWorkers(int(n)) // a core rebuilt on a new state keeps SetCapacity's bound
	}
}

// openOnLog starts an engine on Config.Log from Config.State (cluster
// mode): its first tick closes the attempts the state holds as leased or
// running (a previous leader's) as lost, as recovery's first tick does.
func openOnLog(cfg Config) (*Engine, error) {
	// Payloads stay inline: the replicated log must carry them, as a file
	// in this node's payload store would be missing on the next leader.
	cfg.InlinePayloadBytes = -1
	payloads, err := payload.Open(filepath.Join(cfg.Dir, "payloads"))
	if err != nil {
		return nil, fmt.Errorf("dispatch: %w", err)
	}
	e := newEngine(cfg, nil, payloads)
	state := cfg.State
	if state == nil {
		state = NewState()
	}
	state.Doomed, state.JustFinal = nil, nil
	e.setState(state)
	e.recovery.SnapshotSeq = state.Applied
	e.startCollector()
	go e.loop()
	return e, nil
}

// recover loads the newest valid snapshot and replays the WAL after it.
func (e *Engine) recover() (*State, error) {
	state, errs := e.snapshots.loadNewest(e.wal.First())
	e.recovery.SnapshotErrors = errs
	for _, err := range errs {
		e.log.Warn("dispatch: skipped a damaged snapshot", "err", err)
	}
	if state == nil {
		if first := e.wal.First(); first > 1 {
			return nil, fmt.Errorf("dispatch: no usable snapshot, and the WAL starts at %d (older records were compacted): cannot recover %s", first, e.cfg.Dir)
		}
		state = NewState()
	}
	e.recovery.SnapshotSeq = state.Applied
	if state.Applied > 0 {
		e.lastSnapshotBytes.Store(e.snapshots.size(state.Applied))
	}
	if err := e.replay(state); err != nil {
		return nil, fmt.Errorf("dispatch: replay %s: %w", e.cfg.Dir, err)
	}
	state.Doomed = nil // their cancellations were written in the same ticks and replayed
	state.JustFinal = nil
	return state, nil
}

func ulidEntropy() *ulid.MonotonicEntropy { return ulid.Monotonic(rand.Reader, 0) }

// loop is the engine's goroutine. Per tick: wait for an input or the timer,
// drain what else is queued, Step, append the events as one WAL frame
// (written, not yet fsynced), and hand what the tick releases (replies,
// attempts to start or cancel, Wait wake-ups) to the committer, then go on
// with the next tick while the committer fsyncs. Nothing leaves the engine
// before its events are durable.
func (e *Engine) loop() {
	defer close(e.done)
	go e.commitLoop()
	var timer Timer
	var timerC <-chan time.Time
	var timerAt int64 // when timerC fires (unix ms), while it is armed
	inputs := make([]any, 0, e.cfg.MaxBatch)
	first := true
	for {
		if !first {
			var ready chan struct{} // the committer is free: hand it what is pending
			if len(e.pending.ticks) > 0 {
				ready = e.commitReady
			}
			select {
			case in := <-e.inbox:
				inputs = append(inputs, in)
			case in := <-e.results:
				inputs = append(inputs, in)
			case <-timerC:
				timerC = nil
			case <-e.poke:
				e.applyCapacity()
			case <-ready:
				if err := e.handOff(); err != nil {
					e.stopLoop(err)
					return
				}
				continue
			case <-e.commitFailed:
				e.stopLoop(e.commitErr)
				return
			case <-e.stop:
				e.stopLoop(nil)
				return
			}
		}
		first = false
		if len(e.pending.ticks) > 0 {
			// An fsync is in flight, and what this tick decides (early
			// starts aside) waits for the next one: let the goroutines that
			// are ready (submitters, workers) queue their inputs first, for
			// a larger tick. Measured (BenchmarkEngineNoop, 1024 workers):
			// 1 -> 30-40 tasks per tick, 25 -> 20 us of CPU per task.
			runtime.Gosched()
		}
	drain:
		for len(inputs) < e.cfg.MaxBatch {
			select {
			case in := <-e.results:
				inputs = append(inputs, in)
			case in := <-e.inbox:
				inputs = append(inputs, in)
			default:
				break drain
			}
		}
		var probes []chan idleReply
		var snapReqs []chan error
		kept := inputs[:0]
		for _, in := range inputs {
			if p, ok := in.(idleProbe); ok {
				probes = append(probes, p.reply)
				continue
			}
			if d, ok := in.(drainInput); ok {
				e.core.Drain = d.on
				close(d.reply)
				continue
			}
			if sn, ok := in.(snapshotInput); ok {
				snapReqs = append(snapReqs, sn.reply)
				continue
			}
			kept = append(kept, in)
		}
		inputs = kept

		now := unixMs(e.cfg.Clock.Now())
		select {
		case spare := <-e.spareArrays:
			e.core.SpareStarts, e.core.SpareAcks = spare.starts, spare.acks
		default:
		}
		// Readers (Task, List, Wait, Stats) take e.mu for reading and then
		// wait until what they saw, up to State.Applied, is durable; so
		// Applied moves with the state, before the frame is even written.
		e.mu.Lock()
		batch, err := e.core.Step(now, inputs)
		if err != nil {
			e.mu.Unlock()
			e.stopLoop(fmt.Errorf("dispatch: engine stopped: %w", err))
			return
		}
		want := e.state.Applied + uint64(len(batch.Events))
		e.state.Applied = want
		tick := &committedTick{seq: want, acks: batch.Acks, cancels: batch.Cancels, starts: batch.Starts,
			finals: e.state.JustFinal}
		e.state.JustFinal = nil
		if len(probes) > 0 {
			tick.idle = e.idle(now, batch)
			tick.probes = probes
		}
		e.mu.Unlock()
		e.unpinHandled(inputs)
		var early []Job
		early, tick.starts = e.splitEarly(tick.starts)
		if err := e.pend(tick, batch.Events); err != nil {
			e.stopLoop(err)
			return
		}
		if len(early) > 0 {
			// Written before they start (fsynced later): a crash of the
			// process keeps what it wrote, so their leases are found and
			// closed as lost, counted against the lost-attempt budget.
			if err := e.writeFrame(); err != nil {
				e.stopLoop(err)
				return
			}
			for _, job := range early {
				e.start(job)
			}
			clear(early)
			e.early = early[:0]
		}
		e.stats.ticks.Add(1)
		e.releaseFinished(inputs)
		inputs = inputs[:0]
		if len(snapReqs) > 0 {
			// A snapshot being written waits for its events to be durable,
			// and snapshotNow waits for it: hand them to the committer first.
			if err := e.handOffNow(); err != nil {
				e.stopLoop(err)
				return
			}
			e.snapshotNow(snapReqs)
		} else if e.snapshotDue() {
			e.snapshot()
		}
		// A timer armed for no later than the next due time stays: waking
		// early costs one empty tick, which re-arms it, whereas a new timer
		// every tick cost an eighth of the loop's allocations.
		if batch.NextWake > 0 && (timerC == nil || batch.NextWake < timerAt) {
			if timer != nil {
				timer.Stop()
			}
			timer = e.cfg.Clock.NewTimer(time.Duration(batch.NextWake-now) * time.Millisecond)
			timerC, timerAt = timer.C(), batch.NextWake
		}
	}
}

// SetCapacity bounds the attempts in flight at n (n >= 0), replacing
// Config.Workers, and gives ready runs that Config.Runnable refused another
// chance: a server with remote workers calls it as workers come and go
// (its own workers plus the remote ones' slots). It does not block.
func (e *Engine) SetCapacity(n int) {
	e.capacity.Store(int64(max(n, 0)))
	select {
	case e.poke <- struct{}{}:
	default: // a poke is pending: the loop reads the latest bound
	}
}

// applyCapacity hands SetCapacity's bound to the core (in the loop).
func (e *Engine) applyCapacity() {
	n := int(e.capacity.Load())
	if n < 0 {
		n = e.cfg.Workers
	}
	e.mu.Lock()
	e.core.SetWorkers(n)
	e.mu.Unlock()
}

// pendingTicks are ticks stepped but not yet handed to the committer.
type pendingTicks struct {
	ticks   []*committedTick
	records [][]byte // encoded events of those ticks not yet written
	buf     []byte   // holds records
	last    uint64   // the sequence of the last record
}

// frameEvents: events stepped while an fsync is in flight are written as
// a frame once they number this many, so that writing them overlaps the
// fsync; the rest are written when the committer is free again. A frame of
// 512 small records compresses about 6x (segwal benchmarks).
const frameEvents = 512

// pend queues a stepped tick for the committer: its events are encoded now
// and written with the next frame. When the committer is free, the pending
// ticks are handed to it at once (one frame, one fsync); otherwise they wait
// for the fsync in flight while the loop goes on stepping, and the next
// fsync covers them all (group commit).
func (e *Engine) pend(tick *committedTick, events []Event) error {
	p := &e.pending
	if len(events) > 0 {
		bufStart := len(p.buf)
		for i := range events {
			start := len(p.buf)
			var err error
			if p.buf, err = machine.AppendEvent(p.buf, &events[i]); err != nil {
				e.failPending(err)
				return fmt.Errorf("dispatch: engine stopped: encode event: %w", err)
			}
			p.records = append(p.records, p.buf[start:len(p.buf):len(p.buf)])
		}
		p.last = tick.seq
		e.stats.events.Add(uint64(len(events)))
		e.sinceSnapshot += len(events)
		e.sinceSnapshotBytes += int64(len(p.buf) - bufStart)
		e.core.Recycle(events)
	}
	if len(events) > 0 || len(tick.acks) > 0 || len(tick.starts) > 0 || len(tick.cancels) > 0 ||
		len(tick.finals) > 0 || len(tick.probes) > 0 {
		p.ticks = append(p.ticks, tick)
	}
	select {
	case <-e.commitReady:
		return e.handOff()
	default:
	}
	if len(p.records) >= frameEvents || (len(p.records) > 0 && e.pipelines()) {
		// A replicated Log takes a tick's frame at once while it has room
		// in its pipeline: it commits it behind the entries in flight (a
		// round trip to the followers, not a local fsync, is what the next
		// tick would wait for).
		return e.writeFrame()
	}
	return nil
}

// writeFrame writes the pending records as one WAL frame (not fsynced).
func (e *Engine) writeFrame() error {
	p := &e.pending
	if len(p.records) == 0 {
		return nil
	}
	last, err := e.out.Append(p.records...)
	if err != nil && IsNoSpace(err) {
		last, err = e.waitForSpace(err)
	}
	if e.wal != nil && e.disk.full.Load() == nil {
		if ns := e.wal.NoSpace(); ns != nil {
			e.disk.enter(ns) // written into the WAL's headroom: refuse new work now
		}
	}
	if err == nil && last != p.last {
		err = fmt.Errorf("the WAL gave the events sequences up to %d, the state expects %d", last, p.last)
	}
	clear(p.records)
	p.records, p.buf = p.records[:0], p.buf[:0]
	if err != nil {
		e.failPending(err)
		if e.wal == nil {
			return fmt.Errorf("dispatch: engine stopped: write log: %w", err)
		}
		return fmt.Errorf("dispatch: engine stopped: write WAL: %w", err)
	}
	e.stats.appends.Add(1)
	return nil
}

// waitForSpace retries the Append of the pending records, which failed
// for lack of space (err), every DiskCheckEvery until it succeeds or the
// engine is closed. Meanwhile new submissions are refused, every other
// input to the loop fails with the *DiskFullError, and reads answer from
// memory without waiting for these records to be durable (the ticks are
// not acknowledged: a crash before space returns loses them, as it would
// any tick not yet fsynced).
func (e *Engine) waitForSpace(err error) (uint64, error) {
	e.disk.enter(err)
	e.disk.stalled.Store(true)
	defer e.disk.stalled.Store(false)
	e.broadcast() // readers waiting for these ticks: stop waiting
	e.log.Warn("dispatch: a WAL write failed for lack of space: retrying until space is freed", "events", len(e.pending.records), "err", err)
	retry := time.NewTicker(e.cfg.DiskCheckEvery)
	defer retry.Stop()
	for {
		select {
		case <-retry.C:
		case <-e.stop:
			return 0, fmt.Errorf("closed while the disk was full (%d events were not written; none was acknowledged): %w", len(e.pending.records), err)
		}
		var last uint64
		if last, err = e.out.Append(e.pending.records...); err == nil {
			e.log.Info("dispatch: the WAL write that waited for space succeeded", "events", len(e.pending.records))
			if e.wal == nil { // Config.Log: no watcher of a data dir ends the episode
				e.disk.leave(e.disk.freeBytes.Load())
			}
			return last, nil
		}
		if !IsNoSpace(err) {
			return 0, err
		}
		e.disk.enter(err)
	}
}

// handOff writes what is pending and hands the ticks to the committer,
// whose token (commitReady) the caller holds.
func (e *Engine) handOff() error {
	if err := e.writeFrame(); err != nil {
		return err
	}
	p := &e.pending
	group := p.ticks
	p.ticks = nil
	if len(group) == 0 {
		e.commitReady <- struct{}{} // nothing to commit: give the token back
		return nil
	}
	e.commits <- group
	return nil
}

// handOffNow waits until the committer is free and hands it what is pending.
func (e *Engine) handOffNow() error {
	if len(e.pending.ticks) == 0 && len(e.pending.records) == 0 {
		return nil
	}
	select {
	case <-e.commitReady:
		return e.handOff()
	case <-e.commitFailed:
		e.failPending(e.commitErr)
		return e.commitErr
	}
}

// failPending fails the callers of pending ticks: their events will never
// be durable.
func (e *Engine) failPending(err error) {
	for _, t := range e.pending.ticks {
		for _, a := range t.acks {
			a.To <- machine.Reply{Err: stoppedBy(err)}
		}
	}
	e.pending.ticks = nil
}

// splitEarly takes out of starts the attempts to start before the tick is
// durable: those whose task's submission is (all but tasks submitted in
// ticks still waiting for their fsync), unless Config.DurableLeases. The
// committer starts the others once the tick is durable. The WAL orders
// each attempt's result after its lease, so a durable result implies a
// durable lease.
func (e *Engine) splitEarly(starts []Job) (early, later []Job) {
	if e.cfg.DurableLeases || len(starts) == 0 {
		return nil, starts
	}
	if g, ok := e.out.(EarlyStartGate); ok && !g.EarlyStartOK() {
		return nil, starts
	}
	durable := e.durable.Load()
	early, later = e.early[:0], starts[:0]
	for _, job := range starts {
		if job.TaskSeq() <= durable {
			early = append(early, job)
		} else {
			later = append(later, job)
		}
	}
	clear(starts[len(later):])
	return early, later
}

// committedTick is what a tick releases once its events are durable.
type committedTick struct {
	seq     uint64 // the tick's last WAL sequence (the previous tick's if it wrote none)
	acks    []machine.Ack
	cancels []RunID
	starts  []Job
	finals  []TaskID // tasks that became final: their Wait calls wake
	probes  []chan idleReply
	idle    bool
}

// commitLoop is the committer: it fsyncs the group of ticks the loop
// handed it (one fsync for every tick stepped since the previous one: group
// commit), has them released in order and gives the loop its token back.
// The loop meanwhile steps the next ticks, so its CPU time and the disk's
// latency overlap instead of adding up.
func (e *Engine) commitLoop() {
	defer close(e.committerDone)
	releases := make(chan []*committedTick, 2)
	released := make(chan struct{})
	go e.releaseLoop(releases, released)
	defer func() {
		close(releases)
		<-released
	}()
	e.commitReady <- struct{}{}
	for group := range e.commits {
		seq := group[len(group)-1].seq
		err := e.commitErr
		if err == nil && seq > e.durable.Load() {
			if e.cfg.beforeCommit != nil {
				err = e.cfg.beforeCommit()
			}
			if err == nil && e.groupCommit {
				var synced uint64
				if ct, ok := e.out.(CommitterTo); ok {
					synced, err = ct.CommitTo(seq)
				} else {
					synced, err = e.out.Commit()
				}
				if err == nil && synced < seq {
					err = fmt.Errorf("the WAL made %d durable, the tick needs %d", synced, seq)
				}
			}
			if err != nil {
				what := "fsync WAL"
				if e.wal == nil {
					what = "commit"
				}
				e.commitErr = fmt.Errorf("dispatch: engine stopped: %s: %w", what, err)
				close(e.commitFailed)
			}
		}
		if err != nil {
			for _, t := range group {
				for _, a := range t.acks {
					a.To <- machine.Reply{Err: stoppedBy(e.commitErr)}
				}
			}
			continue // until the loop, seeing commitFailed, closes commits
		}
		e.durable.Store(max(e.durable.Load(), seq))
		releases <- group
		e.commitReady <- struct{}{}
	}
}

// releaseLoop releases durable groups of ticks in order, on its own
// goroutine so that the committer can start the next fsync at once:
// replying, starting attempts and waking waiters take a fifth of a commit
// cycle under load.
func (e *Engine) releaseLoop(groups <-chan []*committedTick, done chan<- struct{}) {
	defer close(done)
	for group := range groups {
		for _, t := range group {
			e.release(t)
		}
		e.broadcast()
		// A probe's next must close on a tick after its own: for all but the
		// group's last tick that tick was just released.
		for i, t := range group {
			next := closedCh
			if i == len(group)-1 {
				next = e.changedCh()
			}
			for _, p := range t.probes {
				p <- idleReply{idle: t.idle, next: next}
			}
		}
	}
}

var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// release answers a durable tick's callers, cancels and starts its attempts
// and wakes Wait calls on its tasks that became final.
func (e *Engine) release(t *committedTick) {
	for _, a := range t.acks {
		a.To <- a.R
	}
	if len(t.cancels) > 0 {
		e.cancelsMu.Lock()
		for _, id := range t.cancels {
			if cancel, ok := e.cancels[id]; ok {
				cancel()
			}
		}
		e.cancelsMu.Unlock()
	}
	if !e.stopping.Load() { // attempts not started now are closed as lost on the next Open
		for _, job := range t.starts {
			e.start(job)
		}
	}
	e.wakeFinal(t.finals)
	if cap(t.starts) > 0 || cap(t.acks) > 0 {
		clear(t.starts)
		clear(t.acks)
		select {
		case e.spareArrays <- releasedArrays{starts: t.starts[:0], acks: t.acks[:0]}:
		default:
		}
	}
}

// releasedArrays are a released tick's arrays, which the loop's next Step
// reuses rather than growing new ones every tick.
type releasedArrays struct {
	starts []Job
	acks   []machine.Ack
}

// releaseFinished releases the contexts of attempts that finished in this
// tick (in the loop: cancelOwner reads the state).
func (e *Engine) releaseFinished(inputs []any) {
	e.cancelsMu.Lock()
	defer e.cancelsMu.Unlock()
	for _, in := range inputs {
		r, ok := in.(machine.ResultInput)
		if !ok {
			continue
		}
		if cancel, ok := e.cancels[r.Run]; ok && cancelOwner(e, r) {
			cancel()
			delete(e.cancels, r.Run)
		}
	}
}

// stoppedBy is ErrStopped naming the error that stopped the engine, if any.
func stoppedBy(err error) error {
	if err == nil {
		return ErrStopped
	}
	// The loop's errors already start with ErrStopped's text: say it once.
	return fmt.Errorf("%w: %s", ErrStopped, strings.TrimPrefix(err.Error(), ErrStopped.Error()+": "))
}

// waitDurable waits until the WAL is durable up to seq (what a reader saw
// in the state), or the engine stopped.
func (e *Engine) waitDurable(seq uint64) {
	for e.durable.Load() < seq {
		ch := e.changedCh()
		if e.durable.Load() >= seq || e.disk.stalled.Load() {
			return
		}
		select {
		case <-ch:
		case <-e.commitFailed:
			return
		case <-e.committerDone:
			return
		}
	}
}

// stopLoop ends the loop: the committer finishes the ticks handed to it
// (without starting their attempts), then shutdown.
func (e *Engine) stopLoop(err error) {
	e.stopping.Store(true)
	if err == nil {
		// Commit what was stepped: its callers get their answers.
		if herr := e.handOffNow(); herr != nil {
			err = herr
		}
	} else {
		e.failPending(err)
	}
	close(e.commits)
	<-e.committerDone
	e.shutdown(err)
}

// cancelOwner reports whether the finished attempt r is the one whose
// context is registered (a stale result must not cancel a newer attempt).
func cancelOwner(e *Engine, r machine.ResultInput) bool {
	run, ok := e.state.Runs[r.Run]
	return !ok || len(run.Attempts) == r.Attempt
}

// idle judges the state after the tick, not whether the tick did work: a
// tick with events but nothing in flight or due is followed by no other
// (its timer was re-armed for the future), so waiting for one would hang.
func (e *Engine) idle(now int64, b Batch) bool {
	if len(e.inbox) > 0 || len(e.results) > 0 || e.state.Inflight > 0 {
		return false
	}
	return b.NextWake == 0 || b.NextWake > now || e.state.Paused
}

func (e *Engine) broadcast() {
	e.changedMu.Lock()
	close(e.changed)
	e.changed = make(chan struct{})
	e.changedMu.Unlock()
}

func (e *Engine) changedCh() chan struct{} {
	e.changedMu.Lock()
	defer e.changedMu.Unlock()
	return e.changed
}

// shutdown ends the loop: cancels running attempts, fails queued callers.
func (e *Engine) shutdown(err error) {
	e.err = err
	if err != nil {
		e.log.Error("dispatch: loop stopped", "err", err)
	}
	e.cancelsMu.Lock()
	for _, cancel := range e.cancels {
		cancel()
	}
	e.cancelsMu.Unlock()
	e.broadcast()
	for {
		select {
		case in := <-e.inbox:
			failInput(in, err)
		default:
			return
		}
	}
}

func failInput(in any, err error) {
	err = stoppedBy(err)
	switch in := in.(type) {
	case *machine.SubmitInput:
		in.Reply <- machine.Reply{Err: err}
	case machine.SubmitManyInput:
		for _, sub := range in {
			sub.Reply <- machine.Reply{Err: err}
		}
	case machine.CancelInput:
		in.Reply <- machine.Reply{Err: err}
	case machine.PauseInput:
		in.Reply <- machine.Reply{Err: err}
	case machine.AfterInput:
		in.Reply <- machine.Reply{Err: err}
	case machine.RetryInput:
		in.Reply <- machine.Reply{Err: err}
	case machine.DeleteInput:
		in.Reply <- machine.Reply{Err: err}
	case machine.PurgeInput:
		in.Reply <- machine.Reply{Err: err}
	case idleProbe:
		in.reply <- idleReply{idle: true}
	case drainInput:
		close(in.reply)
	case snapshotInput:
		in.reply <- err
	}
}

type (
	idleProbe struct{ reply chan idleReply }
	idleReply struct {
		idle bool
		next chan struct{} // closed by the next tick
	}
	drainInput struct {
		on    bool
		reply chan struct{}
	}
)

// send delivers an input to the loop, or fails when the engine stopped,
// or with a *DiskFullError: for new work while the disk is full, for any
// input while the loop waits for space to write.
func (e *Engine) send(ctx context.Context, in any) error {
	if err := e.disk.refused(); err != nil {
		switch in.(type) {
		case *machine.SubmitInput, machine.SubmitManyInput, machine.RetryInput:
			return err
		}
		if e.disk.stalled.Load() {
			return err
		}
	}
	select {
	case e.inbox <- in:
		return nil
	case <-e.done:
		return e.stoppedErr()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *Engine) stoppedErr() error {
	return stoppedBy(e.err)
}

// replyChans are reply channels for Submit, which is the hot path: a
// channel goes back to the pool only once its one reply was received.
var replyChans = sync.Pool{New: func() any { return make(chan machine.Reply, 1) }}

func (e *Engine) await(ctx context.Context, ch chan machine.Reply) (machine.Reply, error) {
	r, _, err := e.awaitReply(ctx, ch)
	return r, err
}

// awaitReply waits for the reply on ch; received reports whether it came.
func (e *Engine) awaitReply(ctx context.Context, ch chan machine.Reply) (r machine.Reply, received bool, err error) {
	select {
	case r := <-ch:
		return r, true, r.Err
	case <-e.done:
		select {
		case r := <-ch:
			return r, true, r.Err
		default:
		}
		return machine.Reply{}, false, e.stoppedErr()
	case <-ctx.Done():
		return machine.Reply{}, false, ctx.Err()
	}
}

// Submit validates and stores a task. It returns once the task is durable
// (fsynced). Resubmitting the same spec under the same id is a no-op
// (Duplicate); a different spec under an existing id is ErrConflict. An
// invalid spec is a *ValidationError naming the field.
func (e *Engine) Submit(ctx context.Context, spec TaskSpec) (SubmitResult, error) {
	r, err := e.submit(ctx, spec, false)
	return r.Submit, err
}

// SubmitView is Submit returning the task's view as of its submission
// (for a duplicate, as of the resubmission). It is durable when SubmitView
// returns, as Submit's answer is; Task called after Submit may wait for
// one more fsync, as the loop has often stepped further by then. An input
// kept in the payload store is not read back into the view: its
// Spec.InputRef names it (Task reads it).
func (e *Engine) SubmitView(ctx context.Context, spec TaskSpec) (SubmitResult, TaskView, error) {
	r, err := e.submit(ctx, spec, true)
	if err != nil || r.View == nil {
		return r.Submit, TaskView{}, err
	}
	return r.Submit, *r.View, nil
}

func (e *Engine) submit(ctx context.Context, spec TaskSpec, view bool) (machine.Reply, error) {
	// Normalize is a pure function of the spec: run it here, beside the
	// caller, rather than in the loop that every submission goes through.
	if err := spec.Normalize(); err != nil {
		return machine.Reply{}, err
	}
	ref, err := e.spill(&spec)
	if err != nil {
		return machine.Reply{}, err
	}
	ch := replyChans.Get().(chan machine.Reply)
	if err := e.send(ctx, &machine.SubmitInput{Spec: spec, Reply: ch, Normalized: true, View: view}); err != nil {
		replyChans.Put(ch)
		if ref != "" {
			e.payloads.Unpin(ref) // the loop never saw it
		}
		return machine.Reply{}, err
	}
	r, received, err := e.awaitReply(ctx, ch)
	if received {
		replyChans.Put(ch) // its one reply was taken: nothing is sent on it again
	}
	if r.View != nil {
		// Outputs (a duplicate of a task that ran); the input stays named
		// by Spec.InputRef (the caller has it; Task reads it back).
		e.resolveView(r.View, false)
	}
	return r, err
}

// SubmitMany submits specs together: one input to the loop, handled in
// one tick (so in one WAL frame and one fsync), answered once that tick is
// durable. results[i] and errs[i] are what Submit would return for
// specs[i]; err is set when none could be submitted (the engine stopped,
// ctx ended).
func (e *Engine) SubmitMany(ctx context.Context, specs []TaskSpec) (results []SubmitResult, errs []error, err error) {
	results, errs = make([]SubmitResult, len(specs)), make([]error, len(specs))
	ch := make(chan machine.Reply, len(specs))
	in := make(machine.SubmitManyInput, 0, len(specs))
	index := make([]int, 0, len(specs)) // in[k] is specs[index[k]]
	for i, spec := range specs {
		if errs[i] = spec.Normalize(); errs[i] != nil {
			continue
		}
		if _, errs[i] = e.spill(&spec); errs[i] == nil {
			in = append(in, machine.SubmitInput{Spec: spec, Reply: ch, Normalized: true})
			index = append(index, i)
		}
	}
	if len(in) == 0 {
		return results, errs, nil
	}
	if err := e.send(ctx, in); err != nil {
		e.unpinHandled([]any{in}) // the loop never saw them
		return nil, nil, err
	}
	for _, i := range index {
		r, received, err := e.awaitReply(ctx, ch)
		if !received {
			return nil, nil, err // stopped or ctx ended before the answer
		}
		results[i], errs[i] = r.Submit, r.Err
	}
	return results, errs, nil
}

// Cancel cancels a task: its scheduled, ready and retry-waiting runs at
// once (durably, before Cancel returns); running attempts get their
// context cancelled and end as canceled. Canceling a final task is a no-op.
func (e *Engine) Cancel(ctx context.Context, id TaskID, reason string) error {
	ch := make(chan machine.Reply, 1)
	if err := e.send(ctx, machine.CancelInput{Task: id, Reason: reason, Reply: ch}); err != nil {
		return err
	}
	_, err := e.await(ctx, ch)
	return err
}

// Pause stops dispatching new attempts (durably); running ones go on.
func (e *Engine) Pause(ctx context.Context) error { return e.setPaused(ctx, true) }

// Resume undoes Pause.
func (e *Engine) Resume(ctx context.Context) error { return e.setPaused(ctx, false) }

func (e *Engine) setPaused(ctx context.Context, p bool) error {
	ch := make(chan machine.Reply, 1)
	if err := e.send(ctx, machine.PauseInput{Pause: p, Reply: ch}); err != nil {
		return err
	}
	_, err := e.await(ctx, ch)
	return err
}

// Drain stops starting attempts and waits until none is in flight or the
// timeout passes. It returns the number of attempts still running.
func (e *Engine) Drain(timeout time.Duration) (int, error) {
	ch := make(chan struct{})
	if err := e.send(context.Background(), drainInput{on: true, reply: ch}); err != nil {
		return 0, err
	}
	select {
	case <-ch:
	case <-e.done: // send may queue into the inbox of a loop that already ended
		return 0, e.stoppedErr()
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		changed := e.changedCh()
		e.mu.RLock()
		n := e.state.Inflight
		e.mu.RUnlock()
		if n == 0 {
			return 0, nil
		}
		select {
		case <-changed:
		case <-e.done:
			return n, e.stoppedErr()
		case <-deadline.C:
			return n, nil
		}
	}
}

// RunUntilIdle waits until the engine has nothing to do at the current
// time: no queued input, no attempt in flight, nothing due. For tests with
// a ManualClock: advance the clock, then RunUntilIdle.
func (e *Engine) RunUntilIdle(ctx context.Context) error {
	for {
		ch := make(chan idleReply, 1)
		if err := e.send(ctx, idleProbe{reply: ch}); err != nil {
			return err
		}
		var r idleReply
		select {
		case r = <-ch:
		case <-e.done:
			return e.stoppedErr()
		case <-ctx.Done():
			return ctx.Err()
		}
		if r.idle {
			return nil
		}
		select {
		case <-r.next:
		case <-e.done:
			return e.stoppedErr()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close stops the loop, cancels running attempts, waits for the workers
// and closes the WAL. Attempts cut short are closed as lost on the next
// Open and retried under their policy.
func (e *Engine) Close() error {
	select {
	case <-e.done:
	default:
		select {
		case e.stop <- struct{}{}:
		case <-e.done:
		}
		<-e.done
	}
	e.workers.Wait()
	e.stopCollector()
	err := e.out.Close()
	if e.err != nil {
		return e.err
	}
	return err
}

// Err returns the fatal error that stopped the loop, if any.
func (e *Engine) Err() error {
	select {
	case <-e.done:
		return e.err
	default:
		return nil
	}
}

// DiskStatus reports the data dir's disk as the engine sees it: whether new
// submissions are refused for lack of space, the free space at the last
// check, and how many such episodes there were.
func (e *Engine) DiskStatus() DiskStatus { return e.disk.status() }

// DiskFull returns the *DiskFullError that new submissions get while the
// disk is full, nil otherwise: the API refuses a request with it before
// reading the body.
func (e *Engine) DiskFull() error { return e.disk.refused() }

// Recovery reports what Open did.
func (e *Engine) Recovery() RecoveryInfo { return e.recovery }

// WALStats returns the WAL's counters since Open (appends, fsyncs, bytes).
func (e *Engine) WALStats() segwal.Stats {
	if e.wal == nil {
		return segwal.Stats{}
	}
	return e.wal.Stats()
}
