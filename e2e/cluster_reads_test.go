package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
)

// followersOf returns the nodes other than leader.
func followersOf(leader *clusterNode, nodes []*clusterNode) []*clusterNode {
	var out []*clusterNode
	for _, n := range nodes {
		if n != leader {
			out = append(out, n)
		}
	}
	return out
}

// metricValue is the value of the metrics line that starts with prefix
// on node n (-1: no such line).
func metricValue(t testing.TB, n *clusterNode, prefix string) float64 {
	t.Helper()
	r := n.s.do("GET", "/metrics", nil)
	for _, line := range strings.Split(string(r.body), "\n") {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			return v
		}
	}
	return -1
}

// TestClusterFollowerReads: tasks submitted through one node are read at
// once through the two others, many times: never a 404, never older than
// what the client saw (the clients share one X-Wasmtask-Index tracker);
// the followers answer most reads themselves. The CLI, one process per
// command, gets no 404 either. Once the leader is killed, the followers
// go on answering reads.
func TestClusterFollowerReads(t *testing.T) {
	if testing.Short() {
		t.Skip("three processes")
	}
	nodes := startCluster(t, pluginsDir(t), "n1", "n2", "n3")
	leader, _ := waitLeader(t, 10*time.Second, nodes...)
	followers := followersOf(leader, nodes)
	shared := new(api.IndexTracker)
	clients := make([]*api.Client, len(nodes))
	for i, n := range nodes {
		clients[i] = api.NewClient(n.s.URL, "")
		clients[i].Index = shared
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const tasks = 150
	var submitTime [2]time.Duration // through the leader, through a follower
	for i := range tasks {
		id := fmt.Sprintf("r-%04d", i)
		via := i % len(nodes)
		start := time.Now()
		if _, err := clients[via].Submit(ctx, api.TaskSpec{ID: id, Handler: "noop"}); err != nil {
			t.Fatalf("submit %s through %s: %v", id, nodes[via].id, err)
		}
		if nodes[via] == leader {
			submitTime[0] += time.Since(start)
		} else {
			submitTime[1] += time.Since(start)
		}
		for k := 1; k < len(nodes); k++ {
			j := (via + k) % len(nodes)
			v, err := clients[j].TaskGet(ctx, id)
			if err != nil {
				t.Fatalf("GET %s through %s right after its submit through %s: %v", id, nodes[j].id, nodes[via].id, err)
			}
			if v.ID != id {
				t.Fatalf("GET %s through %s: got task %q", id, nodes[j].id, v.ID)
			}
		}
		if i%10 == 0 {
			// Final through one node: final through every other at once.
			w := (via + 1) % len(nodes)
			v, err := clients[w].TaskWait(ctx, id, 20*time.Second)
			if err != nil || v.State != "completed" {
				t.Fatalf("wait %s through %s: %v %s", id, nodes[w].id, err, v.State)
			}
			for j := range nodes {
				if v, err := clients[j].TaskGet(ctx, id); err != nil || v.State != "completed" {
					t.Fatalf("GET %s through %s after it completed: %s %v (stale)", id, nodes[j].id, v.State, err)
				}
			}
			l, err := clients[(via+2)%len(nodes)].TaskList(ctx, &api.TaskListParams{Limit: 1})
			if err != nil || len(l.Tasks) != 1 || l.Tasks[0].ID != id {
				t.Fatalf("list through %s after submitting %s: %+v %v (stale)", nodes[(via+2)%len(nodes)].id, id, l.Tasks, err)
			}
		}
	}
	t.Logf("CLUSTER: mean submit %v through the leader, %v through a follower (which answers once it applied the task)",
		(submitTime[0] / (tasks / 3)).Round(10*time.Microsecond), (submitTime[1] / (2 * tasks / 3)).Round(10*time.Microsecond))
	for _, f := range followers {
		local := metricValue(t, f, `wasmtask_cluster_follower_reads_total{answered="local"}`)
		fwd := metricValue(t, f, `wasmtask_cluster_follower_reads_total{answered="leader"}`)
		t.Logf("CLUSTER: follower %s answered %v reads itself and forwarded %v to the leader", f.id, local, fwd)
		if local < tasks/2 {
			t.Errorf("follower %s answered %v reads itself, want most of its %d", f.id, local, 2*tasks*2/3)
		}
	}
	// Every answer carries the index, and a follower's engine status says so.
	r := followers[0].s.do("GET", "/v1/engine", nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"role": "follower"`) || r.header.Get(api.IndexHeader) == "" {
		t.Errorf("GET /v1/engine on follower %s: %d %s %q", followers[0].id, r.status, r.body, r.header.Get(api.IndexHeader))
	}

	// The CLI: one process submits through a node, the next reads through
	// another at once.
	for i := range 4 {
		id := fmt.Sprintf("cli-%d", i)
		a, b := nodes[i%3], nodes[(i+1)%3]
		a.s.mustCLI(0, "submit", "noop", "--id", id)
		if g := b.s.cli("get", id); g.code != 0 || !strings.Contains(g.stdout, id) {
			t.Fatalf("wasmtask get %s through %s right after submit through %s: %s", id, b.id, a.id, g)
		}
	}
	// An unknown task is a 404 still (from the leader).
	if _, err := clients[indexOf(nodes, followers[0])].TaskGet(ctx, "no-such-task"); !isNotFound(err) {
		t.Errorf("GET an unknown task through a follower: %v, want 404", err)
	}

	// The leader reports each follower's lag; a follower that stops
	// answering is reported down.
	waitPeerMetric(t, leader, "up", followers[0].id, 1)
	waitPeerMetric(t, leader, "up", followers[1].id, 1)
	for _, f := range followers {
		if lag := metricValue(t, leader, `wasmtask_cluster_peer_lag{peer="`+f.id+`"}`); lag < 0 || lag > 1000 {
			t.Errorf("the leader reports follower %s %v entries behind", f.id, lag)
		}
		if v := metricValue(t, f, `wasmtask_cluster_peer_lag{`); v != -1 {
			t.Errorf("follower %s reports a peer lag (%v); only the leader does", f.id, v)
		}
	}
	if err := suspend(followers[1].s.cmd.Process); err != nil {
		t.Fatal(err)
	}
	waitPeerMetric(t, leader, "up", followers[1].id, 0)
	if err := resume(followers[1].s.cmd.Process); err != nil {
		t.Fatal(err)
	}
	waitPeerMetric(t, leader, "up", followers[1].id, 1)

	// kill -9 the leader: the followers answer reads meanwhile (a fresh
	// client, no minimum index), from their own state.
	leader.s.kill()
	killed := time.Now()
	answered := 0
	for time.Since(killed) < 1500*time.Millisecond {
		for _, f := range followers {
			fresh := api.NewClient(f.s.URL, "")
			rctx, rcancel := context.WithTimeout(ctx, time.Second)
			v, err := fresh.TaskGet(rctx, "r-0000")
			rcancel()
			if err != nil || v.State != "completed" {
				t.Fatalf("GET through follower %s %v after the leader's kill: %s %v", f.id, time.Since(killed).Round(time.Millisecond), v.State, err)
			}
			answered++
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("CLUSTER: %d reads answered by the followers in the 1.5 s after the leader's kill -9", answered)
	next, _ := waitLeader(t, 15*time.Second, followers...)
	if _, err := next.s.client.TaskGet(ctx, "r-0000"); err != nil {
		t.Fatal(err)
	}
}

func indexOf(nodes []*clusterNode, n *clusterNode) int {
	for i, m := range nodes {
		if m == n {
			return i
		}
	}
	return -1
}

func isNotFound(err error) bool {
	var e *api.Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

// waitPeerMetric waits until n's wasmtask_cluster_peer_<name>{peer} is want.
func waitPeerMetric(t testing.TB, n *clusterNode, name, peer string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	line := `wasmtask_cluster_peer_` + name + `{peer="` + peer + `"}`
	for {
		got := metricValue(t, n, line)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s on %s: %v, want %v", line, n.id, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
