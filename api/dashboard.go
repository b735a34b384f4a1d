package api

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/wasmtask/wasmtask/api/ui"
	"github.com/wasmtask/wasmtask/dispatch"
)

// The dashboard (package ui) is static files under /ui/; it reads and acts
// through the /v1 routes only. These are the few server-side pieces it needs
// that a CLI user may want too: a history of counters for the overview's
// chart (GET /v1/engine/history) and the data dir's sizes in GET /v1/engine.

// uiHandler serves /ui/ (the files hold no data: no token needed).
func uiHandler() http.Handler { return http.StripPrefix("/ui", ui.Handler()) }

// isUIPath reports whether a path is one of the dashboard's static files.
func isUIPath(p string) bool { return p == "/ui" || strings.HasPrefix(p, "/ui/") }

// HistoryPoint is one sample of the engine's counters.
type HistoryPoint struct {
	Time      time.Time `json:"time"`
	Submitted uint64    `json:"submitted"` // tasks ever accepted
	Completed int       `json:"completed"` // completed runs retained
	Failed    int       `json:"failed"`    // failed runs retained
	InFlight  int       `json:"in_flight"`
}

// History is the answer of GET /v1/engine/history.
type History struct {
	Interval string         `json:"interval"`
	Points   []HistoryPoint `json:"points"`
}

// history keeps the samples of the last hour in a ring.
type history struct {
	mu       sync.Mutex
	interval time.Duration
	points   []HistoryPoint
	next     int
	full     bool
}

func (h *history) add(p HistoryPoint, keep int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.points) < keep {
		h.points = append(h.points, p)
		return
	}
	h.points[h.next] = p
	h.next = (h.next + 1) % keep
	h.full = true
}

func (h *history) snapshot() History {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := History{Interval: h.interval.String(), Points: make([]HistoryPoint, 0, len(h.points))}
	if h.full {
		out.Points = append(out.Points, h.points[h.next:]...)
		out.Points = append(out.Points, h.points[:h.next]...)
	} else {
		out.Points = append(out.Points, h.points...)
	}
	return out
}

// SampleHistory samples the engine's counters every interval, keeping an
// hour of them for GET /v1/engine/history, until ctx ends. `serve` runs it
// with a 10 s interval; without it the history is empty.
func (s *Server) SampleHistory(ctx context.Context, interval time.Duration) {
	keep := max(2, int(time.Hour/interval))
	s.history.mu.Lock()
	s.history.interval = interval
	s.history.mu.Unlock()
	sample := func() {
		st := s.cfg.Engine.Stats()
		s.history.add(HistoryPoint{Time: time.Now().UTC(), Submitted: st.Submitted,
			Completed: st.RunsByState[dispatch.RunCompleted], Failed: st.RunsByState[dispatch.RunFailed], InFlight: st.InFlight}, keep)
	}
	sample()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			sample()
		}
	}
}

func (s *Server) engineHistory(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, 200, s.history.snapshot())
}

// DiskUsage is the size of the data dir's parts, in GET /v1/engine.
type DiskUsage struct {
	WALBytes      int64 `json:"wal_bytes"`
	SnapshotBytes int64 `json:"snapshot_bytes"`
	PluginBytes   int64 `json:"plugin_bytes"`
}
