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

// extismModule returns ../host/testdata/extism/NAME.wasm: the WAT and
// AssemblyScript PDK plugins of examples/extism and unmodified go-sdk test
// plugins (Rust, Haskell).
func extismModule(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "host", "testdata", "extism", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestExtismPlugins runs Extism plugins from four languages (Haskell only
// without -race) as tasks through serve: output, failure (error_set) with
// retries, timeouts, config, logs in the attempt log, a denied http_request
// as a permanent failure, and deploy-time errors naming
// manifest.extism.function.
func TestExtismPlugins(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	ctx := context.Background()
	cases := []struct {
		name, module, manifest string
		input                  string
		state                  string
		attempts               int
		outcome                string
		retryable              bool
		output                 string
		errorContains          string
		logContains            string
	}{
		{name: "as-vowels", module: "as_plugins", manifest: `{"extism": {"function": "count_vowels"}, "config": {"greeting": "hi"}}`,
			input: "Hello, Extism!", state: "completed", attempts: 1, outcome: "ok",
			output: `{"count": 4, "vowels": "aeiouAEIOU", "greeting": "hi", "seen_before": false}`, logContains: "[info] counted 4 vowels"},
		{name: "as-fail", module: "as_plugins", manifest: `{"extism": {"function": "fail"}}`,
			input: "x", state: "failed", attempts: 2, outcome: "failed", retryable: true, errorContains: "cannot handle input: x"},
		{name: "as-spin", module: "as_plugins", manifest: `{"extism": {"function": "spin"}, "limits": {"timeout": "300ms"}}`,
			state: "failed", attempts: 2, outcome: "timeout", retryable: true, errorContains: "deadline"},
		{name: "as-fetch", module: "as_plugins", manifest: `{"extism": {"function": "fetch"}}`, input: "http://127.0.0.1:1/",
			state: "failed", attempts: 1, outcome: "failed", errorContains: "list the host in extism.allowed_hosts"},
		{name: "wat-vowels", module: "wat_count_vowels", manifest: `{"extism": {"function": "count_vowels"}}`,
			input: "hello world", state: "completed", attempts: 1, outcome: "ok", output: `{"count": 3}`, logContains: "[info] counting vowels"},
		{name: "wat-fail", module: "wat_count_vowels", manifest: `{"extism": {"function": "fail"}}`,
			state: "failed", attempts: 2, outcome: "failed", retryable: true, errorContains: "input must not be empty"},
		{name: "wat-spin", module: "wat_count_vowels", manifest: `{"extism": {"function": "spin"}, "limits": {"timeout": "300ms"}}`,
			state: "failed", attempts: 2, outcome: "timeout", retryable: true},
		{name: "rust-hello", module: "sdk_hello", manifest: `{"extism": {"function": "run_test"}}`,
			state: "completed", attempts: 1, outcome: "ok", output: "Hello, world!"},
		{name: "haskell-hello", module: "sdk_hello_haskell", manifest: `{"extism": {"function": "testing"}, "config": {"greeting": "Howdy"}}`,
			input: "John", state: "completed", attempts: 1, outcome: "ok", output: "Howdy, John"},
	}
	if raceEnabled {
		// Compiling the 1.1 MB Haskell plugin in a race-enabled server takes
		// 40-100 s on a shared machine, past serve's --write-timeout; the
		// host package runs it (host.TestExtismPlugins/SDKHaskellHello).
		cases = cases[:len(cases)-1]
	}
	for _, tc := range cases {
		if _, err := s.client.PluginDeploy(ctx, tc.name, extismModule(t, tc.module), []byte(tc.manifest)); err != nil {
			t.Fatalf("deploy %s: %v", tc.name, err)
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := s.client.Submit(ctx, api.TaskSpec{Handler: tc.name, Input: ptr(tc.input), MaxAttempts: 2,
				Backoff: &api.Backoff{Kind: "fixed", Base: "10ms"}})
			if err != nil {
				t.Fatal(err)
			}
			v := s.waitFinal(res.Task.ID, 60*time.Second)
			if v.State != tc.state || len(v.Runs) != 1 || len(v.Runs[0].Attempts) != tc.attempts {
				t.Fatalf("state %s, runs %+v; want %s after %d attempts", v.State, v.Runs, tc.state, tc.attempts)
			}
			last := v.Runs[0].Attempts[tc.attempts-1]
			if last.Outcome != tc.outcome || last.Retryable != tc.retryable || !strings.Contains(last.Error, tc.errorContains) {
				t.Errorf("last attempt %+v; want outcome %s retryable %v error containing %q", last, tc.outcome, tc.retryable, tc.errorContains)
			}
			if tc.output != "" && (v.Output == nil || *v.Output != tc.output) {
				t.Errorf("output %v, want %q", v.Output, tc.output)
			}
			if !strings.Contains(last.Log, tc.logContains) {
				t.Errorf("attempt log lacks %q:\n%s", tc.logContains, last.Log)
			}
		})
	}

	for _, tc := range []struct{ manifest, field, reason string }{
		{``, "manifest.extism.function", `set "extism": {"function": NAME} to the export to call, one of abortWithError, count_vowels`},
		{`{"extism": {"function": "nope"}}`, "manifest.extism.function", `function "nope" is not exported`},
		{`{"extism": {"function": "count_vowels", "http_timeout": "x"}}`, "manifest.extism.http_timeout", "positive Go duration"},
	} {
		_, err := s.client.PluginDeploy(ctx, "bad", extismModule(t, "as_plugins"), []byte(tc.manifest))
		if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("deploy with %q: err = %v, want it to name %s and say %q", tc.manifest, err, tc.field, tc.reason)
		}
	}
}

