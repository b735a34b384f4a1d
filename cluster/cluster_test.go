package cluster

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/internal/testnet"
)

// testCluster runs nodes in this process on loopback ports.
type testCluster struct {
	t     testing.TB
	nodes map[string]*Node
	dirs  map[string]string
	addrs map[string]string
	runs  atomic.Int64 // attempts executed, over all nodes
	mu    sync.Mutex
	// snapshotEvery is raft's SnapshotThreshold (and TrailingLogs); 0: default.
	snapshotEvery uint64
	// workers is the engine's Workers; 0: 8.
	workers int
	// store is Config.LogStore ("": the default).
	store string
	// plugins are the nodes' registries (plugins_test.go); nil: none.
	plugins map[string]*fakeRegistry
}

// testHeartbeat is raft's heartbeat, election and leader lease timeout in
// these tests. The three nodes share one process, which a loaded 2-core
// machine under -race (load 20-30) stalls for hundreds of milliseconds: a
// follower then calls an election or the leader steps down mid-test
// ("leadership lost while committing log"). TestThreeNodesReplicateAndFailOver
// under that load: 300 ms each failed 9 of 10 runs; raft's 1 s timeouts
// and 500 ms lease 4 of 8; 2 s timeouts with the 500 ms lease 4 of 10 (the
// new leader of two nodes stepped down after the failover); all three at
// 2 s 10 of 10 passed. Failovers take a few seconds more.
const testHeartbeat = 2 * time.Second

// testWait bounds the waits for a leader, convergence and snapshots: far
// beyond what they take on a quiet machine (well under a second), so that
// a loaded one does not fail them.
const testWait = time.Minute

func newTestCluster(t testing.TB) *testCluster {
	return &testCluster{t: t, nodes: map[string]*Node{}, dirs: map[string]string{}, addrs: map[string]string{}}
}

