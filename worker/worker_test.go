package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/internal/servertest"
	"github.com/wasmtask/wasmtask/worker"
)

// lockedBuffer is a log sink for a worker's logger.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// server starts an in-process server whose attempts all go to remote
// workers, with host/testdata/echo.wasm deployed as "echo".
func server(t *testing.T) *api.Client {
	t.Helper()
	return serverWith(t, nil)
}

// serverWith is server with its handler wrapped by wrap (if not nil).
func serverWith(t *testing.T, wrap func(http.Handler) http.Handler) *api.Client {
	t.Helper()
	return servertest.Start(t, servertest.Options{Remote: true, LeaseTimeout: 2 * time.Second, Wrap: wrap}).Client
}

// runWorker runs a worker on cacheDir until the returned stop is called.
func runWorker(t *testing.T, cl *api.Client, cacheDir string, log *lockedBuffer) (stop func() error) {
	t.Helper()
	w, err := worker.New(context.Background(), worker.Config{Client: cl, Name: "unit", Concurrency: 2, CacheDir: cacheDir,
		LeaseWait: 200 * time.Millisecond, DrainTimeout: 5 * time.Second, Logger: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("the worker did not stop within 30s of its context ending")
			return nil
		}
	}
}

func echo(t *testing.T, cl *api.Client, in string) api.TaskView {
	t.Helper()
	res, err := cl.Submit(context.Background(), api.TaskSpec{Handler: "echo", Input: &in})
	if err != nil {
		t.Fatal(err)
	}
	v, err := cl.TaskWait(context.Background(), res.Task.ID, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// echoBatch submits n echo tasks in one batch and waits (each up to
// within) for every one to complete by its first and only attempt.
func echoBatch(t *testing.T, cl *api.Client, n int, within time.Duration) {
	t.Helper()
	specs := make([]api.TaskSpec, n)
	for i := range specs {
		in := "x"
		specs[i] = api.TaskSpec{Handler: "echo", Input: &in}
	}
	res, err := cl.SubmitBatch(context.Background(), specs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		v, err := cl.TaskWait(context.Background(), r.ID, within)
		if err != nil || v.State != "completed" || len(v.Runs) != 1 || len(v.Runs[0].Attempts) != 1 {
			t.Fatalf("task %s: %v %+v", r.ID, err, v)
		}
	}
}

// TestWorkerCachesModulesAcrossRestarts: the first worker fetches the
// module from the server; a worker started later on the same cache dir
// finds it there. Both run attempts named after them and stop cleanly.
func TestWorkerCachesModulesAcrossRestarts(t *testing.T) {
	cl := server(t)
	cache := t.TempDir()
	for i, want := range []string{"from=server", "from=cache"} {
		log := &lockedBuffer{}
		stop := runWorker(t, cl, cache, log)
		v := echo(t, cl, "hi")
		if v.State != "completed" || *v.Output != "HI" || v.Runs[0].Attempts[0].Worker != "unit" {
			t.Fatalf("start %d: %s %+v", i, v.State, v.Runs[0].Attempts)
		}
		if err := stop(); err != nil {
			t.Fatalf("start %d: Run: %v", i, err)
		}
		if l := log.String(); !strings.Contains(l, "module ready") || !strings.Contains(l, want) || !strings.Contains(l, "worker stopped") {
			t.Fatalf("start %d: want the module %s and a clean stop in the log:\n%s", i, want, l)
		}
	}
	if _, err := os.Stat(filepath.Join(cache, "wazero-cache")); err != nil {
		t.Errorf("no compiled code cache in the cache dir: %v", err)
	}
}

// TestWorkerRefusedTokenEndsRun: a server that refuses the worker's token
// ends Run with an error saying so, rather than retrying forever.
func TestWorkerRefusedTokenEndsRun(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	srv := httptest.NewServer(api.New(api.Config{Token: "right", Logger: quiet}))
	t.Cleanup(srv.Close)
	w, err := worker.New(context.Background(), worker.Config{Client: api.NewClient(srv.URL, "wrong"), Concurrency: 1, CacheDir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Run(ctx); err == nil || !strings.Contains(err.Error(), "token") {
		t.Fatalf("Run with a wrong token: %v, want an error about the token", err)
	}
}

// TestWorkerReportsResultsWithLeaseRequests: a worker posts the results of
// finished attempts with its next lease request (one round trip per
// batch) and every task completes once; against a server from before
// that (it ignores the field: results would be lost), the worker notices
// the missing fates and posts them to POST /v1/workers/result, and every
// task still completes.
func TestWorkerReportsResultsWithLeaseRequests(t *testing.T) {
	for _, tc := range []struct {
		name          string
		oldServer     bool
		wantPiggyback bool
	}{{"current server", false, true}, {"server ignoring results on leases", true, false}} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var carried, leasesOut, posted int // results on lease requests, leases answered, results on /result
			cl := serverWith(t, func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					body, _ := io.ReadAll(r.Body)
					var req struct {
						Results []json.RawMessage `json:"results"`
					}
					_ = json.Unmarshal(body, &req)
					mu.Lock()
					switch r.URL.Path {
					case "/v1/workers/lease":
						if tc.oldServer {
							var m map[string]json.RawMessage
							_ = json.Unmarshal(body, &m)
							delete(m, "results")
							body, _ = json.Marshal(m)
						} else {
							carried += len(req.Results)
						}
					case "/v1/workers/result":
						posted += len(req.Results)
					}
					mu.Unlock()
					r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
					next.ServeHTTP(w, r)
					if r.URL.Path == "/v1/workers/lease" {
						mu.Lock()
						leasesOut++
						mu.Unlock()
					}
				})
			})
			log := &lockedBuffer{}
			stop := runWorker(t, cl, t.TempDir(), log)
			const n = 40
			echoBatch(t, cl, n, 20*time.Second)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if carried+posted < n {
				t.Errorf("%d results on lease requests + %d posted apart, want at least %d", carried, posted, n)
			}
			if tc.wantPiggyback && carried < n/2 {
				t.Errorf("only %d of %d results rode on lease requests (%d posted apart)", carried, n, posted)
			}
			if !tc.wantPiggyback && (carried != 0 || posted < n || !strings.Contains(log.String(), "does not take results with lease requests")) {
				t.Errorf("old server: %d carried, %d posted; log:\n%s", carried, posted, log.String())
			}
		})
	}
}

