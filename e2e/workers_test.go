package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
)

// workerProc is a `wasmtask worker` subprocess, killed by PID when the
// test ends.
type workerProc struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	log    *syncBuffer
	exited chan struct{}
	exit   error
}

// startWorker starts `wasmtask worker --server s.URL --name name` with its
// own cache directory and waits for its "worker started" line.
func startWorker(t testing.TB, s *server, name string, extra ...string) *workerProc {
	t.Helper()
	return startWorkerBin(t, s, binPath, name, extra...)
}

// startWorkerBin is startWorker running bin (a wasmtask built elsewhere).
// It runs at --concurrency 4 unless extra names one ("--concurrency",
// "default": the worker's default).
func startWorkerBin(t testing.TB, s *server, bin, name string, extra ...string) *workerProc {
	t.Helper()
	args := []string{"worker", "--server", s.URL, "--name", name, "--cache-dir", t.TempDir()}
	if i := slices.Index(extra, "--concurrency"); i < 0 {
		args = append(args, "--concurrency", "4")
	} else if i+1 < len(extra) && extra[i+1] == "default" {
		extra = slices.Delete(slices.Clone(extra), i, i+2)
	}
	args = append(args, extra...)
	if s.opts.token != "" && !containsArg(extra, "--token") {
		args = append(args, "--token", s.opts.token)
	}
	if (s.opts.tls || allTLS()) && !containsArg(extra, "--ca") {
		args = append(args, "--ca", tlsCert)
	}
	w := &workerProc{t: t, name: name, log: &syncBuffer{}, exited: make(chan struct{})}
	w.cmd = exec.Command(bin, args...)
	w.cmd.Stdout, w.cmd.Stderr = w.log, w.log
	w.cmd.Env = append(os.Environ(), "WASMTASK_TOKEN=", "WASMTASK_SERVER=", "WASMTASK_CA=")
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		w.exit = w.cmd.Wait()
		close(w.exited)
	}()
	t.Cleanup(func() {
		if w.running() {
			resume(w.cmd.Process) // a stopped process may not take SIGKILL at once everywhere
		}
		w.kill()
		if strings.Contains(w.log.String(), "DATA RACE") {
			t.Errorf("worker %s reported a data race:\n%s", name, w.log.String())
		}
		if t.Failed() {
			t.Logf("worker %s log:\n%s", name, tail(w.log.String(), 3000))
		}
	})
	waitFor(t, 30*time.Second, "worker "+name+" to start", func() bool {
		return strings.Contains(w.log.String(), "worker started") || !w.running()
	})
	return w
}

func containsArg(args []string, a string) bool {
	for _, x := range args {
		if x == a {
			return true
		}
	}
	return false
}

func (w *workerProc) running() bool {
	select {
	case <-w.exited:
		return false
	default:
		return true
	}
}

func (w *workerProc) signal(sig syscall.Signal) {
	if w.running() {
		_ = w.cmd.Process.Signal(sig)
	}
}

func (w *workerProc) kill() {
	if w.running() {
		w.cmd.Process.Kill()
		<-w.exited
	}
}

// workerInfo returns the server's view of the worker named name.
func workerInfo(t testing.TB, s *server, name string) (api.WorkerInfo, bool) {
	t.Helper()
	list, err := s.client.Workers(context.Background())
	if err != nil {
		t.Fatalf("GET /v1/workers: %v", err)
	}
	for _, w := range list.Workers {
		if w.Name == name && w.Connected {
			return w, true
		}
	}
	return api.WorkerInfo{}, false
}

// waitConnected waits until every named worker is connected.
func waitConnected(t testing.TB, s *server, names ...string) {
	t.Helper()
	for _, n := range names {
		waitFor(t, 30*time.Second, "worker "+n+" to connect", func() bool { _, ok := workerInfo(t, s, n); return ok })
	}
}

// submitBatches submits specs in batches of 500 and fails on any refusal.
func submitBatches(t testing.TB, s *server, specs []api.TaskSpec) {
	t.Helper()
	for i := 0; i < len(specs); i += 500 {
		res, err := s.client.SubmitBatch(context.Background(), specs[i:min(i+500, len(specs))])
		if err != nil {
			t.Fatalf("batch at %d: %v", i, err)
		}
		for _, r := range res {
			if r.Status != 201 && r.Status != 200 {
				t.Fatalf("batch at %d: %+v", i, r)
			}
		}
	}
}

