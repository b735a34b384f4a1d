package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
)

// TestDashboardFiles: /ui/ serves the dashboard's files without the token
// (they hold no data) while every /v1 route still needs it.
func TestDashboardFiles(t *testing.T) {
	b := setup(t, api.Config{Token: "s3cret"})
	for _, tc := range []struct {
		path, wantType, wantBody string
	}{
		{"/ui/", "text/html", "<title>wasmtask</title>"},
		{"/ui/app.js", "text/javascript", "sessionStorage"},
		{"/ui/style.css", "text/css", "--accent"},
		{"/ui/no-such-page", "text/html", "<title>wasmtask</title>"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			r := b.do(t, "GET", tc.path, nil)
			if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), tc.wantType) || !strings.Contains(string(r.body), tc.wantBody) {
				t.Fatalf("GET %s: HTTP %d %s, %d bytes", tc.path, r.status, r.header.Get("Content-Type"), len(r.body))
			}
			if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
				t.Errorf("GET %s: Content-Security-Policy %q", tc.path, csp)
			}
		})
	}
	if r := b.do(t, "GET", "/ui", nil); r.status != 200 || !strings.Contains(string(r.body), "<title>wasmtask</title>") {
		t.Fatalf("GET /ui (redirected to /ui/): HTTP %d", r.status)
	}
	for _, path := range []string{"/v1/engine", "/v1/engine/history", "/v1/tasks"} {
		if r := b.do(t, "GET", path, nil); r.status != 401 {
			t.Errorf("GET %s without the token: HTTP %d, want 401", path, r.status)
		}
	}
}

// TestEngineHistory: samples of the engine's counters, oldest first, at
// most an hour of them.
func TestEngineHistory(t *testing.T) {
	b := setup(t, api.Config{})
	var h api.History
	b.do(t, "GET", "/v1/engine/history", nil).decode(t, &h)
	if len(h.Points) != 0 {
		t.Fatalf("history before sampling: %+v", h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.api.SampleHistory(ctx, 5*time.Millisecond)
	if r := b.do(t, "POST", "/v1/tasks", map[string]any{"handler": "echo", "input": "x"}); r.status != 201 {
		t.Fatalf("submit: HTTP %d %s", r.status, r.body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.do(t, "GET", "/v1/engine/history", nil).decode(t, &h)
		last := h.Points[len(h.Points)-1]
		if last.Submitted == 1 && last.Completed == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the history never showed the completed task: %+v", h.Points[len(h.Points)-1])
		}
		time.Sleep(10 * time.Millisecond)
	}
	if h.Interval != "5ms" || h.Points[0].Submitted != 0 {
		t.Fatalf("interval %q, first point %+v", h.Interval, h.Points[0])
	}
	for i := 1; i < len(h.Points); i++ {
		if h.Points[i].Time.Before(h.Points[i-1].Time) {
			t.Fatalf("points out of order at %d: %v then %v", i, h.Points[i-1].Time, h.Points[i].Time)
		}
	}
	cancel()
}

// TestEngineDiskUsage: GET /v1/engine reports the sizes the server's
// DiskUsage returns, and leaves them out without one.
func TestEngineDiskUsage(t *testing.T) {
	b := setup(t, api.Config{DiskUsage: func() api.DiskUsage { return api.DiskUsage{WALBytes: 123, SnapshotBytes: 45} }})
	var st api.EngineStatus
	b.do(t, "GET", "/v1/engine", nil).decode(t, &st)
	if st.Disk == nil || st.Disk.WALBytes != 123 || st.Disk.SnapshotBytes != 45 {
		t.Fatalf("disk: %+v", st.Disk)
	}
	b = setup(t, api.Config{})
	st = api.EngineStatus{}
	b.do(t, "GET", "/v1/engine", nil).decode(t, &st)
	if st.Disk != nil {
		t.Fatalf("disk without DiskUsage: %+v", st.Disk)
	}
}

// TestListByIDText: GET /v1/tasks?id=TEXT keeps the tasks whose id
// contains TEXT (the dashboard's search box), newest first, with paging.
func TestListByIDText(t *testing.T) {
	b := setup(t, api.Config{})
	b.pause(t)
	for _, id := range []string{"order-1", "invoice-7", "order-2", "reorder-3"} {
		if r := b.do(t, "POST", "/v1/tasks", map[string]any{"id": id, "handler": "echo"}); r.status != 201 {
			t.Fatalf("submit %s: HTTP %d %s", id, r.status, r.body)
		}
	}
	var page api.TaskList
	b.do(t, "GET", "/v1/tasks?id=order&limit=2", nil).decode(t, &page)
	if len(page.Tasks) != 2 || page.Tasks[0].ID != "reorder-3" || page.Tasks[1].ID != "order-2" || page.NextCursor != "order-2" {
		t.Fatalf("first page: %+v next %q", page.Tasks, page.NextCursor)
	}
	cursor := page.NextCursor
	page = api.TaskList{}
	b.do(t, "GET", "/v1/tasks?id=order&limit=2&cursor="+cursor, nil).decode(t, &page)
	if len(page.Tasks) != 1 || page.Tasks[0].ID != "order-1" || page.NextCursor != "" {
		t.Fatalf("second page: %+v next %q", page.Tasks, page.NextCursor)
	}
}
