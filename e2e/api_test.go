package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
)

// TestAPISubmitStatusCodes checks 201 / 200 identical resubmit / 409 /
// 404 and the error shape.
func TestAPISubmitStatusCodes(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	version := s.deploy("echo", hostModule(t, "echo"))

	spec := map[string]any{"id": "t1", "handler": "echo", "input": "hello"}
	r := s.do("POST", "/v1/tasks", spec)
	if r.status != 201 {
		t.Fatalf("first submit: want 201, got %d: %s", r.status, r.body)
	}
	if v := r.view(t); v.ID != "t1" || v.Handler != "echo" {
		t.Errorf("first submit: view id=%q handler=%q", v.ID, v.Handler)
	}
	r = s.do("POST", "/v1/tasks", spec)
	if r.status != 200 || r.view(t).ID != "t1" {
		t.Fatalf("identical resubmit: want 200 with the task, got %d: %s", r.status, r.body)
	}
	r = s.do("POST", "/v1/tasks", map[string]any{"id": "t1", "handler": "echo", "input": "other"})
	if r.status != 409 {
		t.Fatalf("different spec under t1: want 409, got %d: %s", r.status, r.body)
	}
	if e := r.apiError(t); e.Code != "conflict" || e.Field != "id" || !strings.Contains(e.Message, "t1") {
		t.Errorf("409 error: %+v", e)
	}

	r = s.do("GET", "/v1/tasks/t1/wait?timeout=30s", nil)
	v := r.view(t)
	if r.status != 200 || v.State != "completed" || v.Output == nil || *v.Output != "HELLO" {
		t.Fatalf("wait t1: %d %s", r.status, r.body)
	}
	if a := attempts(v); len(a) != 1 || a[0].Outcome != "ok" || a[0].Module != version || a[0].Number != 1 {
		t.Errorf("t1 attempts: %+v, want one ok attempt on %s", a, version)
	}
	// A resubmit after completion is still the same task.
	if r := s.do("POST", "/v1/tasks", spec); r.status != 200 || r.view(t).State != "completed" {
		t.Errorf("resubmit of a completed task: %d %s", r.status, r.body)
	}

	// Cancel a task that cannot start (the engine is paused).
	if r := s.do("POST", "/v1/engine/pause", nil); r.status != 200 {
		t.Fatalf("pause: %d %s", r.status, r.body)
	}
	if r := s.do("POST", "/v1/tasks", map[string]any{"id": "c1", "handler": "echo"}); r.status != 201 || r.view(t).State != "pending" {
		t.Fatalf("submit c1 while paused: %d %s", r.status, r.body)
	}
	if r := s.do("POST", "/v1/tasks/c1/cancel", nil); r.status != 200 || r.view(t).State != "canceled" {
		t.Errorf("cancel c1: %d %s", r.status, r.body)
	}
	s.do("POST", "/v1/engine/resume", nil)
	if v := s.waitFinal("c1", 30*time.Second); v.State != "canceled" || len(attempts(v)) != 0 {
		t.Errorf("c1 after resume: %s with %d attempts", v.State, len(attempts(v)))
	}

	for _, tc := range []struct{ method, path string }{
		{"GET", "/v1/tasks/nope"},
		{"GET", "/v1/tasks/nope/wait?timeout=1s"},
		{"POST", "/v1/tasks/nope/cancel"},
		{"GET", "/v1/plugins/nope"},
		{"POST", "/v1/plugins/nope/rollback"},
		{"GET", "/v1/no-such-route"},
	} {
		r := s.do(tc.method, tc.path, nil)
		if r.status != 404 {
			t.Errorf("%s %s: want 404, got %d: %s", tc.method, tc.path, r.status, r.body)
			continue
		}
		if e := r.apiError(t); e.Code != "not_found" {
			t.Errorf("%s %s: code %q, want not_found", tc.method, tc.path, e.Code)
		}
	}
}

