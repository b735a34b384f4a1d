package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/plugins"
)

// TestCLITasks drives submit, get, list, wait and cancel through the
// binary and checks stdout and the exit codes of docs/cli.md.
func TestCLITasks(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	s.mustCLI(0, "plugin", "deploy", "echo", "../host/testdata/echo.wasm")
	s.mustCLI(0, "plugin", "deploy", "fail", "../host/testdata/fail.wasm")

	// submit prints the id; get shows it.
	r := s.mustCLI(0, "submit", "echo", "--input", "hello")
	id := strings.TrimSpace(r.stdout)
	if id == "" || strings.ContainsAny(id, " \n\t") {
		t.Fatalf("submit: want a task id on stdout, got %q", r.stdout)
	}
	s.waitFinal(id, 30*time.Second)
	r = s.mustCLI(0, "get", id)
	if !strings.HasPrefix(r.stdout, "task "+id+"  completed  handler=echo") || !strings.Contains(r.stdout, "output: HELLO\n") ||
		!regexp.MustCompile(`attempt 1  ok  module=sha256:`).MatchString(r.stdout) {
		t.Errorf("get %s:\n%s", id, r.stdout)
	}
	var v api.TaskView
	r = s.mustCLI(0, "get", id, "--json")
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.ID != id || v.State != "completed" {
		t.Errorf("get --json: %v %+v", err, v)
	}

	// submit --wait prints the final task; exit 0 only when it completed.
	r = s.mustCLI(0, "submit", "echo", "--input", "wait for it", "--id", "c1", "--wait")
	if !strings.HasPrefix(r.stdout, "task c1  completed") || !strings.Contains(r.stdout, "output: WAIT FOR IT") {
		t.Errorf("submit --wait:\n%s", r.stdout)
	}
	// The same spec again is a no-op that prints the same id.
	if r := s.mustCLI(0, "submit", "echo", "--input", "wait for it", "--id", "c1"); strings.TrimSpace(r.stdout) != "c1" {
		t.Errorf("identical resubmit: %q", r.stdout)
	}
	r = s.mustCLI(1, "submit", "echo", "--input", "changed", "--id", "c1")
	if !strings.Contains(r.stderr, "different spec") {
		t.Errorf("conflicting resubmit: %s", r)
	}
	r = s.mustCLI(1, "submit", "fail", "--input", "0", "--wait")
	if !strings.Contains(r.stdout, "failed") || !strings.Contains(r.stdout, "permanent: bad input") || !strings.Contains(r.stderr, "did not complete") {
		t.Errorf("submit --wait of a failing task: %s", r)
	}
	r = s.mustCLI(1, "submit", "fail", "--input", "1", "--max-attempts", "2", "--backoff", "fixed:10ms", "--wait", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.State != "failed" || len(attempts(v)) != 2 || !attempts(v)[0].Retryable {
		t.Errorf("retryable failure, 2 attempts: %v %s", err, r.stdout)
	}

	// Invalid requests: exit 2 with a message naming the field.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"submit", "nope"}, `handler: no plugin named "nope"`},
		{[]string{"submit", "echo", "--timeout", "xx"}, "timeout"},
		{[]string{"submit", "echo", "--max-attempts", "1000"}, "max_attempts"},
		{[]string{"submit", "echo", "--backoff", "fixed:later"}, "backoff.base"},
		{[]string{"list", "--state", "done"}, "state"},
		{[]string{"list", "--limit", "5000"}, "limit"},
		{[]string{"plugin", "deploy", "bad", "../host/testdata/unknownimport.wasm"}, "wasmtask_v1.fetch"},
	} {
		r := s.cli(tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("wasmtask %s: want exit 2 naming %q, got %s", strings.Join(tc.args, " "), tc.want, r)
		}
	}
	// Usage errors: exit 2.
	for _, args := range [][]string{
		{"submit"},
		{"submit", "a", "b"},
		{"submit", "echo", "--every", "1s"},
		{"submit", "echo", "--no-such-flag"},
		{"get"},
		{"cancel"},
		{"wait"},
		{"plugin", "deploy", "x"},
		{"plugin", "rollback"},
		{"no-such-command"},
	} {
		if r := s.cli(args...); r.code != 2 {
			t.Errorf("wasmtask %s: want exit 2 (usage), got %s", strings.Join(args, " "), r)
		}
	}
	// Failed operations: exit 1.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "nope"}, "not found"},
		{[]string{"cancel", "nope"}, "not found"},
		{[]string{"wait", "nope"}, "not found"},
		{[]string{"plugin", "rollback", "nope"}, "nope"},
		{[]string{"plugin", "deploy", "x", "no-such-file.wasm"}, "no-such-file.wasm"},
	} {
		r := s.cli(tc.args...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("wasmtask %s: want exit 1 mentioning %q, got %s", strings.Join(tc.args, " "), tc.want, r)
		}
	}

	// wait on several tasks: one line each; exit 1 when one did not complete.
	ok1 := strings.TrimSpace(s.mustCLI(0, "submit", "echo", "--input", "a").stdout)
	ok2 := strings.TrimSpace(s.mustCLI(0, "submit", "echo", "--input", "b").stdout)
	bad := strings.TrimSpace(s.mustCLI(0, "submit", "fail", "--input", "0").stdout)
	r = s.mustCLI(0, "wait", ok1, ok2)
	if r.stdout != ok1+"\tcompleted\n"+ok2+"\tcompleted\n" {
		t.Errorf("wait %s %s: %q", ok1, ok2, r.stdout)
	}
	r = s.mustCLI(1, "wait", ok1, bad)
	if !strings.Contains(r.stdout, bad+"\tfailed") || !strings.Contains(r.stderr, "1 of 2 tasks did not complete") {
		t.Errorf("wait with a failed task: %s", r)
	}

	// list, newest first, with a cursor line.
	r = s.mustCLI(0, "list", "--limit", "2")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") || !strings.HasPrefix(lines[1], bad+" ") || !strings.HasPrefix(lines[2], ok2+" ") {
		t.Fatalf("list --limit 2:\n%s", r.stdout)
	}
	cursor, ok := strings.CutPrefix(lines[3], "more: wasmtask list --cursor ")
	if !ok || cursor != ok2 {
		t.Fatalf("list --limit 2: last line %q", lines[3])
	}
	r = s.mustCLI(0, "list", "--limit", "1", "--cursor", cursor)
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) < 2 || !strings.HasPrefix(lines[1], ok1+" ") {
		t.Errorf("list --cursor %s:\n%s", cursor, r.stdout)
	}
	var list api.TaskList
	r = s.mustCLI(0, "list", "--handler", "fail", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list.Tasks) != 3 {
		t.Errorf("list --handler fail --json: %v, %d tasks", err, len(list.Tasks))
	}

	// cancel a task that cannot start (the engine is paused).
	s.mustCLI(0, "engine", "pause")
	held := strings.TrimSpace(s.mustCLI(0, "submit", "echo", "--input", "never").stdout)
	r = s.mustCLI(0, "cancel", held)
	if r.stdout != held+"\tcanceled\n" {
		t.Errorf("cancel: %q", r.stdout)
	}
	s.mustCLI(0, "engine", "resume")
	r = s.mustCLI(1, "wait", held)
	if !strings.Contains(r.stdout, "canceled") {
		t.Errorf("wait on a canceled task: %s", r)
	}
	if v := s.waitFinal(held, 30*time.Second); v.State != "canceled" || len(attempts(v)) != 0 {
		t.Errorf("canceled task: %s with %d attempts", v.State, len(attempts(v)))
	}
}

