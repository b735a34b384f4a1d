package host

import (
	"context"

	"github.com/wasmtask/wasmtask/dispatch"
)

// Plugin is what a handler name resolves to: a loaded module and the
// limits and config its manifest sets.
type Plugin struct {
	Module *Module
	Limits Limits
	Config map[string]string
}

// Resolver finds the plugin for a task's handler ("name" or
// "name@sha256:<hex>"); the plugins registry implements it.
type Resolver func(ctx context.Context, handler string) (Plugin, error)

// Executor runs dispatch jobs on a Host: it implements dispatch.Executor.
type Executor struct {
	host    *Host
	resolve Resolver
}

// NewExecutor returns an Executor that resolves handlers with resolve.
func NewExecutor(h *Host, resolve Resolver) *Executor { return &Executor{host: h, resolve: resolve} }

var _ dispatch.Executor = (*Executor)(nil)

// Execute runs one attempt of job.
func (x *Executor) Execute(ctx context.Context, job dispatch.Job) dispatch.Result {
	p, err := x.resolve(ctx, job.Handler)
	if err != nil {
		// The plugin may be deployed later: retry under the task's policy.
		return dispatch.Result{Outcome: dispatch.OutcomeFailed, Retryable: true, Error: err.Error()}
	}
	res := x.host.Run(ctx, p.Module, Attempt{
		Input:  job.Input,
		Config: p.Config,
		Limits: p.Limits,
		Info: TaskInfo{TaskID: string(job.Task), RunID: string(job.Run), Attempt: job.Attempt,
			MaxAttempts: job.MaxAttempts, Handler: job.Handler, Labels: job.Labels},
		Heartbeat: job.Heartbeat,
	})
	return dispatch.Result{Outcome: res.Outcome, Retryable: res.Retryable, Error: res.Error,
		Output: res.Output, Module: res.Module}
}
