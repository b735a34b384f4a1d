package api_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/plugins"
)

// TestViewTimeout: the view (and so the submit response) shows the
// task's timeout, the one an attempt actually gets, and which limit
// lowered it.
func TestViewTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, api.Config{})
	b.pause(t)
	ctx := context.Background()
	echo := module(t, "echo")
	for name, timeout := range map[string]string{"short": "10s", "long": "3h"} {
		if _, err := b.reg.Deploy(ctx, name, echo, &plugins.Manifest{Limits: plugins.ManifestLimits{Timeout: timeout}}, "test"); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name          string
		handler       string
		timeout       string // of the spec; "" for the default
		wantTimeout   string
		wantEffective string
		wantNote      string // a part of it; "" for none
	}{
		{name: "default timeout, default limit", handler: "echo", wantTimeout: "30s", wantEffective: "30s"},
		{name: "below the plugin's limit", handler: "short", timeout: "5s", wantTimeout: "5s", wantEffective: "5s"},
		{name: "above the manifest's limit", handler: "short", timeout: "1m", wantTimeout: "1m0s", wantEffective: "10s", wantNote: "lowered to 10s by plugin short's limits.timeout"},
		{name: "above the default limit", handler: "echo", timeout: "2h", wantTimeout: "2h0m0s", wantEffective: "30s", wantNote: "plugin echo's manifest can raise it with limits.timeout"},
		{name: "above --max-timeout", handler: "long", timeout: "2h", wantTimeout: "2h0m0s", wantEffective: "1h0m0s", wantNote: "clamped to 1h0m0s by the server's --max-timeout"},
		{name: "a pinned version", handler: "short@" + b.echo, timeout: "1m", wantTimeout: "1m0s", wantEffective: "30s", wantNote: "plugin short's manifest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := map[string]any{"handler": tc.handler}
			if tc.timeout != "" {
				spec["timeout"] = tc.timeout
			}
			if strings.Contains(tc.handler, "@") {
				// The pinned echo bytes were first deployed without a manifest.
				if _, err := b.reg.Deploy(ctx, "short", echo, nil, "test"); err != nil {
					t.Fatal(err)
				}
				defer b.reg.Deploy(ctx, "short", echo, &plugins.Manifest{Limits: plugins.ManifestLimits{Timeout: "10s"}}, "test")
			}
			r := b.do(t, "POST", "/v1/tasks", spec)
			if r.status != 201 {
				t.Fatalf("submit: %d %s", r.status, r.body)
			}
			for what, v := range map[string]api.TaskView{"submit": r.view(t), "get": b.do(t, "GET", "/v1/tasks/"+r.view(t).ID, nil).view(t)} {
				if v.Timeout != tc.wantTimeout || v.EffectiveTimeout != tc.wantEffective {
					t.Errorf("%s: timeout %q effective %q, want %q and %q", what, v.Timeout, v.EffectiveTimeout, tc.wantTimeout, tc.wantEffective)
				}
				if (tc.wantNote == "") != (v.TimeoutNote == "") || !strings.Contains(v.TimeoutNote, tc.wantNote) {
					t.Errorf("%s: timeout_note %q, want one with %q", what, v.TimeoutNote, tc.wantNote)
				}
			}
		})
	}
}

// TestViewBlocked: a task waiting for a prerequisite lists it in
// waiting_for until the prerequisite completed.
func TestViewBlocked(t *testing.T) {
	t.Parallel()
	b := setup(t, api.Config{})
	b.pause(t)
	for _, spec := range []string{
		`{"id": "fetch", "handler": "echo"}`,
		`{"id": "other", "handler": "echo"}`,
		`{"id": "build", "handler": "echo", "after": ["fetch", "other"]}`,
	} {
		if r := b.do(t, "POST", "/v1/tasks", spec); r.status != 201 {
			t.Fatalf("submit %s: %d %s", spec, r.status, r.body)
		}
	}
	if v := b.do(t, "GET", "/v1/tasks/build", nil).view(t); !slices.Equal(v.WaitingFor, []string{"fetch", "other"}) || v.Runs[0].State != "scheduled" {
		t.Errorf("build before its prerequisites ran: waiting_for %v, run %s; want [fetch other], scheduled", v.WaitingFor, v.Runs[0].State)
	}
	if v := b.do(t, "GET", "/v1/tasks/fetch", nil).view(t); v.WaitingFor != nil {
		t.Errorf("fetch waits for %v", v.WaitingFor)
	}
	if r := b.do(t, "POST", "/v1/engine/resume", nil); r.status != 200 {
		t.Fatal(r.status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := b.engine.Wait(ctx, "build")
	if err != nil || !v.Final() {
		t.Fatalf("build: %v %s", err, v.State)
	}
	if v := b.do(t, "GET", "/v1/tasks/build", nil).view(t); v.State != "completed" || v.WaitingFor != nil {
		t.Errorf("build once its prerequisites completed: %s, waiting_for %v", v.State, v.WaitingFor)
	}
}

// TestUnknownQueryParameter: a query parameter a route does not know is a
// 400 naming it, as an unknown body field is, not silently ignored.
func TestUnknownQueryParameter(t *testing.T) {
	t.Parallel()
	b := setup(t, api.Config{})
	if r := b.do(t, "POST", "/v1/tasks", `{"id": "a", "handler": "echo"}`); r.status != 201 {
		t.Fatal(r.status)
	}
	tests := []struct {
		path       string
		wantStatus int
		wantField  string
	}{
		{path: "/v1/tasks?sate=failed", wantStatus: 400, wantField: "sate"},
		{path: "/v1/tasks?state=failed&limt=5", wantStatus: 400, wantField: "limt"},
		{path: "/v1/tasks?state=failed&handler=echo&limit=5&label=a%3Db", wantStatus: 200},
		{path: "/v1/tasks/a/wait?timout=1s", wantStatus: 400, wantField: "timout"},
		{path: "/v1/tasks/a/wait?timeout=1ms", wantStatus: 200},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			r := b.do(t, "GET", tc.path, nil)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tc.wantStatus, r.body)
			}
			if tc.wantField == "" {
				return
			}
			if e := r.apiError(t); e.Code != "invalid" || e.Field != tc.wantField || !strings.Contains(e.Message, "unknown query parameter") {
				t.Errorf("error %+v, want an invalid %s naming the unknown parameter", e, tc.wantField)
			}
		})
	}
}