// TestCLIUnreachable checks exit 3 when no server listens.
func TestCLIUnreachable(t *testing.T) {
	t.Parallel()
	env := []string{"WASMTASK_SERVER=http://" + freePort(t)}
	for _, args := range [][]string{
		{"submit", "echo", "--input", "x"},
		{"get", "x"},
		{"list"},
		{"wait", "x"},
		{"cancel", "x"},
		{"plugin", "list"},
		{"plugin", "deploy", "echo", "../host/testdata/echo.wasm"},
		{"plugin", "rollback", "echo"},
		{"engine", "status"},
	} {
		r := runCLI(t, env, args...)
		if r.code != 3 || !strings.Contains(r.stderr, "cannot reach the wasmtask server") {
			t.Errorf("wasmtask %s: want exit 3, got %s", strings.Join(args, " "), r)
		}
	}
	// --server overrides the environment.
	if r := runCLI(t, nil, "list", "--server", "http://"+freePort(t)); r.code != 3 {
		t.Errorf("list --server: %s", r)
	}
}

// TestCLIPlugins deploys, lists and rolls back through the CLI.
func TestCLIPlugins(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	r := s.mustCLI(0, "plugin", "deploy", "p", "../host/testdata/echo.wasm")
	m := regexp.MustCompile(`^p (sha256:[0-9a-f]{64}) \(activated\)\n$`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("plugin deploy: %q", r.stdout)
	}
	v1 := m[1]
	if r := s.mustCLI(0, "plugin", "deploy", "p", "../host/testdata/echo.wasm"); r.stdout != "p "+v1+" (already active)\n" {
		t.Errorf("redeploy: %q", r.stdout)
	}
	r = s.mustCLI(0, "plugin", "deploy", "p", "testdata/swap_v1.wasm", "--json")
	var dep struct{ Name, Version, Previous string }
	if err := json.Unmarshal([]byte(r.stdout), &dep); err != nil || dep.Previous != v1 || dep.Version == v1 {
		t.Fatalf("plugin deploy --json: %v %s", err, r.stdout)
	}
	v2 := dep.Version
	r = s.mustCLI(0, "plugin", "list")
	if !regexp.MustCompile(`(?m)^p +` + v2 + ` +handler +2 *$`).MatchString(r.stdout) {
		t.Errorf("plugin list:\n%s", r.stdout)
	}
	// A rejected module leaves v2 active and shows as the last error.
	r = s.mustCLI(2, "plugin", "deploy", "p", "../host/testdata/nohandle.wasm")
	if !strings.Contains(r.stderr, "wasmtask_handle") {
		t.Errorf("deploy nohandle: %s", r)
	}
	r = s.mustCLI(0, "plugin", "list")
	if !strings.Contains(r.stdout, v2) || !strings.Contains(r.stdout, "wasmtask_handle") {
		t.Errorf("plugin list after a rejected deploy:\n%s", r.stdout)
	}
	r = s.mustCLI(0, "plugin", "rollback", "p")
	if r.stdout != "p "+v1+" (active; was "+v2+")\n" {
		t.Errorf("plugin rollback: %q", r.stdout)
	}
	r = s.mustCLI(0, "submit", "p", "--input", "back on v1", "--wait", "--json")
	var v api.TaskView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || *v.Output != "BACK ON V1" || attempts(v)[0].Module != v1 {
		t.Errorf("task after rollback: %v %s", err, r.stdout)
	}
	r = s.mustCLI(0, "plugin", "rollback", "p", "--version", v2)
	if r.stdout != "p "+v2+" (active; was "+v1+")\n" {
		t.Errorf("plugin rollback --version: %q", r.stdout)
	}
}

