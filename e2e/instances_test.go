package e2e

import (
	"context"
	"encoding/binary"
	"regexp"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
)

// TestInstancesThroughServe: a plugin deployed with "instances": "reuse"
// keeps its instance across tasks run by `wasmtask serve` (the counter
// guest counts 1, 2, 3), /metrics shows the idle instance, a trap
// discards it, and a new deploy of the plugin drains the old version's
// pool (the idle gauge drops to 0, the next task starts at 1). With
// "reset", every task starts from the state after _initialize.
func TestInstancesThroughServe(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{workers: 2})
	ctx := context.Background()
	wasm := hostModule(t, "counter")
	run := func(input string) (string, int) {
		t.Helper()
		res, err := s.client.Submit(ctx, api.TaskSpec{Handler: "counter", Input: ptr(input), MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		v := s.waitFinal(res.Task.ID, 30*time.Second)
		if v.State != "completed" {
			return v.State, 0
		}
		out := outputBytes(t, v)
		if len(out) != 8 {
			t.Fatalf("output %q, want the two counters", out)
		}
		return v.State, int(binary.LittleEndian.Uint32(out))
	}
	idle := func() string {
		t.Helper()
		r := s.do("GET", "/metrics", nil)
		m := regexp.MustCompile(`(?m)^wasmtask_idle_instances (\S+)$`).FindSubmatch(r.body)
		if m == nil {
			t.Fatalf("no wasmtask_idle_instances in /metrics:\n%s", r.body)
		}
		return string(m[1])
	}

	s.deployWithManifest("counter", wasm, `{"instances": "reuse"}`)
	for want := 1; want <= 3; want++ {
		if state, got := run(""); got != want {
			t.Fatalf("reuse task %d: %s, counter %d", want, state, got)
		}
	}
	if got := idle(); got != "1" {
		t.Errorf("wasmtask_idle_instances = %s, want 1", got)
	}
	if state, _ := run("t"); state != "failed" {
		t.Errorf("trapping task: %s, want failed", state)
	}
	if state, got := run(""); got != 1 {
		t.Errorf("after a trap: %s, counter %d, want 1 (a fresh instance)", state, got)
	}

	s.deployWithManifest("counter", wasm, `{"instances": {"policy": "reuse", "max_uses": 100}}`)
	if got := idle(); got != "0" {
		t.Errorf("after a new deploy: wasmtask_idle_instances = %s, want 0 (the old version's pool drained)", got)
	}
	if state, got := run(""); got != 1 {
		t.Errorf("first task of the new deploy: %s, counter %d, want 1", state, got)
	}

	s.deployWithManifest("counter", wasm, `{"instances": "reset"}`)
	for i := range 3 {
		if state, got := run(""); got != 1 {
			t.Errorf("reset task %d: %s, counter %d, want 1", i, state, got)
		}
	}
}
