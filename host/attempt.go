package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmtask/wasmtask/dispatch"
)

// TaskInfo is what task_info returns to the guest (as JSON).
type TaskInfo struct {
	TaskID      string            `json:"task_id"`
	RunID       string            `json:"run_id"`
	Attempt     int               `json:"attempt"`
	MaxAttempts int               `json:"max_attempts"`
	Handler     string            `json:"handler"`
	Module      string            `json:"module"`
	DeadlineMs  int64             `json:"deadline_ms"`
	ParentID    string            `json:"parent_id"`
	Labels      map[string]string `json:"labels"`
}

// Attempt is one execution request.
type Attempt struct {
	Input  []byte
	Info   TaskInfo // Module and DeadlineMs are filled in by Run
	Config map[string]string
	Limits Limits // clamped to the host's maxima by Run
	// Heartbeat is called by the heartbeat import (extends the lease).
	Heartbeat func()
	// Command grants arguments, environment and files, and maps a
	// command's exit codes (command.go). The zero value grants nothing.
	Command Command
	// Extism are the Extism settings of an Extism plugin (the manifest's
	// "extism" object); required for ModeExtism modules, and any module
	// given them runs as an Extism plugin (CheckExtism).
	Extism *ExtismOptions
}

// Child is a task submitted by the guest, staged until the attempt succeeds.
type Child struct {
	ID   string
	Spec []byte // the task spec JSON as the guest wrote it
}

// Result is how an attempt ended.
type Result struct {
	Outcome    dispatch.Outcome
	Retryable  bool
	Error      string
	Output     []byte
	Log        []byte
	LogDropped int // bytes of log dropped past the quota
	Children   []Child
	Module     string
	Duration   time.Duration
	Started    time.Time // when Run began the attempt (Duration counts from it)
}

// attemptState is everything the host functions of one attempt touch. One
// goroutine runs the guest, so it needs no lock, except stop flags set from
// outside.
type attemptState struct {
	input      []byte
	task       TaskInfo
	info       []byte // task as JSON, built at the first task_info call
	config     map[string]string
	limits     Limits
	output     bytes.Buffer
	outputOver bool
	log        logBuffer
	failKind   int // -1 none, 0 permanent, 1 retryable
	failMsg    string
	children   []Child
	violation  *abiViolation
	heartbeat  func()
	command    *Command     // nil in handler mode: exit codes are read as before
	mem        *guestMemory // the instance's memory: refused grows (memory.go)

	softDeadline time.Time
	// startedLate is how long the caller's deadline had passed when the
	// attempt started (0: it had not): the stop then names that, not a
	// negative timeout.
	startedLate time.Duration
	canceled    atomic.Bool // the caller canceled the attempt
}

func (st *attemptState) violate(fn, reason string) {
	v := abiViolation{fn: fn, reason: reason}
	st.violation = &v
	panic(v)
}

// taskInfo returns the attempt's task_info JSON, the same bytes for the
// whole attempt. It is built on first use: most handlers never ask.
func (st *attemptState) taskInfo() []byte {
	if st.info == nil {
		task := st.task
		if task.Labels == nil {
			task.Labels = map[string]string{} // "labels": {}, not null
		}
		st.info, _ = json.Marshal(task)
	}
	return st.info
}

func (st *attemptState) stopRequested() bool {
	return st.canceled.Load() || !time.Now().Before(st.softDeadline)
}

// childID derives a child's id from the parent run and the ordinal, so a
// retried parent that submits the same children creates no duplicates.
func (st *attemptState) childID(ordinal int) string {
	return fmt.Sprintf("%s-c%d", childBase(st.task), ordinal)
}

// Run executes one attempt of m in a fresh, anonymous instance, closed
// afterwards. It always returns an outcome: every way an attempt can end is
// classified (see classify). Pool.Run runs attempts in warm instances.
func (h *Host) Run(ctx context.Context, m *Module, a Attempt) Result {
	at := h.begin(ctx, m, a)
	defer at.end()
	if m.RunsAsExtism(a.Extism) {
		return at.finish(h.executeExtism(at.ctx, m, at.st, a.Extism))
	}
	return at.finish(h.execute(at.ctx, m, at.st, &a.Command))
}

// running is an attempt between begin and end, whatever instance runs it.
// One allocation holds it and its state: a warm attempt costs microseconds.
type running struct {
	state     attemptState
	st        *attemptState   // &state
	ctx       context.Context // &hard: the guest's calls run under it; carries st
	hard      hardCtx
	m         *Module
	start     time.Time
	stopWatch func() bool // nil when the caller's context cannot be canceled
}

// end releases the attempt's deadline timer and its watch of the caller's
// context.
func (at *running) end() {
	if at.stopWatch != nil {
		at.stopWatch()
	}
	at.hard.cancel()
}

