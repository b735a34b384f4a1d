package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/internal/servertest"
	"github.com/wasmtask/wasmtask/plugins"
)

// remoteBundle is a server whose engine runs attempts through a Broker:
// no local workers unless asked, the echo plugin deployed.
type remoteBundle struct {
	srv    *httptest.Server
	engine *dispatch.Engine
	reg    *plugins.Registry
	broker *api.Broker
	cl     *api.Client
	echo   string
}

func setupRemote(t *testing.T, localWorkers int, leaseTimeout time.Duration, token string) *remoteBundle {
	t.Helper()
	s := servertest.Start(t, servertest.Options{Remote: true, LocalWorkers: localWorkers, LeaseTimeout: leaseTimeout, API: api.Config{Token: token}})
	return &remoteBundle{srv: s.HTTP, engine: s.Engine, reg: s.Plugin, broker: s.Broker, cl: s.Client, echo: s.Echo}
}

func hello(name string, handlers ...string) api.WorkerHello {
	return api.WorkerHello{Worker: name + "-id", Name: name, Handlers: handlers, Concurrency: 4}
}

func ms(n int64) *int64 { return &n }

func (b *remoteBundle) submit(t *testing.T, spec api.TaskSpec) string {
	t.Helper()
	res, err := b.cl.Submit(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return res.Task.ID
}

// leaseOne long-polls for exactly one lease.
func (b *remoteBundle) leaseOne(t *testing.T, h api.WorkerHello) api.Lease {
	t.Helper()
	res, err := b.cl.WorkerLease(context.Background(), api.LeaseRequest{WorkerHello: h, Max: 1, WaitMs: ms(10_000)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Leases) != 1 {
		list, _ := b.cl.Workers(context.Background())
		st, _ := b.cl.EngineStatus(context.Background())
		t.Fatalf("%s got %d leases, want 1 (workers %+v; engine %+v)", h.Name, len(res.Leases), list, st)
	}
	return res.Leases[0]
}

func (b *remoteBundle) wait(t *testing.T, id string) api.TaskView {
	t.Helper()
	v, err := b.cl.TaskWait(context.Background(), id, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func okResult(lease, output string) api.WorkerResult {
	now := time.Now()
	return api.WorkerResult{Lease: lease, Outcome: "ok", Output: []byte(output), StartedAt: now, FinishedAt: now}
}

func TestWorkerLeaseRunsAttemptAndAppliesResultOnce(t *testing.T) {
	b := setupRemote(t, 0, 10*time.Second, "")
	id := b.submit(t, api.TaskSpec{Handler: "echo", Input: ptr("hi"), Labels: map[string]string{"k": "v"}})
	w := hello("box-1")
	l := b.leaseOne(t, w)
	if l.Task != id || l.Attempt != 1 || l.Plugin != "echo" || l.Version != b.echo || string(l.Input) != "hi" || l.Labels["k"] != "v" || l.RemainingMs <= 0 {
		t.Fatalf("lease %+v", l)
	}
	res := api.ResultRequest{WorkerHello: w, Results: []api.WorkerResult{okResult(l.Lease, "from box-1")}}
	for i, want := range []string{"applied", "duplicate"} {
		out, err := b.cl.WorkerResults(context.Background(), res)
		if err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
		if out.Results[0].Status != want {
			t.Fatalf("post %d: status %q, want %q", i, out.Results[0].Status, want)
		}
	}
	v := b.wait(t, id)
	a := v.Runs[0].Attempts
	if v.State != "completed" || len(a) != 1 || *a[0].Output != "from box-1" || a[0].Worker != "box-1" {
		t.Fatalf("task %s, attempts %+v", v.State, a)
	}
	list, err := b.cl.Workers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Workers) != 1 || list.Workers[0].Name != "box-1" || list.Workers[0].Leases != 1 || list.Workers[0].Done != 1 || !list.Workers[0].Connected {
		t.Fatalf("workers %+v", list.Workers)
	}
}

// expiringLease is the lease timeout of tests in which one worker's lease
// must expire while another's must not: the second worker's steps (a
// lease, a result; heartbeats every 50 ms) must fit in it on a loaded
// machine. At 300 ms, TestWorkerLeaseCarriesResults failed 3 of 40 runs
// (4 at once under -race, load 11-12; and once in make test) on leases
// that expired between its steps.
const expiringLease = 2 * time.Second

// TestWorkerLeaseExpiryFencesLateResult: a lease not renewed is lost, the
// attempt is retried on another worker, and the first worker's late
// heartbeat and result get 409 and change nothing.
func TestWorkerLeaseExpiryFencesLateResult(t *testing.T) {
	b := setupRemote(t, 0, expiringLease, "")
	id := b.submit(t, api.TaskSpec{Handler: "echo", Backoff: &api.Backoff{Kind: "fixed", Base: "1ms"}})
	slow, fast := hello("slow"), hello("fast")
	first := b.leaseOne(t, slow)
	second := b.leaseOne(t, fast) // long-polls until the first lease expired and the run is ready again
	if second.Attempt != 2 || second.Run != first.Run || second.Lease == first.Lease {
		t.Fatalf("second lease %+v after %+v", second, first)
	}
	_, err := b.cl.WorkerHeartbeat(context.Background(), api.HeartbeatRequest{WorkerHello: slow, Leases: []string{first.Lease}})
	if !errors.Is(err, api.ErrConflict) {
		t.Fatalf("late heartbeat: %v, want 409 conflict", err)
	}
	out, err := b.cl.WorkerResults(context.Background(), api.ResultRequest{WorkerHello: slow, Results: []api.WorkerResult{okResult(first.Lease, "late")}})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 409 || !strings.Contains(ae.Message, "expired") || out.Results[0].Status != "conflict" {
		t.Fatalf("late result: %v %+v, want 409 naming the expired lease", err, out)
	}
	if _, err := b.cl.WorkerResults(context.Background(), api.ResultRequest{WorkerHello: fast, Results: []api.WorkerResult{okResult(second.Lease, "on time")}}); err != nil {
		t.Fatal(err)
	}
	v := b.wait(t, id)
	a := v.Runs[0].Attempts
	if v.State != "completed" || len(a) != 2 || a[0].Outcome != "lost" || a[0].Worker != "slow" || *a[1].Output != "on time" || a[1].Worker != "fast" {
		t.Fatalf("task %s, attempts %+v", v.State, a)
	}
	if !strings.Contains(a[0].Error, "lease expired: worker slow") {
		t.Errorf("lost attempt's error %q", a[0].Error)
	}
	list, _ := b.cl.Workers(context.Background())
	for _, w := range list.Workers {
		if w.Name == "slow" && (w.Lost != 1 || w.Rejected != 1) {
			t.Errorf("slow: lost %d rejected %d, want 1 and 1", w.Lost, w.Rejected)
		}
	}
}

func TestWorkerHeartbeatKeepsLeaseAndRelaysCancel(t *testing.T) {
	// Heartbeats 5 times per lease timeout, for 2.5 lease timeouts: the
	// lease lives on, with room for a loaded machine's late wake-ups (at
	// 300 ms and a heartbeat every 200 ms it failed under load 25).
	b := setupRemote(t, 0, time.Second, "")
	id := b.submit(t, api.TaskSpec{Handler: "echo"})
	w := hello("box")
	l := b.leaseOne(t, w)
	for range 13 {
		time.Sleep(200 * time.Millisecond)
		hb, err := b.cl.WorkerHeartbeat(context.Background(), api.HeartbeatRequest{WorkerHello: w, Leases: []string{l.Lease}})
		if err != nil || len(hb.Lost) != 0 || len(hb.Cancel) != 0 {
			t.Fatalf("heartbeat: %+v %v", hb, err)
		}
	}
	if _, err := b.cl.TaskCancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		hb, err := b.cl.WorkerHeartbeat(context.Background(), api.HeartbeatRequest{WorkerHello: w, Leases: []string{l.Lease}})
		if err == nil && len(hb.Cancel) == 1 && hb.Cancel[0] == l.Lease {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no cancel relayed: %+v %v", hb, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	res := api.WorkerResult{Lease: l.Lease, Outcome: "cancelled", Error: "stopped by the worker"}
	if _, err := b.cl.WorkerResults(context.Background(), api.ResultRequest{WorkerHello: w, Results: []api.WorkerResult{res}}); err != nil {
		t.Fatal(err)
	}
	if v := b.wait(t, id); v.State != "canceled" || v.Runs[0].Attempts[0].Outcome != "cancelled" || len(v.Runs[0].Attempts) != 1 {
		t.Fatalf("task %s %+v", v.State, v.Runs[0].Attempts)
	}
}

// TestWorkerPlacement: with no worker for a handler, its runs stay ready
// and unleased (their timeout does not burn); a worker's handler filter
// and a plugin's remote-only placement are honoured.
func TestWorkerPlacement(t *testing.T) {
	tests := []struct {
		name      string
		local     int
		placement string
		wantLocal bool
	}{
		{"schedule only", 0, "", false},
		{"mixed runs locally", 2, "", true},
		{"remote-only plugin waits for a worker", 2, "remote", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := setupRemote(t, tc.local, 10*time.Second, "")
			var m *plugins.Manifest
			if tc.placement != "" {
				m = &plugins.Manifest{Placement: tc.placement}
			}
			if _, err := b.reg.Deploy(context.Background(), "far", module(t, "echo"), m, "test"); err != nil {
				t.Fatal(err)
			}
			b.broker.Refresh()
			id := b.submit(t, api.TaskSpec{Handler: "far", Input: ptr("x"), Timeout: "300ms"})
			if tc.wantLocal {
				if v := b.wait(t, id); v.State != "completed" || !strings.HasPrefix(v.Runs[0].Attempts[0].Worker, "pid") {
					t.Fatalf("local run: %s %+v", v.State, v.Runs[0].Attempts)
				}
				return
			}
			time.Sleep(600 * time.Millisecond) // twice its timeout
			v, _ := b.cl.TaskGet(context.Background(), id)
			if v.Runs[0].State != "ready" || len(v.Runs[0].Attempts) != 0 {
				t.Fatalf("before a worker serves it: run %s, %d attempts; want ready with none", v.Runs[0].State, len(v.Runs[0].Attempts))
			}
			other, err := b.cl.WorkerLease(context.Background(), api.LeaseRequest{WorkerHello: hello("echo-only", "echo"), Max: 4, WaitMs: ms(200)})
			if err != nil || len(other.Leases) != 0 {
				t.Fatalf("a worker serving only echo got %+v (%v)", other.Leases, err)
			}
			l := b.leaseOne(t, hello("any"))
			if l.Task != id || (tc.placement != "") != (l.Manifest != nil) || l.Manifest != nil && l.Manifest.Placement != tc.placement {
				t.Fatalf("lease %+v", l)
			}
			if _, err := b.cl.WorkerResults(context.Background(), api.ResultRequest{WorkerHello: hello("any"), Results: []api.WorkerResult{okResult(l.Lease, "x")}}); err != nil {
				t.Fatal(err)
			}
			if v := b.wait(t, id); v.State != "completed" || v.Runs[0].Attempts[0].Worker != "any" {
				t.Fatalf("%s %+v", v.State, v.Runs[0].Attempts)
			}
		})
	}
}

func TestWorkerResultCommitsChildren(t *testing.T) {
	b := setupRemote(t, 0, 10*time.Second, "")
	id := b.submit(t, api.TaskSpec{Handler: "echo"})
	w := hello("box")
	l := b.leaseOne(t, w)
	child := `{"id":"kid-1","handler":"echo","input":"kid"}`
	res := okResult(l.Lease, "parent")
	res.Children = append(res.Children, []byte(child))
	if _, err := b.cl.WorkerResults(context.Background(), api.ResultRequest{WorkerHello: w, Results: []api.WorkerResult{res}}); err != nil {
		t.Fatal(err)
	}
	cl := b.leaseOne(t, w)
	if cl.Task != "kid-1" || string(cl.Input) != "kid" || cl.Parent != id {
		t.Fatalf("child lease %+v", cl)
	}
	if _, err := b.cl.WorkerResults(context.Background(), api.ResultRequest{WorkerHello: w, Results: []api.WorkerResult{okResult(cl.Lease, "kid done")}}); err != nil {
		t.Fatal(err)
	}
	if v := b.wait(t, id); v.State != "completed" {
		t.Fatalf("parent %s", v.State)
	}
}

func TestWorkerRoutesNeedTokenAndModuleFetchChecksHash(t *testing.T) {
	b := setupRemote(t, 0, 10*time.Second, "s3cret")
	anon := api.NewClient(b.srv.URL, "")
	if _, err := anon.WorkerLease(context.Background(), api.LeaseRequest{WorkerHello: hello("x"), Max: 1, WaitMs: ms(0)}); !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("lease without token: %v", err)
	}
	if _, err := anon.Module(context.Background(), b.echo); !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("module without token: %v", err)
	}
	if _, err := anon.Workers(context.Background()); !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("workers without token: %v", err)
	}
	wasm, err := b.cl.Module(context.Background(), b.echo)
	sum := sha256.Sum256(wasm)
	if err != nil || "sha256:"+hex.EncodeToString(sum[:]) != b.echo {
		t.Fatalf("module: %d bytes, %v", len(wasm), err)
	}
	missing := "sha256:" + strings.Repeat("0", 64)
	if _, err := b.cl.Module(context.Background(), missing); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("missing module: %v", err)
	}
	if _, err := b.cl.Module(context.Background(), "md5:abc"); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("bad version: %v", err)
	}
	for _, bad := range []api.LeaseRequest{
		{WorkerHello: api.WorkerHello{Worker: "", Name: "n", Concurrency: 1}, Max: 1},
		{WorkerHello: api.WorkerHello{Worker: "i", Name: "n", Concurrency: 0}, Max: 1},
		{WorkerHello: hello("n"), Max: 0},
		{WorkerHello: hello("n"), Max: 1, WaitMs: ms(60_000)},
	} {
		if _, err := b.cl.WorkerLease(context.Background(), bad); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("lease %+v: %v, want 400 invalid", bad, err)
		}
	}
}

