package api_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/host"
	"github.com/wasmtask/wasmtask/plugins"
)

func deployed(name, version, previous string, changed bool) plugins.DeployResult {
	return plugins.DeployResult{Name: name, Version: version, Previous: previous, Changed: changed}
}

// wantAPIError checks that err is an *api.Error matching sentinel with
// status (and field, when given).
func wantAPIError(t *testing.T, what string, err error, sentinel error, status int, field string) {
	t.Helper()
	var e *api.Error
	if !errors.As(err, &e) || !errors.Is(err, sentinel) || e.Status != status || (field != "" && e.Field != field) {
		t.Errorf("%s: got %v (%#v), want %v with status %d field %q", what, err, e, sentinel, status, field)
	}
	if api.IsUnreachable(err) {
		t.Errorf("%s: IsUnreachable(%v) for an answer of the server", what, err)
	}
}

func TestClientTasks(t *testing.T) {
	t.Parallel()
	b := setup(t, api.Config{})
	c := api.NewClient(b.srv.URL+"/", "")
	ctx := context.Background()

	// Submit: created, then duplicate, conflict, invalid.
	res, err := c.Submit(ctx, api.TaskSpec{ID: "c1", Handler: "echo", Input: ptr("hello")})
	if err != nil || res.Duplicate || res.Task.ID != "c1" || res.Task.Handler != "echo" {
		t.Fatalf("Submit: %+v, %v", res, err)
	}
	res, err = c.Submit(ctx, api.TaskSpec{ID: "c1", Handler: "echo", Input: ptr("hello")})
	if err != nil || !res.Duplicate || res.Task.ID != "c1" {
		t.Errorf("identical Submit: %+v, %v; want a duplicate", res, err)
	}
	_, err = c.Submit(ctx, api.TaskSpec{ID: "c1", Handler: "echo", Input: ptr("other")})
	wantAPIError(t, "conflicting Submit", err, api.ErrConflict, 409, "id")
	_, err = c.Submit(ctx, api.TaskSpec{Handler: "echo", MaxAttempts: 101})
	wantAPIError(t, "invalid Submit", err, api.ErrInvalid, 400, "max_attempts")
	if errors.Is(err, api.ErrNotFound) || errors.Is(err, api.ErrConflict) {
		t.Errorf("an invalid spec error matches other sentinels: %v", err)
	}

	// Wait, get.
	v, err := c.TaskWait(ctx, "c1", 20*time.Second)
	if err != nil || v.State != "completed" || v.Output == nil || *v.Output != "HELLO" {
		t.Fatalf("TaskWait: %+v, %v", v, err)
	}
	if v, err := c.TaskGet(ctx, "c1"); err != nil || v.State != "completed" || len(v.Runs) != 1 || v.Runs[0].Attempts[0].Module != b.echo {
		t.Errorf("TaskGet: %+v, %v", v, err)
	}
	_, err = c.TaskGet(ctx, "nope")
	wantAPIError(t, "TaskGet of an unknown task", err, api.ErrNotFound, 404, "")
	_, err = c.TaskWait(ctx, "nope", time.Second)
	wantAPIError(t, "TaskWait of an unknown task", err, api.ErrNotFound, 404, "")

	// Batch.
	results, err := c.SubmitBatch(ctx, []api.TaskSpec{{ID: "c2", Handler: "echo"}, {ID: "c9", Handler: "nope"}})
	if err != nil || len(results) != 2 || results[0].Status != 201 || results[1].Status != 400 || results[1].Error.Field != "handler" {
		t.Errorf("SubmitBatch: %+v, %v", results, err)
	}

	// While paused: after, cancel, list.
	if st, err := c.EnginePause(ctx); err != nil || !st.Paused {
		t.Fatalf("EnginePause: %+v, %v", st, err)
	}
	if st, err := c.EngineStatus(ctx); err != nil || !st.Paused {
		t.Errorf("EngineStatus while paused: %+v, %v", st, err)
	}
	if _, err := c.Submit(ctx, api.TaskSpec{ID: "c3", Handler: "echo"}); err != nil {
		t.Fatal(err)
	}
	if v, err := c.TaskAfter(ctx, "c3", []string{"c1"}); err != nil || !slices.Equal(v.After, []string{"c1"}) {
		t.Errorf("TaskAfter: %+v, %v", v.After, err)
	}
	_, err = c.TaskAfter(ctx, "c3", []string{"nope"})
	wantAPIError(t, "TaskAfter with an unknown prerequisite", err, api.ErrInvalid, 400, "after")
	_, err = c.TaskAfter(ctx, "nope", []string{"c1"})
	wantAPIError(t, "TaskAfter of an unknown task", err, api.ErrNotFound, 404, "")
	if v, err := c.TaskCancel(ctx, "c3"); err != nil || v.State != "canceled" {
		t.Errorf("TaskCancel: %+v, %v", v, err)
	}
	_, err = c.TaskCancel(ctx, "nope")
	wantAPIError(t, "TaskCancel of an unknown task", err, api.ErrNotFound, 404, "")

	lists := []struct {
		name      string
		params    *api.TaskListParams
		wantIDs   []string
		wantNext  string
		wantField string // an error
	}{
		{name: "nil params", params: nil, wantIDs: []string{"c3", "c2", "c1"}},
		{name: "state", params: &api.TaskListParams{State: "canceled"}, wantIDs: []string{"c3"}},
		{name: "handler and limit", params: &api.TaskListParams{Handler: "echo", Limit: 1}, wantIDs: []string{"c3"}, wantNext: "c3"},
		{name: "cursor", params: &api.TaskListParams{Cursor: "c3", Limit: 1}, wantIDs: []string{"c2"}, wantNext: "c2"},
		{name: "last page", params: &api.TaskListParams{Cursor: "c2"}, wantIDs: []string{"c1"}},
		{name: "bad state", params: &api.TaskListParams{State: "done"}, wantField: "state"},
	}
	for _, tc := range lists {
		list, err := c.TaskList(ctx, tc.params)
		if tc.wantField != "" {
			wantAPIError(t, "TaskList "+tc.name, err, api.ErrInvalid, 400, tc.wantField)
			continue
		}
		var ids []string
		for _, v := range list.Tasks {
			ids = append(ids, v.ID)
		}
		if err != nil || !slices.Equal(ids, tc.wantIDs) || list.NextCursor != tc.wantNext {
			t.Errorf("TaskList %s: %v next %q (%v), want %v next %q", tc.name, ids, list.NextCursor, err, tc.wantIDs, tc.wantNext)
		}
	}

	// A client-side deadline is the context's error, not "unreachable".
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.Submit(ctx, api.TaskSpec{ID: "c4", Handler: "echo"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TaskWait(short, "c4", 20*time.Second); !errors.Is(err, context.DeadlineExceeded) || api.IsUnreachable(err) {
		t.Errorf("TaskWait past the context's deadline: %v, want context.DeadlineExceeded", err)
	}

	if st, err := c.EngineResume(ctx); err != nil || st.Paused {
		t.Errorf("EngineResume: %+v, %v", st, err)
	}
	if v, err := c.TaskWait(ctx, "c4", 20*time.Second); err != nil || v.State != "completed" {
		t.Errorf("c4 after resume: %+v, %v", v, err)
	}
}

// TestClientSubmitWait: SubmitWait answers with the final view (POST
// /v1/tasks?wait=), a duplicate as such, and a conflict as Submit does.
func TestClientSubmitWait(t *testing.T) {
	t.Parallel()
	b := setup(t, api.Config{})
	c := api.NewClient(b.srv.URL+"/", "")
	ctx := context.Background()
	res, err := c.SubmitWait(ctx, api.TaskSpec{ID: "c5", Handler: "echo", Input: ptr("bye")}, 20*time.Second)
	if err != nil || res.Duplicate || res.Task.State != "completed" || res.Task.Output == nil || *res.Task.Output != "BYE" {
		t.Fatalf("SubmitWait: %+v, %v; want c5 completed with BYE", res, err)
	}
	if res, err = c.SubmitWait(ctx, api.TaskSpec{ID: "c5", Handler: "echo", Input: ptr("bye")}, 20*time.Second); err != nil || !res.Duplicate || res.Task.State != "completed" {
		t.Errorf("identical SubmitWait: %+v, %v; want a completed duplicate", res, err)
	}
	_, err = c.SubmitWait(ctx, api.TaskSpec{ID: "c5", Handler: "echo", Input: ptr("other")}, 20*time.Second)
	wantAPIError(t, "conflicting SubmitWait", err, api.ErrConflict, 409, "id")
}

func TestClientPlugins(t *testing.T) {
	t.Parallel()
	b := setup(t, api.Config{})
	c := api.NewClient(b.srv.URL, "")
	ctx := context.Background()
	echo, config := module(t, "echo"), module(t, "config")
	manifest := []byte("{\n  \"config\": {\"greeting\": \"grüße\"},\n  \"limits\": {\"children\": 4}\n}\n")

	steps := []struct {
		name     string
		run      func() (any, error)
		want     any
		sentinel error // with status and field
		status   int
		field    string
	}{
		{name: "deploy with a manifest", run: func() (any, error) { return c.PluginDeploy(ctx, "cfg", config, manifest) },
			want: deployed("cfg", host.Hash(config), "", true)},
		{name: "deploy the same", run: func() (any, error) { return c.PluginDeploy(ctx, "cfg", config, manifest) },
			want: deployed("cfg", host.Hash(config), host.Hash(config), false)},
		{name: "deploy garbage", run: func() (any, error) { return c.PluginDeploy(ctx, "cfg", []byte("junk"), nil) },
			sentinel: api.ErrInvalid, status: 400, field: "module"},
		{name: "deploy a bad manifest", run: func() (any, error) { return c.PluginDeploy(ctx, "cfg", config, []byte(`{"limitz": 1}`)) },
			sentinel: api.ErrInvalid, status: 400, field: "manifest"},
		{name: "rollback without an earlier version", run: func() (any, error) { return c.PluginRollback(ctx, "cfg", "") },
			sentinel: api.ErrInvalid, status: 400, field: "version"},
		{name: "deploy another version", run: func() (any, error) { return c.PluginDeploy(ctx, "cfg", echo, nil) },
			want: deployed("cfg", host.Hash(echo), host.Hash(config), true)},
		{name: "rollback", run: func() (any, error) { return c.PluginRollback(ctx, "cfg", "") },
			want: deployed("cfg", host.Hash(config), host.Hash(echo), true)},
		{name: "rollback to a version", run: func() (any, error) { return c.PluginRollback(ctx, "cfg", host.Hash(echo)) },
			want: deployed("cfg", host.Hash(echo), host.Hash(config), true)},
		{name: "rollback of an unknown plugin", run: func() (any, error) { return c.PluginRollback(ctx, "nope", "") },
			sentinel: api.ErrNotFound, status: 404},
		{name: "get an unknown plugin", run: func() (any, error) { return c.PluginGet(ctx, "nope") },
			sentinel: api.ErrNotFound, status: 404},
	}
	for _, st := range steps {
		got, err := st.run()
		if st.sentinel != nil {
			wantAPIError(t, st.name, err, st.sentinel, st.status, st.field)
			continue
		}
		if err != nil || got != st.want {
			t.Errorf("%s: %+v, %v; want %+v", st.name, got, err, st.want)
		}
	}

	// The manifest sent as a header arrived whole, UTF-8 included.
	if _, err := c.PluginRollback(ctx, "cfg", host.Hash(config)); err != nil {
		t.Fatal(err)
	}
	if p, err := b.reg.Resolve(ctx, "cfg"); err != nil || p.Config["greeting"] != "grüße" || p.Limits.Children != 4 {
		t.Errorf("cfg resolves to config %v limits %+v (%v), want the manifest's", p.Config, p.Limits, err)
	}
	info, err := c.PluginGet(ctx, "cfg")
	if err != nil || info.Active != host.Hash(config) || len(info.History) != 5 || info.History[0].Manifest == nil || info.History[0].Manifest.Config["greeting"] != "grüße" {
		t.Errorf("PluginGet: %+v, %v", info, err)
	}
	list, err := c.PluginList(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "cfg" || list[1].Name != "echo" {
		t.Errorf("PluginList: %+v, %v", list, err)
	}
}

func TestClientToken(t *testing.T) {
	t.Parallel()
	b := setup(t, api.Config{Token: "s3cret"})
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		token string
	}{
		{name: "no token", token: ""},
		{name: "wrong token", token: "guess"},
	} {
		c := api.NewClient(b.srv.URL, tc.token)
		_, err := c.TaskGet(ctx, "x")
		wantAPIError(t, tc.name+": TaskGet", err, api.ErrUnauthorized, 401, "")
		_, err = c.PluginDeploy(ctx, "x", module(t, "echo"), nil)
		wantAPIError(t, tc.name+": PluginDeploy", err, api.ErrUnauthorized, 401, "")
		_, err = c.EngineStatus(ctx)
		wantAPIError(t, tc.name+": EngineStatus", err, api.ErrUnauthorized, 401, "")
	}
	c := api.NewClient(b.srv.URL, "s3cret")
	if _, err := c.PluginDeploy(ctx, "x", module(t, "echo"), nil); err != nil {
		t.Errorf("PluginDeploy with the token: %v", err)
	}
	if _, err := c.Submit(ctx, api.TaskSpec{Handler: "x"}); err != nil {
		t.Errorf("Submit with the token: %v", err)
	}
}

func TestClientUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ln.Close()
	c := api.NewClient(base, "")
	ctx := context.Background()
	calls := []struct {
		name string
		call func() error
	}{
		{name: "TaskGet", call: func() error { _, err := c.TaskGet(ctx, "x"); return err }},
		{name: "Submit", call: func() error { _, err := c.Submit(ctx, api.TaskSpec{Handler: "x"}); return err }},
		{name: "PluginDeploy", call: func() error { _, err := c.PluginDeploy(ctx, "x", []byte("wasm"), nil); return err }},
		{name: "EngineStatus", call: func() error { _, err := c.EngineStatus(ctx); return err }},
	}
	for _, tc := range calls {
		err := tc.call()
		if !api.IsUnreachable(err) || !strings.Contains(err.Error(), base) || errors.Is(err, api.ErrNotFound) {
			t.Errorf("%s on a closed port: %v, want an UnreachableError naming %s", tc.name, err, base)
		}
	}
	if api.IsUnreachable(nil) || api.IsUnreachable(api.ErrNotFound) {
		t.Error("IsUnreachable holds for nil or an API error")
	}
}

func TestClientNonJSONError(t *testing.T) {
	t.Parallel()
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "upstream down", http.StatusBadGateway)
	}))
	defer proxy.Close()
	_, err := api.NewClient(proxy.URL, "").TaskGet(context.Background(), "x")
	var e *api.Error
	if !errors.As(err, &e) || e.Status != 502 || !strings.Contains(e.Message, "upstream down") || api.IsUnreachable(err) {
		t.Errorf("a 502 from a proxy: %#v, want an *api.Error with status 502 and the body", err)
	}
}

func TestNewClientDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct{ base, want string }{
		{base: "", want: "http://127.0.0.1:7070"},
		{base: "http://h:1/", want: "http://h:1"},
		{base: "http://h:1", want: "http://h:1"},
	}
	for _, tc := range tests {
		if got := api.NewClient(tc.base, "").BaseURL; got != tc.want {
			t.Errorf("NewClient(%q).BaseURL = %q, want %q", tc.base, got, tc.want)
		}
	}
}