// begin sets up the state and the context of one attempt; the caller
// defers end.
func (h *Host) begin(ctx context.Context, m *Module, a Attempt) *running {
	start := time.Now()
	lim := a.Limits.Clamp(h.cfg.Max)
	lim.MemoryPages = m.rt.pages // the limit the runtime enforces, set at Load
	deadline := start.Add(lim.Timeout)
	var late time.Duration
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
		// The message names the caller's span when it is clearly the shorter
		// (not when it is the same timeout, counted from a little earlier),
		// and says so when the deadline had passed before the start.
		switch left := d.Sub(start).Round(time.Millisecond); {
		case left <= 0:
			late = max(-left, time.Millisecond)
		case d.Before(start.Add(lim.Timeout - lim.Timeout/10)):
			lim.Timeout = left
		}
	}
	a.Info.Module, a.Info.DeadlineMs = m.Hash, deadline.UnixMilli()
	at := &running{m: m, start: start, state: attemptState{
		input: a.Input, task: a.Info, config: a.Config, limits: lim, failKind: -1,
		heartbeat:    a.Heartbeat,
		softDeadline: deadline.Add(-lim.Grace), startedLate: late,
	}}
	st := &at.state
	at.st = st
	st.log.max = lim.LogBytes
	st.log.init()

	// The guest is stopped at the deadline, or a grace period after the
	// caller cancels; cancelled() and heartbeat() report the stop first.
	at.hard.start(st, deadline)
	at.ctx = &at.hard
	watch := func() {
		if errors.Is(ctx.Err(), context.Canceled) {
			st.canceled.Store(true)
			time.AfterFunc(lim.Grace, at.hard.cancel)
		}
	}
	if af, ok := ctx.(afterFuncer); ok {
		at.stopWatch = af.AfterFunc(watch) // what context.AfterFunc would call, without its wrapper
	} else if ctx.Done() != nil {
		at.stopWatch = context.AfterFunc(ctx, watch)
	}
	return at
}

// finish completes res with what the attempt produced.
func (at *running) finish(res Result) Result {
	st := at.st
	res.Module, res.Started, res.Duration = at.m.Hash, at.start, time.Since(at.start)
	if res.Outcome != dispatch.OutcomeOK && at.m.Mode == ModeCommand && st.output.Len() > 0 {
		// The output of a failed command is not kept: its stdout goes to
		// the log, so the user sees what the command printed.
		st.log.add([]byte("[stdout of the failed command]\n"))
		st.log.add(st.output.Bytes())
	}
	res.Log, res.LogDropped = st.log.buf.Bytes(), st.log.dropped
	if res.Outcome == dispatch.OutcomeOK {
		res.Output = st.output.Bytes()
		res.Children = st.children
	}
	return res
}

func childBase(info TaskInfo) string {
	// Run ids look like "<task>#<n>"; '#' is not allowed in task ids.
	return strings.ReplaceAll(info.RunID, "#", "-r")
}

// moduleConfig is the instance config of a module's attempts, but for
// stdin, stdout and stderr, which execute adds per attempt. Built once per
// module: every With* call copies the config.
func moduleConfig(mode Mode) wazero.ModuleConfig {
	cfg := wazero.NewModuleConfig().
		WithName(""). // anonymous: one compiled module, many instances
		WithSysWalltime().WithSysNanotime().
		WithRandSource(rand.Reader)
	if mode == ModeCommand {
		return cfg.WithStartFunctions("_start")
	}
	return cfg.WithStartFunctions()
}

func (h *Host) execute(ctx context.Context, m *Module, st *attemptState, c *Command) Result {
	if m.Mode == ModeHandler && !c.needsFS() && len(c.Args) == 0 && len(c.Env) == 0 {
		// The common case: the instance config is the same for every
		// attempt of the plugin but for where stdout and stderr go, and a
		// kept one routes them to this attempt (freshConfig).
		fc := m.freshConfig(pluginName(st.task.Handler))
		fc.streams.st = st
		defer m.putFreshConfig(fc) // after the instance's Close, deferred below
		return h.instantiateAndCall(ctx, m, st, fc.cfg)
	}
	cfg := m.cfg.WithStderr(&st.log.stderr)
	cfg, afs, err := commandConfig(cfg, c, m.Mode, pluginName(st.task.Handler), st.input, st.hostLog)
	if err != nil {
		return Result{Outcome: dispatch.OutcomeFailed, Retryable: true, Error: "host error: " + err.Error()}
	}
	defer afs.close() // after the instance's Close, deferred below
	if m.Mode == ModeCommand {
		st.command = c
		if c.Input != InputFile {
			cfg = cfg.WithStdin(bytes.NewReader(st.input))
		}
		cfg = cfg.WithStdout(&boundedWriter{st: st})
	} else {
		cfg = cfg.WithStdout(&st.log.stdout)
	}
	return h.instantiateAndCall(ctx, m, st, cfg)
}

