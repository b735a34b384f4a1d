package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/host"
)

// timestamps are replaced in golden views.
var timestamp = regexp.MustCompile(`"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"`)

func TestSubmitStatusCodes(t *testing.T) {
	t.Parallel()
	b := setup(t, api.Config{})
	b.pause(t) // views stay pending, so they can be compared whole

	steps := []struct {
		name       string
		body       string
		wantStatus int
		wantCode   string // error code, for errors
		wantField  string
	}{
		{name: "first submit", body: `{"id": "t1", "handler": "echo", "input": "hello", "labels": {"team": "a"}}`, wantStatus: 201},
		{name: "identical resubmit", body: `{"id": "t1", "handler": "echo", "input": "hello", "labels": {"team": "a"}}`, wantStatus: 200},
		{name: "identical after defaults", body: `{"id": "t1", "handler": "echo", "input": "hello", "labels": {"team": "a"}, "max_attempts": 1, "timeout": "30s"}`, wantStatus: 200},
		{name: "different input", body: `{"id": "t1", "handler": "echo", "input": "other", "labels": {"team": "a"}}`, wantStatus: 409, wantCode: "conflict", wantField: "id"},
		{name: "different handler pin", body: `{"id": "t1", "handler": "echo@` + b.echo + `", "input": "hello", "labels": {"team": "a"}}`, wantStatus: 409, wantCode: "conflict", wantField: "id"},
		{name: "no id", body: `{"handler": "echo"}`, wantStatus: 201},
		{name: "no id again is another task", body: `{"handler": "echo"}`, wantStatus: 201},
	}
	for _, st := range steps {
		r := b.do(t, "POST", "/v1/tasks", st.body)
		if r.status != st.wantStatus {
			t.Fatalf("%s: status %d, want %d: %s", st.name, r.status, st.wantStatus, r.body)
		}
		if st.wantCode != "" {
			if e := r.apiError(t); e.Code != st.wantCode || e.Field != st.wantField || !strings.Contains(e.Message, "t1") {
				t.Errorf("%s: error %+v, want code %s field %s naming t1", st.name, e, st.wantCode, st.wantField)
			}
			continue
		}
		if v := r.view(t); v.Handler != "echo" || v.State != "pending" || v.ID == "" {
			t.Errorf("%s: view %+v", st.name, v)
		}
	}
	if list := b.engine.List(dispatchAll); len(list) != 3 {
		t.Errorf("%d tasks in the engine, want 3 (t1 and two with generated ids)", len(list))
	}

	// The whole view of a pending task.
	r := b.do(t, "GET", "/v1/tasks/t1", nil)
	got := timestamp.ReplaceAll(compact(t, r.body), []byte(`"<time>"`))
	want := `{"id":"t1","handler":"echo","state":"pending","runs":[{"id":"t1#1","index":1,"state":"ready","attempts":[]}],` +
		`"children":[],"parent":"","submitted_at":"<time>","max_attempts":1,"priority":0,"labels":{"team":"a"},"timeout":"30s","effective_timeout":"30s","run_policy":{"once":{}}}`
	if r.status != 200 || string(got) != compactString(t, want) {
		t.Errorf("GET /v1/tasks/t1: %d\n got %s\nwant %s", r.status, got, compactString(t, want))
	}
}

func compact(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("compact %s: %v", b, err)
	}
	return buf.Bytes()
}

func compactString(t *testing.T, s string) string { return string(compact(t, []byte(s))) }