// TestAPIInvalidSpecs checks that every invalid spec is rejected whole
// with 400 and a message naming the field, and that nothing is written.
func TestAPIInvalidSpecs(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	s.deploy("echo", hostModule(t, "echo"))

	for i, tc := range []struct {
		name  string
		body  string
		field string
		want  string // in the message
	}{
		{name: "max_attempts negative", body: `{"handler":"echo","max_attempts":-1}`, field: "max_attempts", want: "between 1 and 100"},
		{name: "max_attempts too large", body: `{"handler":"echo","max_attempts":1000}`, field: "max_attempts", want: "1000"},
		{name: "max_attempts not a number", body: `{"handler":"echo","max_attempts":"three"}`, field: "max_attempts", want: "int"},
		{name: "timeout not a duration", body: `{"handler":"echo","timeout":"soon"}`, field: "timeout", want: `"soon"`},
		{name: "timeout negative", body: `{"handler":"echo","timeout":"-5s"}`, field: "timeout", want: `"-5s"`},
		{name: "timeout zero", body: `{"handler":"echo","timeout":"0s"}`, field: "timeout", want: "positive"},
		{name: "unknown field", body: `{"handler":"echo","colour":"blue"}`, field: "colour", want: "unknown field"},
		{name: "input and input_b64", body: `{"handler":"echo","input":"a","input_b64":"YQ=="}`, field: "input", want: "exactly one of input and input_b64"},
		{name: "input_b64 not base64", body: `{"handler":"echo","input_b64":"!!!"}`, field: "input_b64", want: "base64"},
		{name: "handler missing", body: `{"input":"a"}`, field: "handler", want: "required"},
		{name: "handler unknown", body: `{"handler":"nope"}`, field: "handler", want: `"nope"`},
		{name: "handler version unknown", body: `{"handler":"echo@sha256:` + strings.Repeat("0", 64) + `"}`, field: "handler", want: "no version"},
		{name: "handler malformed", body: `{"handler":"Echo!"}`, field: "handler", want: "Echo!"},
		{name: "run_policy two kinds", body: `{"handler":"echo","run_policy":{"once":{},"repeat":{"count":2}}}`, field: "run_policy", want: "exactly one"},
		{name: "backoff base", body: `{"handler":"echo","backoff":{"kind":"fixed","base":"x"}}`, field: "backoff.base", want: `"x"`},
		{name: "not_before", body: `{"handler":"echo","not_before":"tomorrow"}`, field: "not_before", want: "RFC 3339"},
		{name: "not JSON", body: `{"handler":`, field: "body", want: "JSON"},
		{name: "trailing data", body: `{"handler":"echo"} {}`, field: "body", want: "after the task spec"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Give each spec an id so that we can check it was not written.
			id := fmt.Sprintf("bad-%d", i)
			body := tc.body
			if strings.HasPrefix(body, `{"handler":"echo"`) || strings.HasPrefix(body, `{"input"`) || strings.HasPrefix(body, `{"handler":"nope"`) {
				body = `{"id":"` + id + `",` + body[1:]
			}
			r := s.do("POST", "/v1/tasks", body)
			if r.status != 400 {
				t.Fatalf("want 400, got %d: %s", r.status, r.body)
			}
			e := r.apiError(t)
			if e.Code != "invalid" || e.Field != tc.field || !strings.Contains(e.Message, tc.field) || !strings.Contains(e.Message, tc.want) {
				t.Errorf("error %+v: want code invalid, field %q, a message naming the field and containing %q", e, tc.field, tc.want)
			}
			if r := s.do("GET", "/v1/tasks/"+id, nil); r.status != 404 {
				t.Errorf("rejected spec was written: GET %s: %d", id, r.status)
			}
		})
	}
	if l, err := s.client.TaskList(context.Background(), nil); err != nil || len(l.Tasks) != 0 {
		t.Errorf("after rejected specs: list = %d tasks, %v; want none", len(l.Tasks), err)
	}
}

