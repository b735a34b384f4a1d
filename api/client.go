package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/wasmtask/wasmtask/plugins"
)

// Client talks to a wasmtask server; the CLI uses it.
type Client struct {
	BaseURL string // e.g. http://127.0.0.1:7070
	Token   string
	HTTP    *http.Client
	// Index holds the newest state sequence a cluster answered this client
	// (X-Wasmtask-Index), sent back as X-Wasmtask-Min-Index so that a
	// follower answers from a state holding everything seen so far
	// (read-your-writes). Clients of one cluster may share one (c2.Index =
	// c1.Index); nil sends none.
	Index *IndexTracker

	peers     atomic.Pointer[clusterPeers] // FollowCluster (client_cluster.go)
	manifests manifestsByJSON              // WorkerLease's decoded manifests
}

// IndexTracker keeps the highest index observed; safe for concurrent use.
type IndexTracker struct{ v atomic.Uint64 }

// Observe raises the index to v (never lowers it).
func (t *IndexTracker) Observe(v uint64) {
	for {
		old := t.v.Load()
		if v <= old || t.v.CompareAndSwap(old, v) {
			return
		}
	}
}

// Load returns the highest index observed (0: none).
func (t *IndexTracker) Load() uint64 { return t.v.Load() }

// The read-your-writes headers of a cluster (docs/http-api.md, Cluster).
const (
	IndexHeader    = "X-Wasmtask-Index"
	MinIndexHeader = "X-Wasmtask-Min-Index"
)

// NewClient returns a client for base (default http://127.0.0.1:7070).
func NewClient(base, token string) *Client {
	if base == "" {
		base = "http://127.0.0.1:7070"
	}
	return &Client{BaseURL: strings.TrimRight(base, "/"), Token: token, HTTP: &http.Client{Transport: newTransport()}, Index: new(IndexTracker)}
}

// newTransport is http.DefaultTransport keeping up to 64 idle connections
// to the server (the default keeps 2 per host): a client used from many
// goroutines then reuses its connections instead of opening (and leaving
// in TIME_WAIT) one per request.
func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = 64, 64
	return t
}

