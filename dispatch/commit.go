package dispatch

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/wasmtask/wasmtask/dispatch/machine"
)

// pendingTicks are ticks stepped but not yet fsynced: those whose events
// are encoded but not written (the loop adds them, pend), then those
// written, waiting for the committer's next fsync. The committer takes
// them itself as soon as it is free (flush, then commit): it does not wait
// for the loop to finish the tick it is stepping (it waited for that, a
// third to a half of every fsync cycle, while the loop stepped a tick of
// 40 tasks).
type pendingTicks struct {
	writeMu sync.Mutex // held from taking the records to their Append: frames in order

	mu      sync.Mutex
	ticks   []*committedTick // stepped, their records not yet written
	records [][]byte         // encoded events of those ticks
	buf     []byte           // holds records
	last    uint64           // the sequence of the last record
	early   []Job            // attempts to start once records are written (splitEarly)
	written []*committedTick // written, waiting for the committer's fsync
	closing bool             // the loop stopped: the committer commits what is written, then ends
	// the arrays of the last frame written, for the next ones
	spareRecords [][]byte
	spareBuf     []byte
	spareEarly   []Job
}

// frameEvents: events stepped while an fsync is in flight are written as
// a frame once they number this many, so that writing them overlaps the
// fsync; the rest are written when the committer is free again. A frame of
// 512 small records compresses about 6x (segwal benchmarks).
const frameEvents = 512

// pend queues a stepped tick for the committer: its events are encoded now
// (outside the lock the committer takes them under), written with the next
// frame, and committed by the next fsync (group commit): the committer,
// woken here, writes and fsyncs at once when free; otherwise they wait for
// the fsync in flight while the loop goes on stepping. early are attempts
// to start once the tick's events are written (splitEarly).
func (e *Engine) pend(tick *committedTick, events []Event, early []Job) error {
	enc := e.encBuf[:0]
	ends := e.encEnds[:0]
	for i := range events {
		var err error
		if enc, err = machine.AppendEvent(enc, &events[i]); err != nil {
			e.failPending(err)
			return fmt.Errorf("dispatch: engine stopped: encode event: %w", err)
		}
		ends = append(ends, len(enc))
	}
	e.encBuf, e.encEnds = enc, ends
	if len(events) > 0 {
		e.stats.events.Add(uint64(len(events)))
		e.sinceSnapshot += len(events)
		e.sinceSnapshotBytes += int64(len(enc))
		e.core.Recycle(events)
	}
	keep := len(events) > 0 || len(tick.acks) > 0 || len(tick.starts) > 0 || len(tick.cancels) > 0 ||
		len(tick.finals) > 0 || len(tick.probes) > 0
	p := &e.pending
	p.mu.Lock()
	if len(enc) > 0 {
		base := len(p.buf)
		p.buf = append(p.buf, enc...)
		start := base
		for _, end := range ends {
			p.records = append(p.records, p.buf[start:base+end:base+end])
			start = base + end
		}
		p.last = tick.seq
	}
	if keep {
		p.ticks = append(p.ticks, tick)
	}
	p.early = append(p.early, early...)
	records := len(p.records)
	p.mu.Unlock()
	if keep || len(early) > 0 {
		e.wakeCommitter()
	}
	if records >= frameEvents || (records > 0 && e.pipelines()) {
		// A replicated Log takes a tick's frame at once while it has room
		// in its pipeline: it commits it behind the entries in flight (a
		// round trip to the followers, not a local fsync, is what the next
		// tick would wait for).
		return e.flush()
	}
	return nil
}

// wakeCommitter tells the committer that ticks are pending.
func (e *Engine) wakeCommitter() {
	select {
	case e.commitWake <- struct{}{}:
	default: // a wake-up is pending
	}
}

// earlyDeferTicks bounds the ticks whose early starts wait for one write.
const earlyDeferTicks = 4

// flush writes the pending records as one WAL frame (not fsynced), queues
// their ticks for the committer's fsync and starts the attempts whose
// leases it wrote that start early. The loop and the committer both call
// it; writeMu keeps frames in order.
func (e *Engine) flush() error {
	p := &e.pending
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	select {
	case <-e.commitFailed:
		return e.commitErr
	default:
	}
	p.mu.Lock()
	records, buf, last, ticks, early := p.records, p.buf, p.last, p.ticks, p.early
	p.records, p.buf, p.early = p.spareRecords, p.spareBuf, p.spareEarly
	p.spareRecords, p.spareBuf, p.spareEarly, p.ticks = nil, nil, nil, nil
	p.mu.Unlock()
	var err error
	if len(records) > 0 {
		err = e.writeRecords(records, last)
	}
	if err != nil {
		failTicks(ticks, err)
	} else {
		e.startJobs(early)
	}
	clear(records)
	clear(early)
	p.mu.Lock()
	if err == nil {
		p.written = append(p.written, ticks...)
	}
	p.spareRecords, p.spareBuf, p.spareEarly = records[:0], buf[:0], early[:0]
	p.mu.Unlock()
	return err
}

