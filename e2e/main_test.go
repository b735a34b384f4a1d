package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/internal/testnet"
)

// raceEnabled is set by race_test.go; the server binary is then built with
// -race too, and a data race it reports fails the test that ran it.
var raceEnabled bool

// binPath is the wasmtask binary TestMain builds.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wasmtask-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "wasmtask")
	if err := writeTestCert(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: test certificate:", err)
		os.Exit(1)
	}
	args := []string{"build", "-o", binPath}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/wasmtask/wasmtask/cmd/wasmtask")
	build := exec.Command("go", args...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go %s: %v\n", strings.Join(args, " "), err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	if raceEnabled && !strings.Contains(os.Getenv("GORACE"), "atexit_sleep_ms") {
		// A -race binary sleeps a second when it exits (atexit_sleep_ms=1000)
		// so that goroutines still running can report races: a second of
		// every CLI call and every stop, hundreds of seconds in all. A tenth
		// of it keeps that window; races found earlier are reported as
		// they happen (and fail the test that ran the process).
		os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=100"))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// module returns the bytes of testdata/NAME.wasm.
func module(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hostModule returns the bytes of ../host/testdata/NAME.wasm.
func hostModule(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "host", "testdata", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// syncBuffer collects a process's stderr.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serverOpts configure startServer; zero values are defaults.
type serverOpts struct {
	dataDir string // default: a new t.TempDir()
	plugins string // --plugins
	token   string // --token
	tls     bool   // --tls-cert/--tls-key with the suite's certificate (always with WASMTASK_E2E_TLS=1)
	workers int    // --workers (default 4)
	// scheduleOnly: --workers 0 (remote workers run every attempt).
	scheduleOnly bool
	extra        []string
	bin          string   // the binary to run (default binPath)
	env          []string // KEY=VALUE added to the environment
}

// server is a `wasmtask serve` subprocess.
type server struct {
	t      testing.TB
	opts   serverOpts
	cmd    *exec.Cmd
	log    *syncBuffer
	logs   []*syncBuffer // of every start, for the race check
	exited chan struct{}
	exit   error
	URL    string
	client *api.Client
}

// startServer starts `wasmtask serve` on a free loopback port and waits for its
// "listening" line. The process is killed when the test ends if it is still
// running; a data race it reported fails the test.
func startServer(t testing.TB, opts serverOpts) *server {
	t.Helper()
	if opts.dataDir == "" {
		opts.dataDir = t.TempDir()
	}
	if opts.workers == 0 {
		opts.workers = 4
	}
	s := &server{t: t, opts: opts}
	s.start()
	t.Cleanup(func() {
		s.kill()
		for _, l := range s.logs {
			if strings.Contains(l.String(), "DATA RACE") {
				t.Errorf("the server reported a data race:\n%s", l.String())
			}
		}
		if t.Failed() {
			t.Logf("server log (last start):\n%s", tail(s.log.String(), 4000))
		}
	})
	return s
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func (s *server) start() {
	t := s.t
	t.Helper()
	workers := s.opts.workers
	if s.opts.scheduleOnly {
		workers = 0
	}
	// A port outside the ephemeral range (testnet), so that a restart can
	// bind it again: remote workers and clients find the server there.
	addr := testnet.Addr(t)
	if s.URL != "" { // a restart
		addr = strings.TrimPrefix(strings.TrimPrefix(s.URL, "http://"), "https://")
	}
	args := []string{"serve", "--data-dir", s.opts.dataDir, "--addr", addr, "--workers", fmt.Sprint(workers)}
	if s.opts.plugins != "" {
		args = append(args, "--plugins", s.opts.plugins)
	}
	if s.opts.token != "" {
		args = append(args, "--token", s.opts.token)
	}
	if s.opts.tls || allTLS() {
		args = append(args, "--tls-cert", tlsCert, "--tls-key", tlsKey)
	}
	args = append(args, s.opts.extra...)
	s.log = &syncBuffer{}
	s.logs = append(s.logs, s.log)
	bin := binPath
	if s.opts.bin != "" {
		bin = s.opts.bin
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	// WASMTASK_CA: a cluster node trusts the others' certificate (the
	// suite's) for its joins and forwarded requests, as --ca would say.
	s.cmd.Env = append(append(os.Environ(), "WASMTASK_TOKEN=", "WASMTASK_SERVER=", "WASMTASK_CA="+tlsCert), s.opts.env...)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func() {
		s.exit = s.cmd.Wait()
		close(s.exited)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, rest, ok := strings.Cut(s.log.String(), "listening: addr="); ok {
			s.URL, _, _ = strings.Cut(rest, " ")
			s.URL = strings.TrimSpace(s.URL)
			break
		}
		select {
		case <-s.exited:
			t.Fatalf("wasmtask serve exited before listening (%v):\n%s", s.exit, s.log.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("wasmtask serve did not log its address within a minute:\n%s", s.log.String())
		}
	}
	s.client = api.NewClient(s.URL, s.opts.token)
	if err := s.client.TrustCA(tlsCert); err != nil {
		t.Fatal(err)
	}
}

// running reports whether the process is still alive.
func (s *server) running() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the process to go.
func (s *server) kill() {
	if s.cmd == nil || !s.running() {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
}

// stop sends SIGTERM and returns the exit code once the process is gone.
func (s *server) stop(timeout time.Duration) int {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	select {
	case <-s.exited:
	case <-time.After(timeout):
		s.kill()
		s.t.Fatalf("the server did not exit within %v of SIGTERM", timeout)
	}
	return s.cmd.ProcessState.ExitCode()
}

// restart starts a new process on the same data directory.
func (s *server) restart() {
	s.t.Helper()
	s.kill()
	s.start()
}

// cliResult is what a CLI invocation printed and returned.
type cliResult struct {
	stdout, stderr string
	code           int
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// runCLI runs the wasmtask binary with env (KEY=VALUE) added.
func runCLI(t testing.TB, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(append(os.Environ(), "WASMTASK_TOKEN=", "WASMTASK_SERVER=", "WASMTASK_CA="+tlsCert), env...)
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run wasmtask %v: %v", args, err)
	}
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}

// cli runs the wasmtask binary against this server (WASMTASK_SERVER and
// WASMTASK_TOKEN set).
func (s *server) cli(args ...string) cliResult {
	s.t.Helper()
	return runCLI(s.t, []string{"WASMTASK_SERVER=" + s.URL, "WASMTASK_TOKEN=" + s.opts.token}, args...)
}

// mustCLI runs the CLI and fails the test unless it exits with want.
func (s *server) mustCLI(want int, args ...string) cliResult {
	s.t.Helper()
	r := s.cli(args...)
	if r.code != want {
		s.t.Fatalf("wasmtask %s: want exit %d, got %s", strings.Join(args, " "), want, r)
	}
	return r
}

// deploy deploys a module through the API and returns its version.
func (s *server) deploy(name string, wasm []byte) string {
	s.t.Helper()
	res, err := s.client.PluginDeploy(context.Background(), name, wasm, nil)
	if err != nil {
		s.t.Fatalf("deploy %s: %v", name, err)
	}
	return res.Version
}

// httpResult is a raw HTTP response.
type httpResult struct {
	status int
	header http.Header
	body   []byte
}

// errorBody is the API's error shape.
type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field"`
}

// apiError decodes the error body strictly: exactly {"error": {code,
// message[, field]}}, code and message non-empty.
func (r httpResult) apiError(t testing.TB) errorBody {
	t.Helper()
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &outer); err != nil || len(outer) != 1 || outer["error"] == nil {
		t.Fatalf("HTTP %d: want {\"error\": {...}}, got %s", r.status, r.body)
	}
	var inner map[string]any
	if err := json.Unmarshal(outer["error"], &inner); err != nil {
		t.Fatalf("HTTP %d: error is not an object: %s", r.status, r.body)
	}
	for k := range inner {
		if k != "code" && k != "message" && k != "field" {
			t.Errorf("HTTP %d: unexpected key %q in the error: %s", r.status, k, r.body)
		}
	}
	var e errorBody
	json.Unmarshal(outer["error"], &e)
	if e.Code == "" || e.Message == "" {
		t.Errorf("HTTP %d: error without code or message: %s", r.status, r.body)
	}
	return e
}

var httpClient = &http.Client{Timeout: time.Minute}

// do sends a raw request; body may be nil, a []byte, a string or a value
// to encode as JSON. The server's token is sent unless token is "-"; pass
// another token to override it.
func (s *server) do(method, path string, body any, token ...string) httpResult {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	tok := s.opts.token
	if len(token) > 0 {
		tok = token[0]
	}
	if tok != "" && tok != "-" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return httpResult{status: resp.StatusCode, header: resp.Header, body: b}
}

// view decodes a task view from a response.
func (r httpResult) view(t testing.TB) api.TaskView {
	t.Helper()
	var v api.TaskView
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("HTTP %d: not a task view: %v: %s", r.status, err, r.body)
	}
	return v
}

// waitFor polls cond every 20ms until it holds or timeout passes: for
// process-level checks that have no wait endpoint (a watched folder, a
// restart).
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFinal long-polls the task until it is final.
func (s *server) waitFinal(id string, timeout time.Duration) api.TaskView {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		v, err := s.client.TaskWait(ctx, id, timeout)
		if err != nil {
			s.t.Fatalf("wait %s: %v", id, err)
		}
		if isFinal(v.State) {
			return v
		}
		if ctx.Err() != nil {
			s.t.Fatalf("task %s is still %s after %v", id, v.State, timeout)
		}
	}
}

func isFinal(state string) bool {
	return state == "completed" || state == "failed" || state == "canceled"
}

// attempts flattens a task's attempts.
func attempts(v api.TaskView) []api.AttemptView {
	var out []api.AttemptView
	for _, r := range v.Runs {
		out = append(out, r.Attempts...)
	}
	return out
}

// freePort returns a TCP port nothing listens on (for "unreachable").
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
