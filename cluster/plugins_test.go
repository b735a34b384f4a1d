package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"
)

// fakeRegistry records the plugin changes a node carries out.
type fakeRegistry struct {
	mu      sync.Mutex
	active  map[string]string // name -> version
	modules map[string][]byte
	ops     []string
}

func newFakeRegistry() *fakeRegistry {
	return &fakeRegistry{active: map[string]string{}, modules: map[string][]byte{}}
}

func version(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func (r *fakeRegistry) ApplyPlugin(_ context.Context, c PluginChange) (any, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, c.Op+" "+c.Name)
	if len(c.Module) > 0 {
		if version(c.Module) != c.Version {
			return nil, fmt.Errorf("module bytes of %s hash to %s", c.Version, version(c.Module))
		}
		r.modules[c.Version] = c.Module
	}
	if c.Op == "store" {
		return nil, nil
	}
	if r.modules[c.Version] == nil {
		return nil, fmt.Errorf("no module %s", c.Version)
	}
	r.active[c.Name] = c.Version
	return "active " + c.Version, nil
}

func (r *fakeRegistry) Module(v string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b, ok := r.modules[v]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("no module %s", v)
}

func (r *fakeRegistry) activeOf(name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active[name]
}

// waitActive waits until reg runs want for name.
func waitActive(t *testing.T, node string, reg *fakeRegistry, name, want string) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for reg.activeOf(name) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s runs %q for %s, want %s", node, reg.activeOf(name), name, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A plugin change proposed on the leader is carried out on every node,
// the proposer's answer is its own registry's; a node that joins after
// the log was compacted gets every version from the snapshot (the active
// one active, the others stored for rollbacks).
func TestPluginChangesReplicate(t *testing.T) {
	c := newTestCluster(t)
	c.snapshotEvery = 8
	c.plugins = map[string]*fakeRegistry{"n1": newFakeRegistry(), "n2": newFakeRegistry(), "n3": newFakeRegistry()}
	defer c.closeAll()
	n1 := c.start("n1", true)
	c.leader()
	c.start("n3", false)
	if err := n1.Join("n3", c.addrs["n3"], "http://n3.invalid"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	v1, v2 := []byte("\x00asm one"), []byte("\x00asm two")
	for _, ch := range []PluginChange{
		{Op: "deploy", Name: "sw", Version: version(v1), Module: v1, Source: "http"},
		{Op: "deploy", Name: "sw", Version: version(v2), Module: v2, Source: "http"},
	} {
		got, err := n1.ProposePlugin(ctx, ch)
		if err != nil || got != "active "+ch.Version {
			t.Fatalf("propose %s: %v %v", ch.Version, got, err)
		}
	}
	waitActive(t, "n3", c.plugins["n3"], "sw", version(v2))
	if _, err := c.nodes["n3"].ProposePlugin(ctx, PluginChange{Op: "deploy", Name: "x", Version: version(v1), Module: v1}); err == nil {
		t.Error("a follower proposed a plugin change")
	}

	submitAndWait(t, n1.Engine(), "a", 20)
	snapshot(t, n1)
	submitAndWait(t, n1.Engine(), "b", 10)
	if first, err := n1.store.FirstIndex(); err != nil || first <= 1 {
		t.Fatalf("the leader's log starts at %d (%v): not compacted", first, err)
	}
	n2 := c.start("n2", false)
	if err := n1.Join("n2", c.addrs["n2"], "http://n2.invalid"); err != nil {
		t.Fatal(err)
	}
	c.converged()
	reg2 := c.plugins["n2"]
	waitActive(t, "n2", reg2, "sw", version(v2))
	if _, err := reg2.Module(version(v1)); err != nil {
		t.Errorf("n2 lacks v1 (for rollbacks) after catching up from the snapshot: %v; ops %v", err, reg2.ops)
	}
	// A rollback reaches n2 too.
	if _, err := n1.ProposePlugin(ctx, PluginChange{Op: "activate", Name: "sw", Version: version(v1), Source: "rollback"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		waitActive(t, id, c.plugins[id], "sw", version(v1))
	}
	_ = n2
}
