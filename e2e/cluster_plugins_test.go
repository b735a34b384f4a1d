package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/plugins"
)

// localPlugin is node n's own registry's view of plugin name
// (GET /v1/plugins/{name}?local=1); ok false on 404.
func localPlugin(t testing.TB, n *clusterNode, name string) (info plugins.Info, ok bool) {
	t.Helper()
	r := n.s.do("GET", "/v1/plugins/"+name+"?local=1", nil)
	switch r.status {
	case 404:
		return info, false
	case 200:
	default:
		t.Fatalf("GET /v1/plugins/%s?local=1 on %s: %d %s", name, n.id, r.status, r.body)
	}
	if err := json.Unmarshal(r.body, &info); err != nil {
		t.Fatal(err)
	}
	return info, true
}

// waitEveryNodeRuns waits until every node's own registry has version
// active for name.
func waitEveryNodeRuns(t testing.TB, name, version string, nodes ...*clusterNode) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range nodes {
		for {
			info, _ := localPlugin(t, n, name)
			if info.Active == version {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s runs %q of %s, want %s (%s)", n.id, info.Active, name, version, info.LastError)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// runOutput submits a task of handler through c and returns its output
// and the module its attempt ran.
func runOutput(t testing.TB, c *api.Client, id, handler string) (output, module string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Submit(ctx, api.TaskSpec{ID: id, Handler: handler}); err != nil {
		t.Fatalf("submit %s: %v", id, err)
	}
	v, err := c.TaskWait(ctx, id, 30*time.Second)
	if err != nil || v.State != "completed" || v.Output == nil {
		t.Fatalf("task %s: %v %s %+v", id, err, v.State, v.Runs)
	}
	a := v.Runs[len(v.Runs)-1].Attempts
	return *v.Output, a[len(a)-1].Module
}

// TestClusterPluginsReplicated: a deploy and a rollback through a follower
// reach every node's registry (manifest included); after kill -9 of the
// leader the new leader runs the deployed version. A watched --plugins
// folder stays its own node's.
func TestClusterPluginsReplicated(t *testing.T) {
	if testing.Short() {
		t.Skip("three processes")
	}
	// Each node its own watched folder, each holding noop.wasm.
	dirs := map[string]string{}
	for _, id := range []string{"n1", "n2", "n3"} {
		dirs[id] = pluginsDir(t)
	}
	n1 := startNode(t, "n1", dirs["n1"], "--bootstrap")
	waitLeader(t, 30*time.Second, n1)
	nodes := []*clusterNode{n1, startNode(t, "n2", dirs["n2"], "--join", n1.s.URL), startNode(t, "n3", dirs["n3"], "--join", n1.s.URL)}
	waitConverged(t, 30*time.Second, 3, nodes...)
	leader, _ := waitLeader(t, 10*time.Second, nodes...)
	followers := followersOf(leader, nodes)
	ctx := context.Background()

	manifest := []byte(`{"config": {"greeting": "hi"}}`)
	r1, err := followers[0].s.client.PluginDeploy(ctx, "sw", module(t, "swap_v1"), manifest)
	if err != nil || !r1.Changed {
		t.Fatalf("deploy v1 through follower %s: %+v %v", followers[0].id, r1, err)
	}
	waitEveryNodeRuns(t, "sw", r1.Version, nodes...)
	r2, err := followers[1].s.client.PluginDeploy(ctx, "sw", module(t, "swap_v2"), nil)
	if err != nil || r2.Previous != r1.Version {
		t.Fatalf("deploy v2 through follower %s: %+v %v", followers[1].id, r2, err)
	}
	waitEveryNodeRuns(t, "sw", r2.Version, nodes...)
	if out, mod := runOutput(t, followers[0].s.client, "p-1", "sw"); out != "v2" || mod != r2.Version {
		t.Errorf("after the deploy of v2: output %q from %s", out, mod)
	}
	// Rollback (to v1 with its manifest) and forward again, through a follower.
	if rb, err := followers[1].s.client.PluginRollback(ctx, "sw", ""); err != nil || rb.Version != r1.Version {
		t.Fatalf("rollback: %+v %v", rb, err)
	}
	waitEveryNodeRuns(t, "sw", r1.Version, nodes...)
	for _, n := range nodes {
		info, _ := localPlugin(t, n, "sw")
		if h := info.History; len(h) == 0 || h[len(h)-1].Manifest == nil || h[len(h)-1].Manifest.Config["greeting"] != "hi" {
			t.Errorf("%s: the rolled back activation lost its manifest: %+v", n.id, h)
		}
	}
	if _, err := followers[0].s.client.PluginRollback(ctx, "sw", r2.Version); err != nil {
		t.Fatal(err)
	}
	waitEveryNodeRuns(t, "sw", r2.Version, nodes...)

	// A file in one node's watched folder is loaded by that node only.
	if err := os.WriteFile(filepath.Join(dirs[followers[1].id], "only.wasm"), module(t, "noop"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, ok := localPlugin(t, followers[1], "only"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not load only.wasm from its watched folder", followers[1].id)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, n := range []*clusterNode{leader, followers[0]} {
		if _, ok := localPlugin(t, n, "only"); ok {
			t.Errorf("%s loaded only.wasm, which is in %s's folder only", n.id, followers[1].id)
		}
	}

	// kill -9 the leader: the new one runs v2.
	leader.s.kill()
	next, took := waitLeader(t, 15*time.Second, followers...)
	t.Logf("CLUSTER: %s leads %v after the kill -9 of %s", next.id, took.Round(time.Millisecond), leader.id)
	if out, mod := runOutput(t, next.s.client, "p-2", "sw"); out != "v2" || mod != r2.Version {
		t.Errorf("after the failover: output %q from %s, want v2 from %s", out, mod, r2.Version)
	}
}
