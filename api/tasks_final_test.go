package api_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/wasmtask/wasmtask/api"
)

func TestRetryDeletePurge(t *testing.T) {
	t.Parallel()
	b := setup(t, api.Config{})
	b.pause(t)
	submit := func(id string, labels map[string]string) {
		t.Helper()
		if r := b.do(t, "POST", "/v1/tasks", map[string]any{"id": id, "handler": "echo", "input": id, "labels": labels}); r.status != 201 {
			t.Fatalf("submit %s: %d %s", id, r.status, r.body)
		}
	}
	submit("canceled", map[string]string{"team": "a"})
	submit("pending", map[string]string{"team": "a"})
	submit("other", map[string]string{"team": "b"})
	if r := b.do(t, "POST", "/v1/tasks/canceled/cancel", nil); r.status != 200 {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	conflicts := []struct {
		name, method, path string
		wantStatus         int
		wantMsg            string
	}{
		{name: "retry a pending task", method: "POST", path: "/v1/tasks/pending/retry", wantStatus: 409, wantMsg: "task pending is pending; only a failed or canceled task can be retried"},
		{name: "retry an unknown task", method: "POST", path: "/v1/tasks/nope/retry", wantStatus: 404, wantMsg: "nope"},
		{name: "delete a pending task", method: "DELETE", path: "/v1/tasks/pending", wantStatus: 409, wantMsg: "only a final task can be deleted (cancel it first)"},
		{name: "delete an unknown task", method: "DELETE", path: "/v1/tasks/nope", wantStatus: 404, wantMsg: "nope"},
	}
	for _, tc := range conflicts {
		r := b.do(t, tc.method, tc.path, nil)
		if e := r.apiError(t); r.status != tc.wantStatus || !strings.Contains(e.Message, tc.wantMsg) {
			t.Errorf("%s: %d %+v, want %d with %q", tc.name, r.status, e, tc.wantStatus, tc.wantMsg)
		}
	}

	// Retry: the canceled task gets a second run and completes.
	r := b.do(t, "POST", "/v1/tasks/canceled/retry", nil)
	if v := r.view(t); r.status != 200 || v.State != "pending" || v.Retries != 1 || len(v.Runs) != 2 || v.Runs[0].State != "canceled" || v.Runs[1].State != "ready" {
		t.Fatalf("retry: %d %s", r.status, r.body)
	}
	if err := b.engine.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	r = b.do(t, "GET", "/v1/tasks/canceled/wait?timeout=10s", nil)
	if v := r.view(t); v.State != "completed" || v.Output == nil || *v.Output != "CANCELED" || v.Retries != 1 {
		t.Fatalf("after retry: %s", r.body)
	}
	if r := b.do(t, "POST", "/v1/tasks/canceled/retry", nil); r.status != 409 || !strings.Contains(r.apiError(t).Message, "completed") {
		t.Errorf("retry of a completed task: %d %s", r.status, r.body)
	}
	b.do(t, "GET", "/v1/tasks/pending/wait?timeout=10s", nil)
	b.do(t, "GET", "/v1/tasks/other/wait?timeout=10s", nil)

	// Labels filter the list.
	var list api.TaskList
	b.do(t, "GET", "/v1/tasks?label=team=a", nil).decode(t, &list)
	if got := ids(list); !slices.Equal(got, []string{"pending", "canceled"}) {
		t.Errorf("label=team=a lists %v", got)
	}
	if r := b.do(t, "GET", "/v1/tasks?label=team", nil); r.status != 400 || r.apiError(t).Field != "label" {
		t.Errorf("label without '=': %d %s", r.status, r.body)
	}

	// Delete, then purge by label.
	r = b.do(t, "DELETE", "/v1/tasks/canceled", nil)
	var del api.DeleteResult
	r.decode(t, &del)
	if r.status != 200 || del.Deleted != 1 {
		t.Errorf("delete: %d %s", r.status, r.body)
	}
	if r := b.do(t, "GET", "/v1/tasks/canceled", nil); r.status != 404 {
		t.Errorf("get after delete: %d", r.status)
	}
	for _, bad := range []struct{ body, field string }{
		{body: `{"states": ["pending"]}`, field: "states"},
		{body: `{"older_than": "soon"}`, field: "older_than"},
		{body: `{"colour": "red"}`, field: "colour"},
	} {
		if r := b.do(t, "POST", "/v1/tasks/purge", bad.body); r.status != 400 || r.apiError(t).Field != bad.field {
			t.Errorf("purge %s: %d %s, want 400 naming %s", bad.body, r.status, r.body, bad.field)
		}
	}
	r = b.do(t, "POST", "/v1/tasks/purge", map[string]any{"labels": map[string]string{"team": "b"}, "states": []string{"completed"}})
	var pr api.PurgeResult
	r.decode(t, &pr)
	if r.status != 200 || pr.Purged != 1 {
		t.Errorf("purge team=b: %d %s", r.status, r.body)
	}
	b.do(t, "GET", "/v1/tasks", nil).decode(t, &list)
	if got := ids(list); !slices.Equal(got, []string{"pending"}) {
		t.Errorf("left after delete and purge: %v", got)
	}
}

func ids(l api.TaskList) []string {
	var out []string
	for _, v := range l.Tasks {
		out = append(out, v.ID)
	}
	return out
}
