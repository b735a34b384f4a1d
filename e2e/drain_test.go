package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
)

// TestSIGTERMDrains stops a busy server with SIGTERM: running attempts
// finish (none is lost), the process exits 0, and after a restart the
// rest of the queue completes.
func TestSIGTERMDrains(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	ctx := context.Background()
	s.deploy("flaky", module(t, "flaky"))
	specs := make([]api.TaskSpec, 300)
	for i := range specs {
		specs[i] = api.TaskSpec{ID: fmt.Sprintf("d%03d", i), Handler: "flaky", Input: ptr("spin")}
	}
	res, err := s.client.SubmitBatch(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Status != 201 {
			t.Fatalf("batch: %+v", r)
		}
	}
	// Stop once attempts are running and some have finished.
	var atStop api.EngineStatus
	waitFor(t, 30*time.Second, "attempts in flight", func() bool {
		atStop, err = s.client.EngineStatus(ctx)
		return err == nil && atStop.InFlight > 0 && atStop.Runs["completed"] > 0
	})
	if code := s.stop(30 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d", code)
	}
	log := s.log.String()
	for _, want := range []string{"shutting down: draining", "stopped"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log has no %q line", want)
		}
	}
	if strings.Contains(log, "drain timeout") {
		t.Errorf("the drain timed out")
	}

	s.start()
	t.Logf("SIGTERM with %d attempts in flight and %d of %d runs completed", atStop.InFlight, atStop.Runs["completed"], len(specs))
	for _, sp := range specs {
		v := s.waitFinal(sp.ID, time.Minute)
		a := attempts(v)
		if v.State != "completed" || len(a) != 1 || a[0].Outcome != "ok" {
			t.Errorf("task %s: %s, attempts %+v; want completed on its only attempt (no attempt lost by the drain)", v.ID, v.State, a)
		}
	}
	if st, err := s.client.EngineStatus(ctx); err != nil || st.Runs["completed"] != len(specs) {
		t.Errorf("completed runs after the restart: %d (%v), want %d", st.Runs["completed"], err, len(specs))
	}
}

// TestSIGTERMWithOpenWaits stops a server while clients long-poll tasks
// that cannot finish (the engine is paused): the waits are answered (503,
// the CLI exits 1 saying why) and the server exits at once, not after the
// HTTP shutdown grace.
func TestSIGTERMWithOpenWaits(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	ctx := context.Background()
	s.deploy("echo", hostModule(t, "echo"))
	if _, err := s.client.EnginePause(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.Submit(ctx, api.TaskSpec{ID: "held", Handler: "echo"}); err != nil {
		t.Fatal(err)
	}
	cliDone := make(chan cliResult, 1)
	go func() { cliDone <- runCLI(t, []string{"WASMTASK_SERVER=" + s.URL}, "wait", "held") }()
	apiDone := make(chan error, 1)
	go func() {
		_, err := s.client.TaskWait(ctx, "held", time.Minute)
		apiDone <- err
	}()
	// Both waits are open once the server counts two.
	waitFor(t, 30*time.Second, "two open waits", func() bool {
		st, err := s.client.EngineStatus(ctx)
		return err == nil && st.OpenWaits == 2
	})
	start := time.Now()
	if code := s.stop(30 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d", code)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("the server took %v to stop with open waits", el)
	}
	err := <-apiDone
	var e *api.Error
	if !errors.As(err, &e) || e.Status != 503 || !strings.Contains(e.Message, "shutting down") {
		t.Errorf("API wait during shutdown: %v, want 503 shutting down", err)
	}
	if r := <-cliDone; r.code != 1 || !strings.Contains(r.stderr, "shutting down") {
		t.Errorf("wasmtask wait during shutdown: %s", r)
	}
}

// TestServeRefuses checks that serve refuses a data directory in use by
// another server (exit 1 naming the lock) and bad flags (exit 2).
func TestServeRefuses(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	r := runCLI(t, nil, "serve", "--data-dir", s.opts.dataDir, "--addr", "127.0.0.1:0")
	if r.code != 1 || !strings.Contains(r.stderr, "locked by another process") {
		t.Errorf("a second serve on the same data dir: %s", r)
	}
	if r := s.cli("list"); r.code != 0 {
		t.Errorf("the first server after the refused second one: %s", r)
	}
	for _, args := range [][]string{
		{"serve", "--data-dir", t.TempDir(), "--workers", "-1"},
		{"serve", "--data-dir", t.TempDir(), "--worker-lease-timeout", "10ms"},
		{"serve", "--data-dir", t.TempDir(), "--no-such-flag"},
		{"serve", "extra-argument"},
	} {
		if r := runCLI(t, nil, args...); r.code != 2 {
			t.Errorf("wasmtask %s: want exit 2, got %s", strings.Join(args, " "), r)
		}
	}
	if r := runCLI(t, nil, "serve", "--data-dir", t.TempDir(), "--addr", strings.TrimPrefix(strings.TrimPrefix(s.URL, "https://"), "http://")); r.code != 1 || !strings.Contains(r.stderr, "listen") {
		t.Errorf("serve on a port in use: %s", r)
	}
}