// TestWorkerDrainRunsLeasesOfTheRequestOut: a drain that begins while a
// lease request is out, after the server granted its leases but before
// the answer came back, still runs those attempts and reports them before
// Run returns: abandoning the request would leave them leased to nobody
// until their leases expire (TestWorkerDrainsOnSIGTERM, e2e, was flaky so).
// The server here holds its answer until the drain began.
func TestWorkerDrainRunsLeasesOfTheRequestOut(t *testing.T) {
	granted := make(chan struct{})
	var once sync.Once
	cl := serverWith(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/v1/workers/lease" {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			var out struct {
				Leases []json.RawMessage `json:"leases"`
			}
			_ = json.Unmarshal(rec.Body.Bytes(), &out)
			if len(out.Leases) > 0 {
				first := false
				once.Do(func() { first = true; close(granted) })
				if first {
					// The drain begins now; a worker that abandons its
					// request is gone before the answer is written.
					select {
					case <-r.Context().Done():
					case <-time.After(300 * time.Millisecond):
					}
				}
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
		})
	})
	log := &lockedBuffer{}
	stop := runWorker(t, cl, t.TempDir(), log)
	in := "drain"
	res, err := cl.Submit(context.Background(), api.TaskSpec{Handler: "echo", Input: &in})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-granted:
	case <-time.After(20 * time.Second):
		t.Fatal("no lease granted within 20s")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Reported before Run returned: well within the lease timeout (2s),
	// after which the attempt would be lost and, with no worker, never run.
	v, err := cl.TaskWait(context.Background(), res.Task.ID, time.Second)
	if err != nil || v.State != "completed" || len(v.Runs[0].Attempts) != 1 || v.Runs[0].Attempts[0].Worker != "unit" || *v.Output != "DRAIN" {
		t.Fatalf("after the drain: %v %s %+v\n%s", err, v.State, v.Runs, log.String())
	}
}

// TestWorkerLeasesAheadWhileAttemptsRunShort: once its attempts are known
// to run short, a worker asks for more attempts than its concurrency and
// says how many it holds ahead (the server leases that many more for it),
// yet never runs more than its concurrency at once; every task completes
// once.
func TestWorkerLeasesAheadWhileAttemptsRunShort(t *testing.T) {
	var mu sync.Mutex
	var maxAsked, maxAhead int
	cl := serverWith(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if r.URL.Path == "/v1/workers/lease" {
				var req api.LeaseRequest
				_ = json.Unmarshal(body, &req)
				mu.Lock()
				maxAsked, maxAhead = max(maxAsked, req.Max), max(maxAhead, req.Ahead)
				mu.Unlock()
			}
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
			next.ServeHTTP(w, r)
		})
	})
	stop := runWorker(t, cl, t.TempDir(), &lockedBuffer{}) // concurrency 2
	echoBatch(t, cl, 400, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if maxAhead == 0 || maxAsked <= 2 {
		t.Errorf("lease requests asked for at most %d attempts, held at most %d ahead: want more than the concurrency (2) once attempts run short", maxAsked, maxAhead)
	}
}
