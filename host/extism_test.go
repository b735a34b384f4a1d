package host

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/host/extism"
)

// Extism plugins in testdata/extism: wat_* and as_* are built from
// examples/extism (scripts/build-extism-plugins.sh); sdk_* are the test
// plugins of github.com/extism/go-sdk v1.7.1 (wasm/, BSD-3-Clause), built by
// the Extism project with its Rust, TinyGo, Zig and Haskell PDKs, unmodified.
func readExtism(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "extism", name+".wasm"))
	if err != nil {
		t.Fatalf("read Extism test plugin (run `make extism-plugins`): %v", err)
	}
	return b
}

// raceEnabled is set by race_test.go (tests that compile large modules
// use it to keep their time bounded).
var raceEnabled bool

func level(l extism.Level) *extism.Level { return &l }

// TestExtismPlugins runs Extism plugins from several PDKs and languages
// through the host: output, errors, logs, config, vars, timeouts and caps
// map to the same outcomes as any other handler.
func TestExtismPlugins(t *testing.T) {
	big := strings.Repeat("x", 2048)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Write([]byte(big))
		case "/redirect":
			http.Redirect(w, r, "http://localhost:"+r.URL.Query().Get("port")+"/hello", http.StatusFound)
		default:
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write([]byte("hello from " + r.URL.Path))
		}
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	port := u.Port()

	cases := []struct {
		name      string
		module    string
		opts      extism.Options
		input     string
		config    map[string]string
		limits    Limits
		outcome   dispatch.Outcome
		retryable bool
		output    string // exact, when the outcome is ok
		outputHas string
		errorHas  string
		logHas    []string
		logHasNot []string
	}{
		{name: "WATCountVowels", module: "wat_count_vowels", opts: extism.Options{Function: "count_vowels"},
			input: "hello world", outcome: dispatch.OutcomeOK, output: `{"count": 3}`, logHas: []string{"[info] counting vowels"}},
		{name: "WATCountVowelsEmpty", module: "wat_count_vowels", opts: extism.Options{Function: "count_vowels"},
			input: "", outcome: dispatch.OutcomeOK, output: `{"count": 0}`},
		{name: "WATFail", module: "wat_count_vowels", opts: extism.Options{Function: "fail"},
			outcome: dispatch.OutcomeFailed, retryable: true, errorHas: "input must not be empty"},
		{name: "WATSpinTimesOut", module: "wat_count_vowels", opts: extism.Options{Function: "spin"},
			limits: Limits{Timeout: 200 * time.Millisecond}, outcome: dispatch.OutcomeTimeout, retryable: true, errorHas: "deadline"},
		{name: "WATOutputTooLarge", module: "wat_count_vowels", opts: extism.Options{Function: "count_vowels"},
			input: "aaa", limits: Limits{OutputBytes: 5}, outcome: dispatch.OutcomeOutputTooLarge, errorHas: "limit of 5 bytes"},
		{name: "ASCountVowels", module: "as_plugins", opts: extism.Options{Function: "count_vowels"},
			input: "Hello, Extism!", config: map[string]string{"greeting": "hi"}, outcome: dispatch.OutcomeOK,
			output: `{"count": 4, "vowels": "aeiouAEIOU", "greeting": "hi", "seen_before": false}`, logHas: []string{"[info] counted 4 vowels"}},
		{name: "ASConfigOverridesVowels", module: "as_plugins", opts: extism.Options{Function: "count_vowels"},
			input: "Hello, Extism!", config: map[string]string{"vowels": "l"}, outcome: dispatch.OutcomeOK,
			output: `{"count": 2, "vowels": "l", "greeting": "", "seen_before": false}`},
		{name: "ASFail", module: "as_plugins", opts: extism.Options{Function: "fail"}, input: "42",
			outcome: dispatch.OutcomeFailed, retryable: true, errorHas: "cannot handle input: 42"},
		{name: "ASVarStoreFull", module: "as_plugins", opts: extism.Options{Function: "count_vowels", MaxVarBytes: 4}, input: "aa",
			outcome: dispatch.OutcomeFailed, errorHas: "the variable store would hold 5 bytes, above its limit of 4 (raise extism.max_var_bytes in the manifest)"},
		{name: "ASSpinTimesOut", module: "as_plugins", opts: extism.Options{Function: "spin"},
			limits: Limits{Timeout: 200 * time.Millisecond}, outcome: dispatch.OutcomeTimeout, retryable: true},
		{name: "ASLogDefaultInfo", module: "as_plugins", opts: extism.Options{Function: "log_levels"}, outcome: dispatch.OutcomeOK,
			logHas: []string{"[info] an info line", "[warn] a warning", "[error] an error line"}, logHasNot: []string{"debug line"}},
		{name: "ASLogDebug", module: "as_plugins", opts: extism.Options{Function: "log_levels", LogLevel: level(extism.LevelDebug)},
			outcome: dispatch.OutcomeOK, logHas: []string{"[debug] a debug line", "[info] an info line"}},
		{name: "ASLogError", module: "as_plugins", opts: extism.Options{Function: "log_levels", LogLevel: level(extism.LevelError)},
			outcome: dispatch.OutcomeOK, logHas: []string{"[error] an error line"}, logHasNot: []string{"info line", "warning"}},
		{name: "ASLogQuota", module: "as_plugins", opts: extism.Options{Function: "log_levels"}, limits: Limits{LogBytes: 20},
			outcome: dispatch.OutcomeOK, logHas: []string{"[info] an info line"}, logHasNot: []string{"warning"}},
		{name: "ASHTTPDeniedByDefault", module: "as_plugins", opts: extism.Options{Function: "fetch"}, input: srv.URL + "/x",
			outcome: dispatch.OutcomeFailed, errorHas: "may not use the network (list the host in extism.allowed_hosts"},
		{name: "ASHTTPHostNotListed", module: "as_plugins", opts: extism.Options{Function: "fetch", AllowedHosts: []string{"api.example.com"}},
			input: srv.URL + "/x", outcome: dispatch.OutcomeFailed, errorHas: `host "127.0.0.1" is not in extism.allowed_hosts`},
		{name: "ASHTTPAllowed", module: "as_plugins", opts: extism.Options{Function: "fetch", AllowedHosts: []string{"127.0.0.1"}},
			input: srv.URL + "/x", outcome: dispatch.OutcomeOK, output: "hello from /x"},
		{name: "ASHTTPAllowedGlob", module: "as_plugins", opts: extism.Options{Function: "fetch", AllowedHosts: []string{"127.0.0.*"}},
			input: srv.URL + "/y", outcome: dispatch.OutcomeOK, output: "hello from /y"},
		{name: "ASHTTPResponseCap", module: "as_plugins", opts: extism.Options{Function: "fetch", AllowedHosts: []string{"127.0.0.1"}, HTTPMaxBytes: 1024},
			input: srv.URL + "/big", outcome: dispatch.OutcomeFailed, errorHas: "larger than extism.http_max_bytes (1024 bytes)"},
		{name: "ASHTTPRedirectToUnlistedHost", module: "as_plugins", opts: extism.Options{Function: "fetch", AllowedHosts: []string{"127.0.0.1"}},
			input: srv.URL + "/redirect?port=" + port, outcome: dispatch.OutcomeFailed, errorHas: `host "localhost" is not in extism.allowed_hosts`},
		{name: "ASHTTPUnreachableRetries", module: "as_plugins", opts: extism.Options{Function: "fetch", AllowedHosts: []string{"127.0.0.1"}},
			input: "http://127.0.0.1:1/", outcome: dispatch.OutcomeFailed, retryable: true, errorHas: "connection refused"},
		{name: "ASInputPastKernelLimit", module: "as_plugins", opts: extism.Options{Function: "count_vowels"},
			input: strings.Repeat("a", 70_000), limits: Limits{MemoryPages: 1}, outcome: dispatch.OutcomeOOM, errorHas: "kernel memory past its limit of 65536 bytes"},
		{name: "SDKRustHello", module: "sdk_hello", opts: extism.Options{Function: "run_test"}, outcome: dispatch.OutcomeOK, output: "Hello, world!"},
		{name: "SDKFail", module: "sdk_fail", opts: extism.Options{Function: "run_test"},
			outcome: dispatch.OutcomeFailed, retryable: true, errorHas: "Some error message"},
		{name: "SDKAlloc", module: "sdk_alloc", opts: extism.Options{Function: "run_test"}, outcome: dispatch.OutcomeOK},
		{name: "SDKInputOffset", module: "sdk_input_offset", opts: extism.Options{Function: "input_offset_length"},
			input: "hello world", outcome: dispatch.OutcomeOK, output: "\x0b\x00\x00\x00\x00\x00\x00\x00"},
		{name: "SDKTinyGoConfig", module: "sdk_config", opts: extism.Options{Function: "run_test"}, config: map[string]string{"thing": "hello"},
			outcome: dispatch.OutcomeOK, output: `{"config": "hello"}`},
		{name: "SDKTinyGoConfigUnset", module: "sdk_config", opts: extism.Options{Function: "run_test"},
			outcome: dispatch.OutcomeOK, output: `{"config": "<unset by host>"}`},
		{name: "SDKTinyGoLog", module: "sdk_log", opts: extism.Options{Function: "run_test", LogLevel: level(extism.LevelWarn)},
			outcome: dispatch.OutcomeOK, logHas: []string{"[warn] this is a warning log", "[error] this is an error log"}, logHasNot: []string{"info log", "trace log"}},
		{name: "SDKTinyGoVar", module: "sdk_var", opts: extism.Options{Function: "run_test"}, outcome: dispatch.OutcomeOK},
		{name: "SDKTinyGoSleepTimesOut", module: "sdk_sleep", opts: extism.Options{Function: "run_test"}, config: map[string]string{"duration": "3"},
			limits: Limits{Timeout: 300 * time.Millisecond}, outcome: dispatch.OutcomeTimeout, retryable: true},
		{name: "SDKTinyGoExit", module: "sdk_exit", opts: extism.Options{Function: "_start"}, config: map[string]string{"code": "7"},
			outcome: dispatch.OutcomeFailed, retryable: true, errorHas: "code 7"},
		{name: "SDKTinyGoExitZero", module: "sdk_exit", opts: extism.Options{Function: "_start"}, config: map[string]string{"code": "0"},
			outcome: dispatch.OutcomeOK},
		{name: "SDKRustHTTPHeaders", module: "sdk_http_headers", opts: extism.Options{Function: "http_get", AllowedHosts: []string{"127.0.0.1"}},
			input: `{"url": "` + srv.URL + `/h"}`, outcome: dispatch.OutcomeOK, outputHas: `"content-type":"text/plain; charset=utf-8"`},
		{name: "SDKRustHTTPDenied", module: "sdk_http_headers", opts: extism.Options{Function: "http_get"},
			input: `{"url": "` + srv.URL + `/h"}`, outcome: dispatch.OutcomeFailed, errorHas: "extism.allowed_hosts"},
		{name: "SDKTinyGoNoExtismImports", module: "sdk_noop", opts: extism.Options{Function: "run_test"}, outcome: dispatch.OutcomeOK},
		{name: "SDKHaskellHello", module: "sdk_hello_haskell", opts: extism.Options{Function: "testing"}, input: "John",
			config: map[string]string{"greeting": "Howdy"}, limits: Limits{Timeout: 20 * time.Second}, outcome: dispatch.OutcomeOK, output: "Howdy, John"},
	}
	h := newTestHost(t, Config{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := h.LoadLimits(context.Background(), readExtism(t, tc.module), tc.limits)
			if err != nil {
				t.Fatalf("LoadLimits: %v", err)
			}
			if m.Mode != ModeExtism && tc.module != "sdk_noop" {
				t.Fatalf("Mode = %s, want %s", m.Mode, ModeExtism)
			}
			opts := tc.opts
			res := h.Run(context.Background(), m, Attempt{Input: []byte(tc.input), Config: tc.config, Limits: tc.limits, Extism: &opts,
				Info: TaskInfo{TaskID: "t1", RunID: "t1#1", Attempt: 1, MaxAttempts: 3, Handler: "p"}})
			if res.Outcome != tc.outcome || res.Retryable != tc.retryable {
				t.Fatalf("Outcome, Retryable = %s, %v (error %q, log %q), want %s, %v", res.Outcome, res.Retryable, res.Error, res.Log, tc.outcome, tc.retryable)
			}
			if tc.outcome == dispatch.OutcomeOK && tc.output != "" && string(res.Output) != tc.output {
				t.Errorf("Output = %q, want %q", res.Output, tc.output)
			}
			if !strings.Contains(string(res.Output), tc.outputHas) {
				t.Errorf("Output = %q, want it to contain %q", res.Output, tc.outputHas)
			}
			if tc.outcome != dispatch.OutcomeOK && res.Output != nil {
				t.Errorf("Output = %q on a failed attempt, want none", res.Output)
			}
			if !strings.Contains(res.Error, tc.errorHas) {
				t.Errorf("Error = %q, want it to contain %q", res.Error, tc.errorHas)
			}
			for _, s := range tc.logHas {
				if !strings.Contains(string(res.Log), s) {
					t.Errorf("Log = %q, want it to contain %q", res.Log, s)
				}
			}
			for _, s := range tc.logHasNot {
				if strings.Contains(string(res.Log), s) {
					t.Errorf("Log = %q, want no %q", res.Log, s)
				}
			}
		})
	}
}