// writeRecords appends records, the last of which should get sequence
// last, as one frame.
func (e *Engine) writeRecords(records [][]byte, last uint64) error {
	got, err := e.out.Append(records...)
	if err != nil && IsNoSpace(err) {
		got, err = e.waitForSpace(err, records)
	}
	if e.wal != nil && e.disk.full.Load() == nil {
		if ns := e.wal.NoSpace(); ns != nil {
			e.disk.enter(ns) // written into the WAL's headroom: refuse new work now
		}
	}
	if err == nil && got != last {
		err = fmt.Errorf("the WAL gave the events sequences up to %d, the state expects %d", got, last)
	}
	if err != nil {
		if e.wal == nil {
			return fmt.Errorf("dispatch: engine stopped: write log: %w", err)
		}
		return fmt.Errorf("dispatch: engine stopped: write WAL: %w", err)
	}
	e.stats.appends.Add(1)
	return nil
}

// startJobs starts attempts whose leases are written (early starts).
func (e *Engine) startJobs(jobs []Job) {
	if len(jobs) > 0 && !e.stopping.Load() {
		for _, job := range jobs {
			e.start(job)
		}
	}
}

// waitForSpace retries the Append of records, which failed for lack of
// space (err), every DiskCheckEvery until it succeeds or the engine is
// closed. Meanwhile new submissions are refused, every other input to the
// loop fails with the *DiskFullError, and reads answer from memory without
// waiting for these records to be durable (the ticks are not acknowledged:
// a crash before space returns loses them, as it would any tick not yet
// fsynced).
func (e *Engine) waitForSpace(err error, records [][]byte) (uint64, error) {
	e.disk.enter(err)
	e.disk.stalled.Store(true)
	defer e.disk.stalled.Store(false)
	e.broadcast() // readers waiting for these ticks: stop waiting
	e.log.Warn("dispatch: a WAL write failed for lack of space: retrying until space is freed", "events", len(records), "err", err)
	retry := time.NewTicker(e.cfg.DiskCheckEvery)
	defer retry.Stop()
	for {
		select {
		case <-retry.C:
		case <-e.stop:
			return 0, fmt.Errorf("closed while the disk was full (%d events were not written; none was acknowledged): %w", len(records), err)
		case <-e.commitFailed:
			return 0, fmt.Errorf("the engine stopped while the disk was full (%d events were not written; none was acknowledged): %w", len(records), err)
		}
		var last uint64
		if last, err = e.out.Append(records...); err == nil {
			e.log.Info("dispatch: the WAL write that waited for space succeeded", "events", len(records))
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

// failPending fails the callers of ticks not yet written: their events
// will never be durable.
func (e *Engine) failPending(err error) {
	p := &e.pending
	p.mu.Lock()
	ticks := p.ticks
	p.ticks = nil
	clear(p.records)
	p.records, p.buf = p.records[:0], p.buf[:0]
	clear(p.early)
	p.early = p.early[:0]
	p.mu.Unlock()
	failTicks(ticks, err)
}

func failTicks(ticks []*committedTick, err error) {
	for _, t := range ticks {
		for _, a := range t.acks {
			a.To <- machine.Reply{Err: stoppedBy(err)}
		}
	}
}

// splitEarly moves out of starts, into early, the attempts to start before
// the tick is durable, once their leases are written (flush), unless
// Config.DurableLeases: on the local WAL every attempt, also one of a task
// submitted in a tick still waiting for its fsync (the written frame holds
// the submission and the lease, and a crash of the process keeps it); on a
// replicated Log those whose task's submission is durable (committed),
// since an entry in flight can be dropped by a change of leader. The
// committer starts the others once the tick is durable. The WAL orders
// each attempt's result after its lease and its task's submission, so a
// durable result implies both are durable.
func (e *Engine) splitEarly(starts, early []Job) (later, early2 []Job) {
	if e.cfg.DurableLeases || len(starts) == 0 {
		return starts, early
	}
	if g, ok := e.out.(EarlyStartGate); ok && !g.EarlyStartOK() {
		return starts, early
	}
	if e.wal != nil {
		// A submission no longer waits for its fsync and a second
		// goroutine hand-off before its attempt starts: at 1,000 tasks/s
		// that chain (fsync, release, runner wake) came before the
		// result's own tick and fsync, so a waiting client waited for two
		// fsyncs in a row; now the result is mostly ready when the first
		// ends (and shares it when the committer was busy).
		early = append(early, starts...)
		clear(starts)
		return starts[:0], early
	}
	durable := e.durable.Load()
	later = starts[:0]
	for _, job := range starts {
		if job.TaskSeq() <= durable {
			early = append(early, job)
		} else {
			later = append(later, job)
		}
	}
	clear(starts[len(later):])
	return later, early
}

// committedTick is what a tick releases once its events are durable.
type committedTick struct {
	seq     uint64 // the tick's last WAL sequence (the previous tick's if it wrote none)
	acks    []machine.Ack
	cancels []machine.AttemptRef
	starts  []Job
	finals  []TaskID // tasks that became final: their Wait calls wake
	// finalViews: views of finals as of the tick, for their Wait calls
	// (finalViews in view.go)
	finalViews []*TaskView
	probes     []chan idleReply
	idle       bool
}

// commitLoop is the committer: whenever it is free and ticks are pending,
// it writes them (flush), fsyncs every tick written (one fsync for every
// tick stepped since the previous one: group commit), and has them
// released in order. The loop meanwhile steps the next ticks, so its CPU
// time and the disk's latency overlap instead of adding up.
func (e *Engine) commitLoop() {
	defer close(e.committerDone)
	releases := make(chan []*committedTick, 2)
	released := make(chan struct{})
	go e.releaseLoop(releases, released)
	defer func() {
		close(releases)
		<-released
	}()
	p := &e.pending
	for {
		if e.commitErr == nil {
			if err := e.flush(); err != nil && e.commitErr == nil {
				e.commitErr = err
				close(e.commitFailed)
			}
		}
		p.mu.Lock()
		group := p.written
		p.written = nil
		closing := p.closing
		p.mu.Unlock()
		if len(group) == 0 {
			if closing {
				return
			}
			<-e.commitWake
			continue
		}
		e.committing.Store(true)
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
			failTicks(group, e.commitErr)
			e.committing.Store(false)
			continue // until the loop, seeing commitFailed, stops and closes
		}
		e.durable.Store(max(e.durable.Load(), seq))
		releases <- group
		e.committing.Store(false)
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
		for _, c := range t.cancels {
			if ctx, ok := e.cancels[c.Run]; ok && ctx.attempt == c.Attempt {
				ctx.cancel()
			}
		}
		e.cancelsMu.Unlock()
	}
	if !e.stopping.Load() { // attempts not started now are closed as lost on the next Open
		for _, job := range t.starts {
			e.start(job)
		}
	}
	e.wakeFinal(t.finals, t.finalViews)
	if cap(t.starts) > 0 || cap(t.acks) > 0 || cap(t.finals) > 0 {
		clear(t.starts)
		clear(t.acks)
		clear(t.finals)
		select {
		case e.spareArrays <- releasedArrays{starts: t.starts[:0], acks: t.acks[:0], finals: t.finals[:0]}:
		default:
		}
	}
}

// releasedArrays are a released tick's arrays, which the loop's next Step
// reuses rather than growing new ones every tick.
type releasedArrays struct {
	starts []Job
	acks   []machine.Ack
	finals []TaskID // State.JustFinal
}

// releaseFinished releases the contexts of attempts that finished in this
// tick. A context is released only by its own attempt's result: a stale
// result (a lost attempt's, after the run's next attempt started) must
// not cancel a newer attempt. The context names its attempt, so this needs
// no lookup in the state's run map (a cache miss per result).
func (e *Engine) releaseFinished(inputs []any) {
	e.cancelsMu.Lock()
	defer e.cancelsMu.Unlock()
	for _, in := range inputs {
		var r machine.ResultInput
		switch in := in.(type) {
		case machine.ResultInput:
			r = in
		case *machine.ResultInput:
			r = *in
		default:
			continue
		}
		if ctx, ok := e.cancels[r.Run]; ok && ctx.attempt == r.Attempt {
			ctx.cancel()
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

// stopLoop ends the loop: the committer commits the ticks stepped
// (without starting their attempts) unless err, then shutdown.
func (e *Engine) stopLoop(err error) {
	e.stopping.Store(true)
	if err != nil {
		e.failPending(err)
	}
	p := &e.pending
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	e.wakeCommitter()
	<-e.committerDone
	if err == nil {
		err = e.commitErr // the ticks' callers got it
	}
	e.shutdown(err)
}
