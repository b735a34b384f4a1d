package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/internal/servertest"
	"github.com/wasmtask/wasmtask/plugins"
)

// TestMain fails the package if a test leaves a goroutine behind: a
// long-poll wait that never returned, an engine or server not closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testBundle is a server over a real engine and registry on t.TempDir(),
// with the echo module deployed as "echo".
type testBundle struct {
	srv    *httptest.Server
	api    *api.Server
	engine *dispatch.Engine
	reg    *plugins.Registry
	echo   string // version of the echo plugin
}

var discard = servertest.Discard

// dispatchAll lists every task of an engine.
var dispatchAll = dispatch.ListFilter{Limit: 1 << 20}

// setup starts a server with cfg (Engine and Plugins are filled in); opts
// change the engine's config.
func setup(t testing.TB, cfg api.Config, opts ...func(*dispatch.Config)) *testBundle {
	t.Helper()
	s := servertest.Start(t, servertest.Options{API: cfg, Engine: func(c *dispatch.Config) {
		for _, o := range opts {
			o(c)
		}
	}})
	return &testBundle{srv: s.HTTP, api: s.API, engine: s.Engine, reg: s.Plugin, echo: s.Echo}
}

// module reads host/testdata/NAME.wasm.
func module(t testing.TB, name string) []byte {
	t.Helper()
	return servertest.Module(t, name)
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request. body is nil, []byte or string (sent as is), or a
// value sent as JSON; header is name, value pairs.
func (b *testBundle) do(t testing.TB, method, path string, body any, header ...string) response {
	t.Helper()
	var r io.Reader
	switch v := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(v)
	case string:
		r = strings.NewReader(v)
	default:
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, b.srv.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: out}
}

// decode decodes the body into v.
func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r response) view(t *testing.T) api.TaskView {
	t.Helper()
	var v api.TaskView
	r.decode(t, &v)
	return v
}

// apiError checks the error shape {"error": {"code", "message", "field"}}
// (field only when a field is at fault) and returns it.
func (r response) apiError(t *testing.T) api.Error {
	t.Helper()
	var raw map[string]map[string]any
	r.decode(t, &raw)
	inner, ok := raw["error"]
	if len(raw) != 1 || !ok {
		t.Fatalf("error body %s: want exactly {\"error\": {...}}", r.body)
	}
	for k, v := range inner {
		if s, isString := v.(string); !slices.Contains([]string{"code", "message", "field"}, k) || !isString || s == "" {
			t.Errorf("error body %s: unexpected member %q: %v", r.body, k, v)
		}
	}
	if inner["code"] == nil || inner["message"] == nil {
		t.Errorf("error body %s: want a code and a message", r.body)
	}
	var e struct{ Error api.Error }
	r.decode(t, &e)
	return e.Error
}

// keys returns the sorted member names of a JSON object body.
func (r response) keys(t *testing.T) []string {
	t.Helper()
	var m map[string]json.RawMessage
	r.decode(t, &m)
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func (b *testBundle) pause(t *testing.T) {
	t.Helper()
	if err := b.engine.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
}