// TestWorkerFirstSeenThroughRefusedResult: a worker whose first request to
// a (restarted) server is a result for a lease the server does not know
// gets 409 and is counted as connected: the engine leases to it.
func TestWorkerFirstSeenThroughRefusedResult(t *testing.T) {
	b := setupRemote(t, 0, 10*time.Second, "")
	id := b.submit(t, api.TaskSpec{Handler: "echo"})
	w := hello("back")
	_, err := b.cl.WorkerResults(context.Background(), api.ResultRequest{WorkerHello: w, Results: []api.WorkerResult{okResult("old.1.ffff", "stale")}})
	if !errors.Is(err, api.ErrConflict) {
		t.Fatalf("result for an unknown lease: %v, want 409", err)
	}
	if l := b.leaseOne(t, w); l.Task != id {
		t.Fatalf("lease %+v", l)
	}
}

// TestWorkerWithExpiredLeaseTakesNoMore: once a worker's lease expired, a
// lease request it had already sent takes no attempt (it may be answered
// to a stopped process); its next request makes it eligible again.
func TestWorkerWithExpiredLeaseTakesNoMore(t *testing.T) {
	b := setupRemote(t, 0, 300*time.Millisecond, "")
	b.submit(t, api.TaskSpec{Handler: "echo", Backoff: &api.Backoff{Kind: "fixed", Base: "1ms"}})
	stuck := hello("stuck")
	first := b.leaseOne(t, stuck)
	// stuck's next request is already waiting when its first lease expires
	res, err := b.cl.WorkerLease(context.Background(), api.LeaseRequest{WorkerHello: stuck, Max: 1, WaitMs: ms(1500)})
	if err != nil || len(res.Leases) != 0 {
		t.Fatalf("a stalled worker's pending request got %+v (%v); want none", res.Leases, err)
	}
	second := b.leaseOne(t, stuck) // a new request: alive again
	if second.Run != first.Run || second.Attempt != 2 {
		t.Fatalf("second lease %+v", second)
	}
}

