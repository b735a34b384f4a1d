package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/internal/testnet"
)

// TestClusterRemoteWorker: three `serve --workers 0` nodes schedule only,
// one `wasmtask worker` pointed at the leader runs every attempt. kill -9
// of the leader under load: the worker moves to another node by itself
// (it learned the members from GET /v1/cluster) and goes on with the new
// leader; every acknowledged task completes exactly once (attempts in
// flight at the failover closed lost and run again), all on the worker.
func TestClusterRemoteWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("four processes")
	}
	plugins := pluginsDir(t)
	start := func(id string, extra ...string) *clusterNode {
		n := &clusterNode{id: id, raftAddr: testnet.Addr(t)}
		n.s = startServer(t, serverOpts{plugins: plugins, scheduleOnly: true,
			extra: append([]string{"--node-id", id, "--raft-addr", n.raftAddr, "--worker-lease-timeout", "3s"}, extra...)})
		return n
	}
	n1 := start("n1", "--bootstrap")
	waitLeader(t, 30*time.Second, n1)
	nodes := []*clusterNode{n1, start("n2", "--join", n1.s.URL), start("n3", "--join", n1.s.URL)}
	waitConverged(t, 30*time.Second, 3, nodes...)
	leader, _ := waitLeader(t, 10*time.Second, nodes...)
	followers := followersOf(leader, nodes)
	w := startWorker(t, leader.s, "w1")
	defer w.kill()

	const total = 600
	var l loader
	loadErr := make(chan error, 1)
	go func() {
		loadErr <- l.run(t, "w", total, 25, func() []*clusterNode { return followers }, 10*time.Millisecond)
	}()
	for l.count() < total/3 {
		time.Sleep(10 * time.Millisecond)
	}
	leader.s.kill()
	next, took := waitLeader(t, 15*time.Second, followers...)
	t.Logf("CLUSTER: kill -9 of leader %s (the worker's --server) with %d tasks acknowledged; %s leads after %v",
		leader.id, l.count(), next.id, took.Round(time.Millisecond))
	if err := <-loadErr; err != nil {
		t.Fatal(err)
	}
	waitCompleted(t, next, total, 2*time.Minute)
	again := checkExactlyOnce(t, next, l.acked)
	ctx := context.Background()
	for _, id := range l.acked {
		v, err := next.s.client.TaskGet(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		a := v.Runs[0].Attempts
		if last := a[len(a)-1]; !strings.HasPrefix(last.Worker, "w1") {
			t.Fatalf("task %s completed on %q, want the remote worker w1 (every node schedules only)", id, last.Worker)
		}
	}
	if !w.running() {
		t.Fatalf("the worker exited: %s", w.log.String())
	}
	if !strings.Contains(w.log.String(), "server answers again") && !strings.Contains(w.log.String(), "unreachable") {
		t.Logf("worker log:\n%s", tail(w.log.String(), 3000))
	}
	t.Logf("CLUSTER: %d tasks completed exactly once on the remote worker across the failover; %d ran an attempt again (in flight at the kill)", total, again)
}
