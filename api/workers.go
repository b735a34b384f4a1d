package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"time"

	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/plugins"
)

// The remote worker protocol (docs/http-api.md, "Remote workers"). Every
// request names the worker (WorkerHello), so any of them (re)registers it:
// after a server restart a worker busy with long attempts is known again
// at its next heartbeat.

// WorkerHello identifies a worker process in every worker request.
type WorkerHello struct {
	// Worker is the process's instance id (random, new at each start).
	Worker string `json:"worker"`
	// Name is shown in listings and on the attempts it runs (wasmtask
	// worker --name; default host-pid).
	Name string `json:"name"`
	// Handlers are the plugin names it serves; none: every plugin.
	Handlers    []string `json:"handlers,omitempty"`
	Concurrency int      `json:"concurrency"`
	// Ahead is how many attempts the worker holds leased beyond its
	// concurrency (queued on it, to start when a slot frees) while its
	// attempts run short; the server leases that many more for it. 0-4096.
	Ahead int `json:"ahead,omitempty"`
}

// LeaseRequest is the body of POST /v1/workers/lease.
type LeaseRequest struct {
	WorkerHello
	// Max is the number of attempts wanted (the worker's free slots).
	Max int `json:"max"`
	// WaitMs is how long to wait for the first attempt when none is ready
	// (long poll). Default 5000, at most 30000; 0 answers at once.
	WaitMs *int64 `json:"wait_ms,omitempty"`
	// Results (optional) are finished attempts reported with the request,
	// applied before any lease is taken exactly as POST /v1/workers/result
	// applies them; their fates come back in LeaseResponse.Results. One
	// request then both frees the worker's slots and fills them, where a
	// result and a lease request cost two round trips. With results, Max
	// may be 0 (report only: answered at once, no lease).
	Results []WorkerResult `json:"results,omitempty"`
}

// LeaseResponse answers a lease request; no leases when none came in time.
type LeaseResponse struct {
	Leases []Lease `json:"leases"`
	// Results: what became of LeaseRequest.Results, in their order (none
	// when the request carried none). A conflict here does not fail the
	// request.
	Results []ResultStatus `json:"results,omitempty"`
	// LeaseTimeoutMs: a lease not renewed for this long is lost.
	LeaseTimeoutMs int64 `json:"lease_timeout_ms"`
	// HeartbeatMs is how often the worker should send heartbeats.
	HeartbeatMs int64 `json:"heartbeat_ms"`
}

// Lease is one attempt leased to a worker.
type Lease struct {
	// Lease is the fencing token: heartbeats and the result name it.
	Lease       string `json:"lease"`
	Task        string `json:"task"`
	Run         string `json:"run"`
	Attempt     int    `json:"attempt"`
	MaxAttempts int    `json:"max_attempts"`
	// Handler is the task's handler as submitted; Plugin and Version are
	// what it resolved to at the lease (the worker runs Plugin@Version,
	// fetching the module by Version from GET /v1/modules/{version}).
	Handler  string            `json:"handler"`
	Plugin   string            `json:"plugin"`
	Version  string            `json:"version"`
	Manifest *plugins.Manifest `json:"manifest,omitempty"`
	Input    []byte            `json:"input,omitempty"`
	// TimeoutMs is the task's timeout; RemainingMs what is left of it at
	// the lease (the worker's deadline, on its own clock).
	TimeoutMs   int64             `json:"timeout_ms"`
	RemainingMs int64             `json:"remaining_ms"`
	Labels      map[string]string `json:"labels,omitempty"`
	Parent      string            `json:"parent,omitempty"`

	manifestJSON []byte // Manifest as received (Client.WorkerLease)
}

// HeartbeatRequest is the body of POST /v1/workers/heartbeat.
type HeartbeatRequest struct {
	WorkerHello
	Leases []string `json:"leases"`
	// Draining: the worker is stopping (SIGTERM). It gets no more leases,
	// and its lease request waiting, if any, is answered now (with what
	// it took before, if anything) rather than at the end of its wait.
	Draining bool `json:"draining,omitempty"`
}

// HeartbeatResponse lists the leases to stop (the task was canceled or
// timed out) and those no longer live (expired or unknown: stop them, their
// results would be refused).
type HeartbeatResponse struct {
	Cancel         []string `json:"cancel,omitempty"`
	Lost           []string `json:"lost,omitempty"`
	LeaseTimeoutMs int64    `json:"lease_timeout_ms"`
	HeartbeatMs    int64    `json:"heartbeat_ms"`
}

