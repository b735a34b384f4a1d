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