func TestInvalidSpec(t *testing.T) {
	t.Parallel()
	b := setup(t, api.Config{})
	tests := []struct {
		name      string
		body      string
		wantField string
		wantMsg   string // a substring of the message
	}{
		{name: "unknown field", body: `{"handler": "echo", "colour": "red"}`, wantField: "colour", wantMsg: "unknown field"},
		{name: "input and input_b64", body: `{"handler": "echo", "input": "a", "input_b64": "YQ=="}`, wantField: "input", wantMsg: "exactly one of input and input_b64"},
		{name: "bad input_b64", body: `{"handler": "echo", "input_b64": "@@@"}`, wantField: "input_b64", wantMsg: "base64"},
		{name: "bad timeout", body: `{"handler": "echo", "timeout": "soon"}`, wantField: "timeout", wantMsg: `got "soon"`},
		{name: "negative timeout", body: `{"handler": "echo", "timeout": "-1s"}`, wantField: "timeout", wantMsg: `got "-1s"`},
		{name: "max_attempts 0", body: `{"handler": "echo", "max_attempts": 0}`, wantField: "max_attempts", wantMsg: "must be between 1 and 100, got 0 (omit it for the default, 1)"},
		{name: "max_attempts 101", body: `{"handler": "echo", "max_attempts": 101}`, wantField: "max_attempts", wantMsg: "must be between 1 and 100, got 101"},
		{name: "max_attempts a string", body: `{"handler": "echo", "max_attempts": "3"}`, wantField: "max_attempts", wantMsg: "want int"},
		{name: "unknown handler", body: `{"handler": "nope"}`, wantField: "handler", wantMsg: `"nope"`},
		{name: "unknown handler version", body: `{"handler": "echo@sha256:` + strings.Repeat("0", 64) + `"}`, wantField: "handler", wantMsg: "has no version"},
		{name: "no handler", body: `{"input": "x"}`, wantField: "handler", wantMsg: "is required"},
		{name: "bad cron expr", body: `{"handler": "echo", "run_policy": {"cron": {"expr": "every tuesday"}}}`, wantField: "run_policy.cron.expr", wantMsg: "6 fields"},
		{name: "two run policies", body: `{"handler": "echo", "run_policy": {"once": {}, "repeat": {"count": 2}}}`, wantField: "run_policy", wantMsg: "exactly one"},
		{name: "bad id", body: `{"id": "no spaces", "handler": "echo"}`, wantField: "id", wantMsg: `"no spaces"`},
		{name: "not JSON", body: `{"handler": `, wantField: "body", wantMsg: "invalid JSON"},
		{name: "trailing data", body: `{"handler": "echo"} {}`, wantField: "body", wantMsg: "after the task spec"},
		{name: "after lists an id twice", body: `{"handler": "echo", "after": ["a", "a"]}`, wantField: "after", wantMsg: "twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := b.do(t, "POST", "/v1/tasks", tc.body)
			if r.status != 400 {
				t.Fatalf("status %d, want 400: %s", r.status, r.body)
			}
			e := r.apiError(t)
			if e.Code != "invalid" || e.Field != tc.wantField || !strings.Contains(e.Message, tc.wantMsg) {
				t.Errorf("error %+v, want code invalid, field %q and a message with %q", e, tc.wantField, tc.wantMsg)
			}
		})
	}
	t.Cleanup(func() {
		if n := len(b.engine.List(dispatchAll)); n != 0 {
			t.Errorf("%d tasks written by invalid submissions", n)
		}
	})
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t, api.Config{})
	tests := []struct {
		method, path string
		wantMsg      string
	}{
		{method: "GET", path: "/v1/tasks/nope", wantMsg: `"nope"`},
		{method: "GET", path: "/v1/tasks/nope/wait?timeout=1s", wantMsg: "not found"},
		{method: "POST", path: "/v1/tasks/nope/cancel", wantMsg: "nope"},
		{method: "POST", path: "/v1/tasks/nope/after", wantMsg: "nope"},
		{method: "GET", path: "/v1/plugins/nope", wantMsg: `"nope"`},
		{method: "POST", path: "/v1/plugins/nope/rollback", wantMsg: `"nope"`},
		{method: "GET", path: "/v1/no-such-route", wantMsg: "no route for GET /v1/no-such-route"},
		{method: "DELETE", path: "/v1/tasks", wantMsg: "no route for DELETE /v1/tasks"},
		{method: "GET", path: "/metrics", wantMsg: "metrics are not enabled"},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			var body any
			if strings.HasSuffix(tc.path, "/after") {
				body = `{"after": ["x"]}`
			}
			r := b.do(t, tc.method, tc.path, body)
			if r.status != 404 {
				t.Fatalf("status %d, want 404: %s", r.status, r.body)
			}
			if e := r.apiError(t); e.Code != "not_found" || e.Field != "" || !strings.Contains(e.Message, tc.wantMsg) {
				t.Errorf("error %+v, want code not_found and a message with %q", e, tc.wantMsg)
			}
		})
	}
}

func TestWait(t *testing.T) {
	t.Parallel()
	b := setup(t, api.Config{})
	if r := b.do(t, "POST", "/v1/tasks", `{"id": "w1", "handler": "echo", "input": "hello"}`); r.status != 201 {
		t.Fatalf("submit: %d %s", r.status, r.body)
	}
	r := b.do(t, "GET", "/v1/tasks/w1/wait?timeout=20s", nil)
	v := r.view(t)
	if r.status != 200 || v.State != "completed" || v.Output == nil || *v.Output != "HELLO" || v.FinishedAt == "" {
		t.Fatalf("wait: %d %s", r.status, r.body)
	}
	if len(v.Runs) != 1 || v.Runs[0].State != "completed" || len(v.Runs[0].Attempts) != 1 {
		t.Fatalf("wait: runs %+v, want one completed run with one attempt", v.Runs)
	}
	a := v.Runs[0].Attempts[0]
	if a.Number != 1 || a.Outcome != "ok" || a.Module != b.echo || a.StartedAt == "" || a.FinishedAt == "" || a.Error != "" {
		t.Errorf("attempt %+v, want number 1, outcome ok on %s with times", a, b.echo)
	}

	// A task that cannot finish: the wait times out and returns the view.
	b.pause(t)
	if r := b.do(t, "POST", "/v1/tasks", `{"id": "w2", "handler": "echo"}`); r.status != 201 {
		t.Fatalf("submit: %d %s", r.status, r.body)
	}
	if r := b.do(t, "GET", "/v1/tasks/w2/wait?timeout=50ms", nil); r.status != 200 || r.view(t).State != "pending" {
		t.Errorf("wait with a timeout on a paused engine: %d %s, want 200 pending", r.status, r.body)
	}
	r = b.do(t, "GET", "/v1/tasks/w2/wait?timeout=soon", nil)
	if e := r.apiError(t); r.status != 400 || e.Field != "timeout" {
		t.Errorf("wait?timeout=soon: %d %+v, want 400 naming timeout", r.status, e)
	}
	// StopWaits answers pending and later waits with 503.
	b.api.StopWaits()
	r = b.do(t, "GET", "/v1/tasks/w2/wait?timeout=20s", nil)
	if e := r.apiError(t); r.status != 503 || e.Code != "unavailable" {
		t.Errorf("wait after StopWaits: %d %+v, want 503 unavailable", r.status, e)
	}
	if r := b.do(t, "GET", "/v1/tasks/w1/wait?timeout=20s", nil); r.status != 200 || r.view(t).State != "completed" {
		t.Errorf("wait on a final task after StopWaits: %d %s, want its view", r.status, r.body)
	}
}