// TestCLISpecOptions checks the submit flags that shape the spec: binary
// input from a file, repeat, labels, priority, not_before (through the API).
func TestCLISpecOptions(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	s.mustCLI(0, "plugin", "deploy", "raw", "../host/testdata/bench.wasm") // echoes its input as is
	bin := filepath.Join(t.TempDir(), "in.bin")
	data := []byte{0xff, 0x00, 0xfe, 'a'}
	if err := os.WriteFile(bin, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r := s.mustCLI(0, "submit", "raw", "--input-file", bin, "--wait", "--json")
	var v api.TaskView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.OutputB64 == nil || v.Output != nil {
		t.Fatalf("binary input: %v %s", err, r.stdout)
	}
	if got, _ := base64.StdEncoding.DecodeString(*v.OutputB64); !bytes.Equal(got, data) {
		t.Errorf("binary round trip: %x, want %x", got, data)
	}
	if r := s.mustCLI(0, "get", v.ID); !strings.Contains(r.stdout, "output_b64: "+*v.OutputB64) {
		t.Errorf("get of a binary output:\n%s", r.stdout)
	}

	r = s.mustCLI(0, "submit", "raw", "--input", "again", "--repeat", "3", "--every", "20ms", "--label", "team=e2e", "--priority", "5", "--wait", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatal(err)
	}
	if v.State != "completed" || len(v.Runs) != 3 || v.Labels["team"] != "e2e" || v.Priority != 5 {
		t.Errorf("repeat 3, label, priority: %s, %d runs, labels %v, priority %d", v.State, len(v.Runs), v.Labels, v.Priority)
	}
	for i, run := range v.Runs {
		if run.Index != i+1 || run.State != "completed" || len(run.Attempts) != 1 {
			t.Errorf("run %d: %+v", i+1, run)
		}
	}
	if r := s.cli("submit", "raw", "--label", "novalue"); r.code != 2 {
		t.Errorf("--label without =: %s", r)
	}

	notBefore := time.Now().Add(700 * time.Millisecond).UTC()
	res := s.do("POST", "/v1/tasks", map[string]any{"id": "later", "handler": "raw", "not_before": notBefore.Format(time.RFC3339Nano)})
	if res.status != 201 {
		t.Fatalf("not_before: %d %s", res.status, res.body)
	}
	v = s.waitFinal("later", 30*time.Second)
	started, err := time.Parse(time.RFC3339Nano, attempts(v)[0].StartedAt)
	if err != nil || v.State != "completed" || started.Before(notBefore.Truncate(time.Millisecond)) {
		t.Errorf("not_before %s: %s, started %v (%v)", notBefore, v.State, started, err)
	}
}

// TestCLINotBefore: submit --at and --delay set not_before (the run is due
// then), they exclude each other, and the README's workflow works as
// written: a delayed task gets a prerequisite added before it starts.
func TestCLINotBefore(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	s.mustCLI(0, "plugin", "deploy", "raw", "../host/testdata/bench.wasm")
	dueOf := func(id string) time.Time {
		t.Helper()
		var v api.TaskView
		if err := json.Unmarshal([]byte(s.mustCLI(0, "get", id, "--json").stdout), &v); err != nil {
			t.Fatal(err)
		}
		if len(v.Runs) != 1 || v.Runs[0].State != "scheduled" {
			t.Fatalf("%s: runs %+v, want one scheduled run", id, v.Runs)
		}
		due, err := time.Parse(time.RFC3339Nano, v.Runs[0].DueAt)
		if err != nil {
			t.Fatal(err)
		}
		return due
	}

	// The README: fetch, build after fetch, publish delayed, then after build.
	s.mustCLI(0, "submit", "raw", "--id", "fetch", "--input", "a")
	s.mustCLI(0, "submit", "raw", "--id", "build", "--input", "b", "--after", "fetch")
	before := time.Now()
	s.mustCLI(0, "submit", "raw", "--id", "publish", "--input", "c", "--delay", "1m")
	if due := dueOf("publish"); due.Before(before.Add(time.Minute-time.Second)) || due.After(time.Now().Add(time.Minute+time.Second)) {
		t.Errorf("--delay 1m: due %s, want a minute after %s", due, before)
	}
	s.mustCLI(0, "after", "publish", "build")
	var v api.TaskView
	json.Unmarshal([]byte(s.mustCLI(0, "get", "publish", "--json").stdout), &v)
	if len(v.After) != 1 || v.After[0] != "build" {
		t.Errorf("publish after `after publish build`: after = %v", v.After)
	}

	at := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	s.mustCLI(0, "submit", "raw", "--id", "at", "--at", at.Format(time.RFC3339Nano))
	if due := dueOf("at"); !due.Equal(at) {
		t.Errorf("--at %s: due %s", at, due)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{name: "both", args: []string{"--at", at.Format(time.RFC3339), "--delay", "1s"}, want: "--at or --delay"},
		{name: "bad time", args: []string{"--at", "tomorrow"}, want: "RFC 3339"},
		{name: "negative delay", args: []string{"--delay", "-1s"}, want: "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.cli(append([]string{"submit", "raw"}, tc.args...)...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("want exit 2 naming %q, got %s", tc.want, r)
			}
		})
	}
}

