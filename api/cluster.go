package api

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmtask/wasmtask/cluster"
	"github.com/wasmtask/wasmtask/plugins"
)

// ClusterConfig configures the HTTP front of a cluster node.
type ClusterConfig struct {
	Node *cluster.Node
	// Self is this node's API base URL (what the others forward to).
	Self string
	// Token, Metrics and Logger as in Config.
	Token   string
	Metrics http.Handler
	Logger  *slog.Logger
	// Plugins is this node's registry (for the attempt timeouts of task
	// views answered here) and Version the server's, as in Config.
	Plugins *plugins.Registry
	Version string
	// TLS is the client configuration of this node's requests to the
	// others' APIs over https:// (joins, forwarded requests, peer lag);
	// nil: the system roots.
	TLS *tls.Config
	// ReadWait bounds how long a follower waits to reach a read's
	// X-Wasmtask-Min-Index before it forwards the read to the leader
	// (default DefaultReadWait); WriteWait how long a write forwarded
	// through it waits for it to apply the write (DefaultWriteWait).
	ReadWait, WriteWait time.Duration
}

// ClusterFront is a cluster node's HTTP API: the cluster routes, and
// every other route served by the leader's Server (SetServer) where this
// node leads, or forwarded to the leader (a reverse proxy to its API
// address, which the nodes replicate) where it follows. A client
// therefore needs one address, any node's. While no leader is known the
// answer is 503 {"code": "no_leader"} with Retry-After: the Go client
// retries it.
type ClusterFront struct {
	cfg     ClusterConfig
	mux     *http.ServeMux
	server  atomic.Pointer[Server]
	proxies sync.Map // leader URL -> *httputil.ReverseProxy
	client  *http.Client
	// replica and follower answer reads from this node's replicated
	// state while it follows (cluster_reads.go).
	replica                    *cluster.Replica
	follower                   *Server
	readsLocal, readsForwarded atomic.Uint64
	peerLags                   atomic.Pointer[[]PeerLag] // cluster_peers.go
}

// ErrNoLeader is the client's error while the cluster has no leader.
var ErrNoLeader = &Error{Code: "no_leader"}

// forwardedHeader marks a request one node forwarded to another, so that
// a request never goes round in circles during an election.
const forwardedHeader = "X-Wasmtask-Forwarded-By"

// NewClusterFront returns the front; SetServer gives it the API of the
// engine this node runs while it leads.
func NewClusterFront(cfg ClusterConfig) *ClusterFront {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ReadWait <= 0 {
		cfg.ReadWait = DefaultReadWait
	}
	if cfg.WriteWait <= 0 {
		cfg.WriteWait = DefaultWriteWait
	}
	t := newTransport()
	t.TLSClientConfig = cfg.TLS
	f := &ClusterFront{cfg: cfg, mux: http.NewServeMux(), client: &http.Client{Timeout: 2 * time.Second, Transport: t},
		replica: cfg.Node.Replica()}
	f.follower = New(Config{Replica: f.replica, Plugins: cfg.Plugins, Token: cfg.Token, Logger: cfg.Logger, Version: cfg.Version})
	f.follower.SetReady(true)
	for _, r := range f.routes() {
		f.mux.HandleFunc(r.pattern, r.handler)
	}
	return f
}

// SetServer sets the API of this node's engine (nil: it does not lead);
// its deploys and rollbacks are replicated (ClusterDeployer).
func (f *ClusterFront) SetServer(s *Server) {
	if s != nil && s.cfg.Deployer == nil && f.cfg.Plugins != nil {
		s.cfg.Deployer = ClusterDeployer{Reg: f.cfg.Plugins, Node: f.cfg.Node} // deploys are replicated
	}
	if old := f.server.Swap(s); old != nil && old != s {
		old.StopWaits()
	}
}

// Server returns the API of this node's engine, nil on a follower.
func (f *ClusterFront) Server() *Server { return f.server.Load() }

