package dispatch

import (
	"fmt"
	"strings"
	"time"

	"github.com/wasmtask/wasmtask/dispatch/machine"
)

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

// earlyDeferTicks bounds the ticks whose early starts wait for one write.
const earlyDeferTicks = 4

// writeFrame writes the pending records as one WAL frame (not fsynced),
// then starts the attempts whose leases it wrote that start early.
func (e *Engine) writeFrame() error {
	p := &e.pending
	if len(p.records) == 0 {
		e.startEarly()
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
	e.startEarly()
	return nil
}

// startEarly starts the attempts of e.early, whose leases are written.
func (e *Engine) startEarly() {
	if len(e.early) > 0 && !e.stopping.Load() {
		for _, job := range e.early {
			e.start(job)
		}
	}
	clear(e.early)
	e.early, e.earlyTicks = e.early[:0], 0
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

// splitEarly moves out of starts, to e.early, the attempts to start before
// the tick is durable, once their leases are written (writeFrame): those
// whose task's submission is durable (all but tasks submitted in ticks
// still waiting for their fsync), unless Config.DurableLeases. The
// committer starts the others once the tick is durable. The WAL orders
// each attempt's result after its lease, so a durable result implies a
// durable lease.
func (e *Engine) splitEarly(starts []Job) (later []Job) {
	if e.cfg.DurableLeases || len(starts) == 0 {
		return starts
	}
	if g, ok := e.out.(EarlyStartGate); ok && !g.EarlyStartOK() {
		return starts
	}
	durable := e.durable.Load()
	later = starts[:0]
	for _, job := range starts {
		if job.TaskSeq() <= durable {
			e.early = append(e.early, job)
		} else {
			later = append(later, job)
		}
	}
	clear(starts[len(later):])
	return later
}

// committedTick is what a tick releases once its events are durable.
type committedTick struct {
	seq     uint64 // the tick's last WAL sequence (the previous tick's if it wrote none)
	acks    []machine.Ack
	cancels []RunID
	starts  []Job
	finals  []TaskID // tasks that became final: their Wait calls wake
	// finalViews: views of finals as of the tick, for their Wait calls
	// (finalViews in view.go)
	finalViews []*TaskView
	probes     []chan idleReply
	idle       bool
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
			if ctx, ok := e.cancels[id]; ok {
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
		var r machine.ResultInput
		switch in := in.(type) {
		case machine.ResultInput:
			r = in
		case *machine.ResultInput:
			r = *in
		default:
			continue
		}
		if ctx, ok := e.cancels[r.Run]; ok && cancelOwner(e, r) {
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
