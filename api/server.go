package api

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/plugins"
)

// Config configures the HTTP API.
type Config struct {
	Engine  *dispatch.Engine
	Plugins *plugins.Registry
	// Token, when set, is required as "Authorization: Bearer <token>" on
	// every route except /healthz.
	Token string
	// WorkerToken, when set (with Token), is a second token good only for
	// what a remote worker does: lease, heartbeat, report results, fetch
	// modules (workerRoute). Any other route answers it 403.
	WorkerToken string
	// Metrics serves GET /metrics (a Prometheus handler); nil: 404.
	Metrics http.Handler
	Logger  *slog.Logger
	// MaxTaskBytes bounds a task submission body. Default 24 MiB (a 16 MiB
	// input in base64).
	MaxTaskBytes int64
	// MaxModuleBytes bounds a plugin upload. Default 64 MiB.
	MaxModuleBytes int64
	// MaxWait bounds the timeout of a wait request. Default 5m.
	MaxWait time.Duration
	// DiskUsage, when set, reports the data dir's sizes in GET /v1/engine.
	DiskUsage func() DiskUsage
	// MaxBatchBytes bounds a batch submission body (413 past it). Default
	// 4 x MaxTaskBytes.
	MaxBatchBytes int64
	// BatchMemory bounds the bytes of batch bodies decoded at once, over all
	// requests; a batch that does not fit gets 429 with Retry-After.
	// Default 2 x MaxBatchBytes.
	BatchMemory int64
	// Version of the server, shown by GET /v1/engine.
	Version string
	// Broker, when set, serves the remote worker routes (/v1/workers/...);
	// it is the engine's executor. nil: they answer 404.
	Broker *Broker
	// Deployer carries out deploys and rollbacks; default Plugins itself.
	// In cluster mode ClusterDeployer replicates them to every node.
	Deployer PluginDeployer
	// Replica, set instead of Engine on a cluster follower, answers the
	// reads (tasks, waits, engine status) from the node's replicated
	// state; ClusterFront forwards every write to the leader.
	Replica Reads
}

// Reads are the engine's reads the API answers from: the engine's own, or
// a cluster follower's replicated state (cluster.Replica).
type Reads interface {
	TaskWithoutInput(id dispatch.TaskID) (dispatch.TaskView, bool)
	List(f dispatch.ListFilter) []dispatch.TaskView
	WaitWithoutInput(ctx context.Context, id dispatch.TaskID) (dispatch.TaskView, error)
	Stats() dispatch.Stats
}

// PluginDeployer deploys and rolls back plugins (plugins.Registry, or
// ClusterDeployer).
type PluginDeployer interface {
	Deploy(ctx context.Context, name string, wasm []byte, m *plugins.Manifest, source string) (plugins.DeployResult, error)
	Rollback(ctx context.Context, name, version string) (plugins.DeployResult, error)
}

func (s *Server) deployer() PluginDeployer {
	if s.cfg.Deployer != nil {
		return s.cfg.Deployer
	}
	return s.cfg.Plugins
}

// reads is what the read routes answer from.
func (s *Server) reads() Reads {
	if s.cfg.Engine != nil {
		return s.cfg.Engine
	}
	return s.cfg.Replica
}

// Server is the HTTP API of docs/http-api.md.
type Server struct {
	cfg   Config
	mux   *http.ServeMux
	ready atomic.Bool
	// stopping ends long-poll waits when the server shuts down.
	stopping     context.Context
	stopWaitsNow context.CancelFunc
	history      history
	batches      byteBudget   // of batch bodies being decoded (batch.go)
	openWaits    atomic.Int64 // long-poll waits in flight (GET /v1/engine)
}

// compileDeadline bounds the answer of a deploy or rollback, which may
// compile a large module (tens of seconds on a busy machine) before it
// answers: longer than the server's write timeout.
const compileDeadline = 15 * time.Minute