// TestCallExtism runs Extism plugins through `wasmtask call`: the function
// from a manifest beside the module, from --manifest, or from --function.
func TestCallExtism(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mod := filepath.Join(dir, "vowels.wasm")
	os.WriteFile(mod, extismModule(t, "as_plugins"), 0o644)
	cache := filepath.Join(dir, "cache")

	r := runCLI(t, nil, "call", mod, "--cache-dir", cache, "--input", "aaa")
	if r.code != 2 || !strings.Contains(r.stderr, `set "extism": {"function": NAME}`) || !strings.Contains(r.stderr, "--function") {
		t.Fatalf("no function: %s", r)
	}
	os.WriteFile(filepath.Join(dir, "vowels.json"), []byte(`{"extism": {"function": "count_vowels"}, "config": {"greeting": "hey"}}`), 0o644)
	r = runCLI(t, nil, "call", mod, "--cache-dir", cache, "--input", "aaa")
	if r.code != 0 || r.stdout != `{"count": 3, "vowels": "aeiouAEIOU", "greeting": "hey", "seen_before": false}` ||
		!strings.Contains(r.stderr, "[info] counted 3 vowels") || !strings.Contains(r.stderr, "outcome: ok") {
		t.Fatalf("manifest beside the module: %s", r)
	}
	r = runCLI(t, nil, "call", mod, "--cache-dir", cache, "--function", "fail", "--input", "zz")
	if r.code != 1 || !strings.Contains(r.stderr, "outcome: failed") || !strings.Contains(r.stderr, "[retryable]: cannot handle input: zz") {
		t.Fatalf("--function fail: %s", r)
	}
	other := filepath.Join(dir, "other.json")
	os.WriteFile(other, []byte(`{"extism": {"function": "spin"}, "limits": {"timeout": "200ms"}}`), 0o644)
	r = runCLI(t, nil, "call", mod, "--cache-dir", cache, "--manifest", other)
	if r.code != 1 || !strings.Contains(r.stderr, "outcome: timeout") {
		t.Fatalf("--manifest with spin: %s", r)
	}
}

// TestExtismWatchedFolder: an Extism plugin and its manifest dropped in
// serve's --plugins folder are deployed together; `wasmtask submit --wait`
// runs it; `plugin list` shows its mode. Without a manifest it is refused,
// and the error names manifest.extism.function.
func TestExtismWatchedFolder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "vowels.json"), []byte(`{"extism": {"function": "count_vowels"}, "config": {"greeting": "watched"}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "vowels.wasm"), extismModule(t, "as_plugins"), 0o644)
	os.WriteFile(filepath.Join(dir, "bare.wasm"), extismModule(t, "wat_count_vowels"), 0o644)
	s := startServer(t, serverOpts{plugins: dir})
	ctx := context.Background()
	waitFor(t, 30*time.Second, "vowels to activate", func() bool {
		info, err := s.client.PluginGet(ctx, "vowels")
		return err == nil && info.Active != ""
	})
	r := s.mustCLI(0, "submit", "vowels", "--input", "ooo", "--wait", "--json")
	if !strings.Contains(r.stdout, `"completed"`) || !strings.Contains(r.stdout, `\"count\": 3`) || !strings.Contains(r.stdout, `\"greeting\": \"watched\"`) {
		t.Fatalf("submit --wait: %s", r)
	}
	if list := s.mustCLI(0, "plugin", "list").stdout; !strings.Contains(list, "extism") {
		t.Errorf("plugin list does not show the extism mode:\n%s", list)
	}
	waitFor(t, 30*time.Second, "bare to be refused", func() bool {
		info, err := s.client.PluginGet(ctx, "bare")
		return err == nil && strings.Contains(info.LastError, "manifest.extism.function")
	})
}