// instantiateAndCall runs the attempt in a new instance of m made with
// cfg, closed before it returns.
func (h *Host) instantiateAndCall(ctx context.Context, m *Module, st *attemptState, cfg wazero.ModuleConfig) Result {
	mod, err := m.rt.rt.InstantiateModule(m.withMemory(ctx, &st.mem), m.compiled, cfg)
	if mod != nil {
		defer mod.Close(context.Background())
	}
	if m.Mode == ModeCommand {
		// The exit code stays a *sys.ExitError: classify reads it through
		// the command's exit codes (a return code of 3 would be an ABI violation).
		return classify(ctx, st, memoryOf(mod), 0, err)
	}
	if err != nil {
		return classify(ctx, st, nil, 0, err)
	}
	var stack [1]uint64 // the calls' parameters and results: none, and one i32
	if m.freshEntry {
		// _initialize and wasmtask_handle in one call (entry.go).
		fn := m.entryCalls.get(mod)
		if err := fn.CallWithStack(ctx, stack[:]); err != nil {
			if g := mod.ExportedGlobal(freshInitedExport); g == nil || g.Get() == 0 {
				err = fmt.Errorf("_initialize: %w", err)
			}
			return classify(ctx, st, mod.Memory(), 0, err)
		}
		m.entryCalls.put(mod, fn)
		return classify(ctx, st, mod.Memory(), int64(api.DecodeI32(stack[0])), nil)
	}
	if m.hasInit {
		fn := m.initCalls.get(mod)
		if err := fn.CallWithStack(ctx, stack[:]); err != nil {
			return classify(ctx, st, mod.Memory(), 0, fmt.Errorf("_initialize: %w", err))
		}
		m.initCalls.put(mod, fn)
	}
	fn := m.handleCalls.get(mod)
	err = fn.CallWithStack(ctx, stack[:])
	code := int64(0)
	if err == nil {
		code = int64(api.DecodeI32(stack[0]))
		m.handleCalls.put(mod, fn)
	}
	return classify(ctx, st, mod.Memory(), code, err)
}

// freshConfig is an instance config of a handler-mode module without
// arguments, environment or files, kept between fresh attempts: building
// one (WithArgs, WithStdout, WithStderr) copies wazero's config three
// times per attempt. Its stdout and stderr write to the log of the attempt
// it is lent to (streams.st); one attempt at a time uses it.
type freshConfig struct {
	name    string // argv[0]
	cfg     wazero.ModuleConfig
	streams *instanceStreams
}

// freshConfig returns a kept config for argv[0] name, or a new one.
func (m *Module) freshConfig(name string) *freshConfig {
	if fc, _ := m.freshConfigs.Get().(*freshConfig); fc != nil && fc.name == name {
		return fc
	}
	streams := &instanceStreams{}
	cfg := m.cfg.WithArgs(name).WithStdout(streams.stdout()).WithStderr(streams.stderr())
	return &freshConfig{name: name, cfg: cfg, streams: streams}
}

// putFreshConfig keeps fc once its instance is closed.
func (m *Module) putFreshConfig(fc *freshConfig) {
	fc.streams.st = nil
	m.freshConfigs.Put(fc)
}

func memoryOf(mod api.Module) api.Memory {
	if mod == nil {
		return nil
	}
	return mod.Memory()
}

// boundedWriter is stdout in command mode: the output, up to the limit.
type boundedWriter struct{ st *attemptState }

func (w *boundedWriter) Write(p []byte) (int, error) {
	if w.st.output.Len()+len(p) > w.st.limits.OutputBytes {
		w.st.outputOver = true
		return 0, errors.New("output limit reached")
	}
	return w.st.output.Write(p)
}

// logBuffer captures log lines, stdout and stderr up to a quota.
type logBuffer struct {
	buf     bytes.Buffer
	max     int
	dropped int
	stdout  streamWriter
	stderr  streamWriter
}

type streamWriter struct {
	lb   *logBuffer
	name string
}

func (l *logBuffer) init() {
	l.stdout = streamWriter{lb: l, name: "stdout"}
	l.stderr = streamWriter{lb: l, name: "stderr"}
}

func (w *streamWriter) Write(p []byte) (int, error) {
	w.lb.add(p)
	return len(p), nil
}

func (l *logBuffer) line(level string, msg []byte) {
	l.add([]byte("[" + level + "] " + string(msg) + "\n"))
}

func (l *logBuffer) add(p []byte) {
	if room := l.max - l.buf.Len(); len(p) > room {
		l.dropped += len(p) - max(room, 0)
		p = p[:max(room, 0)]
	}
	l.buf.Write(p)
}
