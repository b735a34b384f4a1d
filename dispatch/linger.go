package dispatch

import (
	"sync/atomic"
	"time"
)

// A linger lasts at most half the recent fsync time (what it may save is
// a whole fsync), within these bounds.
const (
	minLinger = 50 * time.Microsecond
	maxLinger = time.Millisecond
)

// lingerBackoff: after a linger that reached its bound (the attempts were
// not short), the committer does not linger for this many fsyncs.
const lingerBackoff = 8

// freshAttempts count the attempts started early whose task's submission
// was not yet durable (a new task, started once its tick was written), and
// those of them whose result the loop has stepped and pended since.
type freshAttempts struct {
	started atomic.Int64
	settled atomic.Int64
	waiting atomic.Bool   // the committer lingers: a settled attempt wakes it
	skip    int           // committer-owned: fsyncs left without lingering
	timer   *time.Timer   // committer-owned, reused
	fsync   time.Duration // committer-owned: the recent fsync time (moving average)
}

// observeFsync folds an fsync's duration into the recent fsync time.
func (f *freshAttempts) observeFsync(d time.Duration) {
	if f.fsync == 0 {
		f.fsync = d
		return
	}
	f.fsync += (d - f.fsync) / 8
}

// linger holds the fsync of group while it is a single tick and attempts
// started early for new tasks are running, until their results are pended
// (they then share this fsync: a client waiting for a short task waits for
// one fsync, not two in a row) or half the recent fsync time passes. It
// reports whether it waited: the caller then writes what was pended
// meanwhile and fsyncs it all, without lingering again. Under load a group
// holds several ticks and nothing waits; a tick that is alone waits at
// most that bound, and after a wait that reached it none does for
// lingerBackoff fsyncs.
func (e *Engine) linger(group []*committedTick) bool {
	f := &e.fresh
	if f.skip > 0 {
		f.skip--
		return false
	}
	if len(group) != 1 {
		return false // several ticks: under load
	}
	if !e.groupCommit && e.cfg.commitLinger == 0 {
		return false // no fsync to share (a test's commitLinger: its beforeCommit stands for one)
	}
	target := f.started.Load()
	if target == 0 {
		return false
	}
	if f.settled.Load() >= target {
		// They settled already, maybe after the group was written: their
		// results may be pended and not yet written; if so, write them
		// into this fsync too.
		p := &e.pending
		p.mu.Lock()
		more := len(p.ticks) > 0 || len(p.written) > 0
		p.mu.Unlock()
		return more
	}
	bound := min(max(f.fsync/2, minLinger), maxLinger)
	if e.cfg.commitLinger > 0 {
		bound = e.cfg.commitLinger
	}
	if f.timer == nil {
		f.timer = time.NewTimer(bound)
	} else {
		f.timer.Reset(bound)
	}
	defer f.timer.Stop()
	f.waiting.Store(true)
	defer f.waiting.Store(false)
	for f.settled.Load() < target {
		select {
		case <-e.commitWake: // a tick pended, or an attempt settled
		case <-f.timer.C:
			f.skip = lingerBackoff
			return true
		}
	}
	return true
}

// freshStart is whether an attempt starting now is of a task whose
// submission is not yet durable (counted in e.fresh).
func (e *Engine) freshStart(job Job, durable uint64) bool {
	if job.TaskSeq() <= durable {
		return false
	}
	e.fresh.started.Add(1)
	return true
}

// settleFresh counts a fresh attempt's context released (its result
// stepped, or the attempt replaced) and wakes a lingering committer.
func (e *Engine) settleFresh(ctx *attemptCtx) {
	if ctx.fresh {
		ctx.fresh = false
		e.fresh.settled.Add(1)
		if e.fresh.waiting.Load() {
			e.wakeCommitter()
		}
	}
}
