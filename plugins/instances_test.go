package plugins_test

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/host"
	"github.com/wasmtask/wasmtask/plugins"
)

// TestParseManifestInstances: "instances" is a policy name or an object;
// bad values are rejected naming the field.
func TestParseManifestInstances(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		in         string
		want       host.InstancePolicy
		wantField  string
		wantReason string
	}{
		{name: "absent: fresh", in: `{}`, want: host.InstancePolicy{Mode: host.InstancesFresh}},
		{name: "name reuse", in: `{"instances": "reuse"}`, want: host.InstancePolicy{Mode: host.InstancesReuse}},
		{name: "name fresh", in: `{"instances": "fresh"}`, want: host.InstancePolicy{Mode: host.InstancesFresh}},
		{name: "object",
			in:   `{"instances": {"policy": "reuse", "max_uses": 50, "max_memory_pages": 128, "idle_timeout": "90s"}}`,
			want: host.InstancePolicy{Mode: host.InstancesReuse, MaxUses: 50, MaxMemoryPages: 128, IdleTimeout: 90 * time.Second}},
		{name: "object with the policy only", in: `{"instances": {"policy": "reuse"}}`, want: host.InstancePolicy{Mode: host.InstancesReuse}},
		{name: "name reset", in: `{"instances": "reset"}`, want: host.InstancePolicy{Mode: host.InstancesReset}},
		{name: "unknown policy name", in: `{"instances": "warm"}`,
			wantField: "manifest.instances.policy", wantReason: `want "fresh", "reuse" or "reset", got "warm"`},
		{name: "object without a policy", in: `{"instances": {"max_uses": 5}}`,
			wantField: "manifest.instances.policy", wantReason: "is missing"},
		{name: "unknown member", in: `{"instances": {"policy": "reuse", "max_use": 5}}`,
			wantField: "manifest.instances", wantReason: `unknown field "max_use" (known: policy, max_uses, max_memory_pages, idle_timeout)`},
		{name: "unknown member that is not a name", in: `{"instances": {"policy": "reuse", "sk-live/1": 5}}`,
			wantField: "manifest.instances", wantReason: "an unknown field"},
		{name: "max_uses of the wrong type", in: `{"instances": {"policy": "reuse", "max_uses": "10"}}`,
			wantField: "manifest.instances.max_uses", wantReason: "want a number, got a JSON string"},
		{name: "not a name or an object", in: `{"instances": 3}`,
			wantField: "manifest.instances", wantReason: "want a policy name"},
		{name: "negative max_uses", in: `{"instances": {"policy": "reuse", "max_uses": -1}}`,
			wantField: "manifest.instances.max_uses", wantReason: "got -1"},
		{name: "max_memory_pages", in: `{"instances": {"policy": "reuse", "max_memory_pages": 70000}}`,
			wantField: "manifest.instances.max_memory_pages", wantReason: "at most 65536, got 70000"},
		{name: "idle_timeout", in: `{"instances": {"policy": "reuse", "idle_timeout": "soon"}}`,
			wantField: "manifest.instances.idle_timeout", wantReason: `got "soon"`},
		{name: "idle_timeout zero", in: `{"instances": {"policy": "reuse", "idle_timeout": "0s"}}`,
			wantField: "manifest.instances.idle_timeout", wantReason: `got "0s"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, err := plugins.ParseManifest([]byte(tc.in))
			if tc.wantField == "" {
				if err != nil {
					t.Fatalf("ParseManifest: %v", err)
				}
				got, err := m.InstancePolicy()
				if err != nil || got != tc.want {
					t.Errorf("InstancePolicy() = %+v, %v; want %+v", got, err, tc.want)
				}
				return
			}
			var ve *plugins.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("ParseManifest: got %v (%T), want a *ValidationError", err, err)
			}
			if ve.Field != tc.wantField || !strings.Contains(ve.Reason, tc.wantReason) {
				t.Errorf("ParseManifest: got field %q reason %q, want field %q and a reason with %q", ve.Field, ve.Reason, tc.wantField, tc.wantReason)
			}
		})
	}
}

// counterVersion returns host/testdata/counter.wasm made into a distinct
// version (a custom section named tag appended: another hash, same code).
func counterVersion(t *testing.T, tag string) []byte {
	t.Helper()
	wasm := module(t, "counter")
	section := append(append([]byte{byte(len(tag))}, tag...), "payload"...)
	return append(append(wasm, 0, byte(len(section))), section...)
}

// execCounter runs one attempt of handler through a host.Executor on reg,
// as the engine does, and returns the counter guest's count.
func execCounter(t *testing.T, exec *host.Executor, handler string) int {
	t.Helper()
	res := exec.Execute(t.Context(), dispatch.Job{Task: "t", Run: "t#1", Handler: handler, Attempt: 1, MaxAttempts: 1})
	if res.Outcome != dispatch.OutcomeOK || len(res.Output) != 8 {
		t.Fatalf("Execute(%s): outcome %s (%s), output %q", handler, res.Outcome, res.Error, res.Output)
	}
	return int(binary.LittleEndian.Uint32(res.Output))
}

// TestInstancesHotSwap: a reuse plugin keeps its instance across attempts
// through the registry; deploying a new version (or rolling back, or
// changing the manifest) drains the old version's pool, and the new
// version starts fresh.
func TestInstancesHotSwap(t *testing.T) {
	t.Parallel()
	reg, b := setup(t, plugins.Options{})
	exec := host.NewExecutor(b.host, reg.Resolve)
	reuse := &plugins.Manifest{Instances: &plugins.ManifestInstances{Policy: "reuse"}}
	v1, v2 := counterVersion(t, "v1"), counterVersion(t, "v2")

	if _, err := reg.Deploy(b.ctx, "counter", v1, reuse, "test"); err != nil {
		t.Fatalf("Deploy v1: %v", err)
	}
	old, err := reg.Resolve(b.ctx, "counter")
	if err != nil || old.Pool == nil {
		t.Fatalf("Resolve: pool %v, err %v; want a pool for the reuse policy", old.Pool, err)
	}
	for want := 1; want <= 3; want++ {
		if got := execCounter(t, exec, "counter"); got != want {
			t.Fatalf("v1 attempt %d: counter %d", want, got)
		}
	}
	if got := b.host.Idle().Instances; got != 1 {
		t.Fatalf("Idle().Instances = %d, want 1 (v1's)", got)
	}

	if _, err := reg.Deploy(b.ctx, "counter", v2, reuse, "test"); err != nil {
		t.Fatalf("Deploy v2: %v", err)
	}
	if st := old.Pool.Stats(); st.Idle != 0 || st.IdleClosed != 1 {
		t.Errorf("v1's pool after the swap: %+v, want its instance closed", st)
	}
	if got := b.host.Idle().Instances; got != 0 {
		t.Errorf("Idle().Instances after the swap = %d, want 0", got)
	}
	// An attempt that resolved v1 before the swap still runs, fresh.
	if res := old.Pool.Run(b.ctx, host.Attempt{}); res.Outcome != dispatch.OutcomeOK || binary.LittleEndian.Uint32(res.Output) != 1 {
		t.Errorf("late v1 attempt: %s %q, want ok in a fresh instance", res.Outcome, res.Output)
	}
	for want := 1; want <= 2; want++ {
		if got := execCounter(t, exec, "counter"); got != want {
			t.Errorf("v2 attempt %d: counter %d", want, got)
		}
	}

	cur, _ := reg.Resolve(b.ctx, "counter")
	if _, err := reg.Rollback(b.ctx, "counter", ""); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	if st := cur.Pool.Stats(); st.Idle != 0 || st.IdleClosed != 1 {
		t.Errorf("v2's pool after the rollback: %+v, want drained", st)
	}
	if got := execCounter(t, exec, "counter"); got != 1 {
		t.Errorf("after the rollback: counter %d, want 1", got)
	}

	// The same module with another manifest is a new version of the
	// plugin's settings: its pool is new too.
	cur, _ = reg.Resolve(b.ctx, "counter")
	if _, err := reg.Deploy(b.ctx, "counter", v1, &plugins.Manifest{Instances: &plugins.ManifestInstances{Policy: "reuse", MaxUses: 10}}, "test"); err != nil {
		t.Fatalf("Deploy v1 with max_uses: %v", err)
	}
	if st := cur.Pool.Stats(); st.Idle != 0 {
		t.Errorf("pool after a manifest change: %+v, want drained", st)
	}

	// Reset: one warm instance, fresh state for every attempt.
	cur, _ = reg.Resolve(b.ctx, "counter")
	if _, err := reg.Deploy(b.ctx, "counter", v2, &plugins.Manifest{Instances: &plugins.ManifestInstances{Policy: "reset"}}, "test"); err != nil {
		t.Fatalf("Deploy v2 reset: %v", err)
	}
	if st := cur.Pool.Stats(); st.Idle != 0 {
		t.Errorf("pool after the switch to reset: %+v, want drained", st)
	}
	for range 3 {
		if got := execCounter(t, exec, "counter"); got != 1 {
			t.Errorf("reset: counter %d, want 1", got)
		}
	}
	if p, _ := reg.Resolve(b.ctx, "counter"); p.Pool == nil || p.Pool.Stats().Created != 1 {
		t.Errorf("reset: want one instance created for three attempts")
	}

	// Back to fresh: no pool, every attempt new.
	if _, err := reg.Deploy(b.ctx, "counter", v1, nil, "test"); err != nil {
		t.Fatalf("Deploy v1 fresh: %v", err)
	}
	if p, _ := reg.Resolve(b.ctx, "counter"); p.Pool != nil {
		t.Errorf("fresh policy: Resolve gave a pool")
	}
	for range 2 {
		if got := execCounter(t, exec, "counter"); got != 1 {
			t.Errorf("fresh: counter %d, want 1", got)
		}
	}
}

// TestInstancesPolicyPersists: the policy is part of the stored manifest,
// so a restarted registry runs the plugin with it again.
func TestInstancesPolicyPersists(t *testing.T) {
	t.Parallel()
	reg, b := setup(t, plugins.Options{})
	m, err := plugins.ParseManifest([]byte(`{"instances": {"policy": "reuse", "max_uses": 2}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Deploy(b.ctx, "counter", module(t, "counter"), m, "test"); err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	reg2 := b.reopen(t)
	p, err := reg2.Resolve(b.ctx, "counter")
	if err != nil || p.Pool == nil {
		t.Fatalf("after reopen: pool %v, err %v", p.Pool, err)
	}
	if got := p.Pool.Policy(); got.Mode != host.InstancesReuse || got.MaxUses != 2 {
		t.Errorf("after reopen: policy %+v, want reuse with max_uses 2", got)
	}
}

// TestInstancesReuseNeedsHandler: a command module cannot be reused; the
// deploy is rejected naming the field.
func TestInstancesReuseNeedsHandler(t *testing.T) {
	t.Parallel()
	reg, b := setup(t, plugins.Options{})
	_, err := reg.Deploy(b.ctx, "cmd", module(t, "command"), &plugins.Manifest{Instances: &plugins.ManifestInstances{Policy: "reuse"}}, "test")
	var ve *plugins.ValidationError
	if !errors.As(err, &ve) || ve.Field != "manifest.instances.policy" || !strings.Contains(ve.Reason, "needs a handler-mode module") {
		t.Fatalf("Deploy: %v, want a ValidationError on manifest.instances.policy", err)
	}
}
