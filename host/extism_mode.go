package host

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/tetratelabs/wazero/sys"

	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/host/extism"
)

// ExtismOptions are a plugin's Extism settings (see host/extism).
type ExtismOptions = extism.Options

// usesExtism: the module imports the Extism host ABI.
func (m *Module) usesExtism() bool {
	for _, imp := range m.Imports {
		if strings.HasPrefix(imp, extism.ModuleName+".") {
			return true
		}
	}
	return false
}

// CheckExtism validates a plugin's Extism settings against its module: an
// Extism plugin needs a function, exported with no parameters and an i32
// result or none; a wasmtask_v1 handler takes no Extism settings. A module
// that imports nothing of extism:host/env but is called as an Extism plugin
// (a pure function, e.g. a TinyGo plugin that only uses WASI) is accepted
// with settings. The error says what to set in the manifest.
func (m *Module) CheckExtism(o *ExtismOptions) error {
	switch {
	case m.Mode == ModeHandler && o != nil:
		return fmt.Errorf("the module exports %s (a wasmtask_v1 handler) and does not import %s, so it is not an Extism plugin: remove the \"extism\" object", handleExport, extism.ModuleName)
	case m.Mode != ModeExtism && o == nil:
		return nil
	case o == nil || o.Function == "":
		return fmt.Errorf("the module imports %s (an Extism plugin): set \"extism\": {\"function\": NAME} to the export to call, one of %s",
			extism.ModuleName, strings.Join(m.Exports, ", "))
	}
	def, ok := m.compiled.ExportedFunctions()[o.Function]
	if !ok {
		return fmt.Errorf("function %q is not exported by the module; it exports %s", o.Function, strings.Join(m.Exports, ", "))
	}
	return extism.CheckFunction(o.Function, def.ParamTypes(), def.ResultTypes())
}

// RunsAsExtism: attempts of m with these settings go through the Extism ABI.
func (m *Module) RunsAsExtism(o *ExtismOptions) bool { return m.Mode == ModeExtism || o != nil }

// executeExtism runs one attempt of an Extism plugin: a fresh instance, the
// guest runtime's initializer, then the function; its output, error and
// return code, and any fault of a host function, become the Result.
func (h *Host) executeExtism(ctx context.Context, m *Module, st *attemptState, o *ExtismOptions) Result {
	if err := m.CheckExtism(o); err != nil {
		return Result{Outcome: dispatch.OutcomeFailed, Error: "extism: " + err.Error()}
	}
	memBytes := uint64(st.limits.MemoryPages) * 65536
	call, err := extism.NewCall(*o, st.input, extismConfig(st), memBytes, func(level extism.Level, msg []byte) {
		st.log.line(level.String(), msg)
	}, nil)
	if err != nil {
		return Result{Outcome: dispatch.OutcomeOOM, Error: err.Error()}
	}
	cfg := m.cfg.WithStdout(&st.log.stdout).WithStderr(&st.log.stderr)
	mod, err := m.rt.rt.InstantiateModule(m.withMemory(ctx, &st.mem), m.compiled, cfg)
	if mod != nil {
		defer mod.Close(context.Background())
	}
	if err != nil {
		return classify(ctx, st, nil, 0, err)
	}
	rc, err := call.Run(extism.WithCall(ctx, call), mod)
	if f := call.Fault(); f != nil && err != nil {
		if ctx.Err() != nil { // e.g. an HTTP request cut off by the deadline
			return classify(ctx, st, mod.Memory(), 0, stopError(ctx))
		}
		return faultResult(f)
	}
	code := int64(0)
	if out, oerr := call.Output(); oerr != nil {
		return Result{Outcome: dispatch.OutcomeABIViolation, Error: oerr.Error()}
	} else if len(out) > st.limits.OutputBytes {
		st.outputOver = true
	} else {
		st.output.Write(out)
	}
	if msg, set := call.Error(); err == nil && (rc != 0 || set) {
		if !set {
			msg = fmt.Sprintf("%s returned %d", o.Function, int32(rc))
		}
		st.failMsg, code = msg, 1
	}
	return classify(ctx, st, mod.Memory(), code, err)
}

// stopError is the error wazero reports for a guest stopped by ctx.
func stopError(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return sys.NewExitError(sys.ExitCodeDeadlineExceeded)
	}
	return sys.NewExitError(sys.ExitCodeContextCanceled)
}

func faultResult(f *extism.Fault) Result {
	switch f.Kind {
	case extism.FaultOOM:
		return Result{Outcome: dispatch.OutcomeOOM, Error: f.Error()}
	case extism.FaultDenied:
		return Result{Outcome: dispatch.OutcomeFailed, Error: f.Error()}
	case extism.FaultIO:
		return Result{Outcome: dispatch.OutcomeFailed, Retryable: true, Error: f.Error()}
	default:
		return Result{Outcome: dispatch.OutcomeABIViolation, Error: f.Error()}
	}
}

// extismConfig is what config_get sees: the manifest's config plus the
// attempt's task info under "wasmtask.*" keys (these win).
func extismConfig(st *attemptState) map[string]string {
	c := make(map[string]string, len(st.config)+6)
	maps.Copy(c, st.config)
	c["wasmtask.task_id"] = st.task.TaskID
	c["wasmtask.run_id"] = st.task.RunID
	c["wasmtask.attempt"] = strconv.Itoa(st.task.Attempt)
	c["wasmtask.max_attempts"] = strconv.Itoa(st.task.MaxAttempts)
	c["wasmtask.handler"] = st.task.Handler
	c["wasmtask.task_info"] = string(st.taskInfo())
	return c
}