// allTasks lists every task on the server.
func allTasks(t testing.TB, s *server) []api.TaskView {
	t.Helper()
	var out []api.TaskView
	cursor := ""
	for {
		page, err := s.client.TaskList(context.Background(), &api.TaskListParams{Limit: 1000, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Tasks...)
		if page.NextCursor == "" {
			return out
		}
		cursor = page.NextCursor
	}
}

// waitAllFinal waits until the server has n tasks and none is pending.
func waitAllFinal(t testing.TB, s *server, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := s.client.EngineStatus(context.Background())
		final := st.Runs["completed"] + st.Runs["failed"] + st.Runs["canceled"]
		if err == nil && st.Tasks == n && final == n {
			return
		}
		if time.Now().After(deadline) {
			workers, werr := s.client.Workers(context.Background())
			t.Fatalf("timed out after %v waiting for %d tasks to be final: status %+v (%v); workers %+v (%v)", timeout, n, st, err, workers, werr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWorkersRunManyTasks: a server that schedules only and three remote
// workers run 5,000 tasks of three handlers: each completes exactly once
// (one run, one attempt, ok), the attempts are spread over the three
// workers, and each attempt names its worker.
func TestWorkersRunManyTasks(t *testing.T) {
	s := startServer(t, serverOpts{scheduleOnly: true, extra: []string{"--worker-lease-timeout", "5s"}})
	s.deploy("noop", module(t, "noop"))
	s.deploy("echo", hostModule(t, "echo"))
	s.deploy("info", hostModule(t, "taskinfo"))
	names := []string{"w1", "w2", "w3"}
	for _, n := range names {
		startWorker(t, s, n)
	}
	waitConnected(t, s, names...)
	const n = 5000
	handlers := []string{"noop", "echo", "info"}
	specs := make([]api.TaskSpec, n)
	for i := range specs {
		specs[i] = api.TaskSpec{ID: fmt.Sprintf("t%04d", i), Handler: handlers[i%3], Input: ptr(fmt.Sprintf("in%d", i)), MaxAttempts: 3}
	}
	start := time.Now()
	submitBatches(t, s, specs)
	waitAllFinal(t, s, n, 3*time.Minute)
	t.Logf("%d tasks through 3 remote workers in %v", n, time.Since(start).Round(time.Millisecond))

	perWorker := map[string]int{}
	for _, v := range allTasks(t, s) {
		if v.State != "completed" || len(v.Runs) != 1 || len(v.Runs[0].Attempts) != 1 {
			t.Fatalf("task %s: %s with %d runs, %+v; want completed once", v.ID, v.State, len(v.Runs), v.Runs)
		}
		a := v.Runs[0].Attempts[0]
		if a.Outcome != "ok" || !slices.Contains(names, a.Worker) {
			t.Fatalf("task %s: attempt %+v; want ok, run by w1, w2 or w3", v.ID, a)
		}
		perWorker[a.Worker]++
		var i int
		fmt.Sscanf(v.ID, "t%d", &i)
		switch v.Handler {
		case "echo":
			if want := strings.ToUpper(fmt.Sprintf("in%d", i)); v.Output == nil || *v.Output != want {
				t.Fatalf("task %s: output %v, want %q", v.ID, v.Output, want)
			}
		case "info":
			var info struct {
				TaskID  string `json:"task_id"`
				Attempt int    `json:"attempt"`
			}
			if v.Output == nil || json.Unmarshal([]byte(*v.Output), &info) != nil || info.TaskID != v.ID || info.Attempt != 1 {
				t.Fatalf("task %s: task_info output %v", v.ID, v.Output)
			}
		}
	}
	total := 0
	for _, name := range names {
		total += perWorker[name]
		if perWorker[name] < n/20 {
			t.Errorf("worker %s ran %d of %d attempts; want them spread (at least 5%% each): %v", name, perWorker[name], n, perWorker)
		}
		info, ok := workerInfo(t, s, name)
		if !ok || int(info.Done) != perWorker[name] || info.Lost != 0 || info.Rejected != 0 {
			t.Errorf("GET /v1/workers for %s: %+v; want done %d, nothing lost or rejected", name, info, perWorker[name])
		}
	}
	if total != n {
		t.Fatalf("attempts %d, want %d: %v", total, n, perWorker)
	}
	t.Logf("attempts per worker: %v", perWorker)
	if r := s.mustCLI(0, "workers"); !strings.Contains(r.stdout, "w1") || !strings.Contains(r.stdout, "connected") {
		t.Errorf("wasmtask workers:\n%s", r.stdout)
	}
}

// attemptOf returns the task's attempts (one run).
func attemptsOf(t testing.TB, s *server, id string) []api.AttemptView {
	t.Helper()
	v, err := s.client.TaskGet(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return v.Runs[0].Attempts
}

// holder waits until one of workers holds a lease and returns it.
func holder(t testing.TB, s *server, workers ...*workerProc) *workerProc {
	t.Helper()
	var got *workerProc
	waitFor(t, 30*time.Second, "a worker to lease the attempt", func() bool {
		for _, w := range workers {
			if info, ok := workerInfo(t, s, w.name); ok && info.InFlight > 0 {
				got = w
				return true
			}
		}
		return false
	})
	return got
}

// TestWorkerKilledMidAttempt: kill -9 of the worker running an attempt
// costs a lost attempt; another worker completes it once the lease
// timeout passed (well before serve's default one).
func TestWorkerKilledMidAttempt(t *testing.T) {
	const leaseTimeout = time.Second
	s := startServer(t, serverOpts{scheduleOnly: true, extra: []string{"--worker-lease-timeout", leaseTimeout.String()}})
	s.deploy("slow", module(t, "slowinfo"))
	a, b := startWorker(t, s, "a"), startWorker(t, s, "b")
	waitConnected(t, s, "a", "b")
	res, err := s.client.Submit(context.Background(), api.TaskSpec{ID: "k1", Handler: "slow", MaxAttempts: 1, Backoff: &api.Backoff{Kind: "fixed", Base: "1ms"}})
	if err != nil {
		t.Fatal(err)
	}
	victim := holder(t, s, a, b)
	other := map[*workerProc]*workerProc{a: b, b: a}[victim]
	victim.kill() // SIGKILL, mid-attempt: the attempt spins 200 ms
	killed := time.Now()
	v, err := s.client.TaskWait(context.Background(), res.Task.ID, 30*time.Second)
	took := time.Since(killed)
	if err != nil {
		t.Fatal(err)
	}
	at := v.Runs[0].Attempts
	if v.State != "completed" || len(at) != 2 || at[0].Outcome != "lost" || at[0].Worker != victim.name || at[1].Outcome != "ok" || at[1].Worker != other.name {
		t.Fatalf("task %s, attempts %+v; want lost on %s, then ok on %s (max_attempts 1: a lost attempt does not count)", v.State, at, victim.name, other.name)
	}
	if !strings.Contains(at[0].Error, "lease expired") {
		t.Errorf("lost attempt's error %q", at[0].Error)
	}
	// The 1 s lease expired it, not serve's default 10 s one: a bound well
	// under 10 s shows that. It takes ~1.2 s on a quiet machine, but the
	// retry runs a 200 ms spin on a -race worker, which load stretches
	// (1.4 s at load 11-28, leaving 0.6 s of the old 1 s of slack).
	if took > leaseTimeout+5*time.Second {
		t.Errorf("completed %v after the kill; want within the lease timeout (%v) + 5s, well before serve's default 10s lease timeout", took, leaseTimeout)
	}
	t.Logf("completed on %s %v after %s was killed", other.name, took.Round(time.Millisecond), victim.name)
}

// TestWorkerStoppedPastLeaseIsFenced: a worker stopped (SIGSTOP) past its
// lease loses it; the attempt runs on another worker; when the first one
// continues, its late result gets 409 and changes nothing.
func TestWorkerStoppedPastLeaseIsFenced(t *testing.T) {
	const leaseTimeout = time.Second
	s := startServer(t, serverOpts{scheduleOnly: true, extra: []string{"--worker-lease-timeout", leaseTimeout.String()}})
	s.deploy("slow", module(t, "slowinfo"))
	a := startWorker(t, s, "a")
	waitConnected(t, s, "a")
	res, err := s.client.Submit(context.Background(), api.TaskSpec{ID: "f1", Handler: "slow", MaxAttempts: 1, Backoff: &api.Backoff{Kind: "fixed", Base: "1ms"}})
	if err != nil {
		t.Fatal(err)
	}
	holder(t, s, a)
	if err := suspend(a.cmd.Process); err != nil {
		t.Fatal(err)
	}
	startWorker(t, s, "b")
	v, err := s.client.TaskWait(context.Background(), res.Task.ID, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	at := v.Runs[0].Attempts
	if v.State != "completed" || len(at) != 2 || at[0].Worker != "a" || at[0].Outcome != "lost" || at[1].Worker != "b" {
		t.Fatalf("task %s, attempts %+v; want lost on a, then ok on b", v.State, at)
	}
	if err := resume(a.cmd.Process); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "a's late result to be refused", func() bool {
		return strings.Contains(a.log.String(), "result refused by the server (409)")
	})
	var info struct {
		TaskID  string `json:"task_id"`
		Attempt int    `json:"attempt"`
	}
	after, err := s.client.TaskGet(context.Background(), res.Task.ID)
	if err != nil {
		t.Fatal(err)
	}
	if after.Output == nil || json.Unmarshal([]byte(*after.Output), &info) != nil || info.Attempt != 2 || len(after.Runs[0].Attempts) != 2 {
		t.Fatalf("after a's late result: output %v, %d attempts; want b's (attempt 2), unchanged", after.Output, len(after.Runs[0].Attempts))
	}
	list, err := s.client.Workers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range list.Workers {
		if w.Name == "a" && (w.Rejected != 1 || w.Lost != 1) {
			t.Errorf("worker a: rejected %d, lost %d; want 1 and 1", w.Rejected, w.Lost)
		}
	}
}

// TestWorkersSurviveServerKill: kill -9 of the server under load; once it
// is back on the same address the workers reconnect by themselves, every
// acknowledged task completes and no run used more than its max_attempts.
func TestWorkersSurviveServerKill(t *testing.T) {
	s := startServer(t, serverOpts{scheduleOnly: true, extra: []string{"--worker-lease-timeout", "2s"}})
	s.deploy("slow", module(t, "slowinfo"))
	s.deploy("noop", module(t, "noop"))
	w1, w2 := startWorker(t, s, "w1"), startWorker(t, s, "w2")
	waitConnected(t, s, "w1", "w2")
	const n = 1000
	specs := make([]api.TaskSpec, n)
	for i := range specs {
		h := "noop"
		if i%50 == 0 {
			h = "slow" // attempts that are surely running at the kill
		}
		specs[i] = api.TaskSpec{ID: fmt.Sprintf("s%04d", i), Handler: h, MaxAttempts: 2, Backoff: &api.Backoff{Kind: "fixed", Base: "10ms"}}
	}
	submitBatches(t, s, specs) // acknowledged: durable
	waitFor(t, 30*time.Second, "attempts to be under way", func() bool {
		st, err := s.client.EngineStatus(context.Background())
		return err == nil && st.Runs["completed"] > 0
	})
	s.kill()
	time.Sleep(300 * time.Millisecond) // the workers see it gone
	s.start()
	waitAllFinal(t, s, n, 2*time.Minute)
	for _, v := range allTasks(t, s) {
		used := 0
		for _, a := range v.Runs[0].Attempts {
			if a.Outcome != "lost" {
				used++
			}
		}
		if v.State != "completed" || used > 2 {
			t.Fatalf("task %s: %s, attempts %+v; want completed within max_attempts 2", v.ID, v.State, v.Runs[0].Attempts)
		}
	}
	waitConnected(t, s, "w1", "w2")
	for _, w := range []*workerProc{w1, w2} {
		l := w.log.String()
		if strings.Count(l, "server unreachable or unavailable") != 1 || !strings.Contains(l, "server answers again") {
			t.Errorf("worker %s: want the outage logged once and its end:\n%s", w.name, tail(l, 2000))
		}
		if info, _ := workerInfo(t, s, w.name); info.Done == 0 {
			t.Errorf("worker %s ran nothing after the restart", w.name)
		}
	}
}

// TestWorkerRunsHotSwappedModule: a module hot-swapped on the server is
// what the next attempt on a worker runs; a task pinned to the old version
// still runs it.
func TestWorkerRunsHotSwappedModule(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{scheduleOnly: true})
	v1 := s.deploy("swap", module(t, "swap_v1"))
	startWorker(t, s, "w")
	waitConnected(t, s, "w")
	run := func(handler string) api.TaskView {
		t.Helper()
		res, err := s.client.Submit(context.Background(), api.TaskSpec{Handler: handler})
		if err != nil {
			t.Fatal(err)
		}
		v, err := s.client.TaskWait(context.Background(), res.Task.ID, 30*time.Second)
		if err != nil || v.State != "completed" {
			t.Fatalf("%s: %s %v", handler, v.State, err)
		}
		return v
	}
	if v := run("swap"); *v.Output != "v1" || v.Runs[0].Attempts[0].Module != v1 || v.Runs[0].Attempts[0].Worker != "w" {
		t.Fatalf("before the swap: %q on %s", *v.Output, v.Runs[0].Attempts[0].Module)
	}
	v2 := s.deploy("swap", module(t, "swap_v2"))
	if v := run("swap"); *v.Output != "v2" || v.Runs[0].Attempts[0].Module != v2 {
		t.Fatalf("after the swap: %q on %s, want v2 on %s", *v.Output, v.Runs[0].Attempts[0].Module, v2)
	}
	if v := run("swap@" + v1); *v.Output != "v1" || v.Runs[0].Attempts[0].Module != v1 {
		t.Fatalf("pinned to v1: %q on %s", *v.Output, v.Runs[0].Attempts[0].Module)
	}
}

// TestWorkerTokenAndTLS: with --token, a worker without it gets nothing and
// exits saying why; with the token and --ca over HTTPS it runs attempts.
func TestWorkerTokenAndTLS(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{scheduleOnly: true, token: "s3cret", tls: true})
	s.deploy("echo", hostModule(t, "echo"))
	bad := startWorker(t, s, "bad", "--token", "wrong")
	select {
	case <-bad.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("a worker with a wrong token kept running")
	}
	if code := bad.cmd.ProcessState.ExitCode(); code == 0 || !strings.Contains(bad.log.String(), "unauthorized") && !strings.Contains(bad.log.String(), "bearer token") {
		t.Fatalf("worker with a wrong token: exit %d:\n%s", code, bad.log.String())
	}
	if r := s.do("GET", "/v1/workers", nil, "-"); r.status != 401 {
		t.Fatalf("GET /v1/workers without token: %d", r.status)
	}
	startWorker(t, s, "good")
	res, err := s.client.Submit(context.Background(), api.TaskSpec{Handler: "echo", Input: ptr("tls")})
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.client.TaskWait(context.Background(), res.Task.ID, 30*time.Second)
	if err != nil || v.State != "completed" || *v.Output != "TLS" || v.Runs[0].Attempts[0].Worker != "good" {
		t.Fatalf("%+v %v", v, err)
	}
}

// TestWorkerToken: serve --worker-token gives workers a token of their
// own: a worker holding it runs attempts, and the same token cannot list
// workers, submit or read tasks (403); --worker-token alone is refused.
func TestWorkerToken(t *testing.T) {
	t.Parallel()
	if r := runCLI(t, nil, "serve", "--data-dir", t.TempDir(), "--addr", "127.0.0.1:0", "--worker-token", "wk"); r.code != 2 || !strings.Contains(r.stderr, "--worker-token needs --token") {
		t.Fatalf("serve --worker-token without --token: %s", r)
	}
	s := startServer(t, serverOpts{scheduleOnly: true, token: "admin", extra: []string{"--worker-token", "wk"}})
	s.deploy("echo", hostModule(t, "echo"))
	startWorker(t, s, "scoped", "--token", "wk")
	res, err := s.client.Submit(context.Background(), api.TaskSpec{Handler: "echo", Input: ptr("scoped")})
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.client.TaskWait(context.Background(), res.Task.ID, 30*time.Second)
	if err != nil || v.State != "completed" || *v.Output != "SCOPED" || v.Runs[0].Attempts[0].Worker != "scoped" {
		t.Fatalf("%+v %v", v, err)
	}
	env := []string{"WASMTASK_SERVER=" + s.URL, "WASMTASK_TOKEN=wk"}
	for _, args := range [][]string{{"workers"}, {"get", res.Task.ID}, {"submit", "echo"}} {
		if r := runCLI(t, env, args...); r.code == 0 || !strings.Contains(r.stderr, "admin token") {
			t.Errorf("wasmtask %v with the worker token: %s", args, r)
		}
	}
}

// TestWorkerDrainsOnSIGTERM: SIGTERM while an attempt runs: the worker
// takes no new lease, finishes the attempt, reports it and exits 0.
func TestWorkerDrainsOnSIGTERM(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{scheduleOnly: true})
	s.deploy("slow", module(t, "slowinfo"))
	w := startWorker(t, s, "d")
	waitConnected(t, s, "d")
	res, err := s.client.Submit(context.Background(), api.TaskSpec{Handler: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	holder(t, s, w)
	w.signal(syscall.SIGTERM)
	select {
	case <-w.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not exit after SIGTERM")
	}
	if code := w.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit %d:\n%s", code, w.log.String())
	}
	v, err := s.client.TaskWait(context.Background(), res.Task.ID, 10*time.Second)
	if err != nil || v.State != "completed" || len(v.Runs[0].Attempts) != 1 || v.Runs[0].Attempts[0].Worker != "d" {
		t.Fatalf("after the drain: %s %+v %v", v.State, v.Runs[0].Attempts, err)
	}
}

// TestIdleWorkerStopsPromptlyOnSIGTERM: an idle worker whose lease request
// waits 30 s on the server (--lease-wait) exits 0 well before that on
// SIGTERM: its draining heartbeat has the server answer the request at
// once. With the server suspended (SIGSTOP: it answers nothing and drops
// nothing) the worker gives the request up after 2 s rather than waiting
// 40 s (the wait and the 10 s allowed beyond it). --lease-wait beyond the
// server's 30 s limit is a usage error naming the flag.
func TestIdleWorkerStopsPromptlyOnSIGTERM(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{scheduleOnly: true})
	for _, tc := range []struct {
		name      string
		suspended bool
		within    time.Duration
	}{
		{"server up", false, 10 * time.Second},
		{"server suspended", true, 15 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := startWorker(t, s, "idle-"+strings.ReplaceAll(tc.name, " ", "-"), "--lease-wait", "30s")
			waitConnected(t, s, w.name)
			if tc.suspended {
				if err := suspend(s.cmd.Process); err != nil {
					t.Skip(err)
				}
				defer resume(s.cmd.Process)
			}
			start := time.Now()
			w.signal(syscall.SIGTERM)
			select {
			case <-w.exited:
			case <-time.After(tc.within):
				t.Fatalf("the idle worker did not exit within %s of SIGTERM (its lease request waits 30s)", tc.within)
			}
			if code := w.cmd.ProcessState.ExitCode(); code != 0 {
				t.Fatalf("exit %d:\n%s", code, w.log.String())
			}
			t.Logf("exited %s after SIGTERM", time.Since(start).Round(time.Millisecond))
			if tc.suspended && !strings.Contains(w.log.String(), "abandoning the lease request out") {
				t.Errorf("the log does not say the request was given up:\n%s", w.log.String())
			}
		})
	}
	r := runCLI(t, nil, "worker", "--server", s.URL, "--lease-wait", "31s")
	if r.code != 2 || !strings.Contains(r.stderr, "--lease-wait must be between 1ms and 30s") {
		t.Errorf("worker --lease-wait 31s: %s", r)
	}
}