// TestAPIBatch checks per-task results of POST /v1/tasks/batch.
func TestAPIBatch(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	s.deploy("echo", hostModule(t, "echo"))
	if _, err := s.client.Submit(context.Background(), api.TaskSpec{ID: "dup", Handler: "echo", Input: ptr("x")}); err != nil {
		t.Fatal(err)
	}
	r := s.do("POST", "/v1/tasks/batch", `{"tasks": [
		{"id": "b1", "handler": "echo", "input": "one"},
		{"id": "b2", "handler": "echo", "timeout": "never"},
		{"id": "dup", "handler": "echo", "input": "x"},
		{"id": "dup", "handler": "echo", "input": "y"},
		{"id": "b3", "handler": "nope"}]}`)
	if r.status != 200 {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	var out struct{ Results []api.BatchResult }
	if err := json.Unmarshal(r.body, &out); err != nil || len(out.Results) != 5 {
		t.Fatalf("batch results: %v %s", err, r.body)
	}
	want := []struct {
		status int
		field  string
	}{{201, ""}, {400, "timeout"}, {200, ""}, {409, "id"}, {400, "handler"}}
	for i, w := range want {
		got := out.Results[i]
		if got.Status != w.status || (w.field != "") != (got.Error != nil) || got.Error != nil && got.Error.Field != w.field {
			t.Errorf("result %d: %+v (error %+v), want status %d field %q", i, got, got.Error, w.status, w.field)
		}
	}
	if v := s.waitFinal("b1", 30*time.Second); v.State != "completed" || *v.Output != "ONE" {
		t.Errorf("b1: %s %v", v.State, v.Output)
	}
	if r := s.do("GET", "/v1/tasks/b2", nil); r.status != 404 {
		t.Errorf("b2 (invalid) was written: %d", r.status)
	}
	if r := s.do("POST", "/v1/tasks/batch", `{"tasks": {}}`); r.status != 400 || r.apiError(t).Field != "tasks" {
		t.Errorf("batch with tasks not a list: %d %s", r.status, r.body)
	}
}

func ptr[T any](v T) *T { return &v }

// TestAPIPluginBrokenModules deploys broken modules: each is rejected with
// 400 naming the problem, and the active version stays and keeps running.
func TestAPIPluginBrokenModules(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	r := s.do("PUT", "/v1/plugins/p", hostModule(t, "echo"))
	if r.status != 201 {
		t.Fatalf("deploy: want 201, got %d: %s", r.status, r.body)
	}
	var dep struct {
		Name, Version string
		Changed       bool
	}
	json.Unmarshal(r.body, &dep)
	if dep.Name != "p" || !strings.HasPrefix(dep.Version, "sha256:") || !dep.Changed {
		t.Fatalf("deploy result: %s", r.body)
	}
	v1 := dep.Version
	if r := s.do("PUT", "/v1/plugins/p", hostModule(t, "echo")); r.status != 200 || !strings.Contains(string(r.body), `"changed": false`) {
		t.Errorf("redeploy of the active version: want 200 unchanged, got %d: %s", r.status, r.body)
	}

	for _, tc := range []struct {
		name string
		wasm []byte
		want []string
	}{
		{"garbage", []byte("this is not a wasm module at all"), []string{"not a valid WebAssembly module"}},
		{"truncated", hostModule(t, "echo")[:40], []string{"not a valid WebAssembly module"}},
		{"empty", nil, []string{"empty"}},
		{"unknown import", hostModule(t, "unknownimport"), []string{"wasmtask_v1.fetch", "not provided"}},
		{"unknown import module", hostModule(t, "unknownmodule"), []string{"import"}},
		{"no wasmtask_handle", hostModule(t, "nohandle"), []string{"wasmtask_handle"}},
		{"no memory", hostModule(t, "nomemory"), []string{"memory"}},
		{"bad handle signature", hostModule(t, "badhandlesig"), []string{"wasmtask_handle"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do("PUT", "/v1/plugins/p", tc.wasm)
			if r.status != 400 {
				t.Fatalf("want 400, got %d: %s", r.status, r.body)
			}
			e := r.apiError(t)
			for _, w := range tc.want {
				if !strings.Contains(e.Message, w) {
					t.Errorf("message %q does not name the problem (%q)", e.Message, w)
				}
			}
			if e.Field != "module" {
				t.Errorf("field %q, want module", e.Field)
			}
			info, err := s.client.PluginGet(context.Background(), "p")
			if err != nil || info.Active != v1 || len(info.History) != 1 {
				t.Errorf("after a rejected deploy: active %s, %d versions, %v; want %s kept", info.Active, len(info.History), err, v1)
			}
			if info.LastError == "" {
				t.Errorf("the rejection is not kept as last_error")
			}
		})
	}
	// The active version still runs.
	res, err := s.client.Submit(context.Background(), api.TaskSpec{Handler: "p", Input: ptr("still here")})
	if err != nil {
		t.Fatal(err)
	}
	v := s.waitFinal(res.Task.ID, 30*time.Second)
	if v.State != "completed" || *v.Output != "STILL HERE" || attempts(v)[0].Module != v1 {
		t.Errorf("task after rejected deploys: %s %v on %s", v.State, v.Output, attempts(v)[0].Module)
	}
	if r := s.do("PUT", "/v1/plugins/Bad.Name", hostModule(t, "echo")); r.status != 400 || r.apiError(t).Field != "name" {
		t.Errorf("bad plugin name: %d %s", r.status, r.body)
	}
	// A pinned handler runs exactly that version.
	res, err = s.client.Submit(context.Background(), api.TaskSpec{Handler: "p@" + v1, Input: ptr("pinned")})
	if err != nil {
		t.Fatal(err)
	}
	if v := s.waitFinal(res.Task.ID, 30*time.Second); v.State != "completed" || attempts(v)[0].Module != v1 {
		t.Errorf("pinned task: %s on %s", v.State, attempts(v)[0].Module)
	}
}

// TestAPIRollback re-activates the previous version through the API, and
// a named one.
func TestAPIRollback(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	ctx := context.Background()
	v1 := s.deploy("p", hostModule(t, "echo")) // upper-cases
	if r := s.do("POST", "/v1/plugins/p/rollback", nil); r.status != 400 || r.apiError(t).Field != "version" {
		t.Errorf("rollback with a single version: %d %s", r.status, r.body)
	}
	v2 := s.deploy("p", hostModule(t, "bench")) // echoes as is
	run := func(input string) (string, string) {
		t.Helper()
		res, err := s.client.Submit(ctx, api.TaskSpec{Handler: "p", Input: &input})
		if err != nil {
			t.Fatal(err)
		}
		v := s.waitFinal(res.Task.ID, 30*time.Second)
		if v.State != "completed" {
			t.Fatalf("task %s: %s", v.ID, v.State)
		}
		return *v.Output, attempts(v)[0].Module
	}
	if out, mod := run("abc"); out != "abc" || mod != v2 {
		t.Errorf("on v2: %q on %s", out, mod)
	}
	r := s.do("POST", "/v1/plugins/p/rollback", nil)
	var res struct{ Name, Version, Previous string }
	json.Unmarshal(r.body, &res)
	if r.status != 200 || res.Version != v1 || res.Previous != v2 {
		t.Fatalf("rollback: %d %s", r.status, r.body)
	}
	if out, mod := run("abc"); out != "ABC" || mod != v1 {
		t.Errorf("after rollback: %q on %s, want ABC on %s", out, mod, v1)
	}
	info, _ := s.client.PluginGet(ctx, "p")
	if info.Active != v1 || len(info.History) != 3 || info.History[2].Source != "rollback" {
		t.Errorf("history after rollback: active %s, %+v", info.Active, info.History)
	}
	if _, err := s.client.PluginRollback(ctx, "p", v2); err != nil {
		t.Fatal(err)
	}
	if out, mod := run("abc"); out != "abc" || mod != v2 {
		t.Errorf("after rollback to v2: %q on %s", out, mod)
	}
	_, err := s.client.PluginRollback(ctx, "p", "sha256:"+strings.Repeat("ab", 32))
	if !errors.Is(err, api.ErrNotFound) {
		t.Errorf("rollback to an unknown version: %v, want not found", err)
	}
	if r := s.do("POST", "/v1/plugins/p/rollback", `{"version": 3}`); r.status != 400 || r.apiError(t).Field != "version" {
		t.Errorf("rollback with a bad body: %d %s", r.status, r.body)
	}
}

// TestAPIToken checks that every route but /healthz needs the token.
func TestAPIToken(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{token: "s3cret"})
	for _, tc := range []struct{ method, path string }{
		{"GET", "/v1/tasks"},
		{"POST", "/v1/tasks"},
		{"GET", "/v1/tasks/x"},
		{"PUT", "/v1/plugins/p"},
		{"GET", "/v1/plugins"},
		{"GET", "/v1/engine"},
		{"GET", "/metrics"},
		{"GET", "/readyz"},
	} {
		for _, tok := range []string{"-", "wrong"} {
			r := s.do(tc.method, tc.path, nil, tok)
			if r.status != 401 {
				t.Errorf("%s %s with token %q: want 401, got %d", tc.method, tc.path, tok, r.status)
				continue
			}
			if e := r.apiError(t); e.Code != "unauthorized" {
				t.Errorf("%s %s: code %q", tc.method, tc.path, e.Code)
			}
			if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s: no WWW-Authenticate header", tc.method, tc.path)
			}
		}
	}
	for _, path := range []string{"/v1/tasks", "/v1/plugins", "/v1/engine", "/metrics", "/readyz", "/healthz"} {
		if r := s.do("GET", path, nil); r.status != 200 {
			t.Errorf("GET %s with the token: %d %s", path, r.status, r.body)
		}
	}
	if r := s.do("GET", "/healthz", nil, "-"); r.status != 200 {
		t.Errorf("GET /healthz without a token: %d", r.status)
	}
	// The CLI: the token from WASMTASK_TOKEN (s.cli) or --token.
	s.mustCLI(0, "plugin", "deploy", "echo", "../host/testdata/echo.wasm")
	s.mustCLI(0, "list")
	r := runCLI(t, []string{"WASMTASK_SERVER=" + s.URL}, "list")
	if r.code != 1 || !strings.Contains(r.stderr, "token") {
		t.Errorf("list without a token: %s", r)
	}
	if r := runCLI(t, []string{"WASMTASK_SERVER=" + s.URL}, "list", "--token", "s3cret"); r.code != 0 {
		t.Errorf("list --token: %s", r)
	}
}