// TestWorkerLeaseCarriesResults: results posted with a lease request are
// applied before it leases (so the slot they free is filled in the same
// round trip), each once, and fenced as on POST /v1/workers/result: a
// duplicate is reported as such, a result for an expired lease is a
// conflict that changes nothing and does not fail the request; max 0
// reports without leasing, and is refused without results.
func TestWorkerLeaseCarriesResults(t *testing.T) {
	ctx := context.Background()
	b := setupRemote(t, 0, expiringLease, "")
	w, slow := hello("box"), hello("slow")
	// slow's lease expires: its late result rides on a lease request below.
	lost := b.submit(t, api.TaskSpec{Handler: "echo", Backoff: &api.Backoff{Kind: "fixed", Base: "1ms"}})
	expired := b.leaseOne(t, slow)
	retried := b.leaseOne(t, w) // after the expiry: attempt 2
	if retried.Task != lost || retried.Attempt != 2 {
		t.Fatalf("retry %+v", retried)
	}
	// box keeps its leases alive, as a worker running them would: on a
	// loaded machine the steps below may take longer than the lease
	// timeout, and an expiry would stall box's lease request out.
	var beatMu sync.Mutex
	beat := []string{retried.Lease}
	stopBeats, beatsDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(beatsDone)
		for {
			select {
			case <-stopBeats:
				return
			case <-time.After(50 * time.Millisecond):
			}
			beatMu.Lock()
			leases := slices.Clone(beat)
			beatMu.Unlock()
			_, _ = b.cl.WorkerHeartbeat(ctx, api.HeartbeatRequest{WorkerHello: w, Leases: leases})
		}
	}()
	first := b.submit(t, api.TaskSpec{Handler: "echo"})
	firstLease := b.leaseOne(t, w)
	beatMu.Lock()
	beat = append(beat, firstLease.Lease)
	beatMu.Unlock()
	second := b.submit(t, api.TaskSpec{Handler: "echo"})

	res, err := b.cl.WorkerLease(ctx, api.LeaseRequest{WorkerHello: w, Max: 1, WaitMs: ms(10_000),
		Results: []api.WorkerResult{okResult(firstLease.Lease, "one"), okResult(retried.Lease, "retried")}})
	close(stopBeats)
	<-beatsDone
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Results) != 2 || res.Results[0].Status != "applied" || res.Results[1].Status != "applied" {
		t.Fatalf("statuses %+v", res.Results)
	}
	if len(res.Leases) != 1 || res.Leases[0].Task != second {
		t.Fatalf("leases %+v, want the second task's", res.Leases)
	}

	tests := []struct {
		name    string
		req     api.LeaseRequest
		status  []string // per result
		leases  int
		errCode int // 0: success
	}{
		{"duplicate and late result, report only", api.LeaseRequest{WorkerHello: slow, Max: 0,
			Results: []api.WorkerResult{okResult(firstLease.Lease, "again"), okResult(expired.Lease, "late")}}, []string{"duplicate", "conflict"}, 0, 0},
		{"result and lease", api.LeaseRequest{WorkerHello: w, Max: 4, WaitMs: ms(0),
			Results: []api.WorkerResult{okResult(res.Leases[0].Lease, "two")}}, []string{"applied"}, 0, 0},
		{"max 0 without results", api.LeaseRequest{WorkerHello: w, Max: 0}, nil, 0, 400},
		{"unknown outcome", api.LeaseRequest{WorkerHello: w, Max: 1,
			Results: []api.WorkerResult{{Lease: "x", Outcome: "fine"}}}, nil, 0, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := b.cl.WorkerLease(ctx, tc.req)
			var ae *api.Error
			if tc.errCode != 0 {
				if !errors.As(err, &ae) || ae.Status != tc.errCode {
					t.Fatalf("err %v, want %d", err, tc.errCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Results) != len(tc.status) || len(out.Leases) != tc.leases {
				t.Fatalf("response %+v", out)
			}
			for i, st := range tc.status {
				if out.Results[i].Status != st || out.Results[i].Lease != tc.req.Results[i].Lease {
					t.Fatalf("result %d: %+v, want %s", i, out.Results[i], st)
				}
			}
			if tc.status[len(tc.status)-1] == "conflict" && !strings.Contains(out.Results[1].Error, "expired") {
				t.Errorf("conflict error %q, want it to name the expiry", out.Results[1].Error)
			}
		})
	}
	for id, want := range map[string]string{first: "one", second: "two", lost: "retried"} {
		v := b.wait(t, id)
		a := v.Runs[0].Attempts
		if v.State != "completed" || *a[len(a)-1].Output != want {
			t.Errorf("task %s: %s, last attempt %+v, want output %q", id, v.State, a[len(a)-1], want)
		}
	}
}

