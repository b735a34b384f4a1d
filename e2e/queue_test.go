package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
)

// TestCLIRetryDeletePurge drives retry, delete, purge and list --label
// through the CLI and the API of the real binary, and checks that what
// they wrote survives kill -9.
func TestCLIRetryDeletePurge(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	s.mustCLI(0, "plugin", "deploy", "echo", "../host/testdata/echo.wasm")
	s.mustCLI(0, "plugin", "deploy", "fail", "../host/testdata/fail.wasm")
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)

	s.mustCLI(1, "submit", "fail", "--input", "0", "--id", "f1", "--label", "team=a", "--wait")
	s.mustCLI(1, "submit", "fail", "--input", "0", "--id", "f2", "--label", "team=b", "--wait")
	s.mustCLI(0, "submit", "echo", "--input", "ok", "--id", "ok1", "--label", "team=a", "--wait")
	if r := s.do("POST", "/v1/tasks", map[string]any{"id": "later", "handler": "echo", "input": "x", "not_before": later, "labels": map[string]string{"team": "a"}}); r.status != 201 {
		t.Fatalf("submit later: %d %s", r.status, r.body)
	}

	refused := []struct {
		args     []string
		wantCode int
		wantErr  string
	}{
		{args: []string{"retry", "later"}, wantCode: 1, wantErr: "task later is pending; only a failed or canceled task can be retried"},
		{args: []string{"retry", "ok1"}, wantCode: 1, wantErr: "task ok1 is completed"},
		{args: []string{"retry", "nope"}, wantCode: 1, wantErr: "nope"},
		{args: []string{"delete", "later"}, wantCode: 1, wantErr: "only a final task can be deleted (cancel it first)"},
		{args: []string{"delete", "nope"}, wantCode: 1, wantErr: "nope"},
		{args: []string{"retry"}, wantCode: 2, wantErr: "retry needs exactly one task ID"},
		{args: []string{"purge"}, wantCode: 2, wantErr: "give --all"},
		{args: []string{"purge", "--state", "pending"}, wantCode: 2, wantErr: "only final tasks are purged"},
		{args: []string{"list", "--label", "team"}, wantCode: 2, wantErr: "want KEY=VALUE"},
	}
	for _, tc := range refused {
		if r := s.cli(tc.args...); r.code != tc.wantCode || !strings.Contains(r.stderr, tc.wantErr) {
			t.Errorf("wasmtask %s: %s\nwant exit %d and %q", strings.Join(tc.args, " "), r, tc.wantCode, tc.wantErr)
		}
	}

	// Retry a failed task: a second run (which fails again: same input).
	// It prints the id, the state (the new run may have run already) and the retry count.
	if r := s.mustCLI(0, "retry", "f1"); !regexp.MustCompile(`^f1\t(pending|running|failed)\tretry 1\n$`).MatchString(r.stdout) {
		t.Errorf("retry f1 printed %q", r.stdout)
	}
	v := s.waitFinal("f1", 30*time.Second)
	if v.State != "failed" || v.Retries != 1 || len(v.Runs) != 2 || v.Runs[1].State != "failed" {
		t.Errorf("f1 after retry: %+v", v)
	}
	// Retry a canceled task: it runs now, despite its not_before.
	s.mustCLI(0, "cancel", "later")
	r := s.mustCLI(0, "retry", "later", "--wait")
	if !strings.HasPrefix(r.stdout, "task later  completed") {
		t.Errorf("retry --wait of a canceled task:\n%s", r)
	}

	r = s.mustCLI(0, "list", "--label", "team=a", "--json")
	var list api.TaskList
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, v := range list.Tasks {
		ids = append(ids, v.ID)
	}
	if !slices.Equal(ids, []string{"later", "ok1", "f1"}) {
		t.Errorf("list --label team=a: %v", ids)
	}

	// Delete one, purge the failed ones with team=b; then kill -9.
	if r := s.mustCLI(0, "delete", "ok1"); r.stdout != "ok1\tdeleted\t1 task(s)\n" {
		t.Errorf("delete printed %q", r.stdout)
	}
	if r := s.mustCLI(0, "purge", "--state", "failed", "--label", "team=b"); r.stdout != "purged 1 task(s)\n" {
		t.Errorf("purge printed %q", r.stdout)
	}
	s.restart() // kill -9, then start on the same data dir
	for id, want := range map[string]bool{"ok1": false, "f2": false, "f1": true, "later": true} {
		if r := s.cli("get", id); (r.code == 0) != want {
			t.Errorf("after kill -9: get %s: %s (want present=%v)", id, r, want)
		}
	}
	v = s.waitFinal("f1", 10*time.Second)
	if v.Retries != 1 || len(v.Runs) != 2 {
		t.Errorf("f1 after kill -9: %d retries, %d runs; want 1 and 2", v.Retries, len(v.Runs))
	}
	// A retry right before a kill -9 is durable too: its run happens after.
	s.mustCLI(0, "retry", "f1")
	s.restart()
	v = s.waitFinal("f1", 30*time.Second)
	if v.Retries != 2 || len(v.Runs) != 3 || v.Runs[2].State != "failed" {
		t.Errorf("f1 after a retry and kill -9: %d retries, runs %+v", v.Retries, v.Runs)
	}
	if r := s.mustCLI(0, "purge", "--all"); r.stdout != "purged 2 task(s)\n" {
		t.Errorf("purge --all printed %q", r.stdout)
	}
}

