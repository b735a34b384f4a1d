package host

import (
	"context"
	"fmt"
	"time"

	"github.com/tetratelabs/wazero"
)

// Trial instantiates m once without running a handler (reactors get their
// _initialize, command modules no _start) and closes it. The plugin
// registry calls it before activating a module, so a module that cannot
// start is rejected at deploy time rather than on its first task.
func (h *Host) Trial(ctx context.Context, m *Module, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st := &attemptState{limits: Limits{}.Clamp(h.cfg.Max), failKind: -1, softDeadline: time.Now().Add(timeout)}
	st.log.max = st.limits.LogBytes
	st.log.init()
	ctx = context.WithValue(ctx, stateKey{}, st)
	cfg := wazero.NewModuleConfig().WithName("").WithSysWalltime().WithSysNanotime().
		WithStdout(&st.log.stdout).WithStderr(&st.log.stderr).WithStartFunctions()
	mod, err := m.rt.rt.InstantiateModule(m.withMemory(ctx, &st.mem), m.compiled, cfg)
	if err != nil {
		return &ValidationError{Module: m.Hash, Reason: "trial instantiation failed: " + firstLine(err)}
	}
	defer mod.Close(context.Background())
	if m.hasInit {
		if _, err := mod.ExportedFunction("_initialize").Call(ctx); err != nil {
			return &ValidationError{Module: m.Hash, Reason: fmt.Sprintf("trial: _initialize failed: %s", firstLine(err))}
		}
	}
	return nil
}