// TestWorkerLeasedUpToConcurrencyAndAhead: the engine leases for a worker
// its concurrency plus the lease-ahead it announces (WorkerHello.Ahead),
// queued for its next lease request; when it announces none (attempts
// that run long, or a worker older than ahead) no more than its
// concurrency is leased for it: the server does not estimate a lease-ahead
// of its own (it did: prefetch, which reports 0 now).
func TestWorkerLeasedUpToConcurrencyAndAhead(t *testing.T) {
	ctx := context.Background()
	b := setupRemote(t, 0, 10*time.Second, "")
	w := hello("box") // concurrency 4
	for range 40 {
		b.submit(t, api.TaskSpec{Handler: "echo"})
	}
	workerState := func() (api.WorkerInfo, int) {
		t.Helper()
		list, err := b.cl.Workers(ctx)
		if err != nil || len(list.Workers) != 1 {
			t.Fatalf("workers %+v %v", list, err)
		}
		return list.Workers[0], list.Queued
	}
	// exchange reports results of run time d for leases and leases up to max.
	exchange := func(leases []api.Lease, d time.Duration, max int) []api.Lease {
		t.Helper()
		var results []api.WorkerResult
		for _, l := range leases {
			now := time.Now()
			results = append(results, api.WorkerResult{Lease: l.Lease, Outcome: "ok", StartedAt: now.Add(-d), FinishedAt: now})
		}
		res, err := b.cl.WorkerLease(ctx, api.LeaseRequest{WorkerHello: w, Max: max, WaitMs: ms(5000), Results: results})
		if err != nil {
			t.Fatal(err)
		}
		return res.Leases
	}
	waitHeld := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			info, queued := workerState()
			if info.InFlight+queued == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("in flight %d + queued %d, want %d (worker %+v)", info.InFlight, queued, want, info)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	w.Ahead = 4
	leases := exchange(nil, 0, 4)
	waitHeld(8) // 4 + 4 ahead: some leased to it, the rest queued for it
	for len(leases) < 8 {
		leases = append(leases, exchange(nil, 0, 8-len(leases))...)
	}
	if info, _ := workerState(); info.Ahead != 4 || info.Prefetch != 0 || info.InFlight != 8 {
		t.Fatalf("with ahead 4: %+v", info)
	}
	// Long attempts: the worker announces no lease-ahead; what is queued
	// drains as it leases, and nothing beyond its concurrency is leased.
	w.Ahead = 0
	for range 4 {
		leases = exchange(leases, 200*time.Millisecond, 4)
	}
	info, queued := workerState()
	if info.InFlight+queued > 4 || info.Prefetch != 0 {
		t.Fatalf("in flight %d + queued %d beyond the concurrency 4 without ahead (worker %+v)", info.InFlight, queued, info)
	}
}