// TestSubmitWait: POST /v1/tasks?wait=D submits (durable, same status
// codes) and answers once the task is final or D passed, with the view
// then; a bad wait is 400 naming it before anything is submitted; a
// shutting-down server still answers the durable submission with its 2xx.
func TestSubmitWait(t *testing.T) {
	t.Parallel()
	b := setup(t, api.Config{})
	steps := []struct {
		name, path, body string
		pause, stop      bool
		wantStatus       int
		wantState        string
		wantOutput       string
		wantField        string
	}{
		{name: "final", path: "/v1/tasks?wait=20s", body: `{"id": "sw1", "handler": "echo", "input": "hello"}`,
			wantStatus: 201, wantState: "completed", wantOutput: "HELLO"},
		{name: "duplicate", path: "/v1/tasks?wait=20s", body: `{"id": "sw1", "handler": "echo", "input": "hello"}`,
			wantStatus: 200, wantState: "completed", wantOutput: "HELLO"},
		{name: "bad wait", path: "/v1/tasks?wait=soon", body: `{"id": "sw2", "handler": "echo"}`,
			wantStatus: 400, wantField: "wait"},
		{name: "negative wait", path: "/v1/tasks?wait=-1s", body: `{"id": "sw2", "handler": "echo"}`,
			wantStatus: 400, wantField: "wait"},
		{name: "timeout", path: "/v1/tasks?wait=50ms", body: `{"id": "sw3", "handler": "echo"}`, pause: true,
			wantStatus: 201, wantState: "pending"},
		{name: "no wait", path: "/v1/tasks?wait=0s", body: `{"id": "sw4", "handler": "echo"}`,
			wantStatus: 201, wantState: "pending"},
		{name: "shutting down", path: "/v1/tasks?wait=20s", body: `{"id": "sw5", "handler": "echo"}`, stop: true,
			wantStatus: 201, wantState: "pending"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.pause {
				b.pause(t)
			}
			if st.stop {
				b.api.StopWaits()
			}
			r := b.do(t, "POST", st.path, st.body)
			if r.status != st.wantStatus {
				t.Fatalf("POST %s: %d %s, want %d", st.path, r.status, r.body, st.wantStatus)
			}
			if st.wantField != "" {
				if e := r.apiError(t); e.Field != st.wantField {
					t.Errorf("POST %s: error %+v, want one naming %s", st.path, e, st.wantField)
				}
				if g := b.do(t, "GET", "/v1/tasks/sw2", nil); g.status != 404 {
					t.Errorf("a refused submission was stored: GET %d %s", g.status, g.body)
				}
				return
			}
			v := r.view(t)
			if v.State != st.wantState {
				t.Errorf("POST %s: state %s, want %s (%s)", st.path, v.State, st.wantState, r.body)
			}
			if st.wantOutput != "" && (v.Output == nil || *v.Output != st.wantOutput) {
				t.Errorf("POST %s: output %v, want %q", st.path, v.Output, st.wantOutput)
			}
		})
	}
}

