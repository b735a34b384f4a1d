package api

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/wasmtask/wasmtask/dispatch"
)

// Routes for final tasks: retry, delete, purge.

// DeleteResult is the response of DELETE /v1/tasks/{id}.
type DeleteResult struct {
	ID      string `json:"id"`
	Deleted int    `json:"deleted"` // the task and its subtree
}

// PurgeRequest is the body of POST /v1/tasks/purge; every field narrows it.
type PurgeRequest struct {
	// States among completed, failed, canceled (default: all three).
	States  []string          `json:"states,omitempty"`
	Handler string            `json:"handler,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	// OlderThan: only tasks final for at least this long (Go duration).
	OlderThan string `json:"older_than,omitempty"`
}

// PurgeResult is the response of POST /v1/tasks/purge.
type PurgeResult struct {
	Purged int `json:"purged"`
}

func (s *Server) retryTask(w http.ResponseWriter, r *http.Request) {
	id := dispatch.TaskID(r.PathValue("id"))
	if err := s.cfg.Engine.Retry(r.Context(), id); err != nil {
		writeError(w, err)
		return
	}
	v, _ := s.cfg.Engine.TaskWithoutInput(id)
	writeJSON(w, 200, viewFrom(v))
}

func (s *Server) deleteTask(w http.ResponseWriter, r *http.Request) {
	id := dispatch.TaskID(r.PathValue("id"))
	n, err := s.cfg.Engine.Delete(r.Context(), id)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 200, DeleteResult{ID: string(id), Deleted: n})
}

func (s *Server) purgeTasks(w http.ResponseWriter, r *http.Request) {
	b, err := readBody(w, r, 1<<20)
	if err != nil {
		writeError(w, err)
		return
	}
	var req PurgeRequest
	if len(strings.TrimSpace(string(b))) > 0 {
		if err := decodeStrict(b, &req); err != nil {
			writeError(w, err)
			return
		}
	}
	f, err := req.filter()
	if err != nil {
		writeError(w, err)
		return
	}
	n, err := s.cfg.Engine.Purge(r.Context(), f)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 200, PurgeResult{Purged: n})
}

func (p PurgeRequest) filter() (dispatch.PurgeFilter, error) {
	f := dispatch.PurgeFilter{Handler: p.Handler, Labels: p.Labels}
	for _, st := range p.States {
		switch ts := dispatch.TaskState(st); ts {
		case dispatch.TaskCompleted, dispatch.TaskFailed, dispatch.TaskCanceled:
			f.States = append(f.States, ts)
		default:
			return f, &FieldError{Field: "states", Reason: fmt.Sprintf("only final tasks are purged: want completed, failed or canceled, got %q", st)}
		}
	}
	if p.OlderThan != "" {
		d, err := time.ParseDuration(p.OlderThan)
		if err != nil || d < 0 {
			return f, &FieldError{Field: "older_than", Reason: fmt.Sprintf("want a Go duration such as \"24h\", got %q", p.OlderThan)}
		}
		f.OlderThanMs = d.Milliseconds()
	}
	return f, nil
}

// parseLabels reads label filters given as "key=value".
func parseLabels(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, &FieldError{Field: "label", Reason: fmt.Sprintf("want key=value, got %q", p)}
		}
		m[k] = v
	}
	return m, nil
}