// TestWorkerTokenScope: the worker token (Config.WorkerToken) leases,
// reports and fetches modules, and gets 403 naming the admin token on
// every other route; the admin token still works everywhere.
func TestWorkerTokenScope(t *testing.T) {
	b := setupRemote(t, 0, 10*time.Second, "admin")
	srv := httptest.NewServer(api.New(api.Config{Engine: b.engine, Plugins: b.reg, Broker: b.broker, Token: "admin", WorkerToken: "wk", Logger: discard}))
	t.Cleanup(srv.Close)
	lease := `{"worker":"w1","name":"w1","concurrency":1,"max":1,"wait_ms":0}`
	result := `{"worker":"w1","name":"w1","concurrency":1,"results":[{"lease":"none","outcome":"ok"}]}`
	tests := []struct {
		token, method, path, body string
		want                      int
	}{
		{"wk", "POST", "/v1/workers/lease", lease, 200},
		{"wk", "POST", "/v1/workers/heartbeat", `{"worker":"w1","name":"w1","concurrency":1,"leases":[]}`, 200},
		{"wk", "POST", "/v1/workers/result", result, 409}, // past the token: fenced
		{"wk", "GET", "/v1/modules/" + b.echo, "", 200},
		{"wk", "POST", "/v1/tasks", `{"handler":"echo"}`, 403},
		{"wk", "GET", "/v1/tasks", "", 403},
		{"wk", "GET", "/v1/workers", "", 403},
		{"wk", "DELETE", "/v1/plugins/echo", "", 403},
		{"wk", "POST", "/v1/engine/pause", "", 403},
		{"admin", "POST", "/v1/workers/lease", lease, 200},
		{"admin", "GET", "/v1/workers", "", 200},
		{"wrong", "POST", "/v1/workers/lease", lease, 401},
		{"", "GET", "/v1/modules/" + b.echo, "", 401},
	}
	for _, tc := range tests {
		t.Run(tc.token+" "+tc.method+" "+tc.path, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			if tc.want == 403 && !strings.Contains(string(body), "admin token") {
				t.Errorf("403 body %s does not say which token the route needs", body)
			}
		})
	}
	if v, _ := b.cl.TaskList(context.Background(), &api.TaskListParams{}); len(v.Tasks) != 0 {
		t.Errorf("the worker token's refused submission created tasks: %+v", v.Tasks)
	}
}