func (c *testCluster) start(id string, bootstrap bool) *Node {
	c.t.Helper()
	if c.dirs[id] == "" {
		c.dirs[id], c.addrs[id] = c.t.TempDir(), testnet.Addr(c.t)
	}
	exec := dispatch.ExecutorFunc(func(ctx context.Context, job dispatch.Job) dispatch.Result {
		c.runs.Add(1)
		return dispatch.Result{Outcome: dispatch.OutcomeOK, Output: []byte("ok")}
	})
	n, err := Open(Config{NodeID: id, RaftAddr: c.addrs[id], HTTPAddr: "http://" + id + ".invalid", Dir: c.dirs[id], Bootstrap: bootstrap,
		Engine: dispatch.Config{Executor: exec, Workers: cmp.Or(c.workers, 8), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RaftLog: io.Discard,
		HeartbeatTimeout: testHeartbeat, ElectionTimeout: testHeartbeat, LeaderLeaseTimeout: testHeartbeat, SnapshotThreshold: c.snapshotEvery, LogStore: c.store,
		Plugins: c.registry(id)})
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.nodes[id] = n
	c.mu.Unlock()
	return n
}

// startTwo starts n1 (bootstrapped, so the leader) and n2, and has n1
// add n2 as a voter; it returns both.
func (c *testCluster) startTwo() (leader, follower *Node) {
	c.t.Helper()
	n1 := c.start("n1", true)
	n2 := c.start("n2", false)
	c.leader()
	if err := n1.Join("n2", c.addrs["n2"], "http://n2.invalid"); err != nil {
		c.t.Fatal(err)
	}
	return n1, n2
}

// startThree starts n1 (bootstrapped, so the leader), n2 and n3, and has
// n1 add the other two as voters; it returns n1.
func (c *testCluster) startThree() *Node {
	c.t.Helper()
	n1 := c.start("n1", true)
	c.start("n2", false)
	c.start("n3", false)
	if l := c.leader(); l != n1 {
		c.t.Fatalf("leader %s, want the bootstrapped n1", l.cfg.NodeID)
	}
	for _, id := range []string{"n2", "n3"} {
		if err := n1.Join(id, c.addrs[id], "http://"+id+".invalid"); err != nil {
			c.t.Fatal(err)
		}
	}
	return n1
}

// registry is node id's plugin registry, or nil (an interface holding
// no *fakeRegistry).
func (c *testCluster) registry(id string) Plugins {
	if r := c.plugins[id]; r != nil {
		return r
	}
	return nil
}

func (c *testCluster) closeAll() {
	for id, n := range c.nodes {
		n.Close()
		delete(c.nodes, id)
	}
}

// leader waits until one of the running nodes leads and runs its engine.
func (c *testCluster) leader() *Node {
	c.t.Helper()
	deadline := time.Now().Add(testWait)
	for time.Now().Before(deadline) {
		for _, n := range c.nodes {
			if n.IsLeader() && n.Engine() != nil {
				return n
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("no leader with a running engine within %v", testWait)
	return nil
}

// converged waits until every running node applied the same sequence and
// checks that their states are identical.
func (c *testCluster) converged() uint64 {
	c.t.Helper()
	deadline := time.Now().Add(testWait)
	for {
		seqs := map[uint64]bool{}
		digests := map[string][]string{}
		for id, n := range c.nodes {
			seq, d, err := n.Digest()
			if err != nil {
				c.t.Fatal(err)
			}
			seqs[seq] = true
			digests[d] = append(digests[d], id)
		}
		if len(seqs) == 1 && len(digests) == 1 {
			for s := range seqs {
				return s
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("nodes did not converge within %v: sequences %v, digests %v", testWait, seqs, digests)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func submitAndWait(t *testing.T, e *dispatch.Engine, prefix string, n int) {
	t.Helper()
	if e == nil { // rather than a nil pointer panic that ends the whole package
		t.Fatal("no engine: the node does not lead (leadership moved mid-test)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*testWait)
	defer cancel()
	var ids []dispatch.TaskID
	for i := range n {
		res, err := e.Submit(ctx, dispatch.TaskSpec{ID: dispatch.TaskID(fmt.Sprintf("%s-%d", prefix, i)), Handler: "noop", MaxAttempts: 3})
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
		ids = append(ids, res.Task)
	}
	waitCompleted(t, ctx, e, ids)
}

func waitCompleted(t *testing.T, ctx context.Context, e *dispatch.Engine, ids []dispatch.TaskID) {
	t.Helper()
	for _, id := range ids {
		v, err := e.Wait(ctx, id)
		if err != nil || v.State != dispatch.TaskCompleted {
			t.Fatalf("task %s: %v %v", id, v.State, err)
		}
	}
}

func TestThreeNodesReplicateAndFailOver(t *testing.T) {
	c := newTestCluster(t)
	defer c.closeAll()
	n1 := c.startThree()
	submitAndWait(t, n1.Engine(), "a", 200)
	seq := c.converged()
	if got := c.runs.Load(); got != 200 {
		t.Errorf("%d attempts ran for 200 tasks, want exactly 200", got)
	}
	st := c.nodes["n3"].Status()
	if st.Tasks != 200 || st.Leader != "n1" || st.LeaderHTTP != "http://n1.invalid" || len(st.Servers) != 3 {
		t.Errorf("n3's status: %+v", st)
	}
	t.Logf("converged at sequence %d", seq)

	// The leader stops; another takes over on the same committed state.
	start := time.Now()
	n1.Close()
	delete(c.nodes, "n1")
	l := c.leader()
	t.Logf("new leader %s after %v", l.cfg.NodeID, time.Since(start))
	submitAndWait(t, l.Engine(), "b", 100)
	c.converged()

	// n1 comes back and catches up.
	c.start("n1", true)
	c.converged()
	if st := c.nodes["n1"].Status(); st.Tasks != 300 || st.Leader != l.cfg.NodeID {
		t.Errorf("n1 after its restart: tasks %d, leader %q", st.Tasks, st.Leader)
	}
	if got := c.runs.Load(); got != 300 {
		t.Errorf("%d attempts ran for 300 tasks, want exactly 300", got)
	}
}

// A node that joins after the log was compacted catches up from raft's
// snapshot (the FSM's: the dispatch snapshot encoding) plus the tail, and
// so does a node restarted on its own snapshot.
func TestCatchUpFromSnapshot(t *testing.T) {
	c := newTestCluster(t)
	c.snapshotEvery = 8
	defer c.closeAll()
	n1 := c.start("n1", true)
	c.leader()
	c.start("n3", false) // three voters: the leader keeps its quorum while n2 installs the snapshot
	if err := n1.Join("n3", c.addrs["n3"], "http://n3.invalid"); err != nil {
		t.Fatal(err)
	}
	submitAndWait(t, n1.Engine(), "a", 150)
	snapshot(t, n1)
	submitAndWait(t, n1.Engine(), "b", 20) // a tail after the snapshot
	first, err := n1.store.FirstIndex()
	if err != nil || first <= 1 {
		t.Fatalf("the leader's log starts at %d (%v): not compacted, the test would not need the snapshot", first, err)
	}
	n2 := c.start("n2", false)
	if err := n1.Join("n2", c.addrs["n2"], "http://n2.invalid"); err != nil {
		t.Fatal(err)
	}
	seq := c.converged()
	if st := n2.Status(); st.Tasks != 170 {
		t.Errorf("n2 holds %d tasks after catching up, want 170", st.Tasks)
	}
	// n2 restarts on its own snapshot and log. (A follower learns that
	// the last entry, its own AddVoter, is committed with the next one.)
	submitAndWait(t, n1.Engine(), "x", 1)
	snapshot(t, n2)
	n2.Close()
	delete(c.nodes, "n2")
	submitAndWait(t, n1.Engine(), "c", 30)
	c.start("n2", false)
	if got := c.converged(); got <= seq {
		t.Errorf("converged at %d, want past %d", got, seq)
	}
	if st := c.nodes["n2"].Status(); st.Tasks != 201 {
		t.Errorf("n2 holds %d tasks after its restart, want 201", st.Tasks)
	}
}

// snapshot has raft snapshot n, retrying while raft is not ready for one
// (an entry it must apply first).
func snapshot(t *testing.T, n *Node) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for {
		err := n.raft.Snapshot().Error()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshot of %s: %v", n.cfg.NodeID, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A follower that was down catches up from the leader's log when the
// entries it lacks are no longer in the leader's memory (walStoreMemory):
// raft reads them back from segwal, in order.
func TestCatchUpReadsBack(t *testing.T) {
	old := walStoreMemory
	walStoreMemory = 1 << 10
	defer func() { walStoreMemory = old }()
	c := newTestCluster(t)
	defer c.closeAll()
	n1 := c.startThree()
	submitAndWait(t, n1.Engine(), "a", 20)
	c.converged()
	c.nodes["n3"].Close()
	delete(c.nodes, "n3")
	submitAndWait(t, n1.Engine(), "b", 300)
	ws := n1.store.(*walStore)
	ws.mu.RLock()
	onDisk, last := ws.onDisk, ws.lastLocked()
	ws.mu.RUnlock()
	c.start("n3", false)
	c.converged()
	if st := c.nodes["n3"].Status(); st.Tasks != 320 {
		t.Errorf("n3 holds %d tasks after catching up, want 320", st.Tasks)
	}
	ws.readMu.Lock()
	readsBack := ws.readsBack
	ws.readMu.Unlock()
	if onDisk < 20 || readsBack == 0 {
		t.Errorf("%d of the leader's %d entries were on disk only, %d read back: the test did not read back", onDisk, last, readsBack)
	}
	t.Logf("%d of the leader's %d entries on disk only; %d read back", onDisk, last, readsBack)
}

// Leadership moves from a leader whose FSM skipped its own entries (and
// took raft's snapshots from its engine, so its log was compacted past
// them) to another node and back: the former leader's committed state,
// caught up from its snapshot base and log, is identical to the others'
// at every step, and so is the engine's committed state on each leader.
func TestLeaderChangeAfterSkippedEntries(t *testing.T) {
	c := newTestCluster(t)
	c.snapshotEvery = 8
	defer c.closeAll()
	n1 := c.startThree()
	submitAndWait(t, n1.Engine(), "a", 60)
	snapshot(t, n1) // from the engine: n1's FSM never applied these
	n1.fsm.mu.Lock()
	fromEngine := n1.fsm.baseSnap != nil
	n1.fsm.mu.Unlock()
	if !fromEngine {
		t.Fatal("n1's snapshot was not taken from its engine (no base set)")
	}
	submitAndWait(t, n1.Engine(), "b", 40)
	if first, err := n1.store.FirstIndex(); err != nil || first <= 1 {
		t.Fatalf("n1's log starts at %d (%v): not compacted, the test would not need the snapshot's base", first, err)
	}
	seq := c.converged()
	if s, d := engineDigest(t, n1.Engine()); s != seq || !digestIs(t, c.nodes["n2"], d) {
		t.Errorf("n1's engine's committed state at %d differs from n2's at %d", s, seq)
	}
	for round, to := range []string{"n2", "n1"} {
		from := c.leader()
		l := transferLeadership(t, c, to)
		submitAndWait(t, l.Engine(), fmt.Sprintf("c%d", round), 50)
		snapshot(t, l)
		submitAndWait(t, l.Engine(), fmt.Sprintf("d%d", round), 20)
		seq := c.converged()
		if s, d := engineDigest(t, l.Engine()); s != seq || !digestIs(t, from, d) {
			t.Errorf("round %d: %s's engine's committed state at %d differs from the former leader %s's at %d", round, to, s, from.cfg.NodeID, seq)
		}
	}
	if st := c.nodes["n3"].Status(); st.Tasks != 240 {
		t.Errorf("n3 holds %d tasks, want 240", st.Tasks)
	}
	if got := c.runs.Load(); got != 240 {
		t.Errorf("%d attempts ran for 240 tasks, want exactly 240", got)
	}
}

// transferLeadership moves the leadership to node to, asking again while
// a transfer fails (a loaded machine can miss its election timeout), and
// returns it once it leads with its engine.
func transferLeadership(t *testing.T, c *testCluster, to string) *Node {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for {
		l := c.leader()
		if l.cfg.NodeID == to {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still leads, not %s, after %v", l.cfg.NodeID, to, testWait)
		}
		if err := l.raft.LeadershipTransferToServer(raft.ServerID(to), raft.ServerAddress(c.addrs[to])).Error(); err != nil {
			t.Logf("transfer from %s to %s: %v (asking again)", l.cfg.NodeID, to, err)
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// digestIs reports whether n's committed state has digest d.
func digestIs(t *testing.T, n *Node, d string) bool {
	t.Helper()
	_, got, err := n.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return got == d
}
