package host

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/wasmtask/wasmtask/dispatch"
)

// Plugin is what a handler name resolves to: a loaded module and the
// limits and config its manifest sets.
type Plugin struct {
	Module *Module
	Limits Limits
	Config map[string]string
	// Command: arguments, environment, mounts, input mode and exit codes
	// from the manifest, mounts already validated.
	Command Command
	// Pool runs the version's attempts under its instance policy (NewPool);
	// nil: a fresh instance per attempt.
	Pool *Pool
	// Extism: the manifest's Extism settings (ModeExtism modules only).
	Extism *ExtismOptions
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
	lim := p.Limits
	if t := time.Duration(job.TimeoutMs) * time.Millisecond; t > 0 && (lim.Timeout <= 0 || t < lim.Timeout) {
		lim.Timeout = t // the task's own timeout is the shorter: it stops the guest and is the one reported
	}
	run := x.host.Run
	if p.Pool != nil {
		run = func(ctx context.Context, _ *Module, a Attempt) Result { return p.Pool.Run(ctx, a) }
	}
	res := run(ctx, p.Module, Attempt{
		Input:  job.Input,
		Config: p.Config,
		Limits: lim,
		Info: TaskInfo{TaskID: string(job.Task), RunID: string(job.Run), Attempt: job.Attempt,
			MaxAttempts: job.MaxAttempts, Handler: job.Handler, Labels: job.Labels, ParentID: string(job.Parent)},
		Heartbeat: job.Heartbeat,
		Command:   p.Command,
		Extism:    p.Extism,
	})
	out := dispatch.Result{Outcome: res.Outcome, Retryable: res.Retryable, Error: res.Error,
		StartedAt: res.Started, FinishedAt: res.Started.Add(res.Duration),
		Output: res.Output, Module: res.Module, Log: res.Log}
	if res.LogDropped > 0 {
		out.Log = append(out.Log, fmt.Sprintf("[%d bytes of log dropped past the quota]\n", res.LogDropped)...)
	}
	for _, c := range res.Children {
		out.Children = append(out.Children, withID(c))
	}
	return out
}

// withID makes sure a staged child spec carries the id the guest was given
// (derived from the run and the ordinal unless the spec chose one), so the
// engine commits exactly that id.
func withID(c Child) []byte {
	var spec map[string]json.RawMessage
	if json.Unmarshal(c.Spec, &spec) != nil {
		return c.Spec // the engine rejects it, naming the child
	}
	id, _ := json.Marshal(c.ID)
	spec["id"] = id
	b, err := json.Marshal(spec)
	if err != nil {
		return c.Spec
	}
	return b
}
