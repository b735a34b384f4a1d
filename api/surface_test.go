package api_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/dispatch"
)

// TestBatchLimits: a body over the batch limit is 413 whether its length
// is announced or not; JSON broken after a valid entry submits nothing.
// (The shared budget's 429: TestBatchBudget in batch_internal_test.go.)
func TestBatchLimits(t *testing.T) {
	t.Parallel()
	b := setup(t, api.Config{MaxTaskBytes: 256, MaxBatchBytes: 1024, BatchMemory: 1024})
	post := func(body io.Reader, contentLength int64) response {
		t.Helper()
		req, err := http.NewRequest("POST", b.srv.URL+"/v1/tasks/batch", body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = contentLength
		resp, err := b.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return response{status: resp.StatusCode, header: resp.Header, body: out}
	}

	small := `{"tasks": [{"id": "held", "handler": "echo"}]}`
	if r := post(strings.NewReader(small), int64(len(small))); r.status != 200 {
		t.Fatalf("batch within the limits: %d %s", r.status, r.body)
	}

	big := `{"tasks": [{"handler": "echo", "input": "` + strings.Repeat("x", 1100) + `"}]}`
	for _, tc := range []struct {
		name   string
		length int64
	}{{"announced", int64(len(big))}, {"chunked", -1}} {
		r := post(strings.NewReader(big), tc.length)
		if e := r.apiError(t); r.status != 413 || e.Code != "too_large" || !strings.Contains(e.Message, "1024 bytes") {
			t.Errorf("%s batch over the limit: %d %+v, want 413 naming 1024 bytes", tc.name, r.status, e)
		}
	}

	// JSON broken after a valid element: nothing is submitted.
	r := post(strings.NewReader(`{"tasks": [{"id": "early", "handler": "echo"}, {"id": `), -1)
	if r.status != 400 {
		t.Errorf("broken batch: %d %s, want 400", r.status, r.body)
	}
	if _, ok := b.engine.Task("early"); ok {
		t.Errorf("a task of a batch refused as invalid JSON was submitted")
	}
	if _, ok := b.engine.Task("held"); !ok {
		t.Errorf("the first batch's task is missing")
	}
}

// TestInputMustBeUTF8: "input" that is not valid UTF-8 (raw bytes or an
// escaped lone surrogate) is refused naming the field and input_b64,
// rather than silently turned into U+FFFD; valid text, escaped pairs
// included, is kept byte for byte.
func TestInputMustBeUTF8(t *testing.T) {
	t.Parallel()
	b := setup(t, api.Config{})
	b.pause(t)
	cases := []struct {
		name      string
		body      string
		wantField string // "" = accepted
		wantInput string
	}{
		{name: "raw invalid byte", body: "{\"handler\": \"echo\", \"input\": \"a\xffb\"}", wantField: "input"},
		{name: "cut multi-byte sequence", body: "{\"handler\": \"echo\", \"input\": \"\xe2\x82\"}", wantField: "input"},
		{name: "lone high surrogate", body: `{"handler": "echo", "input": "x\ud800y"}`, wantField: "input"},
		{name: "lone low surrogate", body: `{"handler": "echo", "input": "\udc00"}`, wantField: "input"},
		{name: "invalid label", body: "{\"handler\": \"echo\", \"labels\": {\"k\": \"\xc3\"}}", wantField: "labels"},
		{name: "escaped pair", body: `{"id": "pair", "handler": "echo", "input": "\ud83d\ude00 ok"}`, wantInput: "\U0001F600 ok"},
		{name: "escaped backslash before u", body: `{"id": "bs", "handler": "echo", "input": "\\ud800"}`, wantInput: `\ud800`},
		{name: "replacement character sent as such", body: `{"id": "fffd", "handler": "echo", "input": "\ufffd` + "\uFFFD" + `"}`, wantInput: "\uFFFD\uFFFD"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := b.do(t, "POST", "/v1/tasks", tc.body)
			if tc.wantField != "" {
				e := r.apiError(t)
				if r.status != 400 || e.Field != tc.wantField || !strings.Contains(e.Message, "not valid UTF-8") {
					t.Fatalf("%d %+v, want 400 naming %s as not valid UTF-8", r.status, e, tc.wantField)
				}
				if tc.wantField == "input" && !strings.Contains(e.Message, "input_b64") {
					t.Errorf("message %q does not suggest input_b64", e.Message)
				}
				return
			}
			if r.status != 201 {
				t.Fatalf("%d %s, want 201", r.status, r.body)
			}
			v, _ := b.engine.Task(dispatch.TaskID(r.view(t).ID))
			if string(v.Spec.Input) != tc.wantInput {
				t.Errorf("input %q, want %q", v.Spec.Input, tc.wantInput)
			}
		})
	}
	// In a batch, the entry is refused alone.
	r := b.do(t, "POST", "/v1/tasks/batch", "{\"tasks\": [{\"handler\": \"echo\", \"input\": \"\xff\"}, {\"id\": \"fine\", \"handler\": \"echo\"}]}")
	var out struct{ Results []api.BatchResult }
	r.decode(t, &out)
	if len(out.Results) != 2 || out.Results[0].Status != 400 || out.Results[0].Error.Field != "input" || out.Results[1].Status != 201 {
		t.Errorf("batch: %s, want the first entry refused naming input and the second created", r.body)
	}
}

// TestAttemptTimesInView: a 30 ms attempt (testdata spin.wasm) shows at
// least 30 ms between started_at and finished_at, measured where it ran,
// and leased_at, the tick that leased it, no later than started_at.
func TestAttemptTimesInView(t *testing.T) {
	t.Parallel()
	b := setup(t, api.Config{})
	if _, err := b.reg.Deploy(t.Context(), "spin", module(t, "spin"), nil, "test"); err != nil {
		t.Fatal(err)
	}
	r := b.do(t, "POST", "/v1/tasks", `{"id": "s", "handler": "spin"}`)
	if r.status != 201 {
		t.Fatalf("submit: %d %s", r.status, r.body)
	}
	v := b.do(t, "GET", "/v1/tasks/s/wait?timeout=30s", nil).view(t)
	if v.State != "completed" || len(v.Runs) != 1 || len(v.Runs[0].Attempts) != 1 {
		t.Fatalf("task: %+v", v)
	}
	a := v.Runs[0].Attempts[0]
	parse := func(name, s string) time.Time {
		t.Helper()
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatalf("%s %q: %v", name, s, err)
		}
		return ts
	}
	leased, started, finished := parse("leased_at", a.LeasedAt), parse("started_at", a.StartedAt), parse("finished_at", a.FinishedAt)
	if d := finished.Sub(started); d < 30*time.Millisecond {
		t.Errorf("started_at %s, finished_at %s: %v apart, want >= 30ms", a.StartedAt, a.FinishedAt, d)
	}
	if leased.After(started) {
		t.Errorf("leased_at %s after started_at %s", a.LeasedAt, a.StartedAt)
	}
}