func TestListAndCancel(t *testing.T) {
	t.Parallel()
	b := setup(t, api.Config{})
	b.pause(t)
	ids := []string{"l1", "l2", "l3", "l4", "l5"}
	for _, id := range ids {
		if r := b.do(t, "POST", "/v1/tasks", map[string]any{"id": id, "handler": "echo"}); r.status != 201 {
			t.Fatalf("submit %s: %d %s", id, r.status, r.body)
		}
	}
	for _, id := range []string{"l2", "l4"} {
		r := b.do(t, "POST", "/v1/tasks/"+id+"/cancel", nil)
		if v := r.view(t); r.status != 200 || v.State != "canceled" || v.CancelNote == "" {
			t.Fatalf("cancel %s: %d %s", id, r.status, r.body)
		}
	}
	// Canceling again is harmless.
	if r := b.do(t, "POST", "/v1/tasks/l2/cancel", nil); r.status != 200 || r.view(t).State != "canceled" {
		t.Errorf("second cancel: %d %s", r.status, r.body)
	}

	tests := []struct {
		name      string
		query     string
		wantPages [][]string
	}{
		{name: "all, newest first", query: "", wantPages: [][]string{{"l5", "l4", "l3", "l2", "l1"}}},
		{name: "pages of 2", query: "limit=2", wantPages: [][]string{{"l5", "l4"}, {"l3", "l2"}, {"l1"}}},
		{name: "pages of 5", query: "limit=5", wantPages: [][]string{{"l5", "l4", "l3", "l2", "l1"}}},
		{name: "canceled", query: "state=canceled", wantPages: [][]string{{"l4", "l2"}}},
		{name: "pending, pages of 1", query: "state=pending&limit=1", wantPages: [][]string{{"l5"}, {"l3"}, {"l1"}}},
		{name: "by handler", query: "handler=echo&limit=4", wantPages: [][]string{{"l5", "l4", "l3", "l2"}, {"l1"}}},
		{name: "other handler", query: "handler=other", wantPages: [][]string{{}}},
		{name: "completed", query: "state=completed", wantPages: [][]string{{}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var pages [][]string
			cursor := ""
			for range 10 {
				q := tc.query
				if cursor != "" {
					q += "&cursor=" + cursor
				}
				r := b.do(t, "GET", "/v1/tasks?"+q, nil)
				if r.status != 200 {
					t.Fatalf("list ?%s: %d %s", q, r.status, r.body)
				}
				var list api.TaskList
				r.decode(t, &list)
				page := []string{}
				for _, v := range list.Tasks {
					page = append(page, v.ID)
				}
				pages = append(pages, page)
				if cursor = list.NextCursor; cursor == "" {
					break
				}
			}
			if !slices.EqualFunc(pages, tc.wantPages, slices.Equal) {
				t.Errorf("pages %v, want %v", pages, tc.wantPages)
			}
		})
	}

	bad := []struct {
		query     string
		wantField string
	}{
		{query: "state=done", wantField: "state"},
		{query: "limit=0", wantField: "limit"},
		{query: "limit=1001", wantField: "limit"},
		{query: "limit=x", wantField: "limit"},
		{query: "cursor=nope", wantField: "cursor"},
	}
	for _, tc := range bad {
		r := b.do(t, "GET", "/v1/tasks?"+tc.query, nil)
		if e := r.apiError(t); r.status != 400 || e.Code != "invalid" || e.Field != tc.wantField {
			t.Errorf("list ?%s: %d %+v, want 400 naming %s", tc.query, r.status, e, tc.wantField)
		}
	}
}

func TestAfter(t *testing.T) {
	t.Parallel()
	b := setup(t, api.Config{})
	b.pause(t)
	for _, spec := range []string{
		`{"id": "a", "handler": "echo"}`,
		`{"id": "b", "handler": "echo", "after": ["a"]}`,
		`{"id": "c", "handler": "echo"}`,
	} {
		if r := b.do(t, "POST", "/v1/tasks", spec); r.status != 201 {
			t.Fatalf("submit %s: %d %s", spec, r.status, r.body)
		}
	}
	tests := []struct {
		name       string
		task       string
		body       string
		wantStatus int
		wantField  string
		wantMsg    string
		wantAfter  []string // on success
	}{
		{name: "cycle", task: "a", body: `{"after": ["b"]}`, wantStatus: 400, wantField: "after", wantMsg: "cycle: "},
		{name: "self", task: "a", body: `{"after": ["a"]}`, wantStatus: 400, wantField: "after", wantMsg: "cycle"},
		{name: "unknown prerequisite", task: "c", body: `{"after": ["zz"]}`, wantStatus: 400, wantField: "after", wantMsg: `unknown task "zz"`},
		{name: "unknown task", task: "zz", body: `{"after": ["a"]}`, wantStatus: 404, wantMsg: `"zz"`},
		{name: "no prerequisites", task: "c", body: `{"after": []}`, wantStatus: 400, wantField: "after", wantMsg: "at least one"},
		{name: "unknown member", task: "c", body: `{"before": ["a"]}`, wantStatus: 400, wantField: "before", wantMsg: "unknown field"},
		{name: "success", task: "c", body: `{"after": ["a", "b"]}`, wantStatus: 200, wantAfter: []string{"a", "b"}},
		{name: "again is idempotent", task: "c", body: `{"after": ["a"]}`, wantStatus: 200, wantAfter: []string{"a", "b"}},
	}
	for _, tc := range tests {
		r := b.do(t, "POST", "/v1/tasks/"+tc.task+"/after", tc.body)
		if r.status != tc.wantStatus {
			t.Errorf("%s: status %d, want %d: %s", tc.name, r.status, tc.wantStatus, r.body)
			continue
		}
		if tc.wantStatus != 200 {
			if e := r.apiError(t); e.Field != tc.wantField || !strings.Contains(e.Message, tc.wantMsg) {
				t.Errorf("%s: error %+v, want field %q and a message with %q", tc.name, e, tc.wantField, tc.wantMsg)
			}
			continue
		}
		if v := r.view(t); v.ID != tc.task || !slices.Equal(v.After, tc.wantAfter) {
			t.Errorf("%s: view after %v, want %v", tc.name, v.After, tc.wantAfter)
		}
	}
	// The rejected requests wrote nothing.
	if v := b.do(t, "GET", "/v1/tasks/a", nil).view(t); len(v.After) != 0 {
		t.Errorf("a has prerequisites %v after rejected requests", v.After)
	}
}

