package host

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	sdk "github.com/extism/go-sdk"
	"github.com/tetratelabs/wazero"

	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/host/extism"
)

// sdkLogLevel guards go-sdk's process-wide log level.
var sdkLogLevel sync.Once

// TestExtismSameAsGoSDK is a differential test: each plugin and function
// runs through wasmtask (host/extism) and through the reference Extism host
// for Go, github.com/extism/go-sdk v1.7.1, with the same input and config.
// Output, success and the error message must agree, and so must the info+
// log lines: only the Extism ABI counts, in both directions.
func TestExtismSameAsGoSDK(t *testing.T) {
	sdkLogLevel.Do(func() { sdk.SetLogLevel(sdk.LogLevelInfo) })
	cases := []struct {
		module, function, input string
		config                  map[string]string
	}{
		{"wat_count_vowels", "count_vowels", "hello world", nil},
		{"wat_count_vowels", "count_vowels", "", nil},
		{"wat_count_vowels", "fail", "", nil},
		{"as_plugins", "count_vowels", "Hello, Extism!", map[string]string{"greeting": "hi"}},
		{"as_plugins", "count_vowels", "Hello, Extism!", map[string]string{"vowels": "l"}},
		{"as_plugins", "fail", "42", nil},
		{"as_plugins", "log_levels", "", nil},
		{"sdk_hello", "run_test", "", nil},
		{"sdk_fail", "run_test", "", nil},
		{"sdk_input_offset", "input_offset_length", "hello world", nil},
		{"sdk_config", "run_test", "", map[string]string{"thing": "x"}},
		{"sdk_config", "run_test", "", nil},
		{"sdk_log", "run_test", "", nil},
		{"sdk_var", "run_test", "", nil},
		{"sdk_noop", "run_test", "", nil},
	}
	h := newTestHost(t, Config{})
	cache := wazero.NewCompilationCache() // go-sdk compiles each plugin and its kernel per runtime
	defer cache.Close(context.Background())
	for _, tc := range cases {
		t.Run(tc.module+"/"+tc.function, func(t *testing.T) {
			wasm := readExtism(t, tc.module)
			m := mustLoad(t, h, wasm, 0)
			got := h.Run(context.Background(), m, Attempt{Input: []byte(tc.input), Config: tc.config,
				Extism: &extism.Options{Function: tc.function}})

			ctx := context.Background()
			p, err := sdk.NewPlugin(ctx, sdk.Manifest{Wasm: []sdk.Wasm{sdk.WasmData{Data: wasm}}, Config: tc.config},
				sdk.PluginConfig{EnableWasi: true, RuntimeConfig: wazero.NewRuntimeConfig().WithCompilationCache(cache), ModuleConfig: wazero.NewModuleConfig().WithSysWalltime().WithSysNanotime()}, nil)
			if err != nil {
				t.Fatalf("go-sdk NewPlugin: %v", err)
			}
			defer p.Close(ctx)
			var sdkLog strings.Builder
			p.SetLogger(func(l sdk.LogLevel, msg string) {
				if l >= sdk.LogLevelInfo { // the SDK's own messages are debug or trace
					fmt.Fprintf(&sdkLog, "[%s] %s\n", strings.ToLower(l.String()), msg)
				}
			})
			rc, out, err := p.Call(tc.function, []byte(tc.input))
			sdkOK := rc == 0 && err == nil

			if (got.Outcome == dispatch.OutcomeOK) != sdkOK {
				t.Fatalf("wasmtask: %s (%s); go-sdk: rc %d, err %v", got.Outcome, got.Error, rc, err)
			}
			if sdkOK && string(got.Output) != string(out) {
				t.Errorf("output: wasmtask %q, go-sdk %q", got.Output, out)
			}
			if !sdkOK && got.Error != err.Error() {
				t.Errorf("error: wasmtask %q, go-sdk %q", got.Error, err)
			}
			if string(got.Log) != sdkLog.String() {
				t.Errorf("log: wasmtask %q, go-sdk %q", got.Log, sdkLog.String())
			}
		})
	}
}
