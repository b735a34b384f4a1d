package dispatch

import (
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"time"

	"github.com/wasmtask/wasmtask/segwal"
)

// DefaultWorkersText says what DefaultWorkers returns, for help texts and
// docs (serve --workers, wasmtask worker --concurrency).
const DefaultWorkersText = "4 per core, at least 16"

// DefaultWorkers is the number of attempts one process runs at once unless
// told otherwise: Config.Workers, serve --workers, wasmtask worker
// --concurrency and the host's idle instances all default to it. More
// attempts than cores pay off for handlers that wait (an http_request, a
// slow downstream) and cost little for those that compute (they share the
// cores); the floor of 16 keeps a small machine's pool from waiting on
// fsyncs (an attempt's lease and result each wait for one unless leased
// ahead).
func DefaultWorkers() int { return max(16, 4*runtime.GOMAXPROCS(0)) }

// Config configures an Engine. Zero values are defaults.
type Config struct {
	// Dir is the data directory: the WAL lives in Dir/wal, snapshots in
	// Dir/snapshots. Required.
	Dir string
	// Executor runs attempts. Required.
	Executor Executor
	// Workers bounds the attempts in flight. Default DefaultWorkers().
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
	// state too: raising it makes snapshots rarer and recovery longer
	// (doc.go, "Snapshots and retention"). Default 4; negative:
	// SnapshotEvery alone decides.
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
	// DurableLeases starts an attempt only once its lease (and its task's
	// submission) is durable. By default an attempt starts as soon as its
	// lease, and for a new task its submission, is written, while the
	// fsync is under way: a crash of the process keeps what was written
	// (the attempt is closed as lost, as usual), but a crash of the machine
	// before the fsync can lose it, and the attempt then runs again under
	// the same number (or, for a submission lost, after its submitter,
	// never acknowledged, submits it again). Set DurableLeases when that
	// must never happen; each attempt then waits for one fsync before it
	// starts (dispatch/doc.go, "Attempts start before their lease is
	// durable").
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
		c.Workers = DefaultWorkers()
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
		c.SnapshotStateRatio = 4
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