// TestCLIViews: through the binary, a --timeout above serve's --max-timeout
// is reported as clamped by submit and shown by get; a task blocked on a
// prerequisite shows as blocked with what it waits for.
func TestCLIViews(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{extra: []string{"--max-timeout", "1m"}})
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "slow.wasm"), hostModule(t, "echo"))
	mustWrite(t, filepath.Join(dir, "slow.json"), []byte(`{"limits": {"timeout": "1h"}}`))
	s.mustCLI(0, "plugin", "deploy", "slow", filepath.Join(dir, "slow.wasm"))

	r := s.mustCLI(0, "submit", "slow", "--id", "long", "--timeout", "2h", "--delay", "1h")
	if !strings.Contains(r.stderr, "clamped to 1m0s by the server's --max-timeout") {
		t.Errorf("submit --timeout 2h on a server with --max-timeout 1m does not say it was clamped:\n%s", r)
	}
	if r := s.mustCLI(0, "get", "long"); !strings.Contains(r.stdout, "timeout: 2h0m0s, attempts get 1m0s (clamped to 1m0s by the server's --max-timeout)") {
		t.Errorf("get of the clamped task:\n%s", r.stdout)
	}
	if r := s.mustCLI(0, "submit", "slow", "--timeout", "20s", "--delay", "1h"); r.stderr != "" {
		t.Errorf("a timeout within the limits gets a note:\n%s", r)
	}

	s.mustCLI(0, "submit", "slow", "--id", "blocked", "--after", "long")
	r = s.mustCLI(0, "get", "blocked")
	for _, want := range []string{"after: long  (blocked: waiting for long)", "run blocked#1  blocked\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("get of a blocked task lacks %q:\n%s", want, r.stdout)
		}
	}
}

