package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/internal/testnet"
)

// Cluster mode (issue 14): three or four `wasmtask serve --node-id`
// processes on loopback replicate the log with raft.

type clusterNode struct {
	id, raftAddr string
	s            *server
}

// pluginsDir is a --plugins folder holding noop.wasm, shared by every node
// (each loads it into its own registry).
func pluginsDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "noop.wasm"), module(t, "noop"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func startNode(t testing.TB, id, plugins string, extra ...string) *clusterNode {
	t.Helper()
	n := &clusterNode{id: id, raftAddr: testnet.Addr(t)}
	n.s = startServer(t, serverOpts{plugins: plugins, workers: 8,
		extra: append([]string{"--node-id", id, "--raft-addr", n.raftAddr}, extra...)})
	return n
}

// status is the node's own view (GET /v1/cluster?local=1), with the
// digest of its committed state.
func (n *clusterNode) status(t testing.TB) (api.ClusterStatus, error) {
	var st api.ClusterStatus
	cl := &http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get(n.s.URL + "/v1/cluster?local=1&digest=1")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return st, fmt.Errorf("GET /v1/cluster: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// waitLeader waits until one of nodes leads and serves its engine; it
// returns that node and how long it took.
func waitLeader(t testing.TB, within time.Duration, nodes ...*clusterNode) (*clusterNode, time.Duration) {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		for _, n := range nodes {
			if !n.s.running() {
				continue
			}
			st, err := n.status(t)
			if err != nil || st.Role != "leader" {
				continue
			}
			if _, err := n.s.client.EngineStatus(context.Background()); err == nil {
				return n, time.Since(start)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no leader serving within %v", within)
	return nil, 0
}

// waitConverged waits until every node applied the same sequence with the
// same state digest and, with servers > 0, sees that many servers.
func waitConverged(t testing.TB, within time.Duration, servers int, nodes ...*clusterNode) api.ClusterStatus {
	t.Helper()
	deadline := time.Now().Add(within)
	var last []string
	for {
		var first api.ClusterStatus
		same := true
		last = last[:0]
		for i, n := range nodes {
			st, err := n.status(t)
			if err != nil {
				same = false
				last = append(last, fmt.Sprintf("%s: %v", n.id, err))
				continue
			}
			last = append(last, fmt.Sprintf("%s: %s seq %d digest %.12s servers %d", n.id, st.Role, st.DigestSeq, st.Digest, len(st.Servers)))
			if i == 0 {
				first = st
			}
			same = same && st.DigestSeq == first.DigestSeq && st.Digest == first.Digest && st.Leader != "" &&
				(servers == 0 || len(st.Servers) == servers)
		}
		if same {
			return first
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes did not converge within %v:\n%s", within, strings.Join(last, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startCluster starts n1 (--bootstrap) and joins the others to it.
func startCluster(t testing.TB, plugins string, ids ...string) []*clusterNode {
	t.Helper()
	n1 := startNode(t, ids[0], plugins, "--bootstrap")
	waitLeader(t, 30*time.Second, n1)
	nodes := []*clusterNode{n1}
	for _, id := range ids[1:] {
		nodes = append(nodes, startNode(t, id, plugins, "--join", n1.s.URL))
	}
	waitConverged(t, 30*time.Second, len(ids), nodes...)
	return nodes
}

// loader submits tasks in batches with ids (so that resubmitting a batch
// whose answer was lost is harmless) through the nodes it is given, moving
// to another node when one does not answer. acked holds the ids whose
// batch was acknowledged.
type loader struct {
	mu    sync.Mutex
	acked []string
}

func (l *loader) run(t testing.TB, prefix string, total, batch int, targets func() []*clusterNode, pause time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for i := 0; i < total; i += batch {
		specs := make([]api.TaskSpec, 0, batch)
		for j := i; j < min(i+batch, total); j++ {
			specs = append(specs, api.TaskSpec{ID: fmt.Sprintf("%s-%05d", prefix, j), Handler: "noop", MaxAttempts: 3})
		}
		for try := 0; ; try++ {
			nodes := targets()
			n := nodes[(i/batch+try)%len(nodes)]
			res, err := n.s.client.SubmitBatch(ctx, specs)
			if err == nil {
				ok := true
				for _, r := range res {
					ok = ok && (r.Status == 200 || r.Status == 201)
				}
				if ok {
					break
				}
				err = fmt.Errorf("batch answered %+v", res[0])
			}
			if ctx.Err() != nil {
				return fmt.Errorf("batch at %d: %v", i, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		l.mu.Lock()
		for _, s := range specs {
			l.acked = append(l.acked, s.ID)
		}
		l.mu.Unlock()
		time.Sleep(pause)
	}
	return nil
}

func (l *loader) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

func running(nodes []*clusterNode) func() []*clusterNode {
	return func() []*clusterNode {
		var out []*clusterNode
		for _, n := range nodes {
			if n.s.running() {
				out = append(out, n)
			}
		}
		return out
	}
}

// waitCompleted waits until the leader's engine counts want completed runs.
func waitCompleted(t testing.TB, n *clusterNode, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, err := n.s.client.EngineStatus(context.Background())
		if err == nil && st.Runs["completed"] >= want {
			if st.Runs["completed"] != want {
				t.Fatalf("%d completed runs, want %d", st.Runs["completed"], want)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not %d completed runs within %v: %+v %v", want, within, st.Runs, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkExactlyOnce checks every acknowledged task through node n: completed,
// one ok attempt, none past max_attempts; extra attempts must have been
// closed as lost (in flight at a failover). It returns how many tasks ran
// an attempt again after a lost one.
func checkExactlyOnce(t testing.TB, n *clusterNode, ids []string) (again int) {
	t.Helper()
	byWorker := map[string]int{}
	defer func() {
		if len(byWorker) > 0 {
			t.Logf("recorded attempts by worker and outcome: %v", byWorker)
		}
	}()
	ctx := context.Background()
	for _, id := range ids {
		v, err := n.s.client.TaskGet(ctx, id)
		if err != nil {
			t.Fatalf("acknowledged task %s: %v", id, err)
		}
		if v.State != "completed" || len(v.Runs) != 1 {
			t.Fatalf("task %s: state %s with %d runs, want completed with 1", id, v.State, len(v.Runs))
		}
		oks, counted := 0, 0
		for _, a := range v.Runs[0].Attempts {
			switch a.Outcome {
			case "ok":
				oks++
				counted++
			case "lost":
			default:
				counted++
			}
		}
		if oks != 1 || counted > v.MaxAttempts {
			t.Errorf("task %s: %d ok attempts, %d counted of max %d: %+v", id, oks, counted, v.MaxAttempts, v.Runs[0].Attempts)
		}
		if len(v.Runs[0].Attempts) > 1 {
			again++
		}
		if os.Getenv("WASMTASK_CLUSTER_DEBUG") != "" {
			for _, a := range v.Runs[0].Attempts {
				byWorker[strings.SplitN(a.Worker, "/", 2)[0]+" "+a.Outcome]++
			}
		}
	}
	return again
}

// attemptsRun sums wasmtask_attempts_total (attempts executed by this
// process, every outcome) over the nodes that run.
func attemptsRun(t testing.TB, nodes []*clusterNode) int {
	t.Helper()
	total := 0
	for _, n := range nodes {
		resp, err := http.Get(n.s.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(line, "wasmtask_attempts_total{") {
				continue
			}
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			total += int(v)
			if os.Getenv("WASMTASK_CLUSTER_DEBUG") != "" {
				t.Logf("%s: %s", n.id, line)
			}
		}
	}
	return total
}

func mustStatus(t testing.TB, n *clusterNode) api.ClusterStatus {
	t.Helper()
	st, err := n.status(t)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("three processes")
	}
	total := 3000
	if v, err := strconv.Atoi(os.Getenv("WASMTASK_CLUSTER_TASKS")); err == nil && v > 0 {
		total = v
	}
	plugins := pluginsDir(t)
	nodes := startCluster(t, plugins, "n1", "n2", "n3")
	leader, _ := waitLeader(t, 10*time.Second, nodes...)
	var follower *clusterNode
	for _, n := range nodes {
		if n != leader {
			follower = n
			break
		}
	}
	if r := follower.s.mustCLI(0, "cluster", "status"); !strings.Contains(r.stdout, "leader "+leader.id) {
		t.Errorf("cluster status on a follower:\n%s", r.stdout)
	}

	// Load through a follower and the leader; kill -9 the leader a third in.
	var l loader
	loadErr := make(chan error, 1)
	go func() {
		loadErr <- l.run(t, "t", total, 50, func() []*clusterNode {
			return running([]*clusterNode{follower, leader})()
		}, 5*time.Millisecond)
	}()
	for l.count() < total/3 {
		time.Sleep(10 * time.Millisecond)
	}
	leader.s.kill()
	var survivors []*clusterNode
	for _, n := range nodes {
		if n != leader {
			survivors = append(survivors, n)
		}
	}
	next, took := waitLeader(t, 15*time.Second, survivors...)
	t.Logf("CLUSTER: kill -9 of leader %s with %d of %d tasks acknowledged; %s leads and serves after %v", leader.id, total/3, total, next.id, took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("a new leader took %v, want within 5s", took)
	}
	// The rest goes through the survivors.
	if err := <-loadErr; err != nil {
		t.Fatal(err)
	}
	next, _ = waitLeader(t, 10*time.Second, survivors...)
	waitCompleted(t, next, total, 2*time.Minute)
	again := checkExactlyOnce(t, next, l.acked)
	t.Logf("CLUSTER: %d tasks completed exactly once; %d ran an attempt again after it was lost at the failover", total, again)

	// The killed node restarts and catches up.
	leader.s.opts.extra = []string{"--node-id", leader.id, "--raft-addr", leader.raftAddr, "--join", next.s.URL}
	leader.s.start()
	st := waitConverged(t, 60*time.Second, 3, nodes...)
	t.Logf("CLUSTER: %s caught up: %d tasks at sequence %d on every node", leader.id, st.Tasks, st.DigestSeq)
	if st.Tasks != total {
		t.Errorf("%d tasks in the state, want %d", st.Tasks, total)
	}

	// SIGSTOP the leader past the election timeout, under load; SIGCONT.
	stopped, _ := waitLeader(t, 10*time.Second, nodes...)
	var others []*clusterNode
	for _, n := range nodes {
		if n != stopped {
			others = append(others, n)
		}
	}
	const more = 500
	runBefore := attemptsRun(t, nodes)
	termBefore := mustStatus(t, stopped).Term
	var l2 loader
	go func() {
		loadErr <- l2.run(t, "s", more, 25, func() []*clusterNode { return others }, 10*time.Millisecond)
	}()
	for l2.count() < more/5 {
		time.Sleep(10 * time.Millisecond)
	}
	ranBeforeStop := attemptsRun(t, []*clusterNode{stopped})
	if err := suspend(stopped.s.cmd.Process); err != nil {
		t.Fatal(err)
	}
	next, took = waitLeader(t, 15*time.Second, others...)
	time.Sleep(2 * time.Second) // well past the election timeout (1s)
	if err := resume(stopped.s.cmd.Process); err != nil {
		t.Fatal(err)
	}
	t.Logf("CLUSTER: SIGSTOP of leader %s: %s led after %v; resumed after 2s more", stopped.id, next.id, took.Round(time.Millisecond))
	if err := <-loadErr; err != nil {
		t.Fatal(err)
	}
	waitCompleted(t, next, total+more, 2*time.Minute)
	again = checkExactlyOnce(t, next, l2.acked)
	st = waitConverged(t, 60*time.Second, 3, nodes...)
	if s, err := stopped.status(t); err != nil || s.Role != "follower" || s.Leader != next.id {
		t.Errorf("the resumed node: %+v %v; want a follower of %s", s.Status, err, next.id)
	}
	// The resumed node may finish the attempts it was running when it
	// stopped and start those whose leases a majority had committed just
	// before it stopped (the new leader closed them as lost); the count
	// also holds what it ran between the metrics read and the SIGSTOP.
	time.Sleep(500 * time.Millisecond) // the resumed node's cancelled attempts report
	afterResume := attemptsRun(t, []*clusterNode{stopped}) - ranBeforeStop
	// Every process counts the attempts it executed: beyond one per task,
	// the attempts in flight at the failover ran again (at least once).
	twice := attemptsRun(t, nodes) - runBefore - more
	terms := st.Term - termBefore
	t.Logf("CLUSTER: after SIGCONT: %d tasks on every node at sequence %d; %d of %d tasks ran an attempt again after it was lost; %d attempts ran twice (in flight at the failover: started, result not committed); %d new terms; the resumed node ran %d attempts after the SIGSTOP",
		st.Tasks, st.DigestSeq, again, more, twice, terms, afterResume)
	if twice < 0 {
		t.Errorf("%d attempts executed for %d tasks completed", more+twice, more)
	}

	// SIGSTOP a quiet leader while tasks it holds come due, and resume it
	// after a new leader took over: its engine, stale, finds them due and
	// would run them if it still acted as the leader. It must run none.
	stopped, _ = waitLeader(t, 10*time.Second, nodes...)
	others = others[:0]
	for _, n := range nodes {
		if n != stopped {
			others = append(others, n)
		}
	}
	const due = 200
	dueAt := time.Now().Add(2500 * time.Millisecond)
	at := dueAt.UTC().Format(time.RFC3339Nano)
	specs := make([]api.TaskSpec, due)
	var dueIDs []string
	for i := range specs {
		specs[i] = api.TaskSpec{ID: fmt.Sprintf("d-%04d", i), Handler: "noop", MaxAttempts: 3, NotBefore: at}
		dueIDs = append(dueIDs, specs[i].ID)
	}
	if res, err := others[0].s.client.SubmitBatch(context.Background(), specs); err != nil || res[0].Status != 201 {
		t.Fatalf("submit the delayed tasks: %v %+v", err, res)
	}
	quiet := attemptsRun(t, []*clusterNode{stopped})
	if err := suspend(stopped.s.cmd.Process); err != nil {
		t.Fatal(err)
	}
	next, took = waitLeader(t, 15*time.Second, others...)
	termTakeover := mustStatus(t, next).Term
	time.Sleep(max(time.Until(dueAt.Add(time.Second)), 1500*time.Millisecond)) // past the tasks' due time and the election timeout
	if err := resume(stopped.s.cmd.Process); err != nil {
		t.Fatal(err)
	}
	waitCompleted(t, next, total+more+due, time.Minute)
	again = checkExactlyOnce(t, next, dueIDs)
	st = waitConverged(t, 60*time.Second, 3, nodes...)
	switch {
	case again != 0 && st.Term == termTakeover:
		t.Errorf("%d of the delayed tasks ran an attempt again; none was in flight at the failover and no leader changed since", again)
	case again != 0:
		// A loaded machine can stall the new leader past its lease too
		// (the term moved on): attempts in flight at that change run
		// again, as the at-least-once contract allows.
		t.Logf("CLUSTER: %d of the delayed tasks ran an attempt again, after %d more leader elections (term %d -> %d) while they ran", again, st.Term-termTakeover, termTakeover, st.Term)
	}
	time.Sleep(500 * time.Millisecond)
	ranByStale := attemptsRun(t, []*clusterNode{stopped}) - quiet
	t.Logf("CLUSTER: SIGSTOP of quiet leader %s with %d tasks coming due; %s led after %v; the resumed node ran %d attempts", stopped.id, due, next.id, took.Round(time.Millisecond), ranByStale)
	if ranByStale != 0 {
		t.Errorf("the resumed deposed leader ran %d attempts; it must run none", ranByStale)
	}
}

func TestClusterMembership(t *testing.T) {
	if testing.Short() {
		t.Skip("four processes")
	}
	plugins := pluginsDir(t)
	nodes := startCluster(t, plugins, "n1", "n2", "n3")
	leader, _ := waitLeader(t, 10*time.Second, nodes...)
	var l loader
	loadErr := make(chan error, 1)
	go func() {
		loadErr <- l.run(t, "m", 1000, 50, func() []*clusterNode { return []*clusterNode{leader} }, 10*time.Millisecond)
	}()
	for l.count() < 200 {
		time.Sleep(10 * time.Millisecond)
	}
	n4 := startNode(t, "n4", plugins, "--join", nodes[1].s.URL)
	nodes = append(nodes, n4)
	waitConverged(t, 60*time.Second, 4, nodes...)
	// Remove a follower through another node (forwarded to the leader).
	var gone, asked *clusterNode
	for _, n := range nodes[:3] {
		switch {
		case n == leader:
		case gone == nil:
			gone = n
		default:
			asked = n
		}
	}
	r := asked.s.mustCLI(0, "cluster", "remove", gone.id)
	if strings.Contains(r.stdout, gone.id+" ") {
		t.Errorf("cluster remove %s printed it still:\n%s", gone.id, r.stdout)
	}
	if err := <-loadErr; err != nil {
		t.Fatal(err)
	}
	waitCompleted(t, leader, 1000, 2*time.Minute)
	var rest []*clusterNode
	for _, n := range nodes {
		if n != gone {
			rest = append(rest, n)
		}
	}
	st := waitConverged(t, 60*time.Second, 3, rest...)
	if st.Tasks != 1000 {
		t.Errorf("%d tasks, want 1000", st.Tasks)
	}
	for _, s := range st.Servers {
		if s.ID == gone.id {
			t.Errorf("%s is still in the configuration: %+v", gone.id, st.Servers)
		}
	}
	checkExactlyOnce(t, leader, l.acked)
	t.Logf("CLUSTER: n4 joined under load and %s was removed; %d tasks identical on %d nodes at sequence %d", gone.id, st.Tasks, len(rest), st.DigestSeq)
}
