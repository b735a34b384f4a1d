package e2e

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/wasmtask/wasmtask/api"
)

// TestBenchCommand runs a short `wasmtask bench` against a server: it
// deploys its built-in no-op and prints both tables.
func TestBenchCommand(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	r := s.mustCLI(0, "bench", "--tasks", "200", "--clients", "1,4", "--batch", "50", "--rates", "100", "--duration", "1s")
	for _, re := range []string{
		`(?m)^handler bench-noop sha256:[0-9a-f]{64} \(built-in no-op\)$`,
		`(?m)POST /v1/tasks, 1 clients +200 `,
		`(?m)POST /v1/tasks, 4 clients +200 `,
		`(?m)POST /v1/tasks/batch of 50, 1 client +200 `,
		`(?m)^ +100/s +finished_at +\d+ +100 +0 +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ *$`,
		`(?m)^ +100/s +wait +\d+ +100 +0 +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ *$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("bench output does not match %s:\n%s", re, r.stdout)
		}
	}
	if r := s.cli("bench", "--clients", "one"); r.code != 2 || !strings.Contains(r.stderr, "--clients") {
		t.Errorf("bench --clients one: %s", r)
	}
	if r := s.cli("bench", "--client", "http2"); r.code != 2 || !strings.Contains(r.stderr, "--client") {
		t.Errorf("bench --client http2: %s", r)
	}
	if r := s.cli("bench", "--instances", "warm"); r.code != 2 || !strings.Contains(r.stderr, "--instances") {
		t.Errorf("bench --instances warm: %s", r)
	}
	// --instances reuse deploys the no-op with that policy.
	r2 := s.mustCLI(0, "bench", "--instances", "reuse", "--tasks", "20", "--clients", "2", "--batch", "0", "--rates", "", "--cleanup")
	if !regexp.MustCompile(`(?m)^handler bench-noop sha256:[0-9a-f]{64} \(built-in no-op, instances reuse\)$`).MatchString(r2.stdout) {
		t.Errorf("bench --instances reuse:\n%s", r2.stdout)
	}
	if out := s.mustCLI(0, "plugin", "list", "bench-noop", "--json").stdout; !strings.Contains(out, `"reuse"`) {
		t.Errorf("bench-noop after --instances reuse does not have the reuse policy:\n%s", out)
	}

	// Every task of the run is labelled, and the output says how to remove
	// them: 3 x 200 for throughput, 2 x 100 for latency.
	m := regexp.MustCompile(`remove them with: wasmtask purge --label (wasmtask-bench=\S+)\n`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("bench output does not say how to remove its tasks:\n%s", r.stdout)
	}
	countLabelled := func(label string) int {
		var list api.TaskList
		if err := json.Unmarshal([]byte(s.mustCLI(0, "list", "--label", label, "--limit", "1000", "--json").stdout), &list); err != nil {
			t.Fatal(err)
		}
		return len(list.Tasks)
	}
	if n := countLabelled(m[1]); n != 800 {
		t.Errorf("%d tasks labelled %s, want 800", n, m[1])
	}

	// --cleanup purges the run's tasks and leaves the others (here through
	// the Go client rather than the lean one).
	r = s.mustCLI(0, "bench", "--client", "go", "--tasks", "30", "--clients", "2", "--batch", "10", "--rates", "", "--cleanup")
	m2 := regexp.MustCompile(`(?m)^cleanup: 60 tasks labelled (wasmtask-bench=\S+) purged \(the bench-noop plugin stays`).FindStringSubmatch(r.stdout)
	if m2 == nil {
		t.Fatalf("bench --cleanup does not report purging its 60 tasks:\n%s", r.stdout)
	}
	if n := countLabelled(m2[1]); n != 0 {
		t.Errorf("%d tasks labelled %s after --cleanup, want none", n, m2[1])
	}
	if n := countLabelled(m[1]); n != 800 {
		t.Errorf("the first run's tasks after the second run's cleanup: %d, want 800", n)
	}
}

// TestBenchCommandToken: the bench's lean client sends the token, and
// its submits, batches and waits all count (wrong token: refused).
func TestBenchCommandToken(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{token: "bench-secret"})
	r := s.mustCLI(0, "bench", "--tasks", "40", "--clients", "4", "--batch", "20", "--rates", "50", "--duration", "1s", "--cleanup")
	for _, re := range []string{
		`(?m)POST /v1/tasks, 4 clients +40 `,
		`(?m)POST /v1/tasks/batch of 20, 1 client +40 `,
		`(?m)^ +50/s +wait +\d+ +50 +0 `,
		`(?m)^cleanup: 180 tasks labelled wasmtask-bench=\S+ purged`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("bench output does not match %s:\n%s", re, r.stdout)
		}
	}
	bad := runCLI(t, []string{"WASMTASK_SERVER=" + s.URL, "WASMTASK_TOKEN=wrong"}, "bench", "--tasks", "5", "--clients", "1", "--batch", "0", "--rates", "")
	if bad.code == 0 || !strings.Contains(bad.stderr, "token") {
		t.Errorf("bench with a wrong token: %s", bad)
	}
}