// TestVersionAndCompletion: --version, the version in GET /v1/engine and
// wasmtask_build_info agree; completion scripts and the completion
// protocol they use work.
func TestVersionAndCompletion(t *testing.T) {
	t.Parallel()
	r := runCLI(t, nil, "--version")
	version, ok := strings.CutPrefix(strings.TrimSpace(r.stdout), "wasmtask version ")
	if r.code != 0 || !ok || version == "" {
		t.Fatalf("--version: %s", r)
	}
	s := startServer(t, serverOpts{})
	var st api.EngineStatus
	if err := json.Unmarshal(s.do("GET", "/v1/engine", nil).body, &st); err != nil || st.Version != version {
		t.Errorf("GET /v1/engine version %q (%v), want %q", st.Version, err, version)
	}
	resp, err := http.Get(s.URL + "/metrics")
	if allTLS() {
		t.Log("metrics checked over plain HTTP only")
	} else if err != nil {
		t.Fatal(err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), `wasmtask_build_info{goversion="`) || !strings.Contains(string(b), `version="`+version+`"} 1`) {
			t.Errorf("no wasmtask_build_info with version %q in /metrics", version)
		}
	}

	for _, tc := range []struct {
		args     []string
		wantCode int
		want     []string
	}{
		{args: []string{"completion", "bash"}, want: []string{"complete -o bashdefault -o default -F _wasmtask_complete wasmtask", "--generate-bash-completion"}},
		{args: []string{"completion", "zsh"}, want: []string{"#compdef wasmtask", "compdef _wasmtask wasmtask"}},
		{args: []string{"completion", "fish"}, wantCode: 2},
		// What the scripts ask the binary: commands, then a command's flags.
		{args: []string{"--generate-bash-completion"}, want: []string{"retry\n", "delete\n", "purge\n", "completion\n"}},
		{args: []string{"list", "--l", "--generate-bash-completion"}, want: []string{"--limit\n", "--label\n"}},
		{args: []string{"completion", "--generate-bash-completion"}, want: []string{"bash\nzsh\n"}},
	} {
		r := runCLI(t, nil, tc.args...)
		if r.code != tc.wantCode {
			t.Errorf("wasmtask %s: %s", strings.Join(tc.args, " "), r)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("wasmtask %s: no %q in\n%s", strings.Join(tc.args, " "), w, r.stdout)
			}
		}
	}
}
