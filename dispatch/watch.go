package dispatch

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// attemptWatch is what the attempt watcher (one goroutine per engine)
// needs: the runners, each exposing when its attempt's start is to be
// reported and when the attempt is to be stopped, and when the watcher
// wakes next. A runner starting an attempt wakes the watcher only when its
// report is due before that (a watcher with nothing to watch sleeps
// without a timer), so a stream of short attempts costs no timer
// operation and no wake-up per attempt.
type attemptWatch struct {
	mu      sync.Mutex                // serializes changes to runners
	runners atomic.Pointer[[]*runner] // copied on change, read without a lock
	next    atomic.Int64              // when the watcher wakes next (Engine.mono); MaxInt64 while it scans or has nothing to watch
	wake    chan struct{}             // cap 1: something is due before next
}

func newAttemptWatch() attemptWatch {
	return attemptWatch{wake: make(chan struct{}, 1)}
}

func (w *attemptWatch) add(r *runner) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var rs []*runner
	if p := w.runners.Load(); p != nil {
		rs = slices.Clone(*p)
	}
	rs = append(rs, r)
	w.runners.Store(&rs)
}

func (w *attemptWatch) remove(r *runner) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p := w.runners.Load(); p != nil {
		rs := slices.DeleteFunc(slices.Clone(*p), func(x *runner) bool { return x == r })
		w.runners.Store(&rs)
	}
}

// due sets r's start report for reportAt and its deadline, and wakes the
// watcher if it would sleep past either. Stored before next is read:
// a watcher scanning now either sees the report or stored MaxInt64 in next
// before it scanned, which this then reads and answers with a wake-up.
func (w *attemptWatch) due(r *runner, reportAt, deadline int64) {
	r.deadline.Store(deadline)
	r.reportAt.Store(reportAt)
	if min(reportAt, deadline) < w.next.Load() {
		select {
		case w.wake <- struct{}{}:
		default: // a wake-up is pending: the watcher rescans
		}
	}
}

// mono is the engine's monotonic clock in nanoseconds (for the watcher:
// immune to changes of the wall clock, as timers are).
func (e *Engine) mono() int64 { return int64(time.Since(e.epoch)) }

// watchAttempts is the attempt watcher: it reports the start of every
// attempt that ran for startedReportDelay and stops attempts at their
// deadline, sleeping until the earliest of these is due.
func (e *Engine) watchAttempts() {
	defer e.workers.Done()
	w := &e.watch
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		w.next.Store(math.MaxInt64)
		now := e.mono()
		next := int64(math.MaxInt64)
		if p := w.runners.Load(); p != nil {
			for _, r := range *p {
				if at := r.reportAt.Load(); at != 0 {
					if at > now {
						next = min(next, at)
					} else if r.reportAt.CompareAndSwap(at, 0) {
						r.reportStarted()
					}
				}
				if at := r.deadline.Load(); at != 0 {
					if at > now {
						next = min(next, at)
					} else if r.deadline.CompareAndSwap(at, 0) {
						r.expire(at, now)
					}
				}
			}
		}
		if next == math.MaxInt64 {
			select {
			case <-w.wake:
				continue
			case <-e.done:
				return
			}
		}
		w.next.Store(next)
		timer.Reset(time.Duration(next - now))
		select {
		case <-timer.C:
		case <-w.wake:
			timer.Stop()
		case <-e.done:
			return
		}
	}
}
