package host

import (
	"context"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/wasmtask/wasmtask/dispatch"
)

// goEchoWasm builds testdata/goecho (the echo handler in Go) once per test
// binary and returns the module bytes.
func goEchoWasm(t testing.TB) []byte {
	t.Helper()
	return goGuestWasm(t, "goecho")
}

type buildError struct {
	cmd, out string
	err      error
}

func (e *buildError) Error() string { return e.cmd + ": " + e.err.Error() + "\n" + e.out }

// TestEcho runs the same echo cases on the WAT guest (5-byte reads) and
// on the Go guest (a wasip1 c-shared reactor: Run calls its _initialize).
func TestEcho(t *testing.T) {
	long := strings.Repeat("abcdefghij", 1024)
	cases := []conformanceCase{
		{name: "ascii", input: "hello, wasm world",
			wantOutcome: dispatch.OutcomeOK, wantOutput: "HELLO, WASM WORLD"},
		{name: "empty", input: "",
			wantOutcome: dispatch.OutcomeOK, wantOutput: ""},
		{name: "only non-letters and UTF-8", input: "123 !?{} ÄÖ ß",
			wantOutcome: dispatch.OutcomeOK, wantOutput: "123 !?{} ÄÖ ß"},
		{name: "10 KiB", input: long,
			wantOutcome: dispatch.OutcomeOK, wantOutput: strings.ToUpper(long)},
		{name: "output past the limit", input: long, limits: Limits{OutputBytes: 100},
			wantOutcome:       dispatch.OutcomeOutputTooLarge,
			wantErrorContains: []string{"limit of 100 bytes"}},
	}
	guests := []struct {
		name string
		wasm func(testing.TB) []byte
	}{
		{name: "wat", wasm: func(t testing.TB) []byte { return readWasm(t, "echo") }},
		{name: "go", wasm: goEchoWasm},
	}
	h := newGuestTestHost(t, Config{})
	for _, g := range guests {
		t.Run(g.name, func(t *testing.T) {
			wasm := g.wasm(t)
			m := mustLoad(t, h, wasm, 0)
			if g.name == "go" && (m.Mode != ModeHandler || !m.hasInit) {
				t.Fatalf("Go guest: Mode %q, _initialize %v; want a handler with _initialize", m.Mode, m.hasInit)
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					tc.run(t, h, wasm)
				})
			}
			if g.name == "go" {
				t.Run("wasmtask_handle without _initialize traps", func(t *testing.T) {
					checkNeedsInitialize(t, m)
				})
			}
		})
	}
}

// checkNeedsInitialize: a Go reactor called without _initialize traps,
// which is why Run calls it first.
func checkNeedsInitialize(t *testing.T, m *Module) {
	ctx := context.Background()
	mod, err := m.rt.rt.InstantiateModule(ctx, m.compiled, wazero.NewModuleConfig().WithName("").WithStartFunctions())
	if err != nil {
		t.Fatalf("instantiate: %v", err)
	}
	defer mod.Close(ctx)
	st := &attemptState{limits: DefaultLimits(), failKind: -1}
	st.log.max = st.limits.LogBytes
	st.log.init()
	_, err = mod.ExportedFunction(handleExport).Call(context.WithValue(ctx, stateKey{}, st))
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("wasmtask_handle without _initialize: %v, want an unreachable trap", err)
	}
}