// TestExtismVarsPerAttempt: variables do not survive an attempt; config_get
// sees the task under wasmtask.* keys.
func TestExtismVarsPerAttempt(t *testing.T) {
	h := newTestHost(t, Config{})
	m := mustLoad(t, h, readExtism(t, "as_plugins"), 0)
	for i := range 2 {
		res := h.Run(context.Background(), m, Attempt{Input: []byte("aa"), Extism: &extism.Options{Function: "count_vowels"}})
		var out struct {
			Count      int  `json:"count"`
			SeenBefore bool `json:"seen_before"`
		}
		if err := json.Unmarshal(res.Output, &out); err != nil || res.Outcome != dispatch.OutcomeOK {
			t.Fatalf("attempt %d: %s %q: %v", i, res.Outcome, res.Output, err)
		}
		if out.Count != 2 || out.SeenBefore {
			t.Errorf("attempt %d: %+v, want count 2 and no var left from an earlier attempt", i, out)
		}
	}
}

// TestExtismCancel: canceling the caller's context stops a spinning plugin
// as cancelled.
func TestExtismCancel(t *testing.T) {
	h := newTestHost(t, Config{})
	m := mustLoad(t, h, readExtism(t, "wat_count_vowels"), 0)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	res := h.Run(ctx, m, Attempt{Limits: Limits{Timeout: time.Minute, Grace: 10 * time.Millisecond}, Extism: &extism.Options{Function: "spin"}})
	if res.Outcome != dispatch.OutcomeCancelled {
		t.Fatalf("Outcome = %s (%s), want cancelled", res.Outcome, res.Error)
	}
}

