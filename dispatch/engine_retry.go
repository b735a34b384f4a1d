package dispatch

import (
	"context"

	"github.com/wasmtask/wasmtask/dispatch/machine"
)

// Retry starts a failed or canceled task again: a new run for each run of
// its last generation that did not complete (see handleRetry), due now,
// durable when Retry returns. A task that is not final, completed, a
// child (retry its root), or a cron task is an ErrNotFinal error saying
// which; an unknown one ErrNotFound.
func (e *Engine) Retry(ctx context.Context, id TaskID) error {
	ch := make(chan machine.Reply, 1)
	if err := e.send(ctx, machine.RetryInput{Task: id, Reply: ch}); err != nil {
		return err
	}
	_, err := e.await(ctx, ch)
	return err
}

// Delete drops a final task and its subtree now, durably, and returns
// how many tasks it dropped. A task that is not final, or a child whose
// root is not, is an ErrNotFinal error.
func (e *Engine) Delete(ctx context.Context, id TaskID) (int, error) {
	ch := make(chan machine.Reply, 1)
	if err := e.send(ctx, machine.DeleteInput{Task: id, Reply: ch}); err != nil {
		return 0, err
	}
	r, err := e.await(ctx, ch)
	return r.N, err
}

// Purge drops every final task that matches f (with its subtree) and
// returns how many tasks it dropped. Only tasks retention could drop are
// considered (a final child of a live parent is not). It works in steps
// of at most MaxPurge tasks, each durable before the next.
func (e *Engine) Purge(ctx context.Context, f PurgeFilter) (int, error) {
	for _, st := range f.States {
		if st != TaskCompleted && st != TaskFailed && st != TaskCanceled {
			return 0, machine.Invalid("state", "only final tasks are purged: want completed, failed or canceled, got %q", st)
		}
	}
	if f.OlderThanMs < 0 {
		return 0, machine.Invalid("older_than", "must not be negative")
	}
	total := 0
	for {
		ch := make(chan machine.Reply, 1)
		if err := e.send(ctx, machine.PurgeInput{Filter: f, Reply: ch}); err != nil {
			return total, err
		}
		r, err := e.await(ctx, ch)
		total += r.N
		if err != nil || r.N < MaxPurge {
			return total, err
		}
	}
}
