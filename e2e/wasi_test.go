package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
)

// TestWASICommand runs a C WASI command (host/testdata/wasicmd.c, which
// indexes argv[0] like Zig, TinyGo and Rust std programs) through serve,
// with the grants of its manifest: args, env and a read-only mount under
// --allow-dir reach it, a write to the mount fails, a file outside the
// mounts cannot be read, exit 64 is permanent, exit 1 is retried, and the
// stdout of a failed command is in the attempt log.
func TestWASICommand(t *testing.T) {
	t.Parallel()
	allowed := t.TempDir()
	models := filepath.Join(allowed, "models")
	os.Mkdir(models, 0o755)
	os.WriteFile(filepath.Join(models, "weights.txt"), []byte("w=42\n"), 0o644)
	secret := t.TempDir()
	os.WriteFile(filepath.Join(secret, "secret.txt"), []byte("do not read"), 0o644)
	s := startServer(t, serverOpts{extra: []string{"--allow-dir", allowed}})
	ctx := context.Background()
	wasm := hostModule(t, "wasicmd")
	mount := `"mounts": [{"host": "` + models + `", "guest": "/models", "read_only": true}]`

	cases := []struct {
		name, manifest string
		state          string
		attempts       int
		outcome        string
		retryable      bool
		output         []string
		errorContains  string
		logContains    []string
		notContains    string
	}{
		{name: "tool", manifest: `{"args": ["--cat", "/models/weights.txt"], "env": {"KEY": "value"}, ` + mount + `}`,
			state: "completed", attempts: 1, outcome: "ok",
			output: []string{"argv0=tool\n", "arg=--cat\n", "env=KEY=value\n", "w=42\n"}},
		{name: "rowrite", manifest: `{"args": ["--write", "/models/new.txt"], ` + mount + `}`,
			state: "failed", attempts: 1, outcome: "failed",
			errorContains: "exited with code 73 (EX_CANTCREAT): a permanent failure",
			logContains:   []string{"cannot write /models/new.txt"}},
		{name: "outside", manifest: `{"args": ["--cat", "` + secret + `/secret.txt"], ` + mount + `}`,
			state: "failed", attempts: 1, outcome: "failed", errorContains: "code 66",
			notContains: "do not read"},
		{name: "usage", manifest: `{"args": ["--exit", "64"]}`,
			state: "failed", attempts: 1, outcome: "failed", errorContains: "exited with code 64 (EX_USAGE): a permanent failure",
			logContains: []string{"[stdout of the failed command]\nargv0=usage\narg=--exit\narg=64\n"}},
		{name: "flaky", manifest: `{"args": ["--exit", "1"]}`,
			state: "failed", attempts: 3, outcome: "failed", retryable: true, errorContains: "code 1: a retryable failure",
			logContains: []string{"argv0=flaky"}},
		{name: "mapped", manifest: `{"args": ["--exit", "1"], "exit_codes": {"1": "permanent"}}`,
			state: "failed", attempts: 1, outcome: "failed", errorContains: "(manifest exit_codes)"},
		{name: "infile", manifest: `{"args": ["--cat"], "input": "file"}`,
			state: "completed", attempts: 1, outcome: "ok", output: []string{"arg=/wasmtask-input/input\n", "from the input file"}},
	}
	for _, tc := range cases {
		if _, err := s.client.PluginDeploy(ctx, tc.name, wasm, []byte(tc.manifest)); err != nil {
			t.Fatalf("deploy %s: %v", tc.name, err)
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := s.client.Submit(ctx, api.TaskSpec{Handler: tc.name, Input: ptr("from the input file"), MaxAttempts: 3,
				Backoff: &api.Backoff{Kind: "fixed", Base: "10ms"}})
			if err != nil {
				t.Fatal(err)
			}
			v := s.waitFinal(res.Task.ID, 30*time.Second)
			if v.State != tc.state || len(v.Runs) != 1 || len(v.Runs[0].Attempts) != tc.attempts {
				t.Fatalf("state %s, runs %+v; want %s after %d attempts", v.State, v.Runs, tc.state, tc.attempts)
			}
			last := v.Runs[0].Attempts[tc.attempts-1]
			if last.Outcome != tc.outcome || last.Retryable != tc.retryable || !strings.Contains(last.Error, tc.errorContains) {
				t.Errorf("last attempt %+v; want outcome %s retryable %v error containing %q", last, tc.outcome, tc.retryable, tc.errorContains)
			}
			out := ""
			if v.Output != nil {
				out = *v.Output
			}
			for _, want := range tc.output {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			for _, want := range tc.logContains {
				if !strings.Contains(last.Log, want) {
					t.Errorf("attempt log lacks %q:\n%s", want, last.Log)
				}
			}
			if tc.notContains != "" && (strings.Contains(out, tc.notContains) || strings.Contains(last.Log, tc.notContains)) {
				t.Errorf("output or log holds %q", tc.notContains)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(models, "new.txt")); err == nil {
		t.Error("a guest wrote into a read-only mount")
	}

	// Deploy-time checks: a mount outside --allow-dir, a missing directory.
	for _, tc := range []struct{ manifest, field, reason string }{
		{`{"mounts": [{"host": "` + secret + `", "guest": "/s"}]}`, "manifest.mounts[0].host", "not under a directory the operator allows"},
		{`{"mounts": [{"host": "` + allowed + `/nope", "guest": "/s"}]}`, "manifest.mounts[0].host", "does not exist"},
		{`{"env": {"A=B": "1"}}`, "manifest.env.A=B", "without '='"},
		{`{"exit_codes": {"1": "fatal"}}`, "manifest.exit_codes.1", "want \"ok\", \"permanent\" or \"retryable\""},
	} {
		_, err := s.client.PluginDeploy(ctx, "bad", wasm, []byte(tc.manifest))
		if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("deploy with %s: err = %v, want it to name %s and say %q", tc.manifest, err, tc.field, tc.reason)
		}
	}
}

// TestCallWASICommand runs wasicmd through `wasmtask call` with --arg,
// --env, --dir and a manifest beside the module.
func TestCallWASICommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	models := filepath.Join(dir, "models")
	os.Mkdir(models, 0o755)
	os.WriteFile(filepath.Join(models, "weights.txt"), []byte("w=42\n"), 0o644)
	mod := filepath.Join(dir, "tool.wasm")
	os.WriteFile(mod, hostModule(t, "wasicmd"), 0o644)
	cache := filepath.Join(dir, "cache")

	r := runCLI(t, nil, "call", mod, "--cache-dir", cache, "--arg", "a,b", "--arg", "--cat", "--arg", "/models/weights.txt",
		"--env", "K=v", "--dir", models+":/models:ro")
	if r.code != 0 || !strings.Contains(r.stdout, "argv0=tool\narg=a,b\narg=--cat\narg=/models/weights.txt\nenv=K=v\nw=42\n") {
		t.Fatalf("call with flags: %s", r)
	}
	r = runCLI(t, nil, "call", mod, "--cache-dir", cache, "--arg", "--write", "--arg", "/models/x", "--dir", models+":/models:ro")
	if r.code != 1 || !strings.Contains(r.stderr, "exited with code 73 (EX_CANTCREAT): a permanent failure") {
		t.Fatalf("write to a read-only mount: %s", r)
	}
	// A manifest beside the module is read as serve reads it; flags add to it.
	os.WriteFile(filepath.Join(dir, "tool.json"), []byte(`{"args": ["--exit", "64"], "exit_codes": {"64": "retryable"}}`), 0o644)
	r = runCLI(t, nil, "call", mod, "--cache-dir", cache)
	if r.code != 1 || !strings.Contains(r.stderr, "[retryable]") || !strings.Contains(r.stderr, "code 64 (EX_USAGE): a retryable failure (manifest exit_codes)") ||
		!strings.Contains(r.stderr, "[stdout of the failed command]\nargv0=tool\narg=--exit\narg=64\n") {
		t.Fatalf("manifest beside the module: %s", r)
	}
	r = runCLI(t, nil, "call", mod, "--cache-dir", cache, "--manifest", filepath.Join(dir, "none.json"))
	if r.code != 1 || !strings.Contains(r.stderr, "none.json") {
		t.Fatalf("missing --manifest: %s", r)
	}
	r = runCLI(t, nil, "call", mod, "--cache-dir", cache, "--dir", "nohostpath")
	if r.code != 2 || !strings.Contains(r.stderr, "--dir \"nohostpath\": want HOST:GUEST") {
		t.Fatalf("bad --dir: %s", r)
	}
}