// extendWriteDeadline gives one response its own write deadline (not every
// ResponseWriter supports it: then the server's stays).
func extendWriteDeadline(w http.ResponseWriter, d time.Duration) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
}

// New returns the API server; SetReady(true) once recovery is done.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxTaskBytes <= 0 {
		cfg.MaxTaskBytes = 24 << 20
	}
	if cfg.MaxModuleBytes <= 0 {
		cfg.MaxModuleBytes = 64 << 20
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 5 * time.Minute
	}
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = 4 * cfg.MaxTaskBytes
	}
	if cfg.BatchMemory <= 0 {
		cfg.BatchMemory = 2 * cfg.MaxBatchBytes
	}
	cfg.BatchMemory = max(cfg.BatchMemory, cfg.MaxBatchBytes) // a batch within the limit must fit alone
	s := &Server{cfg: cfg, mux: http.NewServeMux(), batches: byteBudget{max: cfg.BatchMemory}}
	s.stopping, s.stopWaitsNow = context.WithCancel(context.Background())
	for _, r := range s.routes() {
		s.mux.HandleFunc(r.pattern, r.handler)
	}
	return s
}

// SetReady flips /readyz.
func (s *Server) SetReady(ok bool) { s.ready.Store(ok) }

// StopWaits answers every pending and later long-poll wait at once with
// 503 "shutting down", so that http.Server.Shutdown need not wait for
// them. Call it when the server starts draining.
func (s *Server) StopWaits() { s.stopWaitsNow() }

type route struct {
	pattern string
	handler http.HandlerFunc
}

