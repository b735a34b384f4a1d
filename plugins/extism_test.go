package plugins_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/host/extism"
	"github.com/wasmtask/wasmtask/plugins"
)

func extismPlugin(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "host", "testdata", "extism", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDeployExtism: an Extism plugin deploys only with an exported
// function named in manifest.extism; errors name the field and the fix;
// the settings reach Resolve and survive a restart.
func TestDeployExtism(t *testing.T) {
	t.Parallel()
	as := extismPlugin(t, "as_plugins")
	tests := []struct {
		name       string
		wasm       []byte
		manifest   string
		wantField  string
		wantReason string
	}{
		{name: "function named", wasm: as, manifest: `{"extism": {"function": "count_vowels", "allowed_hosts": ["api.example.com"], "http_timeout": "2s", "log_level": "debug"}}`},
		{name: "no manifest", wasm: as, wantField: "manifest.extism.function", wantReason: `imports extism:host/env (an Extism plugin): set "extism": {"function": NAME} to the export to call, one of abortWithError, count_vowels`},
		{name: "manifest without extism", wasm: as, manifest: `{"config": {"a": "b"}}`, wantField: "manifest.extism.function", wantReason: `set "extism": {"function": NAME}`},
		{name: "not exported", wasm: as, manifest: `{"extism": {"function": "count_consonants"}}`, wantField: "manifest.extism.function", wantReason: `function "count_consonants" is not exported by the module; it exports abortWithError, count_vowels, fail, fetch, log_levels, spin`},
		{name: "WASI grant on an Extism plugin", wasm: as, manifest: `{"extism": {"function": "count_vowels"}, "args": ["-v"]}`, wantField: "manifest.args", wantReason: "an Extism plugin gets no arguments"},
		{name: "extism on a handler", wasm: module(t, "echo"), manifest: `{"extism": {"function": "wasmtask_handle"}}`, wantField: "manifest.extism", wantReason: "does not import extism:host/env, so it is not an Extism plugin"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg, b := setup(t, plugins.Options{})
			var m *plugins.Manifest
			if tc.manifest != "" {
				var err error
				if m, err = plugins.ParseManifest([]byte(tc.manifest)); err != nil {
					t.Fatalf("ParseManifest: %v", err)
				}
			}
			_, err := reg.Deploy(b.ctx, "vowels", tc.wasm, m, "test")
			if tc.wantField == "" {
				if err != nil {
					t.Fatalf("Deploy: %v", err)
				}
				for i, r := range []*plugins.Registry{reg, b.reopen(t)} {
					p, err := r.Resolve(b.ctx, "vowels")
					if err != nil {
						t.Fatalf("Resolve (%d): %v", i, err)
					}
					if p.Extism == nil || p.Extism.Function != "count_vowels" || p.Extism.HTTPTimeout != 2*time.Second ||
						*p.Extism.LogLevel != extism.LevelDebug || len(p.Extism.AllowedHosts) != 1 {
						t.Fatalf("Resolve (%d): Extism = %+v, want the manifest's settings", i, p.Extism)
					}
				}
				return
			}
			var ve *plugins.ValidationError
			if !errors.As(err, &ve) || ve.Field != tc.wantField || !strings.Contains(ve.Reason, tc.wantReason) {
				t.Fatalf("Deploy: %v, want field %s and a reason containing %q", err, tc.wantField, tc.wantReason)
			}
			if _, err := reg.Resolve(b.ctx, "vowels"); err == nil {
				t.Error("Resolve found a plugin whose deploy failed")
			}
		})
	}
}

func TestParseManifestExtism(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, wantField, wantReason string
	}{
		{`{"extism": {}}`, "manifest.extism.function", "is required"},
		{`{"extism": {"function": "f", "http_timeout": "soon"}}`, "manifest.extism.http_timeout", `want a positive Go duration such as "10s", got "soon"`},
		{`{"extism": {"function": "f", "allowed_hosts": ["https://api.example.com"]}}`, "manifest.extism.allowed_hosts[0]", "no scheme, port or path"},
		{`{"extism": {"function": "f", "log_level": "loud"}}`, "manifest.extism.log_level", `unknown log level "loud"`},
		{`{"extism": {"function": "f", "http_max_bytes": -1}}`, "manifest.extism.http_max_bytes", "must not be negative"},
		{`{"extism": {"function": "f", "max_var_bytes": -5}}`, "manifest.extism.max_var_bytes", "must not be negative"},
		{`{"extism": {"function": "f", "timeout_ms": 5}}`, "manifest.extism", `unknown field "timeout_ms" (known: function, allowed_hosts, http_timeout, http_max_bytes, max_var_bytes, log_level)`},
	}
	for _, tc := range tests {
		t.Run(tc.wantField, func(t *testing.T) {
			_, err := plugins.ParseManifest([]byte(tc.in))
			var ve *plugins.ValidationError
			if !errors.As(err, &ve) || ve.Field != tc.wantField || !strings.Contains(ve.Reason, tc.wantReason) {
				t.Fatalf("ParseManifest(%s): %v, want field %s and a reason containing %q", tc.in, err, tc.wantField, tc.wantReason)
			}
		})
	}
}