// TestCLIConsistency: engine commands print text and JSON with --json; an
// unknown flag is one line on stderr and exit 2; plugin list NAME lists
// only NAME (an unknown one is an error) and VERSIONS counts versions, not
// activations.
func TestCLIConsistency(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	dir := t.TempDir()
	v1, v2 := filepath.Join(dir, "v1.wasm"), filepath.Join(dir, "v2.wasm")
	mustWrite(t, v1, module(t, "swap_v1"))
	mustWrite(t, v2, module(t, "swap_v2"))
	s.mustCLI(0, "plugin", "deploy", "sw", v1)
	s.mustCLI(0, "plugin", "deploy", "sw", v2)
	s.mustCLI(0, "plugin", "rollback", "sw") // v1 again: 3 activations, 2 versions
	s.mustCLI(0, "plugin", "deploy", "other", v2)

	t.Run("engine", func(t *testing.T) {
		tests := []struct {
			args       []string
			wantText   string
			wantPaused bool
		}{
			{args: []string{"engine", "status"}, wantText: "engine: running\n"},
			{args: []string{"engine", "pause"}, wantText: "engine: paused", wantPaused: true},
			{args: []string{"engine", "status"}, wantText: "engine: paused", wantPaused: true},
			{args: []string{"engine", "resume"}, wantText: "engine: running\n"},
		}
		for _, tc := range tests {
			r := s.mustCLI(0, tc.args...)
			if !strings.HasPrefix(r.stdout, tc.wantText) || !strings.Contains(r.stdout, "\nruns: ") || strings.Contains(r.stdout, "{") {
				t.Errorf("%v: want text starting %q:\n%s", tc.args, tc.wantText, r.stdout)
			}
			var st api.EngineStatus
			r = s.mustCLI(0, append([]string{"engine", "status"}, "--json")...)
			if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.Paused != tc.wantPaused {
				t.Errorf("engine status --json after %v: paused %v (%v), want %v:\n%s", tc.args, st.Paused, err, tc.wantPaused, r.stdout)
			}
		}
		r := s.mustCLI(0, "engine", "pause", "--json")
		var st api.EngineStatus
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || !st.Paused {
			t.Errorf("engine pause --json: %v\n%s", err, r.stdout)
		}
		s.mustCLI(0, "engine", "resume")
	})

	t.Run("unknown flag", func(t *testing.T) {
		for _, args := range [][]string{{"get", "x", "--bogus"}, {"plugin", "list", "--bogus"}, {"engine", "status", "--bogus"}, {"--bogus"}} {
			r := s.cli(args...)
			if r.code != 2 || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "unknown flag --bogus (see wasmtask") {
				t.Errorf("wasmtask %v: want exit 2 and one line naming the flag and the help, got %s", args, r)
			}
		}
	})

	t.Run("plugin list NAME", func(t *testing.T) {
		r := s.mustCLI(0, "plugin", "list", "sw")
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 2 || !regexp.MustCompile(`^sw +`+versionOf(module(t, "swap_v1"))+` +\S+ +2 *$`).MatchString(lines[1]) {
			t.Errorf("plugin list sw: want the header and sw at v1 with 2 versions:\n%s", r.stdout)
		}
		r = s.mustCLI(0, "plugin", "list")
		if !strings.Contains(r.stdout, "\nother ") || !strings.Contains(r.stdout, "\nsw ") {
			t.Errorf("plugin list:\n%s", r.stdout)
		}
		var info plugins.Info
		if err := json.Unmarshal([]byte(s.mustCLI(0, "plugin", "list", "sw", "--json").stdout), &info); err != nil || info.Name != "sw" {
			t.Errorf("plugin list sw --json: %v %+v", err, info)
		}
		if r := s.cli("plugin", "list", "nosuch"); r.code != 1 || !strings.Contains(r.stderr, `"nosuch"`) {
			t.Errorf("plugin list of an unknown plugin: want exit 1 naming it, got %s", r)
		}
	})

	t.Run("unknown command", func(t *testing.T) {
		for _, args := range [][]string{{"nosuch"}, {"plugin", "nosuch"}, {"engine", "stat"}} {
			r := s.cli(args...)
			if r.code != 2 || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "unknown command") {
				t.Errorf("wasmtask %v: want exit 2 and one line, got %s", args, r)
			}
		}
	})

	t.Run("recovered logged once", func(t *testing.T) {
		if n := strings.Count(s.log.String(), "recovered:"); n != 1 {
			t.Errorf("the server logged recovery %d times, want once:\n%s", n, s.log.String())
		}
	})

	t.Run("list --state help", func(t *testing.T) {
		if r := s.mustCLI(0, "list", "--help"); !strings.Contains(r.stdout, "waiting_children") {
			t.Errorf("list --help does not name waiting_children:\n%s", r.stdout)
		}
	})
}
