package dispatch

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/wasmtask/wasmtask/dispatch/payload"
	"github.com/wasmtask/wasmtask/segwal"

	"github.com/wasmtask/wasmtask/dispatch/machine"
)

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
	async   AsyncExecutor // cfg.Executor, when it takes attempts without a runner waiting (runner.go)

	changedMu sync.Mutex
	changed   chan struct{} // closed and replaced after every commit

	// The committer (commitLoop) fsyncs appended ticks and releases them.
	commitWake    chan struct{}       // cap 1: ticks are pending (or the loop stopped)
	committing    atomic.Bool         // the committer is fsyncing
	early         []Job               // loop-owned: a tick's early starts, on their way to pending
	earlyTicks    int                 // loop-owned: ticks whose early starts wait for the next write
	encBuf        []byte              // loop-owned: a tick's encoded events, before they join pending
	encEnds       []int               // loop-owned: where each of them ends in encBuf
	pending       pendingTicks        // ticks stepped, not yet durable (commit.go)
	spareArrays   chan releasedArrays // back from the committer, for the next Steps
	committerDone chan struct{}
	commitFailed  chan struct{} // closed when an fsync failed; commitErr says why
	commitErr     error         // written by the committer before closing commitFailed
	durable       atomic.Uint64 // the WAL is on disk up to here
	groupCommit   bool          // Config.WAL.Sync is SyncAlways: fsync each commit
	stopping      atomic.Bool

	cancelsMu sync.Mutex
	cancels   map[RunID]*attemptCtx // contexts of attempts in flight
	workers   sync.WaitGroup
	err       error // fatal error that stopped the loop (set before done closes)
	recovery  RecoveryInfo

	pool runPool // the runners and the attempts waiting for one (runner.go)
	// Lease-ahead (leaseahead.go): the runners count the attempts they ran
	// and their time; the loop sets leaseAhead from their mean.
	runCount, runNanos atomic.Int64
	leaseAhead         int   // loop-owned: attempts leased beyond the runner bound, in sixteenths of it
	aheadCount         int64 // loop-owned: runCount and runNanos at the last decision
	aheadNanos         int64
	watch              attemptWatch // the runners' start reports and deadlines (watch.go)
	watching           atomic.Bool  // the watcher goroutine was started
	epoch              time.Time    // Engine.mono counts from here

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
		cancels: map[RunID]*attemptCtx{},
		watch:   newAttemptWatch(), epoch: time.Now(),
		// One group of ticks is committed at a time; the committer takes
		// the next (pending) as soon as it is free.
		commitWake: make(chan struct{}, 1), spareArrays: make(chan releasedArrays, 4), committerDone: make(chan struct{}), commitFailed: make(chan struct{}),
		groupCommit: cfg.Log != nil || cfg.WAL.Sync == segwal.SyncAlways,
		snapshots:   &snapshotter{dir: filepath.Join(cfg.Dir, "snapshots"), retain: cfg.SnapshotRetain},
		payloads:    payloads, budget: payload.NewBudget(cfg.MaxPayloadMemory),
		disk: newDiskGuard(cfg.Dir, cfg.minFreeDisk(), cfg.DiskCheckEvery, cfg.Logger, cfg.freeSpace),
		poke: make(chan struct{}, 1),
	}
	e.capacity.Store(-1)
	if ax, ok := cfg.Executor.(AsyncExecutor); ok && ax.Async() {
		e.async = ax // runner.go: asked once, not per attempt
	}
	if wal != nil {
		e.out = wal
	}
	return e
}

func (e *Engine) setState(state *State) {
	e.state = state
	e.durable.Store(state.Applied)
	e.core = machine.NewCore(state, machine.CoreConfig{
		Workers: e.leaseBound(), Node: e.cfg.Node, LeaseGrace: e.cfg.LeaseGrace.Milliseconds(),
		RetainMs: e.cfg.RetainFor.Milliseconds(), RetainCount: e.cfg.RetainCount, Rand: e.cfg.Rand,
		ValidateHandler: e.cfg.ValidateHandler, Runnable: e.cfg.Runnable,
	}, ulidEntropy())
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
