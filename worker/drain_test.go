package worker_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/worker"
)

// TestWorkerDrainEndsItsLeaseRequest: an idle worker whose lease request
// waits 30 s on the server stops well before that when its context ends:
// its draining heartbeat has the server answer the request now. Against a
// server that ignores draining (one from before it) the request ends
// within its wait, as before; against one that does not answer the
// heartbeat (hung), the worker gives up on the request after 2 s.
func TestWorkerDrainEndsItsLeaseRequest(t *testing.T) {
	for _, tc := range []struct {
		name      string
		heartbeat func(w http.ResponseWriter, r *http.Request, hung <-chan struct{}) // nil: the server's own
		leaseWait time.Duration
		within    time.Duration // far below what the old worker took
		log       string
	}{
		{name: "server answers the request", leaseWait: 30 * time.Second, within: 10 * time.Second},
		{name: "server predates draining", leaseWait: 3 * time.Second, within: 10*time.Second + 3*time.Second,
			heartbeat: func(w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"lease_timeout_ms":2000,"heartbeat_ms":500}`))
			}},
		{name: "server hung", leaseWait: 30 * time.Second, within: 15 * time.Second, log: "abandoning the lease request out",
			heartbeat: func(_ http.ResponseWriter, r *http.Request, hung <-chan struct{}) {
				_, _ = io.Copy(io.Discard, r.Body) // then a client that gives up ends r's context
				select {
				case <-r.Context().Done():
				case <-hung:
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hung := make(chan struct{})
			var leaseOut chan struct{} // closed once a hung server holds a lease request
			var leaseOnce sync.Once
			if tc.log != "" {
				leaseOut = make(chan struct{})
			}
			cl := serverWith(t, func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path == "/v1/workers/heartbeat" && tc.heartbeat != nil {
						tc.heartbeat(w, r, hung)
						return
					}
					if r.URL.Path == "/v1/workers/lease" && tc.log != "" {
						// a hung server holds its lease requests too
						_, _ = io.Copy(io.Discard, r.Body)
						leaseOnce.Do(func() { close(leaseOut) })
						select {
						case <-r.Context().Done():
						case <-hung:
						}
						return
					}
					next.ServeHTTP(w, r)
				})
			})
			defer close(hung)
			log := &lockedBuffer{}
			w, err := worker.New(context.Background(), worker.Config{Client: cl, Name: "unit", Concurrency: 2, CacheDir: t.TempDir(),
				LeaseWait: tc.leaseWait, Logger: slog.New(slog.NewTextHandler(log, nil))})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			waitLeaseOut(t, cl, leaseOut)
			start := time.Now()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run: %v\n%s", err, log.String())
				}
			case <-time.After(tc.within):
				t.Fatalf("the worker did not stop within %s of its context ending (its lease request waits %s)\n%s", tc.within, tc.leaseWait, log.String())
			}
			t.Logf("stopped %s after its context ended", time.Since(start).Round(time.Millisecond))
			if tc.log != "" && !strings.Contains(log.String(), tc.log) {
				t.Errorf("log lacks %q:\n%s", tc.log, log.String())
			}
		})
	}
}

// waitLeaseOut waits until the worker's first lease request reached the
// server (it is listed connected), or, with a hung server, until that
// server holds it (leaseOut closed). (A fixed 200 ms wait for the latter
// could end the worker before its request was out on a loaded machine, and
// the request it should abandon would not exist.)
func waitLeaseOut(t *testing.T, cl *api.Client, leaseOut <-chan struct{}) {
	t.Helper()
	if leaseOut != nil {
		select {
		case <-leaseOut:
		case <-time.After(20 * time.Second):
			t.Fatal("the worker sent no lease request within 20s")
		}
		return
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		list, err := cl.Workers(context.Background())
		if err == nil && len(list.Workers) == 1 && list.Workers[0].Connected {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker did not connect within 20s: %+v %v", list, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
