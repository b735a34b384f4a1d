// Package sdk_test is the cross-language conformance suite of the guest
// SDKs (sdk/ABI.md, "Conformance vectors"): it builds every language's
// examples once per test binary (scripts/build-examples-<lang>.sh, installing
// missing toolchains with scripts/toolchains.sh) and runs the same vectors
// through the real host for each language.
package sdk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/host"

	"github.com/wasmtask/wasmtask/internal/cputime"
	"github.com/wasmtask/wasmtask/internal/testguests"
)

// languages are the guest languages, by the prefix of their example
// modules (<lang>-<example>.wasm; Go's are <example>.wasm).
var languages = []string{"go", "c", "rust", "as", "wat"}

// examples every language implements (examples/<lang>/<example>).
var examples = []string{"uppercase", "retry", "spawn"}

// vector is one attempt of an example and what every language must do.
type vector struct {
	name        string
	example     string
	input       []byte
	attempt     int // default 1
	maxAttempts int // default 3
	config      map[string]string

	wantOutcome   dispatch.Outcome
	wantRetryable bool
	wantOutput    []byte // exact; empty unless the outcome is ok
	wantError     string // exact
	wantLog       string // a substring of Result.Log
	// wantChild, for spawn: the id of the one staged child; its spec must
	// name handler "uppercase" with the vector's input.
	wantChild string
}

// runID is the run the vectors run in; child ids derive from it.
const runID = "conf#2"

func vectors() []vector {
	upper := func(name string, in []byte) vector {
		return vector{name: name, example: "uppercase", input: in, wantOutcome: dispatch.OutcomeOK,
			wantOutput: asciiUpper(in), wantLog: fmt.Sprintf("[info] upper-casing %d bytes\n", len(in))}
	}
	retryFail := func(name string, attempt, max int, config map[string]string, succeedOn int) vector {
		return vector{name: name, example: "retry", attempt: attempt, maxAttempts: max, config: config,
			wantOutcome: dispatch.OutcomeFailed, wantRetryable: true,
			wantError: fmt.Sprintf("transient failure on attempt %d (succeeds on attempt %d)", attempt, succeedOn),
			wantLog:   fmt.Sprintf("[info] attempt %d of %d: failing on purpose\n", attempt, max)}
	}
	retryOK := func(name string, attempt int, config map[string]string) vector {
		return vector{name: name, example: "retry", attempt: attempt, config: config, wantOutcome: dispatch.OutcomeOK,
			wantOutput: []byte(fmt.Sprintf("succeeded on attempt %d", attempt))}
	}
	spawn := func(name string, in string) vector {
		return vector{name: name, example: "spawn", input: []byte(in), wantOutcome: dispatch.OutcomeOK,
			wantOutput: []byte("conf-r2-c1"), wantChild: "conf-r2-c1", wantLog: "[info] submitted child conf-r2-c1\n"}
	}
	return []vector{
		upper("empty", []byte{}),
		upper("hello", []byte("hello")),
		upper("mixed", []byte("MiXeD 123")),
		upper("utf8", []byte("héllo wörld ß ñ ǆ 日本語 😀 ÿ")),
		upper("invalid_utf8", []byte("\xff\xfeabc\x80z")),
		upper("100KB", largeInput(100<<10)),
		{name: "fail_permanent", example: "uppercase", input: []byte("!fail"),
			wantOutcome: dispatch.OutcomeFailed, wantRetryable: false,
			wantError: "the input asked to fail", wantLog: "[info] upper-casing 5 bytes\n"},

		retryFail("attempt1", 1, 3, nil, 3),
		retryFail("attempt2", 2, 5, nil, 3),
		retryOK("attempt3", 3, nil),
		retryOK("succeed_on_1", 1, map[string]string{"succeed_on": "1"}),
		retryFail("succeed_on_5", 4, 9, map[string]string{"succeed_on": "5"}, 5),
		retryOK("succeed_on_invalid", 3, map[string]string{"succeed_on": "5x"}),

		spawn("child", "hello"),
		spawn("child_escapes", "say \"hi\"\n\t\\ <&> \x01 é 😀"),
		spawn("child_empty", ""),
	}
}