// UnreachableError means the server could not be reached at all.
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the wasmtask server at %s: %v (is `wasmtask serve` running? set --server or WASMTASK_SERVER)", e.URL, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// leaderRetry bounds how long a request answered "no_leader" (a cluster
// electing a leader, serve --node-id) is retried: elections take seconds.
const leaderRetry = 15 * time.Second

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, contentType string, out any) (int, error) {
	start := time.Now()
	moves := 0
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		status, err := c.doOnce(ctx, method, path, body, contentType, out)
		var ue *UnreachableError
		if errors.As(err, &ue) && c.rotate(ue.URL) && notSent(ue.Err) && moves < c.peerCount() {
			// A node of a followed cluster refused the connection: the
			// request was not sent; send it to the next node at once.
			moves++
			if !rewind(body) {
				return status, err
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Code != "no_leader" || time.Since(start) > leaderRetry {
			return status, err
		}
		// No leader was serving: the request was not carried out; retry it.
		if !rewind(body) {
			return status, err
		}
		select {
		case <-ctx.Done():
			return status, err
		case <-time.After(wait):
		}
	}
}

func (c *Client) doOnce(ctx context.Context, method, path string, body io.Reader, contentType string, out any) (int, error) {
	base := c.base()
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return 0, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if c.Index != nil {
		if v := c.Index.Load(); v > 0 {
			req.Header.Set(MinIndexHeader, strconv.FormatUint(v, 10))
		}
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, &UnreachableError{URL: base, Err: err}
	}
	defer resp.Body.Close()
	if c.Index != nil {
		if v, err := strconv.ParseUint(resp.Header.Get(IndexHeader), 10, 64); err == nil {
			c.Index.Observe(v)
		}
	}
	b, err := readResponse(resp)
	if err != nil {
		return resp.StatusCode, &UnreachableError{URL: base, Err: err}
	}
	if resp.StatusCode >= 400 {
		e := decodeError(resp.StatusCode, b)
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs >= 0 {
			e.RetryAfter = time.Duration(secs) * time.Second
		}
		return resp.StatusCode, e
	}
	if raw, ok := out.(*[]byte); ok { // a body that is not JSON (a module)
		*raw = b
		return resp.StatusCode, nil
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %s %s response: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// maxBusyRetries bounds how often doJSON resends a request the server
// refused as busy (429), each time after its Retry-After.
const maxBusyRetries = 30

func (c *Client) doJSON(ctx context.Context, method, path string, in, out any) (int, error) {
	var b []byte
	if a, ok := in.(jsonAppender); ok {
		if b, ok = a.appendJSON(nil); !ok {
			b = nil
		}
	}
	if in != nil && b == nil {
		var err error
		if b, err = json.Marshal(in); err != nil {
			return 0, err
		}
	}
	for try := 0; ; try++ {
		var body io.Reader
		if in != nil {
			body = bytes.NewReader(b)
		}
		status, err := c.do(ctx, method, path, body, "application/json", out)
		var e *Error
		if status != http.StatusTooManyRequests || try == maxBusyRetries || !errors.As(err, &e) {
			return status, err
		}
		// Busy: nothing was written; wait as asked, then send it again.
		wait := min(max(e.RetryAfter, 100*time.Millisecond), 10*time.Second)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return status, err
		}
	}
}

// SubmitResult is what Submit returns.
type SubmitResult struct {
	Task      TaskView
	Duplicate bool // the same spec was already submitted under this id
}

// Submit submits a task; it returns once the task is durable.
func (c *Client) Submit(ctx context.Context, spec TaskSpec) (*SubmitResult, error) {
	var v TaskView
	status, err := c.doJSON(ctx, "POST", "/v1/tasks", spec, &v)
	if err != nil {
		return nil, err
	}
	return &SubmitResult{Task: v, Duplicate: status == http.StatusOK}, nil
}

// SubmitWait submits a task and waits, in the same request, up to wait for
// it to be final (POST /v1/tasks?wait=): the task in the result is then
// final, or as it was when wait passed. A server that does not know the
// parameter answers at once (the task as submitted); TaskWait then waits.
// The submission is durable once it returns nil, final or not.
func (c *Client) SubmitWait(ctx context.Context, spec TaskSpec, wait time.Duration) (*SubmitResult, error) {
	var v TaskView
	status, err := c.doJSON(ctx, "POST", "/v1/tasks?wait="+wait.String(), spec, &v)
	if err != nil {
		return nil, err
	}
	return &SubmitResult{Task: v, Duplicate: status == http.StatusOK}, nil
}

// SubmitBatch submits several tasks in one request.
func (c *Client) SubmitBatch(ctx context.Context, specs []TaskSpec) ([]BatchResult, error) {
	var out struct {
		Results []BatchResult `json:"results"`
	}
	_, err := c.doJSON(ctx, "POST", "/v1/tasks/batch", map[string]any{"tasks": specs}, &out)
	return out.Results, err
}

// TaskGet returns a task view.
func (c *Client) TaskGet(ctx context.Context, id string) (TaskView, error) {
	var v TaskView
	_, err := c.doJSON(ctx, "GET", "/v1/tasks/"+url.PathEscape(id), nil, &v)
	return v, err
}

// TaskWait blocks on the server until the task is final or timeout passes.
func (c *Client) TaskWait(ctx context.Context, id string, timeout time.Duration) (TaskView, error) {
	var v TaskView
	_, err := c.doJSON(ctx, "GET", "/v1/tasks/"+url.PathEscape(id)+"/wait?timeout="+timeout.String(), nil, &v)
	return v, err
}

// TaskListParams filter TaskList.
type TaskListParams struct {
	State, Handler, Cursor string
	Limit                  int
	// Labels: every pair must match (sent as label=key=value).
	Labels map[string]string
}

// TaskList lists tasks, newest first.
func (c *Client) TaskList(ctx context.Context, p *TaskListParams) (TaskList, error) {
	q := url.Values{}
	if p != nil {
		if p.State != "" {
			q.Set("state", p.State)
		}
		if p.Handler != "" {
			q.Set("handler", p.Handler)
		}
		if p.Cursor != "" {
			q.Set("cursor", p.Cursor)
		}
		if p.Limit > 0 {
			q.Set("limit", fmt.Sprint(p.Limit))
		}
		for _, k := range slices.Sorted(maps.Keys(p.Labels)) {
			q.Add("label", k+"="+p.Labels[k])
		}
	}
	var out TaskList
	path := "/v1/tasks"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	_, err := c.doJSON(ctx, "GET", path, nil, &out)
	return out, err
}

// TaskCancel cancels a task and its subtree.
func (c *Client) TaskCancel(ctx context.Context, id string) (TaskView, error) {
	var v TaskView
	_, err := c.doJSON(ctx, "POST", "/v1/tasks/"+url.PathEscape(id)+"/cancel", nil, &v)
	return v, err
}

// TaskRetry starts a failed or canceled task again (new runs) and returns
// its view; a task in another state is ErrConflict.
func (c *Client) TaskRetry(ctx context.Context, id string) (TaskView, error) {
	var v TaskView
	_, err := c.doJSON(ctx, "POST", "/v1/tasks/"+url.PathEscape(id)+"/retry", nil, &v)
	return v, err
}

// TaskDelete deletes a final task and its subtree; a task that is not
// final is ErrConflict.
func (c *Client) TaskDelete(ctx context.Context, id string) (DeleteResult, error) {
	var out DeleteResult
	_, err := c.doJSON(ctx, "DELETE", "/v1/tasks/"+url.PathEscape(id), nil, &out)
	return out, err
}

// TaskPurge deletes every final task matching req.
func (c *Client) TaskPurge(ctx context.Context, req PurgeRequest) (PurgeResult, error) {
	var out PurgeResult
	_, err := c.doJSON(ctx, "POST", "/v1/tasks/purge", req, &out)
	return out, err
}

// TaskAfter adds prerequisites to a task that has not started.
func (c *Client) TaskAfter(ctx context.Context, id string, after []string) (TaskView, error) {
	var v TaskView
	_, err := c.doJSON(ctx, "POST", "/v1/tasks/"+url.PathEscape(id)+"/after", map[string][]string{"after": after}, &v)
	return v, err
}

// PluginDeploy uploads a module (and an optional manifest) as plugin name.
func (c *Client) PluginDeploy(ctx context.Context, name string, wasm, manifest []byte) (plugins.DeployResult, error) {
	var out plugins.DeployResult
	req := func() (*http.Request, error) {
		r, err := http.NewRequestWithContext(ctx, "PUT", c.base()+"/v1/plugins/"+url.PathEscape(name), bytes.NewReader(wasm))
		if err != nil {
			return nil, err
		}
		r.Header.Set("Content-Type", "application/wasm")
		if len(manifest) > 0 {
			r.Header.Set("X-Wasmtask-Manifest", string(compactJSON(manifest)))
		}
		return r, nil
	}
	r, err := req()
	if err != nil {
		return out, err
	}
	if c.Token != "" {
		r.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if c.Index != nil && c.Index.Load() > 0 {
		r.Header.Set(MinIndexHeader, strconv.FormatUint(c.Index.Load(), 10))
	}
	resp, err := c.HTTP.Do(r)
	if err != nil {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		return out, &UnreachableError{URL: c.BaseURL, Err: err}
	}
	defer resp.Body.Close()
	if v, err := strconv.ParseUint(resp.Header.Get(IndexHeader), 10, 64); err == nil && c.Index != nil {
		c.Index.Observe(v)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		return out, decodeError(resp.StatusCode, b)
	}
	return out, json.Unmarshal(b, &out)
}

func compactJSON(b []byte) []byte {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return b
	}
	return buf.Bytes()
}

// PluginList lists plugins.
func (c *Client) PluginList(ctx context.Context) ([]plugins.Info, error) {
	var out struct {
		Plugins []plugins.Info `json:"plugins"`
	}
	_, err := c.doJSON(ctx, "GET", "/v1/plugins", nil, &out)
	return out.Plugins, err
}

// PluginGet describes one plugin.
func (c *Client) PluginGet(ctx context.Context, name string) (plugins.Info, error) {
	var out plugins.Info
	_, err := c.doJSON(ctx, "GET", "/v1/plugins/"+url.PathEscape(name), nil, &out)
	return out, err
}

// PluginRollback re-activates the previous (or the given) version.
func (c *Client) PluginRollback(ctx context.Context, name, version string) (plugins.DeployResult, error) {
	var out plugins.DeployResult
	var in any
	if version != "" {
		in = map[string]string{"version": version}
	}
	_, err := c.doJSON(ctx, "POST", "/v1/plugins/"+url.PathEscape(name)+"/rollback", in, &out)
	return out, err
}

// EnginePause pauses dispatch.
func (c *Client) EnginePause(ctx context.Context) (EngineStatus, error) {
	var out EngineStatus
	_, err := c.doJSON(ctx, "POST", "/v1/engine/pause", nil, &out)
	return out, err
}

// EngineResume resumes dispatch.
func (c *Client) EngineResume(ctx context.Context) (EngineStatus, error) {
	var out EngineStatus
	_, err := c.doJSON(ctx, "POST", "/v1/engine/resume", nil, &out)
	return out, err
}

// EngineStatus returns engine status and counters.
func (c *Client) EngineStatus(ctx context.Context) (EngineStatus, error) {
	var out EngineStatus
	_, err := c.doJSON(ctx, "GET", "/v1/engine", nil, &out)
	return out, err
}

// IsUnreachable reports whether err means the server could not be reached.
func IsUnreachable(err error) bool {
	var u *UnreachableError
	return errors.As(err, &u)
}

// readResponse reads a response's body: into one buffer of its length
// when the server sent one (every JSON answer up to a few MiB), rather
// than io.ReadAll's doubling.
func readResponse(resp *http.Response) ([]byte, error) {
	if n := resp.ContentLength; n > 0 && n <= 64<<20 {
		b := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	return io.ReadAll(resp.Body)
}

// rewind makes body readable again from its start for a resend: true for
// no body or a body that seeks back, false when it cannot be sent again.
func rewind(body io.Reader) bool {
	if body == nil {
		return true
	}
	s, ok := body.(io.Seeker)
	if !ok {
		return false
	}
	_, err := s.Seek(0, io.SeekStart)
	return err == nil
}