// TestExtismABIViolation: offsets outside the kernel memory end the
// attempt as abi_violation, naming the function and the range.
func TestExtismABIViolation(t *testing.T) {
	h := newTestHost(t, Config{})
	m := mustLoad(t, h, readWasm(t, "extism_badoffset"), 0)
	for fn, want := range map[string]string{
		"store_far":          "extism:host/env.store_u8: range [1099511627776, 1099511627777) is outside the kernel memory",
		"output_unallocated": "extism:host/env.output_set: range [4096, 4106) is outside the kernel memory",
	} {
		t.Run(fn, func(t *testing.T) {
			res := h.Run(context.Background(), m, Attempt{Extism: &extism.Options{Function: fn}})
			if res.Outcome != dispatch.OutcomeABIViolation || res.Retryable || !strings.Contains(res.Error, want) {
				t.Fatalf("%s, retryable %v: %q; want abi_violation containing %q", res.Outcome, res.Retryable, res.Error, want)
			}
		})
	}
}

// TestCheckExtism: the errors a deploy shows name the manifest field and
// the choices.
func TestCheckExtism(t *testing.T) {
	h := newTestHost(t, Config{})
	as := mustLoad(t, h, readExtism(t, "as_plugins"), 0)
	handler := mustLoad(t, h, readWasm(t, "echo"), 0)
	noop := mustLoad(t, h, readExtism(t, "sdk_noop"), 0) // TinyGo, imports only WASI: command mode
	cases := []struct {
		name string
		m    *Module
		opts *extism.Options
		want string // "" = valid
	}{
		{"Valid", as, &extism.Options{Function: "count_vowels"}, ""},
		{"NoSettings", as, nil, `set "extism": {"function": NAME} to the export to call, one of abortWithError, count_vowels, fail, fetch, log_levels, spin`},
		{"EmptyFunction", as, &extism.Options{}, `set "extism": {"function": NAME}`},
		{"NotExported", as, &extism.Options{Function: "nope"}, `function "nope" is not exported by the module; it exports abortWithError, count_vowels`},
		{"BadSignature", as, &extism.Options{Function: "abortWithError"}, `export "abortWithError" must take no parameters and return an i32 or nothing`},
		{"NotAnExtismPlugin", handler, &extism.Options{Function: "wasmtask_handle"}, `does not import extism:host/env, so it is not an Extism plugin`},
		{"HandlerWithoutSettings", handler, nil, ""},
		{"CommandAsExtism", noop, &extism.Options{Function: "run_test"}, ""},
		{"CommandAsExtismNotExported", noop, &extism.Options{Function: "nope"}, `function "nope" is not exported`},
		{"CommandWithoutSettings", noop, nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.m.CheckExtism(tc.opts)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("CheckExtism: %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CheckExtism: %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// BenchmarkExtismAttempt measures whole attempts (instantiate, runtime
// start, function, close) of Extism plugins, beside a wasmtask_v1 WAT
// handler (echo) as the baseline:
//
//	go test -run='^$' -bench=BenchmarkExtismAttempt -benchmem ./host/
func BenchmarkExtismAttempt(b *testing.B) {
	for _, bc := range []struct {
		name, module, function string
	}{
		{"wasmtask_v1-WAT-echo", "", ""},
		{"Extism-WAT-count_vowels", "wat_count_vowels", "count_vowels"},
		{"Extism-AssemblyScript-count_vowels", "as_plugins", "count_vowels"},
		{"Extism-Rust-hello", "sdk_hello", "run_test"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := newTestHost(b, Config{})
			var a Attempt
			var m *Module
			if bc.module == "" {
				m = mustLoad(b, h, readWasm(b, "echo"), 0)
			} else {
				m = mustLoad(b, h, readExtism(b, bc.module), 0)
				a.Extism = &extism.Options{Function: bc.function}
			}
			a.Input = []byte("hello world")
			b.ResetTimer()
			for range b.N {
				if res := h.Run(context.Background(), m, a); res.Outcome != dispatch.OutcomeOK {
					b.Fatalf("%s: %s", res.Outcome, res.Error)
				}
			}
		})
	}
}