func (f *ClusterFront) authorized(w http.ResponseWriter, r *http.Request) bool {
	if f.cfg.Token == "" {
		return true
	}
	got, ok := bearerToken(r.Header.Get("Authorization"))
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(f.cfg.Token)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="wasmtask"`)
		writeError(w, &Error{Status: 401, Code: "unauthorized", Message: "missing or wrong bearer token (set --token or WASMTASK_TOKEN)"})
		return false
	}
	return true
}

func (f *ClusterFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/healthz":
		writeJSON(w, 200, map[string]string{"status": "ok"})
		return
	case p == "/readyz":
		if f.cfg.Node.LeaderHTTP() == "" {
			writeError(w, &Error{Status: 503, Code: "no_leader", Message: "no leader is known yet (an election is under way, or no quorum)"})
			return
		}
		writeJSON(w, 200, map[string]string{"status": "ready"})
		return
	case p == "/metrics" && f.cfg.Metrics != nil:
		if f.authorized(w, r) {
			f.cfg.Metrics.ServeHTTP(w, r)
		}
		return
	case p == "/v1/cluster" || strings.HasPrefix(p, "/v1/cluster/"):
		if f.authorized(w, r) {
			f.mux.ServeHTTP(w, r)
		}
		return
	}
	if s := f.server.Load(); s != nil {
		s.ServeHTTP(&indexWriter{ResponseWriter: w, seq: s.cfg.Engine.DurableSeq}, r)
		return
	}
	if localRead(r) && f.serveLocal(w, r) {
		return
	}
	f.forward(w, r)
}

// forward proxies r to the leader's API.
func (f *ClusterFront) forward(w http.ResponseWriter, r *http.Request) {
	leader := f.cfg.Node.LeaderHTTP()
	if leader == "" || leader == f.cfg.Self || r.Header.Get(forwardedHeader) != "" {
		w.Header().Set("Retry-After", "1")
		writeError(w, &Error{Status: 503, Code: "no_leader", Message: "no leader is serving yet (an election is under way, or no quorum); retry"})
		return
	}
	px, ok := f.proxies.Load(leader)
	if !ok {
		target, err := url.Parse(leader)
		if err != nil {
			writeError(w, fmt.Errorf("the leader's address %q: %w", leader, err))
			return
		}
		rp := httputil.NewSingleHostReverseProxy(target)
		// Every write through this node goes over these connections: keep
		// as many idle as a busy node has writes in flight. With
		// newTransport's 64, a follower forwarding 1,000 submits/s (60-400
		// in flight when the leader is slow) closed what went past 64 as
		// each burst ended and dialled again for the next.
		t := newTransport()
		t.MaxIdleConns, t.MaxIdleConnsPerHost = 1024, 1024
		t.TLSClientConfig = f.cfg.TLS
		rp.Transport = t
		rp.FlushInterval = -1
		rp.ModifyResponse = f.waitForward
		rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
			w.Header().Set("Retry-After", "1")
			var op *net.OpError
			if errors.As(err, &op) && op.Op == "dial" {
				// Not sent: the client may retry it as is.
				writeError(w, &Error{Status: 503, Code: "no_leader", Message: fmt.Sprintf("the leader at %s cannot be reached (%v); retry", leader, err)})
				return
			}
			// Sent, but no answer came: it may or may not have been carried out.
			writeError(w, &Error{Status: 503, Code: "unavailable", Message: fmt.Sprintf("the leader at %s did not answer (%v): the request may or may not have been carried out", leader, err)})
		}
		px, _ = f.proxies.LoadOrStore(leader, rp)
	}
	r.Header.Set(forwardedHeader, f.cfg.Node.ID()) // not Status(), which copies the configuration and members and reads the state
	px.(*httputil.ReverseProxy).ServeHTTP(w, r)
}

// JoinRequest is the body of POST /v1/cluster/servers.
type JoinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTP     string `json:"http,omitempty"`
}

// routes are the cluster routes (docs/http-api.md, "Cluster").
func (f *ClusterFront) routes() []route {
	return []route{
		{"GET /v1/cluster", f.getCluster},
		{"POST /v1/cluster/servers", f.addServer},
		{"DELETE /v1/cluster/servers/{id}", f.removeServer},
	}
}

func (f *ClusterFront) getCluster(w http.ResponseWriter, r *http.Request) {
	n := f.cfg.Node
	st := n.Status()
	q := r.URL.Query()
	if q.Get("local") == "" {
		f.peerLag(r, &st)
	}
	out := ClusterStatus{Status: st}
	if q.Get("digest") != "" {
		seq, d, err := n.Digest()
		if err != nil {
			writeError(w, err)
			return
		}
		out.DigestSeq, out.Digest = seq, d
	}
	writeJSON(w, 200, out)
}

func (f *ClusterFront) addServer(w http.ResponseWriter, r *http.Request) {
	n := f.cfg.Node
	var req JoinRequest
	body, err := readBody(w, r, 1<<16)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, &Error{Status: 400, Code: "invalid", Message: "body: " + err.Error()})
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body)) // for forward
	if req.ID == "" || req.RaftAddr == "" {
		field := "id"
		if req.ID != "" {
			field = "raft_addr"
		}
		writeError(w, &Error{Status: 400, Code: "invalid", Field: field, Message: field + " is required (the node's --node-id and --raft-addr)"})
		return
	}
	if !n.IsLeader() {
		f.forward(w, r)
		return
	}
	if err := n.Join(req.ID, req.RaftAddr, req.HTTP); err != nil {
		writeError(w, clusterError(err))
		return
	}
	writeJSON(w, 200, ClusterStatus{Status: n.Status()})
}

func (f *ClusterFront) removeServer(w http.ResponseWriter, r *http.Request) {
	n := f.cfg.Node
	if !n.IsLeader() {
		f.forward(w, r)
		return
	}
	if err := n.Remove(r.PathValue("id")); err != nil {
		writeError(w, clusterError(err))
		return
	}
	writeJSON(w, 200, ClusterStatus{Status: n.Status()})
}

func clusterError(err error) *Error {
	switch {
	case errors.Is(err, cluster.ErrNotLeader):
		return &Error{Status: 503, Code: "no_leader", Message: err.Error()}
	case strings.Contains(err.Error(), "no server"):
		return &Error{Status: 404, Code: "not_found", Message: err.Error()}
	}
	return &Error{Status: 500, Code: "internal", Message: err.Error()}
}

// ClusterStatus is the response of GET /v1/cluster (and of the membership
// changes): cluster.Status, and with ?digest=1 a SHA-256 of the node's
// committed state at DigestSeq (equal on nodes at the same sequence).
type ClusterStatus struct {
	cluster.Status
	DigestSeq uint64 `json:"digest_seq,omitempty"`
	Digest    string `json:"digest,omitempty"`
}

// peerLag asks every other member for its own status (1 s each, at once)
// and fills in its applied index and lag behind this node's commit index.
func (f *ClusterFront) peerLag(r *http.Request, st *cluster.Status) {
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range st.Servers {
		s := &st.Servers[i]
		if s.ID == st.NodeID {
			s.AppliedIndex = st.AppliedIndex
			s.Lag = st.CommitIndex - min(st.CommitIndex, st.AppliedIndex)
			continue
		}
		if s.HTTP == "" {
			s.Error = "its HTTP address is not known yet"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.HTTP+"/v1/cluster?local=1", nil)
			if err != nil {
				s.Error = err.Error()
				return
			}
			if h := r.Header.Get("Authorization"); h != "" {
				req.Header.Set("Authorization", h)
			}
			resp, err := f.client.Do(req)
			if err != nil {
				s.Error = err.Error()
				return
			}
			defer resp.Body.Close()
			var peer cluster.Status
			if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&peer) != nil {
				s.Error = fmt.Sprintf("GET /v1/cluster: status %d", resp.StatusCode)
				return
			}
			s.AppliedIndex = peer.AppliedIndex
			s.Lag = st.CommitIndex - min(st.CommitIndex, peer.AppliedIndex)
		}()
	}
	wg.Wait()
}

// ClusterStatus returns GET /v1/cluster of the node asked.
func (c *Client) ClusterStatus(ctx context.Context) (ClusterStatus, error) {
	var st ClusterStatus
	_, err := c.doJSON(ctx, http.MethodGet, "/v1/cluster", nil, &st)
	return st, err
}

// ClusterJoin adds a voter (POST /v1/cluster/servers).
func (c *Client) ClusterJoin(ctx context.Context, req JoinRequest) (ClusterStatus, error) {
	var st ClusterStatus
	_, err := c.doJSON(ctx, http.MethodPost, "/v1/cluster/servers", req, &st)
	return st, err
}

// ClusterRemove removes a server (DELETE /v1/cluster/servers/{id}).
func (c *Client) ClusterRemove(ctx context.Context, id string) (ClusterStatus, error) {
	var st ClusterStatus
	_, err := c.doJSON(ctx, http.MethodDelete, "/v1/cluster/servers/"+url.PathEscape(id), nil, &st)
	return st, err
}
