package host

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// hardCtx is the context an attempt's guest calls run under: done at the
// attempt's deadline (context.DeadlineExceeded) or when stopped
// (context.Canceled: a caller's cancel after its grace period, or the
// attempt's end), and carrying the attempt's state (stateKey). It is
// context.WithDeadline and context.WithValue in one value held in the
// attempt's own allocation (running): two allocations, a cancelCtx's
// bookkeeping and a lazily made channel less per attempt.
type hardCtx struct {
	st       *attemptState
	deadline time.Time
	done     chan struct{}
	err      atomic.Pointer[error] // nil while live
	mu       sync.Mutex            // orders the ends: one closes done
	timer    *time.Timer
}

var (
	errDeadline = context.DeadlineExceeded
	errCanceled = context.Canceled
)

// start makes c live until deadline.
func (c *hardCtx) start(st *attemptState, deadline time.Time) {
	c.st, c.deadline, c.done = st, deadline, make(chan struct{})
	d := time.Until(deadline)
	if d <= 0 {
		c.end(&errDeadline) // as context.WithDeadline: done at once
		return
	}
	c.timer = time.AfterFunc(d, func() { c.end(&errDeadline) })
}

// cancel ends c with context.Canceled (if it has not ended) and releases
// its timer; it may be called more than once.
func (c *hardCtx) cancel() {
	if c.timer != nil {
		c.timer.Stop()
	}
	c.end(&errCanceled)
}

func (c *hardCtx) end(err *error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err.Load() == nil {
		c.err.Store(err)
		close(c.done)
	}
}

func (c *hardCtx) Deadline() (time.Time, bool) { return c.deadline, true }
func (c *hardCtx) Done() <-chan struct{}       { return c.done }

func (c *hardCtx) Err() error {
	if e := c.err.Load(); e != nil {
		return *e
	}
	return nil
}

func (c *hardCtx) Value(key any) any {
	if _, ok := key.(stateKey); ok {
		return c.st
	}
	return nil
}

func (c *hardCtx) String() string { return "host.hardCtx" }

// afterFuncer is a context that runs a function when it ends without a
// goroutine of its own (dispatch's attempt context): context.AfterFunc
// on it would add a context of its own around the same call.
type afterFuncer interface {
	AfterFunc(func()) func() bool
}
