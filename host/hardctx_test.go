package host

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/dispatch"
)

// TestHardCtx: the attempt's own context ends as context.WithDeadline's
// does: at once with DeadlineExceeded when the deadline has passed,
// Canceled when stopped first, the first end kept; it carries the state.
func TestHardCtx(t *testing.T) {
	st := &attemptState{}
	t.Run("deadline passed", func(t *testing.T) {
		var c hardCtx
		c.start(st, time.Now().Add(-time.Second))
		select {
		case <-c.Done():
		default:
			t.Fatal("not done at once")
		}
		c.cancel()
		if !errors.Is(c.Err(), context.DeadlineExceeded) {
			t.Errorf("Err = %v, want DeadlineExceeded (the first end)", c.Err())
		}
	})
	t.Run("deadline reached", func(t *testing.T) {
		var c hardCtx
		c.start(st, time.Now().Add(10*time.Millisecond))
		<-c.Done() // bounded by the test timeout; no timing asserted
		if !errors.Is(c.Err(), context.DeadlineExceeded) {
			t.Errorf("Err = %v, want DeadlineExceeded", c.Err())
		}
	})
	t.Run("canceled twice", func(t *testing.T) {
		var c hardCtx
		c.start(st, time.Now().Add(time.Hour))
		if c.Err() != nil {
			t.Fatalf("Err = %v while live", c.Err())
		}
		c.cancel()
		c.cancel()
		<-c.Done()
		if !errors.Is(c.Err(), context.Canceled) {
			t.Errorf("Err = %v, want Canceled", c.Err())
		}
		if d, ok := c.Deadline(); !ok || d.IsZero() {
			t.Errorf("Deadline = %v, %v", d, ok)
		}
	})
	t.Run("value", func(t *testing.T) {
		var c hardCtx
		c.start(st, time.Now().Add(time.Hour))
		defer c.cancel()
		derived := context.WithValue(&c, struct{}{}, 1)
		if got, _ := derived.Value(stateKey{}).(*attemptState); got != st {
			t.Errorf("Value(stateKey) = %p, want %p", got, st)
		}
		if derived.Value("other") != nil {
			t.Error("Value of another key is not nil")
		}
	})
}

// afterFuncCtx is a cancelable context that registers its AfterFunc
// callbacks itself, as dispatch's attempt context does.
type afterFuncCtx struct {
	context.Context
	registered atomic.Int32
}

func (c *afterFuncCtx) AfterFunc(f func()) func() bool {
	c.registered.Add(1)
	return context.AfterFunc(c.Context, f)
}

// TestCancelThroughAfterFunc: a caller's context with an AfterFunc method
// (dispatch's) is watched through it, and its cancel stops a guest that
// ignores it after the grace, as a canceled attempt.
func TestCancelThroughAfterFunc(t *testing.T) {
	h := newTestHost(t, Config{})
	m := mustLoad(t, h, readWasm(t, "loop"), 0)
	parent, cancel := context.WithCancel(context.Background())
	ctx := &afterFuncCtx{Context: parent}
	cancel()
	res := h.Run(ctx, m, Attempt{Limits: Limits{Timeout: time.Minute, Grace: 50 * time.Millisecond}})
	if res.Outcome != dispatch.OutcomeCancelled {
		t.Fatalf("Outcome = %s (%s), want cancelled", res.Outcome, res.Error)
	}
	if n := ctx.registered.Load(); n != 1 {
		t.Errorf("AfterFunc called %d times, want 1", n)
	}
}
