package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/dispatch"
)

// TestSubmitBusy: while the payload memory budget is taken, submissions
// (single and batch) get 429 with Retry-After and a message naming the
// flag, before their body is read and with nothing written; once it is
// free they are accepted, and the client resends a refused submission
// after the Retry-After by itself.
func TestSubmitBusy(t *testing.T) {
	const budget = 1 << 20
	b := setup(t, api.Config{}, func(c *dispatch.Config) { c.MaxPayloadMemory = budget })
	input := strings.Repeat("x", 10_000)
	spec := map[string]any{"handler": "echo", "input": input}

	// Another submission holds almost all of the budget.
	release, err := b.engine.AdmitPayload(budget - 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		body       any
	}{
		{"single", "/v1/tasks", spec},
		{"batch", "/v1/tasks/batch", map[string]any{"tasks": []any{spec}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := b.do(t, "POST", tc.path, tc.body)
			if r.status != 429 || r.header.Get("Retry-After") != "1" {
				t.Fatalf("status %d Retry-After %q (%s), want 429 with Retry-After: 1", r.status, r.header.Get("Retry-After"), r.body)
			}
			if e := r.apiError(t); e.Code != "busy" || !strings.Contains(e.Message, "--max-payload-memory") {
				t.Fatalf("error %+v, want code busy naming --max-payload-memory", e)
			}
		})
	}
	if n := len(b.engine.List(dispatchAll)); n != 0 {
		t.Fatalf("%d tasks after refused submissions, want 0", n)
	}
	if st := b.engine.PayloadStats(); st.Throttled != 2 || st.MemoryUsed != budget-1000 {
		t.Fatalf("stats %+v, want 2 throttled and %d bytes held", st, budget-1000)
	}

	// The client waits for the Retry-After and resends; the budget frees
	// meanwhile.
	go func() {
		time.Sleep(1500 * time.Millisecond)
		release()
	}()
	c := api.NewClient(b.srv.URL, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	in := input
	start := time.Now()
	res, err := c.Submit(ctx, api.TaskSpec{Handler: "echo", Input: &in})
	if err != nil {
		t.Fatalf("client submit after the budget freed: %v", err)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("the client got an answer after %v: it did not wait for the budget", waited)
	}
	v, err := c.TaskWait(ctx, res.Task.ID, 30*time.Second)
	if err != nil || v.State != "completed" || v.Output == nil || *v.Output != strings.ToUpper(input) {
		t.Fatalf("task after the retried submit: %v state %q", err, v.State)
	}

	// A submission larger than the whole budget is served alone.
	big := strings.Repeat("y", budget)
	r := b.do(t, "POST", "/v1/tasks", map[string]any{"handler": "echo", "input": big})
	if r.status != 201 {
		t.Fatalf("a submission larger than the budget with nothing else held: %d %s, want 201", r.status, r.body)
	}
	var bigView api.TaskView
	r.decode(t, &bigView)
	if v, err := c.TaskWait(ctx, bigView.ID, 30*time.Second); err != nil || v.State != "completed" || v.Output == nil || len(*v.Output) != budget {
		t.Fatalf("the large task: %v, state %q", err, v.State)
	}
	if used := b.engine.PayloadStats().MemoryUsed; used != 0 {
		t.Fatalf("%d bytes of payload memory held after the submissions ended, want 0", used)
	}
}