// ResultRequest is the body of POST /v1/workers/result: results of
// finished attempts, several at once if they finished together.
type ResultRequest struct {
	WorkerHello
	Results []WorkerResult `json:"results"`
}

// WorkerResult is what a worker reports for one lease: the Result the
// local executor returns.
type WorkerResult struct {
	Lease     string `json:"lease"`
	Outcome   string `json:"outcome"`
	Retryable bool   `json:"retryable,omitempty"`
	Error     string `json:"error,omitempty"`
	Output    []byte `json:"output,omitempty"`
	Log       []byte `json:"log,omitempty"`
	Module    string `json:"module,omitempty"`
	// Children are the task specs the handler submitted, committed with
	// the attempt's success.
	Children   []json.RawMessage `json:"children,omitempty"`
	StartedAt  time.Time         `json:"started_at,omitzero"`
	FinishedAt time.Time         `json:"finished_at,omitzero"`
}

// ResultResponse says what became of each result: applied, duplicate
// (applied before: a retry after a network error) or conflict (fenced off:
// the lease expired, was superseded or is unknown; Error says which).
type ResultResponse struct {
	Results []ResultStatus `json:"results"`
}

// ResultStatus is the fate of one posted result.
type ResultStatus struct {
	Lease  string `json:"lease"`
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// WorkerInfo describes a remote worker in GET /v1/workers.
type WorkerInfo struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Address     string   `json:"address"`
	Handlers    []string `json:"handlers,omitempty"`
	Concurrency int      `json:"concurrency"`
	// Prefetch is always 0: the server no longer leases for a worker
	// beyond its concurrency and Ahead (doc.go, "Lease-ahead"); kept for
	// clients that read it.
	Prefetch int `json:"prefetch"`
	// Ahead: attempts the worker holds leased beyond Concurrency (queued on
	// it) while its attempts run short (WorkerHello.Ahead); InFlight counts
	// them.
	Ahead     int  `json:"ahead"`
	InFlight  int  `json:"in_flight"`
	Connected bool `json:"connected"`
	// Draining: it said it is stopping; it takes no more attempts.
	Draining      bool   `json:"draining,omitempty"`
	ConnectedAt   string `json:"connected_at"`
	LastHeartbeat string `json:"last_heartbeat"`
	// Attempts leased, finished ok, finished otherwise, lost (lease
	// expired), and results refused (409).
	Leases   uint64 `json:"leases"`
	Done     uint64 `json:"done"`
	Failed   uint64 `json:"failed"`
	Lost     uint64 `json:"lost"`
	Rejected uint64 `json:"rejected"`
	// LeaseWait: from the engine's lease to the worker taking it;
	// LeaseToStart: to the attempt's start on the worker (its clock).
	LeaseWait    *LatencySummary `json:"lease_wait,omitempty"`
	LeaseToStart *LatencySummary `json:"lease_to_start,omitempty"`

	leaseWaitHist, startHist latencyHist
}

// LeaseWaitBuckets returns the lease wait histogram (cumulative counts per
// upper bound in seconds, count, sum) for metrics.
func (w WorkerInfo) LeaseWaitBuckets() (map[float64]uint64, uint64, float64) {
	return w.leaseWaitHist.Buckets()
}