func (s *Server) routes() []route {
	return []route{
		{"POST /v1/tasks", s.submitTask},
		{"POST /v1/tasks/batch", s.submitBatch},
		{"GET /v1/tasks", s.listTasks},
		{"GET /v1/tasks/{id}", s.getTask},
		{"GET /v1/tasks/{id}/wait", s.waitTask},
		{"POST /v1/tasks/{id}/cancel", s.cancelTask},
		{"POST /v1/tasks/{id}/after", s.addAfter},
		{"POST /v1/tasks/{id}/retry", s.retryTask},
		{"DELETE /v1/tasks/{id}", s.deleteTask},
		{"POST /v1/tasks/purge", s.purgeTasks},
		{"PUT /v1/plugins/{name}", s.deployPlugin},
		{"GET /v1/plugins", s.listPlugins},
		{"GET /v1/plugins/{name}", s.getPlugin},
		{"POST /v1/plugins/{name}/rollback", s.rollbackPlugin},
		{"POST /v1/engine/pause", s.pauseEngine},
		{"POST /v1/engine/resume", s.resumeEngine},
		{"GET /v1/engine", s.engineStatus},
		{"GET /v1/engine/history", s.engineHistory},
		{"GET /v1/openapi.json", s.openAPI},
		{"POST /v1/workers/lease", s.workerLease},
		{"POST /v1/workers/heartbeat", s.workerHeartbeat},
		{"POST /v1/workers/result", s.workerResult},
		{"GET /v1/workers", s.listWorkers},
		{"GET /v1/modules/{version}", s.getModule},
		{"GET /ui/", uiHandler().ServeHTTP},
		{"GET /ui", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ui/", http.StatusMovedPermanently) }},
		{"GET /metrics", s.metrics},
		{"GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) }},
		{"GET /readyz", s.readyz},
		{"/", func(w http.ResponseWriter, r *http.Request) {
			writeError(w, &Error{Status: 404, Code: "not_found", Message: fmt.Sprintf("no route for %s %s (see docs/http-api.md)", r.Method, r.URL.Path)})
		}},
	}
}

// ServeHTTP checks the token, then routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Token != "" && r.URL.Path != "/healthz" && !isUIPath(r.URL.Path) {
		got, ok := bearerToken(r.Header.Get("Authorization"))
		switch {
		case ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) == 1:
		case ok && s.cfg.WorkerToken != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.WorkerToken)) == 1:
			if !workerRoute(r) {
				writeError(w, &Error{Status: 403, Code: "forbidden", Message: fmt.Sprintf(
					"the worker token (serve --worker-token) only leases, heartbeats, reports results and fetches modules; %s %s needs the admin token (--token)", r.Method, r.URL.Path)})
				return
			}
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="wasmtask"`)
			writeError(w, &Error{Status: 401, Code: "unauthorized", Message: "missing or wrong bearer token (set --token or WASMTASK_TOKEN)"})
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// workerRoute reports whether r is one of the routes the worker token may
// use: the remote worker protocol and module fetch.
func workerRoute(r *http.Request) bool {
	switch {
	case r.Method == http.MethodPost:
		switch r.URL.Path {
		case "/v1/workers/lease", "/v1/workers/heartbeat", "/v1/workers/result":
			return true
		}
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		return strings.HasPrefix(r.URL.Path, "/v1/modules/")
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, limit)
	var b []byte
	var err error
	if n := r.ContentLength; n > 0 && n <= limit {
		// One buffer of the announced size, rather than ReadAll's doubling
		// (which leaves twice a large body in garbage).
		b = make([]byte, n)
		if _, err = io.ReadFull(body, b); err == nil {
			var extra [1]byte
			if k, _ := body.Read(extra[:]); k > 0 {
				err = errors.New("the body is longer than its Content-Length")
			}
		}
	} else {
		b, err = io.ReadAll(body)
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &Error{Status: 413, Code: "too_large", Message: fmt.Sprintf("request body exceeds %d bytes", limit)}
		}
		return nil, &Error{Status: 400, Code: "bad_request", Message: "read body: " + err.Error()}
	}
	return b, nil
}

// specFromBody decodes, converts and checks a task spec (Normalize runs
// here, once: the engine takes the ValidSpec as it is), and then that its
// handler is deployed.
func (s *Server) specFromBody(b []byte) (dispatch.ValidSpec, error) {
	spec, _, err := s.specFromBodyShared(b, nil)
	return spec, err
}

// specFromBodyShared is specFromBody taking repeated strings from shared
// (see decodeSpecFastShared); id is the spec's, as far as it was read.
func (s *Server) specFromBodyShared(b []byte, shared *stringCache) (spec dispatch.ValidSpec, id string, err error) {
	js, ok := decodeSpecFastShared(b, shared)
	if !ok {
		if js, err = dispatch.DecodeSpecJSON(b); err != nil {
			return spec, "", err
		}
	}
	if spec, err = js.ToValidSpec(); err != nil {
		return spec, js.ID, err
	}
	if s.cfg.Plugins != nil {
		if err := s.cfg.Plugins.Check(spec.Handler()); err != nil {
			return spec, js.ID, &FieldError{Field: "handler", Reason: strings.TrimPrefix(err.Error(), "plugins: not found: ")}
		}
	}
	return spec, js.ID, nil
}

func (s *Server) submitTask(w http.ResponseWriter, r *http.Request) {
	if err := s.diskFull(); err != nil { // 507 before reading a body it cannot store
		writeError(w, err)
		return
	}
	release, err := s.admit(r.ContentLength, s.cfg.MaxTaskBytes)
	if err != nil {
		refuseBody(w, r, s.cfg.MaxTaskBytes)
		writeError(w, err)
		return
	}
	defer release()
	var b []byte
	if fb, ok := r.Body.(*fastBody); ok {
		b = fb.b // FastListener read it whole, within MaxTaskBytes
	} else if b, err = readBody(w, r, s.cfg.MaxTaskBytes); err != nil {
		writeError(w, err)
		return
	}
	wait, err := submitWait(r, s.cfg.MaxWait)
	if err != nil {
		writeError(w, err)
		return
	}
	spec, err := s.specFromBody(b)
	if err != nil {
		writeError(w, err)
		return
	}
	// The view as of the submission's own tick: reading the task after
	// Submit would wait for the fsync of whatever the loop stepped since.
	res, v, err := s.cfg.Engine.SubmitValidView(r.Context(), spec)
	if err != nil {
		writeError(w, err)
		return
	}
	status := http.StatusCreated
	if res.Duplicate {
		status = http.StatusOK
	}
	if wait > 0 && !v.Final() {
		// Submit and wait in one request: a waiting client no longer sends
		// its GET .../wait after the 201 (a round trip that, once the
		// attempt ran during the submission's fsync, came after the result).
		// The submission is durable whatever the wait ends with: its answer
		// is the 2xx, with the latest view when the task is not final.
		if fv, ok := s.waitFinal(w, r, res.Task, wait); ok {
			v = fv
		}
	}
	writeTaskView(w, status, s.taskView(v))
}

// submitWait is the wait query parameter of a submission: how long to wait
// for the task to be final before answering (0: not at all), at most
// maxWait.
func submitWait(r *http.Request, maxWait time.Duration) (time.Duration, error) {
	if r.URL == nil || r.URL.RawQuery == "" {
		return 0, nil
	}
	t := r.URL.Query().Get("wait")
	if t == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(t)
	if err != nil || d < 0 {
		return 0, &FieldError{Field: "wait", Reason: fmt.Sprintf("want a Go duration such as \"30s\", got %q", t)}
	}
	return min(d, maxWait), nil
}

// waitFinal waits up to timeout for task id to be final (a long poll: the
// response gets a write deadline of its own) and returns its view; false
// when it could not read one (the server shuts down, the task is gone).
func (s *Server) waitFinal(w http.ResponseWriter, r *http.Request, id dispatch.TaskID, timeout time.Duration) (dispatch.TaskView, bool) {
	v, err := s.longPoll(w, r, id, timeout)
	return v, err == nil || errors.Is(err, context.DeadlineExceeded) && v.ID != ""
}

// longPoll waits up to timeout, or until the client goes or the server
// stops, for task id to be final, and returns its view as it then is (the
// error says why it is not final). A long poll outlives the server's write
// timeout: the response gets its own deadline (not supported by every
// ResponseWriter: then none).
func (s *Server) longPoll(w http.ResponseWriter, r *http.Request, id dispatch.TaskID, timeout time.Duration) (dispatch.TaskView, error) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeout + 30*time.Second))
	s.openWaits.Add(1)
	defer s.openWaits.Add(-1)
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	defer context.AfterFunc(s.stopping, cancel)()
	return s.reads().WaitWithoutInput(ctx, id)
}

// refuseBody reads and drops a refused request's body (up to limit, a
// small buffer at a time, nothing kept): a server that answers without
// reading a large body closes the connection under a client still
// sending it, which then sees a reset instead of the answer (429).
func refuseBody(w http.ResponseWriter, r *http.Request, limit int64) {
	io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, limit))
}

// admit reserves payload memory for a submission body of length bytes (limit
// when the length is not sent up front) until release: submitMemoryFactor
// times the body. A submission that does not fit gets 429 with
// Retry-After (a *dispatch.BusyError), before its body is read.
func (s *Server) admit(length, limit int64) (release func(), err error) {
	if s.cfg.Engine == nil {
		return func() {}, nil
	}
	if length < 0 || length > limit {
		length = limit
	}
	return s.cfg.Engine.AdmitPayload(submitMemoryFactor * length)
}

// submitMemoryFactor: what receiving a submission holds at its peak, in
// bodies: the body, the input decoded as a string and as bytes, and room
// for their garbage until the next collection (the engine collects after
// every quarter of the budget freed). With it, 2,000 x 1 MiB submissions
// keep the heap under the budget + 64 MiB (e2e TestPayloadMemoryBounded).
const submitMemoryFactor = 4

func (s *Server) getTask(w http.ResponseWriter, r *http.Request) {
	id := dispatch.TaskID(r.PathValue("id"))
	v, ok := s.reads().TaskWithoutInput(id)
	if !ok {
		writeError(w, fmt.Errorf("%w: %q", dispatch.ErrNotFound, id))
		return
	}
	writeTaskView(w, 200, s.taskView(v))
}

func (s *Server) waitTask(w http.ResponseWriter, r *http.Request) {
	id := dispatch.TaskID(r.PathValue("id"))
	timeout := 30 * time.Second
	q := r.URL.Query()
	if err := checkQuery(q, "timeout"); err != nil {
		writeError(w, err)
		return
	}
	if t := q.Get("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d < 0 {
			writeError(w, &FieldError{Field: "timeout", Reason: fmt.Sprintf("want a Go duration such as \"30s\", got %q", t)})
			return
		}
		timeout = min(d, s.cfg.MaxWait)
	}
	v, err := s.longPoll(w, r, id, timeout)
	switch {
	case err == nil:
	case s.stopping.Err() != nil && !errors.Is(err, dispatch.ErrNotFound):
		writeError(w, &Error{Status: 503, Code: "unavailable", Message: "the server is shutting down; wait again once it is back"})
		return
	case !errors.Is(err, context.DeadlineExceeded):
		writeError(w, err)
		return
	}
	writeTaskView(w, 200, s.taskView(v))
}

// TaskList is the response of GET /v1/tasks.
type TaskList struct {
	Tasks      []TaskView `json:"tasks"`
	NextCursor string     `json:"next_cursor,omitempty"`
}

func (s *Server) listTasks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := checkQuery(q, "state", "handler", "label", "limit", "cursor", "id"); err != nil {
		writeError(w, err)
		return
	}
	f := dispatch.ListFilter{State: dispatch.TaskState(q.Get("state")), Handler: q.Get("handler"), Before: dispatch.TaskID(q.Get("cursor")),
		IDContains: q.Get("id"), Limit: 100}
	labels, err := parseLabels(q["label"])
	if err != nil {
		writeError(w, err)
		return
	}
	f.Labels = labels
	switch f.State {
	case "", dispatch.TaskPending, dispatch.TaskRunning, dispatch.TaskWaitingChildren, dispatch.TaskCompleted, dispatch.TaskFailed, dispatch.TaskCanceled:
	default:
		writeError(w, &FieldError{Field: "state", Reason: fmt.Sprintf("unknown state %q (want pending, running, waiting_children, completed, failed or canceled)", f.State)})
		return
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, &FieldError{Field: "limit", Reason: fmt.Sprintf("must be between 1 and 1000, got %q", l)})
			return
		}
		f.Limit = n
	}
	if f.Before != "" {
		if _, ok := s.reads().TaskWithoutInput(f.Before); !ok {
			writeError(w, &FieldError{Field: "cursor", Reason: fmt.Sprintf("unknown task %q (a cursor is the id of the last task of the previous page)", f.Before)})
			return
		}
	}
	f.Limit++ // one more to know whether there is a next page
	views := s.reads().List(f)
	out := TaskList{Tasks: []TaskView{}}
	for i, v := range views {
		if i == f.Limit-1 {
			out.NextCursor = out.Tasks[len(out.Tasks)-1].ID
			break
		}
		out.Tasks = append(out.Tasks, s.taskView(v))
	}
	writeJSON(w, 200, out)
}

func (s *Server) cancelTask(w http.ResponseWriter, r *http.Request) {
	id := dispatch.TaskID(r.PathValue("id"))
	if err := s.cfg.Engine.Cancel(r.Context(), id, "canceled through the API"); err != nil {
		writeError(w, err)
		return
	}
	v, _ := s.cfg.Engine.TaskWithoutInput(id)
	writeTaskView(w, 200, s.taskView(v))
}

func (s *Server) addAfter(w http.ResponseWriter, r *http.Request) {
	id := dispatch.TaskID(r.PathValue("id"))
	b, err := readBody(w, r, 1<<20)
	if err != nil {
		writeError(w, err)
		return
	}
	var req struct {
		After []string `json:"after"`
	}
	if err := decodeStrict(b, &req); err != nil {
		writeError(w, err)
		return
	}
	after := make([]dispatch.TaskID, len(req.After))
	for i, a := range req.After {
		after[i] = dispatch.TaskID(a)
	}
	if err := s.cfg.Engine.After(r.Context(), id, after); err != nil {
		writeError(w, err)
		return
	}
	v, _ := s.cfg.Engine.TaskWithoutInput(id)
	writeTaskView(w, 200, s.taskView(v))
}

// decodeStrict decodes a small JSON body, rejecting unknown fields.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonFieldError(err)
	}
	return nil
}

// deployPlugin takes the module as the raw body (application/wasm or
// octet-stream) with an optional manifest in the X-Wasmtask-Manifest
// header, or as multipart/form-data with parts "module" and "manifest".
func (s *Server) deployPlugin(w http.ResponseWriter, r *http.Request) {
	extendWriteDeadline(w, compileDeadline)
	name := r.PathValue("name")
	var wasm, manifest []byte
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "multipart/form-data" {
		mr := multipart.NewReader(http.MaxBytesReader(w, r.Body, s.cfg.MaxModuleBytes+1<<20), params["boundary"])
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				writeError(w, &Error{Status: 400, Code: "bad_request", Message: "read multipart body: " + err.Error()})
				return
			}
			b, err := io.ReadAll(io.LimitReader(p, s.cfg.MaxModuleBytes+1))
			if err != nil || int64(len(b)) > s.cfg.MaxModuleBytes {
				writeError(w, &Error{Status: 413, Code: "too_large", Message: fmt.Sprintf("upload exceeds %d bytes", s.cfg.MaxModuleBytes)})
				return
			}
			switch p.FormName() {
			case "module":
				wasm = b
			case "manifest":
				manifest = b
			default:
				writeError(w, &FieldError{Field: p.FormName(), Reason: "unknown part (want module and optionally manifest)"})
				return
			}
		}
	} else {
		b, err := readBody(w, r, s.cfg.MaxModuleBytes)
		if err != nil {
			writeError(w, err)
			return
		}
		wasm = b
		if h := r.Header.Get("X-Wasmtask-Manifest"); h != "" {
			manifest = []byte(h)
		}
	}
	var m *plugins.Manifest
	if len(manifest) > 0 {
		var err error
		if m, err = plugins.ParseManifest(manifest); err != nil {
			writeError(w, err)
			return
		}
	}
	res, err := s.deployer().Deploy(r.Context(), name, wasm, m, "http")
	if err != nil {
		writeError(w, err)
		return
	}
	status := 200
	if res.Changed {
		status = 201
	}
	writeJSON(w, status, res)
}

func (s *Server) listPlugins(w http.ResponseWriter, _ *http.Request) {
	list := s.cfg.Plugins.List()
	if list == nil {
		list = []plugins.Info{}
	}
	writeJSON(w, 200, map[string]any{"plugins": list})
}

func (s *Server) getPlugin(w http.ResponseWriter, r *http.Request) {
	info, err := s.cfg.Plugins.Get(r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 200, info)
}

func (s *Server) rollbackPlugin(w http.ResponseWriter, r *http.Request) {
	extendWriteDeadline(w, compileDeadline)
	var req struct {
		Version string `json:"version"`
	}
	b, err := readBody(w, r, 1<<16)
	if err != nil {
		writeError(w, err)
		return
	}
	if len(strings.TrimSpace(string(b))) > 0 {
		if err := decodeStrict(b, &req); err != nil {
			writeError(w, err)
			return
		}
	}
	res, err := s.deployer().Rollback(r.Context(), r.PathValue("name"), req.Version)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 200, res)
}

func (s *Server) pauseEngine(w http.ResponseWriter, r *http.Request) {
	if err := s.cfg.Engine.Pause(r.Context()); err != nil {
		writeError(w, err)
		return
	}
	s.engineStatus(w, r)
}

func (s *Server) resumeEngine(w http.ResponseWriter, r *http.Request) {
	if err := s.cfg.Engine.Resume(r.Context()); err != nil {
		writeError(w, err)
		return
	}
	s.engineStatus(w, r)
}

// EngineStatus is the response of GET /v1/engine.
type EngineStatus struct {
	Version  string         `json:"version"`
	Paused   bool           `json:"paused"`
	Tasks    int            `json:"tasks"`
	Runs     map[string]int `json:"runs"`
	InFlight int            `json:"in_flight"`
	WALSeq   uint64         `json:"wal_seq"`
	Events   uint64         `json:"events"`
	Recovery RecoveryStatus `json:"recovery"`
	Disk     *DiskUsage     `json:"disk,omitempty"`
	// DiskFull, while the data dir's disk is full: why submissions are
	// refused (507).
	DiskFull string `json:"disk_full,omitempty"`
	// Stopped: the error (a failed fsync) that stopped the engine; the
	// server answers reads only until it is restarted.
	Stopped string `json:"stopped,omitempty"`
	// OpenWaits counts wait requests (long polls) being answered.
	OpenWaits int64 `json:"open_waits"`
	// Role is "follower" when a cluster follower answered from its
	// replicated state (no loop, recovery or disk figures of its own).
	Role string `json:"role,omitempty"`
}

func runCounts(st dispatch.Stats) map[string]int {
	out := make(map[string]int, len(st.RunsByState))
	for k, v := range st.RunsByState {
		out[string(k)] = v
	}
	return out
}

type RecoveryStatus struct {
	EventsReplayed uint64  `json:"events_replayed"`
	SnapshotSeq    uint64  `json:"snapshot_seq"`
	Seconds        float64 `json:"seconds"`
	TornTailBytes  int64   `json:"torn_tail_bytes"`
}

func (s *Server) engineStatus(w http.ResponseWriter, _ *http.Request) {
	st := s.reads().Stats()
	if s.cfg.Engine == nil { // a cluster follower: its replicated state
		writeJSON(w, 200, EngineStatus{Version: s.cfg.Version, Paused: st.Paused, Tasks: st.Tasks, Runs: runCounts(st), InFlight: st.InFlight,
			WALSeq: st.Applied, OpenWaits: s.openWaits.Load(), Role: "follower"})
		return
	}
	rec := s.cfg.Engine.Recovery()
	out := EngineStatus{Version: s.cfg.Version, Paused: st.Paused, Tasks: st.Tasks, Runs: map[string]int{}, InFlight: st.InFlight,
		WALSeq: st.Applied, Events: st.Events,
		Recovery: RecoveryStatus{EventsReplayed: rec.EventsReplayed, SnapshotSeq: rec.SnapshotSeq, Seconds: rec.Duration.Seconds()}}
	if rec.WAL.TornTail != nil {
		out.Recovery.TornTailBytes = rec.WAL.TornTail.Bytes
	}
	out.Runs = runCounts(st)
	out.OpenWaits = s.openWaits.Load()
	if err := s.cfg.Engine.DiskFull(); err != nil {
		out.DiskFull = err.Error()
	}
	if err := s.cfg.Engine.Err(); err != nil {
		out.Stopped = err.Error()
	}
	if s.cfg.DiskUsage != nil {
		d := s.cfg.DiskUsage()
		out.Disk = &d
	}
	writeJSON(w, 200, out)
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Metrics == nil {
		writeError(w, &Error{Status: 404, Code: "not_found", Message: "metrics are not enabled"})
		return
	}
	s.cfg.Metrics.ServeHTTP(w, r)
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if !s.ready.Load() {
		writeError(w, &Error{Status: 503, Code: "not_ready", Message: "recovering"})
		return
	}
	if err := s.cfg.Engine.Err(); err != nil {
		// A failed fsync stopped the engine: reads go on, writes cannot.
		writeError(w, &Error{Status: 503, Code: "not_ready", Message: "read-only until restarted: " + err.Error()})
		return
	}
	writeJSON(w, 200, map[string]string{"status": "ready"})
}
