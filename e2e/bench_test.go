package e2e

import (
	"regexp"
	"strings"
	"testing"
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
}
