package dispatch

import (
	"context"
	"fmt"
	"runtime/debug"
)

// Executor runs one attempt. ctx ends at the attempt's deadline or when
// the task is canceled; Execute should return soon after. Executors never
// touch the WAL; the engine records what they return.
type Executor interface {
	Execute(ctx context.Context, job Job) Result
}

// ExecutorFunc adapts a function to Executor.
type ExecutorFunc func(ctx context.Context, job Job) Result

func (f ExecutorFunc) Execute(ctx context.Context, job Job) Result { return f(ctx, job) }

// safeExecute runs ex and turns a panic into a failed, retryable attempt,
// so a crashing executor can never leave a run without an outcome.
func safeExecute(ctx context.Context, ex Executor, job Job) (res Result) {
	defer func() {
		if p := recover(); p != nil {
			res = Result{Outcome: OutcomeFailed, Retryable: true,
				Error: fmt.Sprintf("executor panic: %v\n%s", p, debug.Stack())}
		}
	}()
	res = ex.Execute(ctx, job)
	if res.Outcome == OutcomeOK {
		return res
	}
	if res.Outcome == "" {
		return Result{Outcome: OutcomeFailed, Retryable: true, Error: "executor returned no outcome"}
	}
	if ctx.Err() == context.DeadlineExceeded && res.Outcome != OutcomeTimeout && res.Outcome == OutcomeCancelled {
		res.Outcome = OutcomeTimeout
	}
	return res
}

// AsyncExecutor is an Executor that can take an attempt without the
// engine's runner waiting for it: one that hands attempts on to another
// process (the api broker's remote workers). A runner parked for each
// such attempt until its worker reported cost a goroutine, two wake-ups
// and a channel per attempt, a fifth of the server's CPU per remote
// no-op.
//
// ExecuteAsync either declines (false: the runner calls Execute, as for
// any Executor) or takes job (true) and calls done exactly once, from any
// goroutine and never while holding a lock the engine may wait for, with
// the attempt's result. Taken, the attempt is the executor's to stop:
// the engine's attempt watcher no longer ends ctx at the job's deadline
// (ctx.Deadline says when that is; ctx still ends when the task is
// canceled or the engine stops), and the attempt is reported running
// when job.Heartbeat is first called, not after a millisecond.
type AsyncExecutor interface {
	Executor
	// Async reports whether ExecuteAsync takes attempts at all; the
	// engine asks once, when it opens (false: it calls Execute alone,
	// and spends nothing per attempt on the offer).
	Async() bool
	ExecuteAsync(ctx context.Context, job Job, done func(Result)) bool
}
