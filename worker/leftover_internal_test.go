package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
)

// TestResultsBeyondOneRequestAreSentWhileThePollWaits: more results
// pending than one lease request carries (maxResultsPerRequest), and the
// request then held as a long poll (no attempt left to lease, as at the
// end of a burst): the rest are posted on their own at once, not when the
// poll ends. Before, they waited for the poll (LeaseWait, 5 s by
// default): the engine counted their attempts as running until then.
func TestResultsBeyondOneRequestAreSentWhileThePollWaits(t *testing.T) {
	const total = maxResultsPerRequest + 44
	leased := make(chan int, 4)  // results carried by each lease request
	posted := make(chan int, 16) // results posted apart, per request
	release := make(chan struct{})
	applied := func(rs []api.WorkerResult) []api.ResultStatus {
		out := make([]api.ResultStatus, len(rs))
		for i, r := range rs {
			out[i] = api.ResultStatus{Lease: r.Lease, Status: "applied"}
		}
		return out
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/workers/lease":
			var req api.LeaseRequest
			json.NewDecoder(r.Body).Decode(&req)
			leased <- len(req.Results)
			select { // a long poll with nothing to lease
			case <-release:
			case <-r.Context().Done():
			}
			json.NewEncoder(w).Encode(api.LeaseResponse{Leases: []api.Lease{}, Results: applied(req.Results), HeartbeatMs: 60000})
		case "/v1/workers/result":
			var req api.ResultRequest
			json.NewDecoder(r.Body).Decode(&req)
			posted <- len(req.Results)
			json.NewEncoder(w).Encode(api.ResultResponse{Results: applied(req.Results)})
		case "/v1/workers/heartbeat":
			json.NewEncoder(w).Encode(api.HeartbeatResponse{HeartbeatMs: 60000})
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	w, err := New(context.Background(), Config{Client: api.NewClient(srv.URL, ""), Name: "leftover", Concurrency: 1, CacheDir: t.TempDir(),
		LeaseWait: time.Minute, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.host.Close(context.Background())
	for i := range total {
		w.pending = append(w.pending, api.WorkerResult{Lease: fmt.Sprintf("run-%d.1.x", i), Outcome: "ok"})
	}
	w.ahead = 64 // leasing ahead, as with short attempts: the sender holds results briefly for the next request

	ctx, cancel := context.WithCancel(context.Background())
	flush := make(chan struct{})
	sent, leasing := make(chan struct{}), make(chan struct{})
	go func() { defer close(sent); w.sendLoop(context.Background(), flush) }()
	go func() { defer close(leasing); w.leaseLoop(ctx) }()
	defer func() {
		close(release)
		cancel()
		<-leasing
		close(flush)
		<-sent
	}()

	if n := <-leased; n != maxResultsPerRequest {
		t.Fatalf("the lease request carried %d results, want %d", n, maxResultsPerRequest)
	}
	select {
	case n := <-posted:
		if n != total-maxResultsPerRequest {
			t.Fatalf("posted %d results apart, want the %d the lease request could not carry", n, total-maxResultsPerRequest)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the %d results the lease request could not carry were not posted while it waited (10s of its 1m long poll)", total-maxResultsPerRequest)
	}
}