func TestBatch(t *testing.T) {
	t.Parallel()
	b := setup(t, api.Config{})
	b.pause(t)
	if r := b.do(t, "POST", "/v1/tasks", `{"id": "b0", "handler": "echo", "input": "x"}`); r.status != 201 {
		t.Fatalf("submit b0: %d %s", r.status, r.body)
	}
	body := `{"tasks": [
		{"id": "b1", "handler": "echo", "input": "one"},
		{"id": "b2", "handler": "echo", "max_attempts": 101},
		{"id": "b3", "handler": "nope"},
		{"id": "b0", "handler": "echo", "input": "x"},
		{"id": "b0", "handler": "echo", "input": "y"},
		{"handler": "echo", "colour": "red"},
		{"id": "b4", "handler": "echo"}
	]}`
	r := b.do(t, "POST", "/v1/tasks/batch", body)
	if r.status != 200 {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	var out struct{ Results []api.BatchResult }
	r.decode(t, &out)
	want := []struct {
		id        string
		status    int
		duplicate bool
		code      string
		field     string
	}{
		{id: "b1", status: 201},
		{id: "b2", status: 400, code: "invalid", field: "max_attempts"},
		{id: "b3", status: 400, code: "invalid", field: "handler"},
		{id: "b0", status: 200, duplicate: true},
		{id: "b0", status: 409, code: "conflict", field: "id"},
		{id: "", status: 400, code: "invalid", field: "colour"},
		{id: "b4", status: 201},
	}
	if len(out.Results) != len(want) {
		t.Fatalf("batch: %d results, want %d: %s", len(out.Results), len(want), r.body)
	}
	for i, w := range want {
		got := out.Results[i]
		if got.ID != w.id || got.Status != w.status || got.Duplicate != w.duplicate {
			t.Errorf("result %d = %+v, want id %q status %d duplicate %v", i, got, w.id, w.status, w.duplicate)
		}
		switch {
		case w.code == "" && got.Error != nil:
			t.Errorf("result %d: unexpected error %+v", i, got.Error)
		case w.code != "" && (got.Error == nil || got.Error.Code != w.code || got.Error.Field != w.field || got.Error.Message == ""):
			t.Errorf("result %d: error %+v, want code %s field %s", i, got.Error, w.code, w.field)
		}
	}
	var ids []string
	for _, v := range b.engine.List(dispatchAll) {
		ids = append(ids, string(v.ID))
	}
	slices.Sort(ids)
	if want := []string{"b0", "b1", "b4"}; !slices.Equal(ids, want) {
		t.Errorf("tasks after the batch: %v, want %v", ids, want)
	}

	for _, tc := range []struct{ name, body, wantField string }{
		{name: "not JSON", body: `{"tasks": [`, wantField: "body"},
		{name: "tasks not a list", body: `{"tasks": {}}`, wantField: "tasks"},
		{name: "misspelt member", body: `{"taks": [{"handler": "echo"}]}`, wantField: "taks"},
	} {
		r := b.do(t, "POST", "/v1/tasks/batch", tc.body)
		if e := r.apiError(t); r.status != 400 || e.Field != tc.wantField {
			t.Errorf("batch %s: %d %+v, want 400 naming %s", tc.name, r.status, e, tc.wantField)
		}
	}
	if r := b.do(t, "POST", "/v1/tasks/batch", `{"tasks": []}`); r.status != 200 || compactString(t, string(r.body)) != `{"results":[]}` {
		t.Errorf("empty batch: %d %s", r.status, r.body)
	}
}

// multipartBody builds a multipart/form-data body from name, content pairs.
func multipartBody(t *testing.T, parts ...string) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(parts); i += 2 {
		p, err := w.CreateFormFile(parts[i], parts[i]+".bin")
		if err != nil {
			t.Fatal(err)
		}
		p.Write([]byte(parts[i+1]))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.FormDataContentType(), buf.Bytes()
}

func TestPlugins(t *testing.T) {
	t.Parallel()
	b := setup(t, api.Config{})
	echo, config := module(t, "echo"), module(t, "config")
	mpType, mpBody := multipartBody(t, "module", string(config), "manifest", `{"config": {"greeting": "hi"}}`)
	badPartType, badPartBody := multipartBody(t, "module", string(config), "readme", "hello")

	steps := []struct {
		name       string
		method     string
		path       string
		body       any
		header     []string
		wantStatus int
		wantField  string // errors
		wantInMsg  string // errors: a substring of the message
		want       string // a compact JSON body, for successes with a fixed answer
	}{
		{name: "deploy raw", method: "PUT", path: "/v1/plugins/up", body: echo, header: []string{"Content-Type", "application/wasm"}, wantStatus: 201,
			want: `{"name":"up","version":"` + host.Hash(echo) + `","changed":true}`},
		{name: "redeploy identical", method: "PUT", path: "/v1/plugins/up", body: echo, wantStatus: 200,
			want: `{"name":"up","version":"` + host.Hash(echo) + `","previous":"` + host.Hash(echo) + `","changed":false}`},
		{name: "raw with a manifest header", method: "PUT", path: "/v1/plugins/up", body: echo, header: []string{"X-Wasmtask-Manifest", `{"limits": {"children": 2}}`}, wantStatus: 201,
			want: `{"name":"up","version":"` + host.Hash(echo) + `","previous":"` + host.Hash(echo) + `","changed":true}`},
		{name: "multipart with a manifest", method: "PUT", path: "/v1/plugins/up", body: mpBody, header: []string{"Content-Type", mpType}, wantStatus: 201,
			want: `{"name":"up","version":"` + host.Hash(config) + `","previous":"` + host.Hash(echo) + `","changed":true}`},
		{name: "multipart with an unknown part", method: "PUT", path: "/v1/plugins/up", body: badPartBody, header: []string{"Content-Type", badPartType}, wantStatus: 400, wantField: "readme"},
		{name: "bad manifest limits", method: "PUT", path: "/v1/plugins/up", body: echo, header: []string{"X-Wasmtask-Manifest", `{"limits": {"memory_pages": 70000}}`}, wantStatus: 400, wantField: "manifest.limits.memory_pages"},
		{name: "unknown manifest field", method: "PUT", path: "/v1/plugins/up", body: echo, header: []string{"X-Wasmtask-Manifest", `{"limitz": {}}`}, wantStatus: 400, wantField: "manifest"},
		{name: "garbage module", method: "PUT", path: "/v1/plugins/up", body: "not wasm", wantStatus: 400, wantField: "module"},
		{name: "unknown import", method: "PUT", path: "/v1/plugins/up", body: module(t, "unknownimport"), wantStatus: 400, wantField: "module"},
		{name: "1 GiB table", method: "PUT", path: "/v1/plugins/up", body: module(t, "bigtable"), wantStatus: 400, wantField: "module",
			wantInMsg: "tables of 134217728 elements (1048576 KiB at 8 bytes an element), above the limit of 65536 elements; raise limits.table_elements"},
		{name: "table limit in the manifest", method: "PUT", path: "/v1/plugins/up", body: module(t, "tablegrow"), header: []string{"X-Wasmtask-Manifest", `{"limits": {"table_elements": 5}}`}, wantStatus: 400, wantField: "module"},
		{name: "empty module", method: "PUT", path: "/v1/plugins/up", body: "", wantStatus: 400, wantField: "module"},
		{name: "bad name", method: "PUT", path: "/v1/plugins/Up", body: echo, wantStatus: 400, wantField: "name"},
		{name: "rollback to the previous", method: "POST", path: "/v1/plugins/up/rollback", wantStatus: 200,
			want: `{"name":"up","version":"` + host.Hash(echo) + `","previous":"` + host.Hash(config) + `","changed":true}`},
		{name: "rollback to a named version", method: "POST", path: "/v1/plugins/up/rollback", body: `{"version": "` + host.Hash(config) + `"}`, wantStatus: 200,
			want: `{"name":"up","version":"` + host.Hash(config) + `","previous":"` + host.Hash(echo) + `","changed":true}`},
		{name: "rollback to an unknown version", method: "POST", path: "/v1/plugins/up/rollback", body: `{"version": "sha256:` + strings.Repeat("1", 64) + `"}`, wantStatus: 404},
		{name: "rollback without an earlier version", method: "POST", path: "/v1/plugins/echo/rollback", wantStatus: 400, wantField: "version"},
		{name: "rollback with a bad body", method: "POST", path: "/v1/plugins/up/rollback", body: `{"version": 1}`, wantStatus: 400, wantField: "version"},
		{name: "rollback with a misspelt member", method: "POST", path: "/v1/plugins/up/rollback", body: `{"verison": "` + host.Hash(echo) + `"}`, wantStatus: 400, wantField: "verison"},
	}
	for _, st := range steps {
		r := b.do(t, st.method, st.path, st.body, st.header...)
		if r.status != st.wantStatus {
			t.Errorf("%s: status %d, want %d: %s", st.name, r.status, st.wantStatus, r.body)
			continue
		}
		if st.wantStatus >= 400 {
			if e := r.apiError(t); e.Field != st.wantField || !strings.Contains(e.Message, st.wantInMsg) {
				t.Errorf("%s: error %+v, want field %q and a message with %q", st.name, e, st.wantField, st.wantInMsg)
			}
			continue
		}
		if got := compact(t, r.body); st.want != "" && string(got) != st.want {
			t.Errorf("%s:\n got %s\nwant %s", st.name, got, st.want)
		}
	}

	// The plugin's manifest reached the registry.
	if p, err := b.reg.Resolve(context.Background(), "up"); err != nil || p.Config["greeting"] != "hi" {
		t.Errorf("up resolves to config %v (%v), want the multipart manifest's", p.Config, err)
	}
	r := b.do(t, "GET", "/v1/plugins/up", nil)
	if ks := r.keys(t); r.status != 200 || !slices.Equal(ks, []string{"active", "history", "imports", "mode", "name", "state"}) {
		t.Errorf("GET /v1/plugins/up: %d, members %v", r.status, ks)
	}
	var info struct {
		Name, Active string
		History      []struct{ Version, Source string }
	}
	r.decode(t, &info)
	if len(info.History) != 5 || info.History[4].Source != "rollback" || info.History[0].Source != "http" {
		t.Errorf("history %+v, want 5 activations from http then rollbacks", info.History)
	}
	r = b.do(t, "GET", "/v1/plugins", nil)
	var list struct {
		Plugins []struct{ Name, Active string }
	}
	r.decode(t, &list)
	if r.status != 200 || len(list.Plugins) != 2 || list.Plugins[0].Name != "echo" || list.Plugins[1].Name != "up" || list.Plugins[1].Active != host.Hash(config) {
		t.Errorf("GET /v1/plugins: %d %s", r.status, r.body)
	}
}

func TestEngine(t *testing.T) {
	t.Parallel()
	b := setup(t, api.Config{})
	steps := []struct {
		method, path string
		wantPaused   bool
	}{
		{method: "GET", path: "/v1/engine", wantPaused: false},
		{method: "POST", path: "/v1/engine/pause", wantPaused: true},
		{method: "GET", path: "/v1/engine", wantPaused: true},
		{method: "POST", path: "/v1/engine/pause", wantPaused: true},
		{method: "POST", path: "/v1/engine/resume", wantPaused: false},
		{method: "GET", path: "/v1/engine", wantPaused: false},
	}
	for i, st := range steps {
		r := b.do(t, st.method, st.path, nil)
		var s api.EngineStatus
		r.decode(t, &s)
		if r.status != 200 || s.Paused != st.wantPaused || s.Runs == nil {
			t.Errorf("step %d %s %s: %d %s, want paused=%v", i, st.method, st.path, r.status, r.body, st.wantPaused)
		}
		if ks := r.keys(t); !slices.Equal(ks, []string{"events", "in_flight", "open_waits", "paused", "recovery", "runs", "tasks", "version", "wal_seq"}) {
			t.Errorf("step %d: members %v", i, ks)
		}
	}
	// Paused: a task waits; resumed: it runs.
	b.do(t, "POST", "/v1/engine/pause", nil)
	b.do(t, "POST", "/v1/tasks", `{"id": "e1", "handler": "echo", "input": "x"}`)
	var s api.EngineStatus
	b.do(t, "GET", "/v1/engine", nil).decode(t, &s)
	if s.Tasks != 1 || s.Runs["ready"] != 1 {
		t.Errorf("paused with one task: %+v, want 1 task with 1 ready run", s)
	}
	b.do(t, "POST", "/v1/engine/resume", nil)
	if r := b.do(t, "GET", "/v1/tasks/e1/wait?timeout=20s", nil); r.view(t).State != "completed" {
		t.Errorf("e1 after resume: %s", r.body)
	}
}

func TestToken(t *testing.T) {
	t.Parallel()
	b := setup(t, api.Config{Token: "s3cret"})
	b.api.SetReady(true)
	tests := []struct {
		name       string
		method     string
		path       string
		auth       string
		wantStatus int
	}{
		{name: "no token", method: "GET", path: "/v1/tasks", wantStatus: 401},
		{name: "wrong token", method: "GET", path: "/v1/tasks", auth: "Bearer nope", wantStatus: 401},
		{name: "not a bearer token", method: "GET", path: "/v1/tasks", auth: "s3cret", wantStatus: 401},
		{name: "basic auth", method: "GET", path: "/v1/tasks", auth: "Basic czNjcmV0", wantStatus: 401},
		{name: "token", method: "GET", path: "/v1/tasks", auth: "Bearer s3cret", wantStatus: 200},
		{name: "lower-case scheme", method: "GET", path: "/v1/tasks", auth: "bearer s3cret", wantStatus: 200},
		{name: "upper-case scheme", method: "GET", path: "/v1/tasks", auth: "BEARER s3cret", wantStatus: 200},
		{name: "lower-case scheme, wrong token", method: "GET", path: "/v1/tasks", auth: "bearer S3CRET", wantStatus: 401},
		{name: "scheme glued to the token", method: "GET", path: "/v1/tasks", auth: "Bearers3cret", wantStatus: 401},
		{name: "submit without token", method: "POST", path: "/v1/tasks", wantStatus: 401},
		{name: "deploy without token", method: "PUT", path: "/v1/plugins/x", wantStatus: 401},
		{name: "unknown route without token", method: "GET", path: "/nope", wantStatus: 401},
		{name: "readyz without token", method: "GET", path: "/readyz", wantStatus: 401},
		{name: "readyz with token", method: "GET", path: "/readyz", auth: "Bearer s3cret", wantStatus: 200},
		{name: "healthz is open", method: "GET", path: "/healthz", wantStatus: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var header []string
			if tc.auth != "" {
				header = []string{"Authorization", tc.auth}
			}
			r := b.do(t, tc.method, tc.path, nil, header...)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tc.wantStatus, r.body)
			}
			if tc.wantStatus == 401 {
				if e := r.apiError(t); e.Code != "unauthorized" {
					t.Errorf("error %+v, want unauthorized", e)
				}
				if r.header.Get("WWW-Authenticate") == "" {
					t.Error("401 without a WWW-Authenticate header")
				}
			}
		})
	}
	if n := len(b.engine.List(dispatchAll)); n != 0 {
		t.Errorf("%d tasks submitted without a token", n)
	}
}

