package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/wasmtask/wasmtask/dispatch"
)

// Follower reads with read-your-writes (docs/http-api.md, Cluster).
//
// Every answer of a cluster node carries X-Wasmtask-Index: the dispatch
// sequence of the state it reflects at least (the leader's durable
// sequence, or the sequence a follower applied). A request carrying
// X-Wasmtask-Min-Index is answered from a state at least that new: a
// follower waits up to ReadWait to apply it, then forwards the request to
// the leader. A write forwarded through a follower is answered only once
// the follower applied it (up to WriteWait), so the next read there sees
// it. A task a follower does not hold is looked up at the leader: a 404
// comes only from the leader.

// localRead reports whether r is a read a follower answers from its own
// state.
func localRead(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	p := r.URL.Path
	switch {
	case p == "/v1/tasks", p == "/v1/engine", p == "/v1/openapi.json", p == "/ui", strings.HasPrefix(p, "/ui/"):
		return true
	case p == "/v1/plugins" || strings.HasPrefix(p, "/v1/plugins/") && !strings.Contains(strings.TrimPrefix(p, "/v1/plugins/"), "/"):
		// The leader's registry counts the attempts; ?local=1 shows this
		// node's own (its active versions, replicated).
		return r.URL.Query().Get("local") != ""
	case strings.HasPrefix(p, "/v1/tasks/"):
		rest := strings.TrimPrefix(p, "/v1/tasks/")
		id, sub, _ := strings.Cut(rest, "/")
		return id != "" && (sub == "" || sub == "wait")
	}
	return false
}

// taskOfPath is the task id of /v1/tasks/{id}[/wait], or "".
func taskOfPath(p string) dispatch.TaskID {
	rest, ok := strings.CutPrefix(p, "/v1/tasks/")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, "/")
	return dispatch.TaskID(id)
}

// serveLocal answers a read from this follower's state, and reports false
// when it cannot: this node leads (its engine is not serving yet), it did
// not reach the client's minimum index in time, or it does not hold the
// task asked for. The caller then forwards to the leader.
func (f *ClusterFront) serveLocal(w http.ResponseWriter, r *http.Request) bool {
	n, rep := f.cfg.Node, f.replica
	if n.IsLeader() {
		return false
	}
	if !isUIPath(r.URL.Path) && !f.authorized(w, r) {
		return true // 401 before any wait or lookup
	}
	if min, err := strconv.ParseUint(r.Header.Get(MinIndexHeader), 10, 64); err == nil && min > rep.AppliedSeq() {
		ctx, cancel := context.WithTimeout(r.Context(), f.cfg.ReadWait)
		caught := rep.WaitApplied(ctx, min)
		cancel()
		if !caught {
			f.readsForwarded.Add(1)
			return false
		}
	}
	if id := taskOfPath(r.URL.Path); id != "" && !rep.Has(id) {
		f.readsForwarded.Add(1)
		return false // not here (yet?): the leader has the last word on a 404
	}
	if c := r.URL.Query().Get("cursor"); c != "" && r.URL.Path == "/v1/tasks" && !rep.Has(dispatch.TaskID(c)) {
		f.readsForwarded.Add(1)
		return false
	}
	f.readsLocal.Add(1)
	f.follower.ServeHTTP(&indexWriter{ResponseWriter: w, seq: rep.AppliedSeq}, r)
	return true
}

// waitForward makes a write forwarded through this node answer once this
// node applied it (the leader's X-Wasmtask-Index), up to WriteWait: the
// client's next read here then sees its write.
func (f *ClusterFront) waitForward(resp *http.Response) error {
	if m := resp.Request.Method; m == http.MethodGet || m == http.MethodHead {
		return nil
	}
	f.waitIndex(resp.Request.Context(), resp.Header.Get(IndexHeader))
	return nil
}

// waitIndex waits, up to WriteWait, until this node applied the leader's
// index (an X-Wasmtask-Index value) of a write it forwarded.
func (f *ClusterFront) waitIndex(ctx context.Context, index string) {
	seq, err := strconv.ParseUint(index, 10, 64)
	if err != nil || seq <= f.replica.AppliedSeq() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, f.cfg.WriteWait)
	defer cancel()
	if !f.replica.WaitApplied(ctx, seq) {
		f.cfg.Logger.Debug("cluster: a forwarded write answers before this node applied it", "seq", seq, "applied", f.replica.AppliedSeq())
	}
}

// indexWriter sets X-Wasmtask-Index as the answer starts (unless a
// forwarded answer carries the leader's already).
type indexWriter struct {
	http.ResponseWriter
	seq   func() uint64
	wrote bool
}

func (w *indexWriter) WriteHeader(code int) {
	if !w.wrote {
		w.wrote = true
		if h := w.Header(); h.Get(IndexHeader) == "" {
			h.Set(IndexHeader, strconv.FormatUint(w.seq(), 10))
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *indexWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (deadlines).
func (w *indexWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Defaults of ClusterConfig's waits.
const (
	DefaultReadWait  = time.Second
	DefaultWriteWait = 2 * time.Second
)

// FollowerReads counts the reads this node answered from its own state
// and those it forwarded to the leader (not caught up, or a task it did
// not hold).
func (f *ClusterFront) FollowerReads() (local, forwarded uint64) {
	return f.readsLocal.Load(), f.readsForwarded.Load()
}

// StopWaits ends the long-poll waits this node answers from its own state
// (at shutdown), as Server.StopWaits does for the leader's.
func (f *ClusterFront) StopWaits() { f.follower.StopWaits() }