// LatencySummary summarizes a latency histogram (quantiles are bucket bounds).
type LatencySummary struct {
	Count  uint64  `json:"count"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
}

// WorkerList is GET /v1/workers.
type WorkerList struct {
	Workers []WorkerInfo `json:"workers"`
	// LocalWorkers: attempts the server runs itself at once (serve --workers).
	LocalWorkers   int   `json:"local_workers"`
	Queued         int   `json:"queued"`
	LeaseTimeoutMs int64 `json:"lease_timeout_ms"`
}

var versionPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

var workerIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)

func (h *WorkerHello) check() error {
	switch {
	case !workerIDPattern.MatchString(h.Worker):
		return &FieldError{Field: "worker", Reason: "want the worker's instance id: 1-128 letters, digits, '.', '_', ':', '@' or '-'"}
	case h.Name == "" || len(h.Name) > 128:
		return &FieldError{Field: "name", Reason: "want the worker's name (1-128 bytes)"}
	case h.Concurrency < 1 || h.Concurrency > 4096:
		return &FieldError{Field: "concurrency", Reason: fmt.Sprintf("want 1-4096, got %d", h.Concurrency)}
	case h.Ahead < 0 || h.Ahead > 4096:
		return &FieldError{Field: "ahead", Reason: fmt.Sprintf("want 0-4096 (attempts held beyond the concurrency), got %d", h.Ahead)}
	}
	slices.Sort(h.Handlers)
	h.Handlers = slices.Compact(h.Handlers)
	return nil
}

// brokerOr404 is the broker, or a 404 when the server has none.
func (s *Server) brokerOr404(w http.ResponseWriter) *Broker {
	if s.cfg.Broker == nil {
		writeError(w, &Error{Status: 404, Code: "not_found", Message: "this server takes no remote workers"})
	}
	return s.cfg.Broker
}

func decodeWorkerBody(w http.ResponseWriter, r *http.Request, limit int64, v any, hello *WorkerHello) bool {
	b, err := readBody(w, r, limit)
	if err == nil {
		if jerr := unmarshalWorkerBody(b, v); jerr != nil {
			err = &Error{Status: 400, Code: "invalid", Message: "body: " + jerr.Error()}
		} else {
			err = hello.check()
		}
	}
	if err != nil {
		writeError(w, err)
		return false
	}
	return true
}

// unmarshalWorkerBody decodes a worker request's body into v: lease and
// result requests by hand when they are as workers write them
// (decodeLeaseRequest, decodeResultRequest), anything else with
// encoding/json.
func unmarshalWorkerBody(b []byte, v any) error {
	switch v := v.(type) {
	case *LeaseRequest:
		if req, ok := decodeLeaseRequest(b); ok {
			*v = req
			return nil
		}
	case *ResultRequest:
		if req, ok := decodeResultRequest(b); ok {
			*v = req
			return nil
		}
	}
	return json.Unmarshal(b, v)
}

func (s *Server) leaseTimings() (timeout, heartbeat int64) {
	t := s.cfg.Broker.LeaseTimeout()
	return t.Milliseconds(), max(t/4, 10*time.Millisecond).Milliseconds()
}

func (s *Server) workerLease(w http.ResponseWriter, r *http.Request) {
	b := s.brokerOr404(w)
	if b == nil {
		return
	}
	var req LeaseRequest
	if !decodeWorkerBody(w, r, s.resultBodyLimit(), &req, &req.WorkerHello) {
		return
	}
	fewest, reason := 1, "want 1-4096 attempts"
	if len(req.Results) > 0 {
		fewest, reason = 0, "want 0-4096 attempts (0: report the results only)"
	}
	if req.Max < fewest || req.Max > 4096 {
		reason = fmt.Sprintf("%s, got %d", reason, req.Max)
		writeError(w, &FieldError{Field: "max", Reason: reason})
		return
	}
	if err := checkResults(req.Results); err != nil {
		writeError(w, err)
		return
	}
	wait := 5 * time.Second
	if req.WaitMs != nil {
		if *req.WaitMs < 0 || *req.WaitMs > 30_000 {
			writeError(w, &FieldError{Field: "wait_ms", Reason: fmt.Sprintf("want 0-30000, got %d", *req.WaitMs)})
			return
		}
		wait = time.Duration(*req.WaitMs) * time.Millisecond
	}
	timeout, hb := s.leaseTimings()
	out := LeaseResponse{LeaseTimeoutMs: timeout, HeartbeatMs: hb}
	if len(req.Results) > 0 {
		// First, so that the engine can lease the attempts that fill the
		// slots these results free while this request waits for them.
		out.Results = b.applyResults(req.WorkerHello, r.RemoteAddr, req.Results)
		if req.Max == 0 || b.isStopping() {
			// Reported: answered at once (a server shutting down takes
			// results but gives no leases; the next request gets its 503).
			out.Leases = []Lease{}
			writeLeaseResponse(w, &out, &b.manifests)
			return
		}
	}
	extendWriteDeadline(w, wait+30*time.Second)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() { // a server shutting down answers long polls at once
		select {
		case <-s.stopping.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	leases, err := b.lease(ctx, req.WorkerHello, r.RemoteAddr, req.Max, wait)
	if err != nil {
		writeError(w, err)
		return
	}
	out.Leases = leases
	if out.Leases == nil {
		out.Leases = []Lease{}
	}
	writeLeaseResponse(w, &out, &b.manifests)
}

// resultBodyLimit bounds a request carrying results: the outputs, logs and
// children of several attempts.
func (s *Server) resultBodyLimit() int64 { return 4*s.cfg.MaxTaskBytes + 64<<20 }

// checkResults validates posted results before any is applied.
func checkResults(results []WorkerResult) error {
	for i, res := range results {
		if !validOutcome(res.Outcome) {
			return &FieldError{Field: fmt.Sprintf("results[%d].outcome", i), Reason: fmt.Sprintf("unknown outcome %q", res.Outcome)}
		}
	}
	return nil
}

func (s *Server) workerHeartbeat(w http.ResponseWriter, r *http.Request) {
	b := s.brokerOr404(w)
	if b == nil {
		return
	}
	var req HeartbeatRequest
	if !decodeWorkerBody(w, r, 4<<20, &req, &req.WorkerHello) {
		return
	}
	cancel, lost := b.heartbeat(req.WorkerHello, r.RemoteAddr, req.Leases, req.Draining)
	if len(req.Leases) > 0 && len(lost) == len(req.Leases) {
		writeError(w, &Error{Status: 409, Code: "conflict", Message: fmt.Sprintf("no lease named is live (expired, finished or unknown): %v", lost)})
		return
	}
	timeout, hb := s.leaseTimings()
	writeJSON(w, 200, HeartbeatResponse{Cancel: cancel, Lost: lost, LeaseTimeoutMs: timeout, HeartbeatMs: hb})
}

func (s *Server) workerResult(w http.ResponseWriter, r *http.Request) {
	b := s.brokerOr404(w)
	if b == nil {
		return
	}
	var req ResultRequest
	if !decodeWorkerBody(w, r, s.resultBodyLimit(), &req, &req.WorkerHello) {
		return
	}
	if len(req.Results) == 0 {
		writeError(w, &FieldError{Field: "results", Reason: "want at least one result"})
		return
	}
	if err := checkResults(req.Results); err != nil {
		writeError(w, err)
		return
	}
	out := ResultResponse{Results: b.applyResults(req.WorkerHello, r.RemoteAddr, req.Results)}
	conflicts := 0
	for _, st := range out.Results {
		if st.Status == resultConflict {
			conflicts++
		}
	}
	if conflicts == len(req.Results) {
		msg := out.Results[0].Error
		if len(out.Results) > 1 {
			msg = fmt.Sprintf("none of the %d results was applied; the first: %s", len(out.Results), msg)
		}
		writeError(w, &Error{Status: 409, Code: "conflict", Message: "result refused: " + msg})
		return
	}
	writeJSON(w, 200, out)
}

func validOutcome(o string) bool {
	switch dispatch.Outcome(o) {
	case dispatch.OutcomeOK, dispatch.OutcomeFailed, dispatch.OutcomeTrap, dispatch.OutcomeTimeout, dispatch.OutcomeCancelled,
		dispatch.OutcomeOOM, dispatch.OutcomeOutputTooLarge, dispatch.OutcomeABIViolation, dispatch.OutcomeLost:
		return true
	}
	return false
}

func (r WorkerResult) toResult() dispatch.Result {
	res := dispatch.Result{Outcome: dispatch.Outcome(r.Outcome), Retryable: r.Retryable, Error: r.Error, Output: r.Output,
		Log: r.Log, Module: r.Module, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt}
	for _, c := range r.Children {
		res.Children = append(res.Children, []byte(c))
	}
	return res
}

func (s *Server) listWorkers(w http.ResponseWriter, _ *http.Request) {
	b := s.brokerOr404(w)
	if b == nil {
		return
	}
	timeout, _ := s.leaseTimings()
	writeJSON(w, 200, WorkerList{Workers: b.Workers(), LocalWorkers: b.LocalWorkers(), Queued: b.Queued(), LeaseTimeoutMs: timeout})
}

// getModule serves a stored module by version, for workers; they check the
// hash before they compile it.
func (s *Server) getModule(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Plugins == nil {
		writeError(w, &Error{Status: 404, Code: "not_found", Message: "this server has no plugin registry"})
		return
	}
	version := r.PathValue("version")
	if !versionPattern.MatchString(version) {
		writeError(w, &FieldError{Field: "version", Reason: fmt.Sprintf("want sha256:<64 lower-case hex digits>, got %q", version)})
		return
	}
	wasm, err := s.cfg.Plugins.Module(version)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/wasm")
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	extendWriteDeadline(w, 5*time.Minute)
	w.WriteHeader(200)
	_, _ = w.Write(wasm)
}