func TestBodyLimits(t *testing.T) {
	t.Parallel()
	b := setup(t, api.Config{MaxTaskBytes: 256, MaxModuleBytes: 200})
	big := strings.Repeat("x", 300)
	echo := module(t, "echo") // 240 bytes
	mpType, mpBody := multipartBody(t, "module", string(echo))
	tests := []struct {
		name       string
		method     string
		path       string
		body       any
		header     []string
		wantStatus int
	}{
		{name: "task under the limit", method: "POST", path: "/v1/tasks", body: `{"handler": "echo", "input": "small"}`, wantStatus: 201},
		{name: "task over the limit", method: "POST", path: "/v1/tasks", body: `{"handler": "echo", "input": "` + big + `"}`, wantStatus: 413},
		{name: "batch under 4x the limit", method: "POST", path: "/v1/tasks/batch", body: `{"tasks": [{"handler": "echo", "input": "` + big + `"}]}`, wantStatus: 200},
		{name: "batch over 4x the limit", method: "POST", path: "/v1/tasks/batch", body: `{"tasks": [{"handler": "echo", "input": "` + big + big + big + big + `"}]}`, wantStatus: 413},
		{name: "raw module over the limit", method: "PUT", path: "/v1/plugins/big", body: echo, wantStatus: 413},
		{name: "multipart module over the limit", method: "PUT", path: "/v1/plugins/big", body: mpBody, header: []string{"Content-Type", mpType}, wantStatus: 413},
		{name: "after body over 1 MiB", method: "POST", path: "/v1/tasks/x/after", body: `{"after": ["` + strings.Repeat("a", 1<<20) + `"]}`, wantStatus: 413},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := b.do(t, tc.method, tc.path, tc.body, tc.header...)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %.300s", r.status, tc.wantStatus, r.body)
			}
			if tc.wantStatus == 413 {
				if e := r.apiError(t); e.Code != "too_large" {
					t.Errorf("error %+v, want too_large", e)
				}
			}
		})
	}
	t.Cleanup(func() {
		if _, err := b.reg.Get("big"); err == nil {
			t.Error("a module over the limit reached the registry")
		}
	})
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "wasmtask_up 1") })
	b := setup(t, api.Config{Metrics: metrics})
	steps := []struct {
		name       string
		ready      *bool
		path       string
		wantStatus int
		wantBody   string
	}{
		{name: "readyz before SetReady", path: "/readyz", wantStatus: 503, wantBody: `{"error":{"code":"not_ready","message":"recovering"}}`},
		{name: "healthz before SetReady", path: "/healthz", wantStatus: 200, wantBody: `{"status":"ok"}`},
		{name: "readyz after SetReady(true)", ready: ptr(true), path: "/readyz", wantStatus: 200, wantBody: `{"status":"ready"}`},
		{name: "readyz after SetReady(false)", ready: ptr(false), path: "/readyz", wantStatus: 503, wantBody: `{"error":{"code":"not_ready","message":"recovering"}}`},
		{name: "metrics", path: "/metrics", wantStatus: 200, wantBody: "wasmtask_up 1\n"},
	}
	for _, st := range steps {
		if st.ready != nil {
			b.api.SetReady(*st.ready)
		}
		r := b.do(t, "GET", st.path, nil)
		got := string(r.body)
		if json.Valid(r.body) {
			got = string(compact(t, r.body))
		}
		if r.status != st.wantStatus || got != st.wantBody {
			t.Errorf("%s: %d %s, want %d %s", st.name, r.status, got, st.wantStatus, st.wantBody)
		}
	}
}

func ptr[T any](v T) *T { return &v }