// TestWorkerDrainingHeartbeat: a heartbeat saying the worker drains
// answers its lease request waiting now, with no lease, instead of at the
// end of its 30 s wait; from then on its lease requests are answered at
// once and take nothing, it is listed draining and not counted in the
// capacity, and the attempts go to other workers.
func TestWorkerDrainingHeartbeat(t *testing.T) {
	ctx := context.Background()
	b := setupRemote(t, 0, 10*time.Second, "")
	w := hello("w")
	type answer struct {
		res api.LeaseResponse
		err error
	}
	polled := make(chan answer, 1)
	go func() {
		res, err := b.cl.WorkerLease(ctx, api.LeaseRequest{WorkerHello: w, Max: 4, WaitMs: ms(30_000)})
		polled <- answer{res, err}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !connected(b.broker, "w") {
		if time.Now().After(deadline) {
			t.Fatal("the lease request did not reach the broker within 20s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := b.cl.WorkerHeartbeat(ctx, api.HeartbeatRequest{WorkerHello: w, Draining: true}); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-polled:
		if a.err != nil || a.res.Leases == nil || len(a.res.Leases) != 0 {
			t.Fatalf("the waiting lease request answered %+v, %v; want no leases", a.res, a.err)
		}
	case <-time.After(15 * time.Second): // its wait is 30 s
		t.Fatal("the waiting lease request was not answered after the draining heartbeat")
	}
	for _, wi := range b.broker.Workers() {
		if wi.Name == "w" && !wi.Draining {
			t.Errorf("GET /v1/workers: w not draining: %+v", wi)
		}
	}

	id := b.submit(t, api.TaskSpec{Handler: "echo", Input: ptr("x")})
	res, err := b.cl.WorkerLease(ctx, api.LeaseRequest{WorkerHello: w, Max: 4, WaitMs: ms(300)})
	if err != nil || len(res.Leases) != 0 {
		t.Fatalf("a draining worker's lease request got %+v, %v; want no leases", res.Leases, err)
	}
	// Not counted in the capacity: the engine leased nothing for it while
	// that request waited (300 ms).
	if n := b.broker.Queued(); n != 0 {
		t.Errorf("%d attempts queued with only a draining worker connected, want 0", n)
	}
	l := b.leaseOne(t, hello("other"))
	if l.Task != id {
		t.Fatalf("other leased %+v, want task %s", l, id)
	}
}

func connected(b *api.Broker, name string) bool {
	for _, w := range b.Workers() {
		if w.Name == name && w.Connected {
			return true
		}
	}
	return false
}

// TestWorkerAheadRaisesItsCapacity: a worker that says it holds attempts
// ahead of its concurrency (hello "ahead") gets that many more leased for
// it, listed as ahead and in flight; an ahead out of range is refused
// naming the field.
func TestWorkerAheadRaisesItsCapacity(t *testing.T) {
	ctx := context.Background()
	b := setupRemote(t, 0, 10*time.Second, "")
	for range 30 {
		b.submit(t, api.TaskSpec{Handler: "echo"})
	}
	w := hello("box") // concurrency 4
	w.Ahead = 6
	var leases []api.Lease
	deadline := time.Now().Add(10 * time.Second)
	for len(leases) < 10 && time.Now().Before(deadline) { // the engine leases them a tick after the hello
		res, err := b.cl.WorkerLease(ctx, api.LeaseRequest{WorkerHello: w, Max: 10 - len(leases), WaitMs: ms(1000)})
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, res.Leases...)
	}
	if len(leases) != 10 {
		t.Fatalf("got %d leases, want concurrency 4 + ahead 6", len(leases))
	}
	list, err := b.cl.Workers(ctx)
	if err != nil || len(list.Workers) != 1 {
		t.Fatalf("workers %+v %v", list, err)
	}
	if info := list.Workers[0]; info.Ahead != 6 || info.InFlight != 10 {
		t.Fatalf("worker listed with ahead %d, in flight %d; want 6 and 10", info.Ahead, info.InFlight)
	}
	for _, bad := range []int{-1, 4097} {
		w.Ahead = bad
		_, err := b.cl.WorkerLease(ctx, api.LeaseRequest{WorkerHello: w, Max: 1, WaitMs: ms(0)})
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(err.Error(), "ahead") {
			t.Fatalf("ahead %d: %v, want a 400 naming ahead", bad, err)
		}
	}
}

// TestWorkerAsyncAttemptEnds: with no local workers the engine hands
// attempts to the broker without a runner waiting for each
// (dispatch.AsyncExecutor), so the broker itself ends them: one whose
// deadline passed or whose task was canceled while queued, before any
// worker took it, and a leased one whose worker heartbeats but does not
// report (its worker is told to stop; after the grace it is closed
// timed out). A leased attempt shows running once its worker's first
// heartbeat names it.
func TestWorkerAsyncAttemptEnds(t *testing.T) {
	ctx := context.Background()
	// A worker that connects (its request takes nothing: Max 1 of a
	// handler it serves while none is queued) and then asks no more: the
	// engine leases up to its concurrency and the attempts stay queued
	// in the broker.
	connect := func(t *testing.T, b *remoteBundle, w api.WorkerHello) {
		t.Helper()
		if _, err := b.cl.WorkerLease(ctx, api.LeaseRequest{WorkerHello: w, Max: 1, WaitMs: ms(0)}); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("queued past its deadline", func(t *testing.T) {
		b := setupRemote(t, 0, 10*time.Second, "")
		connect(t, b, hello("idle"))
		id := b.submit(t, api.TaskSpec{Handler: "echo", Timeout: "200ms", MaxAttempts: 1})
		v := b.wait(t, id)
		a := v.Runs[0].Attempts
		if v.State != "failed" || len(a) != 1 || a[0].Outcome != "timeout" || !strings.Contains(a[0].Error, "before a worker took it") {
			t.Fatalf("task %s, attempts %+v; want failed, one attempt timed out before a worker took it", v.State, a)
		}
	})
	t.Run("canceled while queued", func(t *testing.T) {
		b := setupRemote(t, 0, 10*time.Second, "")
		connect(t, b, hello("idle"))
		id := b.submit(t, api.TaskSpec{Handler: "echo"})
		waitQueued(t, b, 1)
		if _, err := b.cl.TaskCancel(ctx, id); err != nil {
			t.Fatal(err)
		}
		if v := b.wait(t, id); v.State != "canceled" {
			t.Fatalf("task %s %+v, want canceled", v.State, v.Runs)
		}
		waitQueued(t, b, 0)
	})
	t.Run("leased, its worker silent past the deadline", func(t *testing.T) {
		b := setupRemote(t, 0, 2*time.Second, "") // stopGrace: min(2s, lease timeout); heartbeats every 200 ms
		w := hello("mute")
		id := b.submit(t, api.TaskSpec{Handler: "echo", Timeout: "3s", MaxAttempts: 1})
		l := b.leaseOne(t, w)
		// Heartbeats (10 per lease timeout): the first reports the attempt
		// running (the loop takes it in its time), and past the deadline
		// the worker is told to stop.
		deadline := time.Now().Add(20 * time.Second)
		for {
			hb, err := b.cl.WorkerHeartbeat(ctx, api.HeartbeatRequest{WorkerHello: w, Leases: []string{l.Lease}})
			if err != nil || len(hb.Cancel)+len(hb.Lost) != 0 {
				t.Fatalf("heartbeat before the deadline: %+v %v", hb, err)
			}
			v, err := b.cl.TaskGet(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if v.Runs[0].State == "running" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %+v after heartbeats, want running", v.Runs)
			}
			time.Sleep(50 * time.Millisecond)
		}
		for {
			time.Sleep(200 * time.Millisecond)
			hb, err := b.cl.WorkerHeartbeat(ctx, api.HeartbeatRequest{WorkerHello: w, Leases: []string{l.Lease}})
			if err == nil && slices.Equal(hb.Cancel, []string{l.Lease}) {
				break
			}
			if err != nil && !errors.Is(err, api.ErrConflict) || time.Now().After(deadline) {
				t.Fatalf("no stop relayed past the deadline: %+v %v", hb, err)
			}
		}
		// The worker goes on heartbeating (its lease does not expire) but
		// does not report: the broker closes the attempt after the grace.
		var v api.TaskView
		var err error
		for {
			time.Sleep(200 * time.Millisecond)
			_, _ = b.cl.WorkerHeartbeat(ctx, api.HeartbeatRequest{WorkerHello: w, Leases: []string{l.Lease}}) // 409 once closed
			if v, err = b.cl.TaskGet(ctx, id); err != nil {
				t.Fatal(err)
			}
			if v.State != "running" && v.State != "pending" || time.Now().After(deadline) {
				break
			}
		}
		a := v.Runs[0].Attempts
		if v.State != "failed" || len(a) != 1 || a[0].Outcome != "timeout" || a[0].Worker != "mute" || !strings.Contains(a[0].Error, "did not report in time") {
			t.Fatalf("task %s, attempts %+v; want failed, one attempt timed out on mute", v.State, a)
		}
		out, err := b.cl.WorkerResults(ctx, api.ResultRequest{WorkerHello: w, Results: []api.WorkerResult{okResult(l.Lease, "late")}})
		if !errors.Is(err, api.ErrConflict) || out.Results[0].Status != "conflict" {
			t.Fatalf("result after the broker closed the attempt: %+v %v, want 409", out, err)
		}
	})
}

// waitQueued waits until n attempts wait in the broker for a worker.
func waitQueued(t *testing.T, b *remoteBundle, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for b.broker.Queued() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d attempts queued in the broker, want %d", b.broker.Queued(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
