// Package dispatch is the wasmtask engine: it turns submitted tasks into
// exactly the runs their policy implies, hands attempts to a bounded pool of
// executors, retries within limits, and after a crash comes back with every
// acknowledged task. It knows segwal and nothing of WebAssembly: it never
// imports host or wazero; host implements the Executor interface defined here.
//
// The state machine itself (model, events, State, the reducer, the
// workflow rules and Core) lives in dispatch/machine, which does no I/O;
// this package is the engine around it: the loop, the committer, the
// executor pool, readers, snapshot files and recovery. The model's names
// are aliased here (TaskSpec, Run, Event, ...), so callers use dispatch
// alone.
//
// # Usage
//
//	e, err := dispatch.Open(dispatch.Config{Dir: dir, Executor: ex, Workers: 8})
//	res, err := e.Submit(ctx, dispatch.TaskSpec{Handler: "resize", Input: in, MaxAttempts: 3})
//	view, err := e.Wait(ctx, res.Task)
//	err = e.Close()
//
// # Model
//
// A Task is a submitted TaskSpec. Its run policy creates Runs: once = 1,
// repeat{count, every} = count runs due every interval (cron arrives with
// workflows). A Run moves scheduled -> ready -> leased -> running ->
// completed | failed | retry_wait -> ready ...; canceled from any non-final
// state. An attempt reports its start (leased -> running) once it has run
// for a millisecond: a shorter one goes from leased to its outcome, its
// result carrying when it started (runner.go). Retries are Attempts of the same run, never new runs. At most
// max_attempts attempts of a run end with the handler's (or the host's)
// verdict; an attempt that ends lost (the engine stopped or crashed while
// it ran, or its lease expired) does not count against max_attempts, so a
// crash never fails a task that was still owed a try. A run's
// MaxLostAttempts-th (5th) lost attempt fails it, naming the limit, so a
// handler that takes the engine down with it is not retried forever.
// Times are unix milliseconds.
//
// # The loop, step by step
//
// Engine.loop is the only goroutine that changes State and the only writer
// of the WAL. Each tick:
//
//  1. Wait for a submission, a worker report (started, finished,
//     heartbeat), a control call, or the timer for the next due time.
//     There is no polling.
//  2. Drain everything else already queued (up to Config.MaxBatch).
//  3. Core.Step(now, inputs): close attempts lost by a previous process
//     (first tick only), handle inputs, expire leases, promote due runs,
//     lease ready runs by (priority desc, due time, submission order) up to
//     the free workers, drop final tasks past retention. Every change is an
//     Event, applied through the reducer as it is decided.
//  4. Encode the tick's events and queue the tick for the committer.
//     Its attempts start once the tick's events are written (see below):
//     at the end of the tick, or, while more inputs are queued, with the
//     next ticks' (one write for up to four ticks); with DurableLeases
//     (and, on a replicated Log, those of tasks whose submission is not
//     yet committed) they wait for the tick's fsync.
//  5. The committer, whenever it is free, takes every queued tick itself
//     (it does not wait for the loop to finish the tick it is stepping),
//     writes their events as one segwal.Append (one frame, not yet
//     fsynced); while it is busy the loop goes on stepping (writing a
//     frame itself every 512 events, so the write overlaps the fsync in
//     flight).
//  6. The committer fsyncs (segwal.Commit: one fsync for every tick
//     written, a group commit), then releases the ticks in order: replies
//     (a Submit returns only now), cancels of running attempts, attempts
//     to start, Wait wake-ups. If the fsync fails nothing of those ticks is
//     released and the engine stops (Err).
//  7. Meanwhile the loop maybe snapshots, arms the timer for the next due
//     time and goes on with the next tick: its CPU time and the disk's
//     latency overlap rather than add up, and the ticks stepped during one
//     fsync share the next.
//
// # Attempts start before their lease is durable
//
// An attempt starts as soon as the loop has leased it and written the
// lease (and, for a new task, its submission: the same tick) to the WAL,
// without waiting for the fsync, so no fsync lies in the worker's cycle
// nor between a submission and its first attempt (a waiting client then
// waits for one fsync, or two in a row only when the attempt outlasts the
// first; it waited for two, plus two goroutine hand-offs, at 1,000
// tasks/s) (with few
// workers the fsync wait, not the engine, bounded the rate); and while
// attempts are short the loop leases ahead of the workers (see Capacity),
// so a worker that finished one takes the next from a queue without
// waiting for a tick. While inputs are queued, the leases of up to four
// ticks share one write; the attempts start right after it. The
// guarantees hold:
//
//   - Nothing is acknowledged or visible before it is durable: replies,
//     Wait wake-ups and readers still wait for the fsync of what they see.
//     An attempt's result is handled in a later tick than its lease, and
//     frames are durable in order, so a durable result implies a durable
//     lease; children are committed in the frame of their parent's success.
//   - A handler never runs for a task a crash of the process could take
//     back: its submission is written (in its own tick, or a parent's for
//     a child) before its first attempt starts, and a crash of the process
//     keeps what was written. A crash of the machine (or a failed fsync,
//     which stops the engine) before that fsync can take back a task whose
//     handler ran; its submitter got no 2xx and submits it again, so the
//     handler runs at least once for every acknowledged task and may have
//     run for one that was never acknowledged (the task id is the key;
//     children, whose ids derive from the parent's run, come back with
//     the parent's retried attempt). On a replicated Log (cluster) an
//     entry in flight can be dropped by a change of leader: there a
//     task's attempts start only once its submission is committed.
//   - Crash = lost attempt, not lost task: the lease is written before the
//     attempt starts, and a crash of the process (kill -9, OOM kill, a
//     panic) keeps what it wrote, so recovery finds the lease and closes the
//     attempt as lost, counted against the lost-attempt budget, as when the
//     lease was fsynced first (TestCrash: no attempt ever runs twice). Only
//     a crash of the machine before the fsync can lose the lease; the run,
//     ready again, then runs that attempt again under the same number.
//     Handlers run at least once either way; the run id is the idempotency
//     key.
//   - Config.DurableLeases (serve --durable-leases) starts each attempt
//     only once its lease (and its task's submission) is fsynced, for
//     handlers that must never run an attempt twice, nor for a task never
//     acknowledged, even across a power loss, at the cost of one fsync
//     wait per attempt. TestCrash runs in both modes.
//
// Deviation from the usual order (append, then apply):
// Step applies each event as it derives it, because later decisions in the
// same tick depend on earlier ones (a run created by a submission is leased
// in the same tick), and the next tick is stepped on state whose fsync may
// still be in flight. That is safe because nothing decided leaves the
// engine before its frame is durable, frames are durable in order, and a
// failed append or fsync stops the engine, so no caller can act on state
// that is not durable. Likewise docs/architecture.md's "one tick, one frame, one
// fsync" became "the ticks stepped during one fsync: one frame (or one per
// 512 events), one fsync": the loop no longer waits for the disk between
// ticks, and a frame never holds part of a tick. Readers (Task, List, Wait,
// Stats) see the state under a read lock the loop takes only while
// stepping, then wait until what they saw (up to State.Applied) is durable:
// they never return a state a crash could take back, and wait at most about
// one fsync. A snapshot likewise waits until the tick it captured is
// durable before it is written.
//
// # Workflows
//
//   - after: a task's runs stay scheduled until every prerequisite
//     completed. A prerequisite that fails or is canceled cancels its
//     dependents, transitively, in the same tick. Engine.After declares more
//     prerequisites before the first attempt, all or nothing, checked for
//     cycles against the whole graph (findCycle names the path).
//   - children: specs in Result.Children are committed before the attempt's
//     success, in the same frame; ids derive from (run, ordinal), so a
//     retried parent creates none twice. A parent is waiting_children until
//     its children are final; it fails if one failed, unless it set
//     tolerate_child_failures. Cancel cancels the subtree. Depth is at most
//     MaxDepth, children per attempt at most MaxChildren.
//   - cron: a rolling window of CronWindow scheduled runs; max_runs ends the
//     task; after downtime, misfire "skip" (default) runs only the latest
//     missed occurrence, "catch_up" every one (at most MaxCatchUp).
//   - concurrency keys: a key is held by one run from its lease until the
//     run is final (so through retry_wait); ready runs blocked on a held key
//     are parked beside the key and do not block other runs.
//
// Gating, hierarchy, finality and key holds are derived from durable state
// by apply and rebuilt by reindex after a snapshot load (machine/workflow.go), so
// they hold after a restart.
//
// # Capacity
//
// The attempts that run at once are bounded by Config.Workers, or by
// Engine.SetCapacity once called: a server with remote workers (api.Broker)
// sets it to its own workers plus the connected workers' slots as they come
// and go. While attempts are short (a mean run time under 1 ms), the
// engine leases ahead of that bound (leaseahead.go): up to about 1 ms of
// work more, at most 16 times the bound, waits leased in the runners'
// queue, so that a runner finishing an attempt starts the next at once
// instead of waiting for a tick, and a tick steps many results and leases.
// Stats.InFlight counts those leases too, and a crash closes them as lost
// like any lease; a run that becomes ready meanwhile, of any priority,
// waits for them (about 1 ms); an attempt's timeout counts from its start,
// and the loop renews the lease of an attempt that waits in the queue for
// half the lease grace, as a heartbeat would. Config.Runnable says whether anyone can run a handler now; a
// ready run it refuses is set aside (not leased, so its timeout does not
// start) and comes back at the next SetCapacity. Result.Worker, when an
// executor sets it, names who ran the attempt in place of the slot name.
//
// Attempts released together wake idle runners a few at a time (runner.go
// wakeNext): while one runner per processor is being woken, the others
// wait in the queue; a runner woken wakes the next as it takes its
// attempt, and runners already awake take queued attempts as they finish.
// Short attempts then run on the few runners awake instead of costing a
// goroutine wake each (a quarter of the no-op engine's rate with 1,024
// workers), and long ones still all run at once up to the bound, each
// started a wake after the one before.
//
// # Recovery
//
// Open loads the newest intact snapshot (falling back to an older one, or
// to the WAL alone when it still starts at 1) and replays the WAL tail
// through apply, the same reducer the loop uses. The first tick then closes
// every attempt that was leased or running at the crash as lost and retries
// it (a lost attempt does not use max_attempts; the run fails at its
// MaxLostAttempts-th lost attempt). Handlers therefore run at least once;
// the run id is the idempotency key for their side effects. WALs written
// before this rule replay unchanged: apply accepts a retry the earlier
// rule (every attempt counted) allowed, and each event records its
// decision.
//
// # Snapshots and retention
//
// Every Config.SnapshotEvery events, and no sooner than SnapshotStateRatio
// (4) events per task and run in the state, or every SnapshotEveryBytes of
// records (and no sooner than the ratio times the last snapshot's size),
// counted from the last snapshot's sequence (so across restarts: what Open
// replays is what counts; a snapshot that fails to be written leaves the
// count as it was and is retried a tenth of the interval later), the loop
// captures the state (final
// tasks by pointer, as they no longer change; the others by copy); another
// goroutine encodes it, compresses it as it goes and writes
// snap-<seq>.snap atomically (tmp, fsync,
// rename, dir fsync, CRC32C checked on load), keeps Config.SnapshotRetain of
// them, and truncates WAL segments that the oldest kept snapshot covers.
// Final tasks are dropped (EvTaskDropped) after Config.RetainFor or beyond
// Config.RetainCount, so memory, disk and recovery time stay bounded.
//
// The ratio trades the cost of snapshots against recovery time. A snapshot
// encodes every task and run the state holds (100k retained tasks by
// default, final ones included), so at ratio R it costs about 1/R of an
// encoded task or run per event; a no-op task writes about 4 events and
// holds a task and a run, so at R = 4 each task submitted pays for
// re-encoding about one object (half a task with its run), at R = 2 twice
// that, which was about a tenth of the engine's CPU at 256 submitters.
// Recovery loads the newest snapshot and replays at most R events per task
// and run of the state (plus what a tick holds), so its worst case grows
// with R but stays proportional to the state, never to the history: with
// 100k retained no-op tasks, at most ~800k events (~2 s of CPU on a 2-core
// machine under load; BenchmarkRecovery) at R = 4, half that at R = 2.
// SnapshotEvery (100k events) is the floor below which nothing is
// snapshotted, SnapshotEveryBytes bounds the replay of a WAL of few large
// records, and Engine.Snapshot writes one at once (before a planned
// restart).
//
// # Payloads
//
// An input or output larger than Config.InlinePayloadBytes (16 KiB; 1 KiB,
// SmallPayloadBytes, once the inline payloads held take half of
// MaxPayloadMemory, counted again at each snapshot) is not kept in the WAL
// record or the state: Submit (SubmitMany: a batch's inputs together;
// the worker, for an output) writes it to the payload store (Dir/payloads, package payload:
// content-addressed, fsynced and renamed into place) before the event
// naming it (TaskSpec.InputRef, Attempt.OutputRef) is written, so a
// durable reference always names a durable file. A runner reads the input
// when its attempt starts; Task, Wait and List read outputs (Task inputs
// too) outside the state lock. A payload is pinned from its write until the
// loop has stepped the input naming it; a snapshot begins a sweep when it
// captures the state and, once written, removes every file that neither
// the capture nor a pin nor a later write names. Recovery checks that every
// named file exists with its size; an attempt whose input is damaged fails
// for good naming the file. Config.MaxPayloadMemory bounds the payload
// bytes held for work in progress (AdmitPayload: the API's 429; running
// attempts' inputs; outputs on their way to the store), and every quarter
// of it freed starts a collection, so payload garbage does not grow with
// the GC's multiple of the live heap. Logs whose payloads were written
// inline replay unchanged. Not spilled (inline at any size, so the bound
// above does not cover them): children's inputs (they come encoded in a
// Result), attempts' logs (bounded per attempt by the host's LogBytes),
// and every payload when Config.Log is set (cluster mode: the log is all
// a replica gets).
//
// # Disk faults
//
// A full disk is a degraded mode, not a stop (diskguard.go). The free
// space of Dir's filesystem is read every Config.DiskCheckEvery; below
// Config.MinFreeDisk, or once a WAL, snapshot or payload write failed with
// ENOSPC, Submit, SubmitMany and Retry return a *DiskFullError
// (ErrDiskFull) naming the directory and the free space, while reads,
// cancels and the work already accepted go on: segwal keeps 1 MiB of
// preallocated headroom beyond its data, and the frames of running
// attempts land there. One log line starts an episode and one ends it:
// once free space is back above the threshold (plus a sixteenth, against
// flapping) and the WAL's headroom is restored, submissions are accepted
// again, without a restart. A frame that does not fit even the headroom
// is kept and its Append retried every check (waitForSpace); meanwhile
// every input to the loop is refused and readers answer from memory
// without waiting for those ticks, which are not acknowledged until they
// are written. An fsync error is not retried: after a failed fsync the
// kernel may have dropped the pages, so nothing says what the disk holds.
// The engine stops (Err), nothing of the ticks in that fsync is
// acknowledged, and reads keep answering from memory (which may show those
// unacknowledged ticks) until the process restarts and recovers.
//
// # Errors
//
// Submit returns a *ValidationError naming the field, ErrConflict for a
// different spec under an existing id, a *DiskFullError while the disk is
// full, or ErrStopped. apply returns an
// *InvariantError for an event that does not fit the state (a bug or a
// damaged log); the loop stops the engine rather than panic.
package dispatch
