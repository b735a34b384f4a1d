package host

import (
	"context"
	"strings"
	"testing"

	"github.com/wasmtask/wasmtask/dispatch"
)

// TestOutcomeAfterRefusedGrow: a trap that follows a refused memory.grow
// is oom, wherever the memory stopped (the allocator counts refusals); a
// trap with the memory at its cap but no refused grow is a trap; unbounded
// recursion is a trap, not a host error.
func TestOutcomeAfterRefusedGrow(t *testing.T) {
	cases := []struct {
		name        string
		module      string
		pages       uint32
		input       string
		wantOutcome dispatch.Outcome
		wantError   []string
		wantOutput  string
	}{
		{name: "16-page steps under a 64-page cap", module: "bomb16", pages: 64, wantOutcome: dispatch.OutcomeOOM,
			wantError: []string{"out of memory", "memory.grow refused 1 time(s) at the memory limit of 64 pages (4 MiB)", "unreachable"}},
		{name: "1-page steps under a 16-page cap", module: "grow", pages: 16, wantOutcome: dispatch.OutcomeOOM,
			wantError: []string{"memory limit of 16 pages (1 MiB)"}},
		{name: "past the module's own maximum", module: "bombmax", pages: 256, wantOutcome: dispatch.OutcomeOOM,
			wantError: []string{"declared maximum memory of 20 pages (1280 KiB)"}},
		{name: "grows to the cap exactly", module: "growcheck", pages: 17, wantOutcome: dispatch.OutcomeOK,
			wantOutput: le32(1, 16, 17)},
		{name: "a grow past the cap returns -1", module: "growcheck", pages: 16, wantOutcome: dispatch.OutcomeOK,
			wantOutput: le32(1, -1, 16)},
		{name: "trap at the cap without a refused grow", module: "growcheck", pages: 17, input: "trap", wantOutcome: dispatch.OutcomeTrap,
			wantError: []string{"out of bounds memory access"}},
		{name: "trap after a refused grow", module: "growcheck", pages: 16, input: "trap", wantOutcome: dispatch.OutcomeOOM,
			wantError: []string{"refused 1 time(s)", "out of bounds memory access"}},
		{name: "stack overflow", module: "recurse", wantOutcome: dispatch.OutcomeTrap,
			wantError: []string{"stack overflow"}},
	}
	h := newTestHost(t, Config{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := mustLoad(t, h, readWasm(t, tc.module), tc.pages)
			res := h.Run(context.Background(), m, Attempt{Input: []byte(tc.input)})
			if res.Outcome != tc.wantOutcome {
				t.Fatalf("outcome %s (%s), want %s", res.Outcome, res.Error, tc.wantOutcome)
			}
			if want := tc.wantOutcome == dispatch.OutcomeTrap; res.Retryable != want {
				t.Errorf("retryable %v, want %v", res.Retryable, want)
			}
			for _, s := range tc.wantError {
				if !strings.Contains(res.Error, s) {
					t.Errorf("error %q, want it to contain %q", res.Error, s)
				}
			}
			if strings.Contains(res.Error, "host error") {
				t.Errorf("error %q blames the host", res.Error)
			}
			if tc.wantOutput != "" && string(res.Output) != tc.wantOutput {
				t.Errorf("output %v, want %v", res.Output, []byte(tc.wantOutput))
			}
		})
	}
}

// TestPoolRefusalsArePerAttempt: in a reused instance, a grow refused by
// an earlier attempt does not make a later attempt's trap an oom.
func TestPoolRefusalsArePerAttempt(t *testing.T) {
	h := newTestHost(t, Config{})
	m := mustLoad(t, h, readWasm(t, "growcheck"), 16)
	p, err := h.NewPool(m, InstancePolicy{Mode: InstancesReuse, MaxMemoryPages: 16}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if res := p.Run(context.Background(), Attempt{}); res.Outcome != dispatch.OutcomeOK || string(res.Output) != le32(1, -1, 16) {
		t.Fatalf("first attempt: %s %v (%s), want ok with a refused grow", res.Outcome, res.Output, res.Error)
	}
	// The instance is at 16 pages: both grows are refused again, so this
	// trap is an oom; the point is the count, which is this attempt's.
	res := p.Run(context.Background(), Attempt{Input: []byte("trap")})
	if res.Outcome != dispatch.OutcomeOOM || !strings.Contains(res.Error, "refused 2 time(s)") {
		t.Errorf("second attempt: %s (%s), want oom counting this attempt's 2 refusals", res.Outcome, res.Error)
	}
}

// TestEveryInstanceBounded: every way the host instantiates a module
// (fresh attempt, pooled instance, trial) takes its memory from the
// allocator, which is the memory limit: wazero's own cap is 4 GiB.
func TestEveryInstanceBounded(t *testing.T) {
	h := newTestHost(t, Config{})
	m := mustLoad(t, h, readWasm(t, "bomb16"), 64)
	p, err := h.NewPool(m, InstancePolicy{Mode: InstancesReuse}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for name, run := range map[string]func() Result{
		"fresh":  func() Result { return h.Run(context.Background(), m, Attempt{}) },
		"pooled": func() Result { return p.Run(context.Background(), Attempt{}) },
	} {
		if res := run(); res.Outcome != dispatch.OutcomeOOM || !strings.Contains(res.Error, "memory limit of 64 pages") {
			t.Errorf("%s: %s (%s), want oom at 64 pages", name, res.Outcome, res.Error)
		}
	}
	var mem *guestMemory
	ctx := m.withMemory(context.Background(), &mem)
	mod, err := m.rt.rt.InstantiateModule(ctx, m.compiled, m.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer mod.Close(context.Background())
	if _, ok := mod.Memory().Grow(64); ok {
		t.Errorf("grow to 65 pages succeeded under a 64-page limit")
	}
	if mem.refusals() != 1 {
		t.Errorf("refusals = %d, want 1", mem.refusals())
	}
}