func asciiUpper(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

// largeInput is n bytes of mixed ASCII and UTF-8 text (cut anywhere).
func largeInput(n int) []byte {
	line := []byte("The quick brown fox jumps over the lazy dog 0123456789 ÄÖÜ äöü ß ¿¡ 😀\n")
	return bytes.Repeat(line, n/len(line)+1)[:n]
}

func TestConformance(t *testing.T) {
	dir := modulesDir(t)
	ctx := context.Background()
	h := newHost(t)
	for _, lang := range languages {
		t.Run(lang, func(t *testing.T) {
			t.Parallel() // compiles (a Go guest's takes long under -race) use a core each
			for _, ex := range examples {
				t.Run(ex, func(t *testing.T) {
					t.Parallel()
					m := load(t, h, dir, lang, ex)
					for _, v := range vectors() {
						if v.example != ex {
							continue
						}
						t.Run(v.name, func(t *testing.T) { v.check(t, h.Run(ctx, m, v.attempt_())) })
					}
				})
			}
		})
	}
}

// TestConformanceReuse runs every vector twice, in order, through one
// instance per example, under the manifest's "instances": "reuse" (globals
// and heap carry over) and "reset" (restored before every attempt): an SDK
// must give each attempt its own input, task info, config and output
// either way.
func TestConformanceReuse(t *testing.T) {
	dir := modulesDir(t)
	ctx := context.Background()
	h := newHost(t)
	for _, mode := range []host.InstanceMode{host.InstancesReuse, host.InstancesReset} {
		for _, lang := range languages {
			t.Run(string(mode)+"/"+lang, func(t *testing.T) {
				t.Parallel() // as in TestConformance
				for _, ex := range examples {
					t.Run(ex, func(t *testing.T) {
						t.Parallel()
						wasm := moduleBytes(t, dir, lang, ex)
						p, err := h.NewPool(load(t, h, dir, lang, ex), host.InstancePolicy{Mode: mode}, wasm)
						if err != nil {
							t.Fatal(err)
						}
						defer p.Close()
						for round := range 2 {
							for _, v := range vectors() {
								if v.example != ex {
									continue
								}
								t.Run(fmt.Sprintf("%s#%d", v.name, round+1), func(t *testing.T) { v.check(t, p.Run(ctx, v.attempt_())) })
							}
						}
						if st := p.Stats(); st.Created != 1 {
							t.Errorf("the pool created %d instances, want 1 (every vector is ok or failed: the instance is kept)", st.Created)
						}
					})
				}
			})
		}
	}
}

// newHost returns a Host whose compiled code is kept in the user's cache
// folder (shared with examples' workflow test): a Go guest takes a minute
// or more to compile under -race on a busy 2-core machine, and
// milliseconds to load from the cache.
func newHost(t testing.TB) *host.Host {
	t.Helper()
	h, err := host.New(context.Background(), host.Config{CacheDir: testguests.CacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h
}

func (v vector) attempt_() host.Attempt {
	a := host.Attempt{Input: v.input, Config: v.config, Limits: host.DefaultLimits(),
		Info: host.TaskInfo{TaskID: "conf", RunID: runID, Attempt: v.attempt, MaxAttempts: v.maxAttempts,
			Handler: v.example, Labels: map[string]string{"suite": "conformance"}}}
	if a.Info.Attempt == 0 {
		a.Info.Attempt = 1
	}
	if a.Info.MaxAttempts == 0 {
		a.Info.MaxAttempts = 3
	}
	return a
}

func (v vector) check(t *testing.T, res host.Result) {
	t.Helper()
	if res.Outcome != v.wantOutcome || res.Retryable != v.wantRetryable {
		t.Errorf("outcome %s (retryable %v), want %s (retryable %v); error %q, log %q",
			res.Outcome, res.Retryable, v.wantOutcome, v.wantRetryable, res.Error, res.Log)
	}
	if !bytes.Equal(res.Output, v.wantOutput) {
		t.Errorf("output %q, want %q", clip(res.Output), clip(v.wantOutput))
	}
	if res.Error != v.wantError {
		t.Errorf("error %q, want %q", res.Error, v.wantError)
	}
	if !strings.Contains(string(res.Log), v.wantLog) {
		t.Errorf("log %q, want it to contain %q", res.Log, v.wantLog)
	}
	if res.LogDropped != 0 {
		t.Errorf("%d bytes of log dropped", res.LogDropped)
	}
	if v.wantChild == "" {
		if len(res.Children) != 0 {
			t.Errorf("children %v, want none", res.Children)
		}
		return
	}
	if len(res.Children) != 1 {
		t.Fatalf("%d children, want 1", len(res.Children))
	}
	c := res.Children[0]
	if c.ID != v.wantChild || c.ID != strings.ReplaceAll(runID, "#", "-r")+"-c1" {
		t.Errorf("child id %q, want %q", c.ID, v.wantChild)
	}
	var spec struct {
		Handler string `json:"handler"`
		Input   string `json:"input"`
	}
	if err := json.Unmarshal(c.Spec, &spec); err != nil {
		t.Fatalf("child spec %s: %v", c.Spec, err)
	}
	if spec.Handler != "uppercase" || spec.Input != string(v.input) {
		t.Errorf("child spec %s: handler %q input %q, want uppercase and %q", c.Spec, spec.Handler, spec.Input, v.input)
	}
}

func clip(b []byte) string {
	if len(b) > 80 {
		return fmt.Sprintf("%q... (%d bytes)", b[:80], len(b))
	}
	return string(b)
}

// moduleFile is where the build put lang's example.
func moduleFile(dir, lang, example string) string {
	if lang == "go" {
		return filepath.Join(dir, example+".wasm")
	}
	return filepath.Join(dir, lang+"-"+example+".wasm")
}

// moduleBytes reads a built example module.
func moduleBytes(t testing.TB, dir, lang, example string) []byte {
	t.Helper()
	wasm, err := os.ReadFile(moduleFile(dir, lang, example))
	if err != nil {
		t.Fatal(err)
	}
	return wasm
}

func load(t testing.TB, h *host.Host, dir, lang, example string) *host.Module {
	t.Helper()
	m, err := h.Load(context.Background(), moduleBytes(t, dir, lang, example), 0)
	if err != nil {
		t.Fatalf("load %s/%s: %v", lang, example, err)
	}
	return m
}

// BenchmarkSDK measures, per language, a fresh instance with its
// _initialize and nothing else (host.Trial), and a whole attempt of the
// uppercase example on "hello" (host.Run). The sizes and figures are the
// table of sdk/README.md:
//
//	go test -run='^$' -bench=BenchmarkSDK -benchtime=2s ./sdk/
func BenchmarkSDK(b *testing.B) {
	dir := modulesDir(b)
	ctx := context.Background()
	h := newHost(b)
	for _, lang := range languages {
		m := load(b, h, dir, lang, "uppercase")
		b.Run(lang+"/instantiate", func(b *testing.B) {
			for b.Loop() {
				if err := h.Trial(ctx, m, 0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(m.Size), "module-bytes") // after the loop: b.Loop resets metrics
		})
		b.Run(lang+"/attempt", func(b *testing.B) {
			a := vector{example: "uppercase", input: []byte("hello")}.attempt_()
			cpu := cputime.Process()
			for b.Loop() {
				if res := h.Run(ctx, m, a); res.Outcome != dispatch.OutcomeOK {
					b.Fatalf("outcome %s: %s", res.Outcome, res.Error)
				}
			}
			cputime.Report(b, cpu)
		})
		for _, mode := range []host.InstanceMode{host.InstancesReuse, host.InstancesReset} {
			b.Run(lang+"/"+string(mode), func(b *testing.B) {
				p, err := h.NewPool(m, host.InstancePolicy{Mode: mode, MaxUses: 1 << 30}, moduleBytes(b, dir, lang, "uppercase"))
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close()
				a := vector{example: "uppercase", input: []byte("hello")}.attempt_()
				cpu := cputime.Process()
				for b.Loop() {
					if res := p.Run(ctx, a); res.Outcome != dispatch.OutcomeOK {
						b.Fatalf("outcome %s: %s", res.Outcome, res.Error)
					}
				}
				cputime.Report(b, cpu)
			})
		}
	}
}

// ---- Building the examples, once per test binary. ----

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// modulesDir builds every language's examples into a temporary folder the
// first time it is called and returns that folder.
func modulesDir(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() { buildDir, buildErr = buildAll() })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildDir
}

func buildAll() (string, error) {
	root, err := filepath.Abs("..")
	if err != nil {
		return "", err
	}
	if missing := missingToolchains(root); len(missing) > 0 {
		// make test must work on a fresh Debian machine: install, or fail
		// saying why (never skip).
		args := append([]string{filepath.Join(root, "scripts", "toolchains.sh")}, missing...)
		cmd := exec.Command("bash", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("guest toolchains %v are missing and scripts/toolchains.sh could not install them (%v); "+
				"the SDK conformance test needs them: run scripts/toolchains.sh as root (or with sudo) on Debian 12.\n%s", missing, err, out)
		}
	}
	dir, err := os.MkdirTemp("", "wasmtask-sdk-")
	if err != nil {
		return "", err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(languages))
	sem := make(chan struct{}, 2) // the machine has 2 cores
	for i, lang := range languages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = buildLanguage(root, dir, lang)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			os.RemoveAll(dir)
			return "", err
		}
	}
	return dir, nil
}

func buildLanguage(root, dir, lang string) error {
	var cmds []*exec.Cmd
	if lang == "go" {
		for _, ex := range examples {
			// The same bytes (hash, cached compiled code) from any checkout
			// path, and as examples' workflow test builds them.
			cmds = append(cmds, testguests.GoBuild(goTool(), "./examples/go/"+ex, moduleFile(dir, "go", ex)))
		}
	} else {
		cmds = append(cmds, exec.Command("bash", filepath.Join(root, "scripts", "build-examples-"+lang+".sh"), dir))
	}
	for _, cmd := range cmds {
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build the %s examples: %s: %v\n%s", lang, strings.Join(cmd.Args, " "), err, out)
		}
	}
	for _, ex := range examples {
		if _, err := os.Stat(moduleFile(dir, lang, ex)); err != nil {
			return fmt.Errorf("build the %s examples: %v", lang, err)
		}
	}
	return nil
}

func goTool() string {
	if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
		return p
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

// missingToolchains returns the parts of scripts/toolchains.sh whose tools
// are not installed.
func missingToolchains(root string) []string {
	exists := func(paths ...string) bool {
		for _, p := range paths {
			if _, err := os.Stat(p); err != nil {
				return false
			}
		}
		return true
	}
	onPath := func(names ...string) bool {
		for _, n := range names {
			if _, err := exec.LookPath(n); err != nil {
				return false
			}
		}
		return true
	}
	builtins, _ := filepath.Glob("/usr/lib/llvm-14/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a")
	var missing []string
	if !onPath("clang-14", "wasm-ld-14") || !exists("/usr/include/wasm32-wasi/stdio.h") || len(builtins) == 0 {
		missing = append(missing, "c")
	}
	if !exists("/usr/bin/rustc", "/usr/lib/rustlib/wasm32-wasi/lib/self-contained/crt1-reactor.o") {
		missing = append(missing, "rust")
	}
	if !exists(filepath.Join(root, "sdk/assemblyscript/node_modules/assemblyscript/package.json")) {
		missing = append(missing, "as")
	}
	if !onPath("wat2wasm") {
		missing = append(missing, "wat")
	}
	return missing
}