// TestAPILongPollWait checks that wait blocks until the task is final,
// and returns the current view at its timeout.
func TestAPILongPollWait(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	ctx := context.Background()
	s.deploy("echo", hostModule(t, "echo"))
	if _, err := s.client.EnginePause(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.Submit(ctx, api.TaskSpec{ID: "w", Handler: "echo", Input: ptr("wait for me")}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := s.do("GET", "/v1/tasks/w/wait?timeout=300ms", nil)
	if el := time.Since(start); r.status != 200 || r.view(t).State != "pending" || el < 250*time.Millisecond || el > 10*time.Second {
		t.Fatalf("wait with a short timeout on a paused engine: %d after %v: %s", r.status, el, r.body)
	}
	type waited struct {
		v   api.TaskView
		el  time.Duration
		err error
	}
	done := make(chan waited, 1)
	go func() {
		start := time.Now()
		v, err := s.client.TaskWait(ctx, "w", time.Minute)
		done <- waited{v, time.Since(start), err}
	}()
	select {
	case w := <-done:
		t.Fatalf("wait returned while the engine was paused: %+v", w)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := s.client.EngineResume(ctx); err != nil {
		t.Fatal(err)
	}
	w := <-done
	if w.err != nil || w.v.State != "completed" || *w.v.Output != "WAIT FOR ME" || w.el > 30*time.Second {
		t.Fatalf("wait after resume: %v after %v: %+v", w.err, w.el, w.v)
	}
	// On a final task, wait returns at once.
	start = time.Now()
	if v, err := s.client.TaskWait(ctx, "w", time.Minute); err != nil || v.State != "completed" || time.Since(start) > 5*time.Second {
		t.Errorf("wait on a final task: %v %s after %v", err, v.State, time.Since(start))
	}
	if r := s.do("GET", "/v1/tasks/w/wait?timeout=forever", nil); r.status != 400 || r.apiError(t).Field != "timeout" {
		t.Errorf("wait?timeout=forever: %d %s", r.status, r.body)
	}
}

// TestAPIListPagination pages through tasks newest first with the cursor.
func TestAPIListPagination(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	ctx := context.Background()
	s.deploy("pag", module(t, "noop"))
	s.deploy("other", module(t, "noop"))
	var submitted []string
	for i := range 25 {
		// Ids that do not sort in submission order: the list must follow
		// submission, not the id.
		id := fmt.Sprintf("p-%02d", (i*7)%25)
		if _, err := s.client.Submit(ctx, api.TaskSpec{ID: id, Handler: "pag"}); err != nil {
			t.Fatal(err)
		}
		submitted = append(submitted, id)
		if i%5 == 0 {
			if _, err := s.client.Submit(ctx, api.TaskSpec{Handler: "other"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, id := range submitted {
		s.waitFinal(id, 30*time.Second)
	}
	var got []string
	cursor := ""
	pages := 0
	for {
		l, err := s.client.TaskList(ctx, &api.TaskListParams{Handler: "pag", Limit: 10, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, v := range l.Tasks {
			got = append(got, v.ID)
		}
		if l.NextCursor == "" {
			if len(l.Tasks) != 5 {
				t.Errorf("last page: %d tasks, want 5", len(l.Tasks))
			}
			break
		}
		if len(l.Tasks) != 10 || l.NextCursor != l.Tasks[9].ID {
			t.Errorf("page %d: %d tasks, next_cursor %q", pages, len(l.Tasks), l.NextCursor)
		}
		cursor = l.NextCursor
		if pages > 5 {
			t.Fatal("too many pages")
		}
	}
	want := slices.Clone(submitted)
	slices.Reverse(want)
	if !slices.Equal(got, want) || pages != 3 {
		t.Errorf("pages %d; ids newest first:\n got %v\nwant %v", pages, got, want)
	}
	l, err := s.client.TaskList(ctx, &api.TaskListParams{State: "completed", Limit: 1000})
	if err != nil || len(l.Tasks) != 30 || l.NextCursor != "" {
		t.Errorf("state=completed: %d tasks, cursor %q, %v; want 30", len(l.Tasks), l.NextCursor, err)
	}
	if l, err := s.client.TaskList(ctx, &api.TaskListParams{State: "failed"}); err != nil || len(l.Tasks) != 0 {
		t.Errorf("state=failed: %d tasks, %v", len(l.Tasks), err)
	}
	for _, tc := range []struct{ query, field string }{
		{"limit=0", "limit"},
		{"limit=1001", "limit"},
		{"limit=ten", "limit"},
		{"state=done", "state"},
		{"cursor=no-such-task", "cursor"},
	} {
		r := s.do("GET", "/v1/tasks?"+tc.query, nil)
		if r.status != 400 {
			t.Errorf("?%s: want 400, got %d", tc.query, r.status)
			continue
		}
		if e := r.apiError(t); e.Field != tc.field || !strings.Contains(e.Message, tc.field) {
			t.Errorf("?%s: error %+v, want field %q", tc.query, e, tc.field)
		}
	}
}
