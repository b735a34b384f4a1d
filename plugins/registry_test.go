package plugins_test

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/host"
	"github.com/wasmtask/wasmtask/plugins"
)

func TestDeployActivates(t *testing.T) {
	t.Parallel()
	reg, b := setup(t, plugins.Options{})
	echo := module(t, "echo")
	version := host.Hash(echo)

	res, err := reg.Deploy(b.ctx, "echo", echo, nil, "test")
	if err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	if want := (plugins.DeployResult{Name: "echo", Version: version, Changed: true}); res != want {
		t.Errorf("Deploy = %+v, want %+v", res, want)
	}
	info, err := reg.Get("echo")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if info.Active != version || info.Mode != host.ModeHandler || info.LastError != "" {
		t.Errorf("Get: active %s mode %q last error %q, want %s handler and no error", info.Active, info.Mode, info.LastError, version)
	}
	if !slices.Contains(info.Imports, "wasmtask_v1.input_read") {
		t.Errorf("Get: imports %v lack wasmtask_v1.input_read", info.Imports)
	}
	if len(info.History) != 1 || info.History[0].Version != version || info.History[0].Source != "test" || info.History[0].Size != len(echo) || info.History[0].ActivatedAt.IsZero() {
		t.Errorf("Get: history %+v, want one activation of %s from test", info.History, version)
	}

	steps := []struct {
		name        string
		manifest    *plugins.Manifest
		wantChanged bool
		wantHistory int
	}{
		{name: "same bytes, no manifest", manifest: nil, wantChanged: false, wantHistory: 1},
		{name: "same bytes, a manifest", manifest: &plugins.Manifest{Config: map[string]string{"k": "v"}}, wantChanged: true, wantHistory: 2},
		{name: "same bytes, an equal manifest", manifest: &plugins.Manifest{Config: map[string]string{"k": "v"}}, wantChanged: false, wantHistory: 2},
		{name: "same bytes, other limits", manifest: &plugins.Manifest{Limits: plugins.ManifestLimits{Children: 3}, Config: map[string]string{"k": "v"}}, wantChanged: true, wantHistory: 3},
	}
	for _, st := range steps {
		res, err := reg.Deploy(b.ctx, "echo", echo, st.manifest, "test")
		if err != nil {
			t.Fatalf("%s: Deploy: %v", st.name, err)
		}
		if res.Changed != st.wantChanged || res.Version != version || res.Previous != version {
			t.Errorf("%s: Deploy = %+v, want changed=%v version=previous=%s", st.name, res, st.wantChanged, version)
		}
		if info, _ := reg.Get("echo"); len(info.History) != st.wantHistory {
			t.Errorf("%s: history has %d entries, want %d", st.name, len(info.History), st.wantHistory)
		}
	}
	if list := reg.List(); len(list) != 1 || list[0].Name != "echo" || list[0].Active != version {
		t.Errorf("List = %+v, want echo at %s", list, version)
	}
}

func TestDeployRejects(t *testing.T) {
	t.Parallel()
	echo := module(t, "echo")
	tests := []struct {
		name       string
		plugin     string // default "p"
		wasm       []byte
		manifest   *plugins.Manifest
		wantField  string
		wantReason string // a substring
		// wantNoRecord: the name itself is bad, so there is no plugin to
		// record a LastError for.
		wantNoRecord bool
	}{
		{name: "garbage", wasm: []byte("this is not a wasm module"), wantField: "module", wantReason: "not a valid WebAssembly module"},
		{name: "empty", wasm: nil, wantField: "module", wantReason: "is empty"},
		{name: "too large", wasm: make([]byte, 1001), wantField: "module", wantReason: "is 1001 bytes, the limit is 1000"},
		{name: "unknown import", wasm: module(t, "unknownimport"), wantField: "module", wantReason: "import wasmtask_v1.fetch is not provided by this host"},
		{name: "unknown import module", wasm: module(t, "unknownmodule"), wantField: "module", wantReason: "is not provided by this host"},
		{name: "no handler", wasm: module(t, "nohandle"), wantField: "module", wantReason: "exports neither wasmtask_handle"},
		{name: "no memory", wasm: module(t, "nomemory"), wantField: "module", wantReason: `does not export a memory named "memory"`},
		{name: "min memory above Max", wasm: module(t, "bigmemory"), wantField: "module", wantReason: "minimum memory of 300 pages (19200 KiB), above the limit of 16 pages"},
		{name: "min memory above the manifest", wasm: module(t, "bigmemory"), manifest: &plugins.Manifest{Limits: plugins.ManifestLimits{MemoryPages: 4}}, wantField: "module", wantReason: "above the limit of 4 pages"},
		{name: "manifest memory out of range", wasm: echo, manifest: &plugins.Manifest{Limits: plugins.ManifestLimits{MemoryPages: 70000}}, wantField: "manifest.limits.memory_pages", wantReason: "at most 65536"},
		{name: "1 GiB table", wasm: module(t, "bigtable"), wantField: "module", wantReason: "declares tables of 134217728 elements (1048576 KiB at 8 bytes an element), above the limit of 65536 elements; raise limits.table_elements"},
		{name: "table above the manifest's limit", wasm: module(t, "tablegrow"), manifest: &plugins.Manifest{Limits: plugins.ManifestLimits{TableElements: 5}}, wantField: "module", wantReason: "tables of 10 elements"},
		{name: "manifest table elements out of range", wasm: echo, manifest: &plugins.Manifest{Limits: plugins.ManifestLimits{TableElements: 1 << 28}}, wantField: "manifest.limits.table_elements", wantReason: "at most 134217728"},
		{name: "manifest timeout", wasm: echo, manifest: &plugins.Manifest{Limits: plugins.ManifestLimits{Timeout: "soon"}}, wantField: "manifest.limits.timeout", wantReason: `got "soon"`},
		{name: "bad name", plugin: "Bad Name", wasm: echo, wantField: "name", wantReason: "lower-case", wantNoRecord: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg, b := setup(t, plugins.Options{MaxModuleBytes: 1000, Max: host.Limits{MemoryPages: 16}})
			plugin := tc.plugin
			if plugin == "" {
				plugin = "p"
			}
			if _, err := reg.Deploy(b.ctx, "p", echo, nil, "test"); err != nil {
				t.Fatalf("deploy echo: %v", err)
			}

			_, deployErr := reg.Deploy(b.ctx, plugin, tc.wasm, tc.manifest, "test")
			var ve *plugins.ValidationError
			if !errors.As(deployErr, &ve) {
				t.Fatalf("Deploy: got %v (%T), want a *ValidationError", deployErr, deployErr)
			}
			if ve.Plugin != plugin || ve.Field != tc.wantField || !strings.Contains(ve.Reason, tc.wantReason) {
				t.Errorf("Deploy: got %#v, want plugin %q field %q and a reason with %q", ve, plugin, tc.wantField, tc.wantReason)
			}
			if !strings.Contains(deployErr.Error(), tc.wantField) {
				t.Errorf("error %q does not name the field %q", deployErr, tc.wantField)
			}

			info, err := reg.Get("p")
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if info.Active != host.Hash(echo) || len(info.History) != 1 {
				t.Errorf("after the rejected deploy: active %s with %d activations, want echo's %s with 1", info.Active, len(info.History), host.Hash(echo))
			}
			p, err := reg.Resolve(b.ctx, "p")
			if err != nil || p.Module.Hash != host.Hash(echo) {
				t.Errorf("Resolve after the rejected deploy: %v, want echo", err)
			}
			switch {
			case tc.wantNoRecord:
				if info.LastError != "" {
					t.Errorf("LastError of p = %q, want none (the rejected deploy was for %q)", info.LastError, plugin)
				}
			case info.LastError != deployErr.Error():
				t.Errorf("LastError = %q, want %q", info.LastError, deployErr)
			}

			if tc.wantNoRecord {
				return
			}
			// A good deploy clears the LastError.
			if _, err := reg.Deploy(b.ctx, "p", module(t, "config"), nil, "test"); err != nil {
				t.Fatalf("deploy config: %v", err)
			}
			if info, _ := reg.Get("p"); info.LastError != "" || info.Active != host.Hash(module(t, "config")) {
				t.Errorf("after a good deploy: active %s, LastError %q; want config's version and no error", info.Active, info.LastError)
			}
		})
	}
}

func TestDeployRejectsNewPlugin(t *testing.T) {
	t.Parallel()
	reg, b := setup(t, plugins.Options{})
	_, err := reg.Deploy(b.ctx, "fresh", module(t, "unknownimport"), nil, "test")
	if err == nil {
		t.Fatal("Deploy of unknownimport succeeded")
	}
	info, gerr := reg.Get("fresh")
	if gerr != nil || info.Active != "" || info.LastError != err.Error() {
		t.Errorf("Get = %+v, %v; want no active version and LastError %q", info, gerr, err)
	}
	if _, err := reg.Resolve(b.ctx, "fresh"); !errors.Is(err, plugins.ErrNotFound) {
		t.Errorf("Resolve: %v, want ErrNotFound", err)
	}
	if err := reg.Check("fresh"); !errors.Is(err, plugins.ErrNotFound) {
		t.Errorf("Check: %v, want ErrNotFound", err)
	}
	// Listed with its error, though it never activated (issue 12).
	if list := reg.List(); len(list) != 1 || list[0].Name != "fresh" || list[0].State != "failed" ||
		list[0].Active != "" || list[0].LastError != err.Error() {
		t.Errorf("List = %+v, want only fresh, failed, with its error", list)
	}
	// A good deploy afterwards activates it and clears the error.
	if _, err := reg.Deploy(b.ctx, "fresh", module(t, "echo"), nil, "test"); err != nil {
		t.Fatal(err)
	}
	if list := reg.List(); len(list) != 1 || list[0].State != "active" || list[0].LastError != "" {
		t.Errorf("List = %+v, want fresh active", list)
	}
}

func TestRollback(t *testing.T) {
	t.Parallel()
	reg, b := setup(t, plugins.Options{})
	echo, config := module(t, "echo"), module(t, "config")
	v1, v2 := host.Hash(echo), host.Hash(config)
	m1 := &plugins.Manifest{Config: map[string]string{"greeting": "v1"}}
	if _, err := reg.Deploy(b.ctx, "p", echo, m1, "first"); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Deploy(b.ctx, "p", config, nil, "second"); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Deploy(b.ctx, "single", echo, nil, "test"); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name        string
		plugin      string
		version     string
		want        plugins.DeployResult
		wantConfig  map[string]string
		wantErrIs   error
		wantErrType bool // a *ValidationError naming "version"
	}{
		{name: "previous", plugin: "p", want: plugins.DeployResult{Name: "p", Version: v1, Previous: v2, Changed: true}, wantConfig: m1.Config},
		{name: "previous again toggles", plugin: "p", want: plugins.DeployResult{Name: "p", Version: v2, Previous: v1, Changed: true}},
		{name: "named version", plugin: "p", version: v1, want: plugins.DeployResult{Name: "p", Version: v1, Previous: v2, Changed: true}, wantConfig: m1.Config},
		{name: "named active version", plugin: "p", version: v1, want: plugins.DeployResult{Name: "p", Version: v1, Previous: v1, Changed: false}, wantConfig: m1.Config},
		{name: "unknown version", plugin: "p", version: "sha256:" + strings.Repeat("0", 64), wantErrIs: plugins.ErrNotFound},
		{name: "unknown plugin", plugin: "nope", wantErrIs: plugins.ErrNotFound},
		{name: "no earlier version", plugin: "single", wantErrType: true},
	}
	for _, st := range steps {
		res, err := reg.Rollback(b.ctx, st.plugin, st.version)
		switch {
		case st.wantErrIs != nil:
			if !errors.Is(err, st.wantErrIs) {
				t.Errorf("%s: Rollback: %v, want %v", st.name, err, st.wantErrIs)
			}
			continue
		case st.wantErrType:
			var ve *plugins.ValidationError
			if !errors.As(err, &ve) || ve.Field != "version" || !strings.Contains(ve.Reason, "no earlier version") {
				t.Errorf("%s: Rollback: %v, want a ValidationError on version", st.name, err)
			}
			continue
		case err != nil:
			t.Fatalf("%s: Rollback: %v", st.name, err)
		}
		if res != st.want {
			t.Errorf("%s: Rollback = %+v, want %+v", st.name, res, st.want)
		}
		p, err := reg.Resolve(b.ctx, st.plugin)
		if err != nil || p.Module.Hash != st.want.Version || !maps.Equal(p.Config, st.wantConfig) {
			t.Errorf("%s: Resolve after rollback: %v, config %v; want %s with config %v", st.name, err, p.Config, st.want.Version, st.wantConfig)
		}
	}
	info, _ := reg.Get("p")
	var got []string
	for _, a := range info.History {
		got = append(got, a.Source)
	}
	if want := []string{"first", "second", "rollback", "rollback", "rollback"}; !slices.Equal(got, want) {
		t.Errorf("history sources %v, want %v", got, want)
	}
}

// TestRollbackManifestOfSameBytes: a redeploy of the same module with
// another manifest is an activation, and rollback restores the one before.
func TestRollbackManifestOfSameBytes(t *testing.T) {
	t.Parallel()
	reg, b := setup(t, plugins.Options{})
	config := module(t, "config")
	m1 := &plugins.Manifest{Config: map[string]string{"greeting": "one"}}
	m2 := &plugins.Manifest{Config: map[string]string{"greeting": "two"}}
	for _, m := range []*plugins.Manifest{m1, m2} {
		if res, err := reg.Deploy(b.ctx, "p", config, m, "test"); err != nil || !res.Changed {
			t.Fatalf("deploy: %+v %v", res, err)
		}
	}
	for i, want := range []map[string]string{m1.Config, m2.Config, m1.Config} {
		res, err := reg.Rollback(b.ctx, "p", "")
		if err != nil || !res.Changed {
			t.Fatalf("rollback %d: %+v %v", i+1, res, err)
		}
		p, err := reg.Resolve(b.ctx, "p")
		if err != nil || !maps.Equal(p.Config, want) {
			t.Errorf("after rollback %d: config %v (%v), want %v", i+1, p.Config, err, want)
		}
	}
}

func TestResolveAndCheck(t *testing.T) {
	t.Parallel()
	reg, b := setup(t, plugins.Options{})
	echo, config := module(t, "echo"), module(t, "config")
	v1, v2 := host.Hash(echo), host.Hash(config)
	m1 := &plugins.Manifest{Config: map[string]string{"which": "v1"}}
	if _, err := reg.Deploy(b.ctx, "p", echo, m1, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Deploy(b.ctx, "p", config, nil, "test"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		handler    string
		wantHash   string // "" means an ErrNotFound
		wantConfig map[string]string
	}{
		{name: "active", handler: "p", wantHash: v2},
		{name: "pinned to the active version", handler: "p@" + v2, wantHash: v2},
		{name: "pinned to an older version", handler: "p@" + v1, wantHash: v1, wantConfig: m1.Config},
		{name: "pinned twice (cached)", handler: "p@" + v1, wantHash: v1, wantConfig: m1.Config},
		{name: "unknown version", handler: "p@sha256:" + strings.Repeat("ab", 32)},
		{name: "malformed version", handler: "p@v1"},
		{name: "unknown plugin", handler: "nope"},
		{name: "unknown plugin pinned", handler: "nope@" + v1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := reg.Resolve(b.ctx, tc.handler)
			checkErr := reg.Check(tc.handler)
			if tc.wantHash == "" {
				if !errors.Is(err, plugins.ErrNotFound) {
					t.Errorf("Resolve(%q): %v, want ErrNotFound", tc.handler, err)
				}
				if !errors.Is(checkErr, plugins.ErrNotFound) {
					t.Errorf("Check(%q): %v, want ErrNotFound", tc.handler, checkErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve(%q): %v", tc.handler, err)
			}
			if p.Module == nil || p.Module.Hash != tc.wantHash || !maps.Equal(p.Config, tc.wantConfig) {
				t.Errorf("Resolve(%q) = module %v config %v, want %s config %v", tc.handler, p.Module, p.Config, tc.wantHash, tc.wantConfig)
			}
			if checkErr != nil {
				t.Errorf("Check(%q): %v", tc.handler, checkErr)
			}
		})
	}
}

func TestManifestReachesResolve(t *testing.T) {
	t.Parallel()
	max := host.Limits{MemoryPages: 32, Timeout: 2 * time.Second, TableElements: 1000}
	reg, b := setup(t, plugins.Options{Max: max})
	tests := []struct {
		name       string
		manifest   *plugins.Manifest
		wantLimits host.Limits
		wantConfig map[string]string
	}{
		{
			name:       "no manifest: defaults clamped to the maxima",
			wantLimits: host.Limits{}.Clamp(max),
		},
		{
			name: "every limit and a config",
			manifest: &plugins.Manifest{
				Limits: plugins.ManifestLimits{MemoryPages: 8, Timeout: "1500ms", OutputBytes: 1000, LogBytes: 2000, Children: 3, TableElements: 500},
				Config: map[string]string{"greeting": "hello"},
			},
			wantLimits: host.Limits{MemoryPages: 8, Timeout: 1500 * time.Millisecond, Grace: 150 * time.Millisecond, OutputBytes: 1000, LogBytes: 2000, Children: 3, TableElements: 500},
			wantConfig: map[string]string{"greeting": "hello"},
		},
		{
			name:       "limits above the maxima are clamped",
			manifest:   &plugins.Manifest{Limits: plugins.ManifestLimits{MemoryPages: 1000, Timeout: "1h", TableElements: 5000}},
			wantLimits: host.Limits{MemoryPages: 32, Timeout: 2 * time.Second, Grace: 200 * time.Millisecond, OutputBytes: 1 << 20, LogBytes: 64 << 10, Children: 100, TableElements: 1000},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := reg.Deploy(b.ctx, "cfg", module(t, "config"), tc.manifest, "test"); err != nil {
				t.Fatalf("Deploy: %v", err)
			}
			p, err := reg.Resolve(b.ctx, "cfg")
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if p.Limits != tc.wantLimits {
				t.Errorf("Limits = %+v, want %+v", p.Limits, tc.wantLimits)
			}
			if !maps.Equal(p.Config, tc.wantConfig) {
				t.Errorf("Config = %v, want %v", p.Config, tc.wantConfig)
			}
		})
	}
}

func TestParseManifest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		in         string
		want       *plugins.Manifest
		wantField  string
		wantReason string
		wantNot    []string // never in the error: bytes of the file
	}{
		{name: "empty object", in: `{}`, want: &plugins.Manifest{}},
		{
			name: "every field",
			in:   `{"limits": {"memory_pages": 64, "timeout": "5s", "output_bytes": 65536, "log_bytes": 16384, "children": 10}, "config": {"greeting": "hello"}}`,
			want: &plugins.Manifest{Limits: plugins.ManifestLimits{MemoryPages: 64, Timeout: "5s", OutputBytes: 65536, LogBytes: 16384, Children: 10}, Config: map[string]string{"greeting": "hello"}},
		},
		{name: "unknown field", in: `{"limitz": {}}`, wantField: "manifest",
			wantReason: `unknown field "limitz": did you mean "limits"? (known: limits, config, args, env, mounts, input, input_name, scratch_bytes, exit_codes, instances, extism, placement)`},
		{name: "unknown field, nothing close", in: `{"config": {}, "colour": "blue"}`, wantField: "manifest",
			wantReason: `unknown field "colour" (known: limits, config, args, env, mounts, input, input_name, scratch_bytes, exit_codes, instances, extism, placement)`},
		{name: "a WASI grant misspelt", in: `{"scratch_byte": 4096}`, wantField: "manifest", wantReason: `unknown field "scratch_byte": did you mean "scratch_bytes"?`},
		{name: "names match as encoding/json does: ignoring case", in: `{"Limits": {"Memory_Pages": 4}, "ARGS": ["x"], "colour": 1}`, wantField: "manifest", wantReason: `unknown field "colour"`},
		{name: "unknown limit", in: `{"limits": {"memory": 4}}`, wantField: "manifest.limits",
			wantReason: `unknown field "memory": did you mean "memory_pages"? (known: memory_pages, timeout, output_bytes, log_bytes, children, table_elements)`},
		{name: "unknown member of a mount", in: `{"mounts": [{"host": "/a", "guest": "/a"}, {"host": "/b", "guest": "/b", "readonly": true}]}`, wantField: "manifest.mounts[1]",
			wantReason: `unknown field "readonly": did you mean "read_only"? (known: host, guest, read_only)`},
		{name: "unknown member that is not a name, nested", in: `{"limits": {"sk-live-123/abc": 1}}`, wantField: "manifest.limits", wantReason: "an unknown field (known: memory_pages,", wantNot: []string{"sk-live"}},
		{name: "wrong type", in: `{"limits": {"memory_pages": "64"}}`, wantField: "manifest", wantReason: "memory_pages"},
		{name: "not JSON", in: `limits: 4`, wantField: "manifest", wantReason: "not valid JSON at byte 1", wantNot: []string{"'l'", "limits:"}},
		{name: "a shadow file", in: "root:$6$c2VjcmV0$hash:19000:0:99999:7:::\n", wantField: "manifest", wantReason: "not valid JSON at byte 1",
			wantNot: []string{"'r'", "root", "c2VjcmV0"}},
		{name: "secret after valid JSON", in: `{"config": {"k": "v"}}` + "sEcReT", wantField: "manifest", wantReason: "after", wantNot: []string{"sEcReT", "'s'"}},
		{name: "unknown member that is not a name", in: `{"sk-live-123/abc": 1}`, wantField: "manifest", wantReason: "an unknown field", wantNot: []string{"sk-live"}},
		{name: "bad value inside", in: `{"limits": {"children": tru}}`, wantField: "manifest", wantReason: "not valid JSON at byte", wantNot: []string{"'u'", "tru"}},
		{name: "empty", in: ``, wantField: "manifest", wantReason: "ends too early"},
		{name: "trailing data", in: `{"config": {"a": "b"}} {"limits": {"children": 1}}`, wantField: "manifest", wantReason: "after"},
		{name: "memory pages", in: `{"limits": {"memory_pages": 70000}}`, wantField: "manifest.limits.memory_pages", wantReason: "at most 65536, got 70000"},
		{name: "timeout not a duration", in: `{"limits": {"timeout": "soon"}}`, wantField: "manifest.limits.timeout", wantReason: `got "soon"`},
		{name: "timeout negative", in: `{"limits": {"timeout": "-1s"}}`, wantField: "manifest.limits.timeout", wantReason: `got "-1s"`},
		{name: "timeout zero", in: `{"limits": {"timeout": "0s"}}`, wantField: "manifest.limits.timeout", wantReason: `got "0s"`},
		{name: "output bytes", in: `{"limits": {"output_bytes": -1}}`, wantField: "manifest.limits.output_bytes", wantReason: "got -1"},
		{name: "log bytes", in: `{"limits": {"log_bytes": -2}}`, wantField: "manifest.limits.log_bytes", wantReason: "got -2"},
		{name: "children", in: `{"limits": {"children": -3}}`, wantField: "manifest.limits.children", wantReason: "got -3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, err := plugins.ParseManifest([]byte(tc.in))
			if tc.want != nil {
				if err != nil {
					t.Fatalf("ParseManifest: %v", err)
				}
				if m.Limits != tc.want.Limits || !maps.Equal(m.Config, tc.want.Config) {
					t.Errorf("ParseManifest = %+v, want %+v", m, tc.want)
				}
				return
			}
			var ve *plugins.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("ParseManifest: got %v (%T), want a *ValidationError", err, err)
			}
			if ve.Field != tc.wantField || !strings.Contains(ve.Reason, tc.wantReason) {
				t.Errorf("ParseManifest: got field %q reason %q, want field %q and a reason with %q", ve.Field, ve.Reason, tc.wantField, tc.wantReason)
			}
			for _, s := range tc.wantNot {
				if strings.Contains(err.Error(), s) {
					t.Errorf("ParseManifest: %q quotes %q from the file", err, s)
				}
			}
		})
	}
}

func TestReopen(t *testing.T) {
	t.Parallel()
	reg, b := setup(t, plugins.Options{})
	echo, config := module(t, "echo"), module(t, "config")
	m := &plugins.Manifest{Limits: plugins.ManifestLimits{Children: 7}, Config: map[string]string{"greeting": "hi"}}
	for _, d := range []struct {
		name     string
		wasm     []byte
		manifest *plugins.Manifest
	}{
		{name: "a", wasm: echo},
		{name: "b", wasm: echo},
		{name: "b", wasm: config, manifest: m},
		{name: "c", wasm: config},
		{name: "c", wasm: echo},
	} {
		if _, err := reg.Deploy(b.ctx, d.name, d.wasm, d.manifest, "test"); err != nil {
			t.Fatalf("deploy %s: %v", d.name, err)
		}
	}
	if _, err := reg.Rollback(b.ctx, "c", ""); err != nil {
		t.Fatal(err)
	}
	before := reg.List()

	again := b.reopen(t)
	after := again.List()
	if len(after) != len(before) {
		t.Fatalf("after reopen: %d plugins, want %d", len(after), len(before))
	}
	for i := range before {
		if after[i].Name != before[i].Name || after[i].Active != before[i].Active || len(after[i].History) != len(before[i].History) || after[i].LastError != "" {
			t.Errorf("after reopen: %+v, want %+v", after[i], before[i])
		}
		for j := range before[i].History {
			x, y := before[i].History[j], after[i].History[j]
			if x.Version != y.Version || x.Source != y.Source || !x.ActivatedAt.Equal(y.ActivatedAt) || x.Size != y.Size {
				t.Errorf("after reopen: %s history[%d] = %+v, want %+v", before[i].Name, j, y, x)
			}
		}
		p, err := again.Resolve(b.ctx, before[i].Name)
		if err != nil || p.Module == nil || p.Module.Hash != before[i].Active {
			t.Errorf("after reopen: Resolve(%s) = %v, %v; want the compiled %s", before[i].Name, p.Module, err, before[i].Active)
		}
	}
	p, err := again.Resolve(b.ctx, "b")
	if err != nil || p.Limits.Children != 7 || p.Config["greeting"] != "hi" {
		t.Errorf("after reopen: b resolves to limits %+v config %v (%v), want the manifest's", p.Limits, p.Config, err)
	}
	if p, err := again.Resolve(b.ctx, "b@"+host.Hash(echo)); err != nil || p.Module.Hash != host.Hash(echo) {
		t.Errorf("after reopen: pinned older version of b: %v", err)
	}
}

func TestOpenDamagedRegistryFile(t *testing.T) {
	t.Parallel()
	_, b := setup(t, plugins.Options{})
	if err := os.WriteFile(filepath.Join(b.dir, "registry.json"), []byte(`{"plugins": {"a": `), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := plugins.Open(b.ctx, b.dir, b.host, b.opts)
	if err == nil || !strings.Contains(err.Error(), "registry.json is damaged") {
		t.Errorf("Open with a torn registry.json: %v, want an error saying it is damaged", err)
	}
}

func TestStoreIntegrity(t *testing.T) {
	t.Parallel()
	echo := module(t, "echo")
	stored := func(b *testBundle) string {
		return filepath.Join(b.dir, "sha256", strings.TrimPrefix(host.Hash(echo), "sha256:")+".wasm")
	}
	tests := []struct {
		name      string
		damage    func(t *testing.T, path string)
		wantError string
	}{
		{
			name: "flipped byte",
			damage: func(t *testing.T, path string) {
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				b[len(b)-1] ^= 0xff
				if err := os.WriteFile(path, b, 0o640); err != nil {
					t.Fatal(err)
				}
			},
			wantError: "does not match its hash",
		},
		{
			name:      "truncated",
			damage:    func(t *testing.T, path string) { os.Truncate(path, 10) },
			wantError: "does not match its hash",
		},
		{
			name:      "removed",
			damage:    func(t *testing.T, path string) { os.Remove(path) },
			wantError: "is not in the store",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg, b := setup(t, plugins.Options{})
			if _, err := reg.Deploy(b.ctx, "a", echo, nil, "test"); err != nil {
				t.Fatal(err)
			}
			if _, err := reg.Deploy(b.ctx, "a", module(t, "config"), nil, "test"); err != nil {
				t.Fatal(err)
			}
			if _, err := reg.Rollback(b.ctx, "a", ""); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, stored(b))

			again := b.reopen(t)
			info, err := again.Get("a")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(info.LastError, tc.wantError) {
				t.Errorf("LastError after reopen = %q, want it to say %q", info.LastError, tc.wantError)
			}
			if p, err := again.Resolve(b.ctx, "a"); err == nil {
				t.Errorf("Resolve of a damaged module succeeded: %s", p.Module.Hash)
			}
			if p, err := again.Resolve(b.ctx, "a@"+host.Hash(echo)); err == nil {
				t.Errorf("pinned Resolve of a damaged module succeeded: %s", p.Module.Hash)
			}
			// Check (what a submit asks) refuses it too, rather than accept
			// tasks whose every attempt would fail.
			if err := again.Check("a"); !errors.Is(err, plugins.ErrNotFound) || !strings.Contains(err.Error(), "redeploy it") || !strings.Contains(err.Error(), tc.wantError) {
				t.Errorf("Check of a plugin whose active module is damaged: %v", err)
			}
			if err := again.Check("a@" + host.Hash(echo)); !errors.Is(err, plugins.ErrNotFound) || !strings.Contains(err.Error(), tc.wantError) {
				t.Errorf("Check of a damaged pinned version: %v", err)
			}
			if err := again.Check("a@" + host.Hash(module(t, "config"))); err != nil {
				t.Errorf("Check of an intact pinned version: %v", err)
			}

			// Redeploying the module repairs the store, as the error says.
			if _, err := again.Deploy(b.ctx, "a", echo, nil, "test"); err != nil {
				t.Fatalf("redeploy: %v", err)
			}
			repaired := b.reopen(t)
			info, _ = repaired.Get("a")
			if _, err := repaired.Resolve(b.ctx, "a"); err != nil || info.LastError != "" {
				t.Errorf("after a redeploy and a reopen: Resolve %v, LastError %q; want the module back", err, info.LastError)
			}
		})
	}
}

func TestConcurrentDeployAndResolve(t *testing.T) {
	t.Parallel()
	reg, b := setup(t, plugins.Options{})
	mods := [][]byte{module(t, "echo"), module(t, "config")}
	versions := []string{host.Hash(mods[0]), host.Hash(mods[1])}
	if _, err := reg.Deploy(b.ctx, "p", mods[0], nil, "test"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 4)
	for g := range 4 {
		go func() {
			for i := range 10 {
				if g%2 == 0 {
					if _, err := reg.Deploy(b.ctx, "p", mods[(g/2+i)%2], nil, "test"); err != nil {
						done <- err
						return
					}
					continue
				}
				p, err := reg.Resolve(b.ctx, "p")
				if err != nil || !slices.Contains(versions, p.Module.Hash) {
					done <- errors.Join(err, errors.New("resolved to an unknown version"))
					return
				}
				reg.RecordAttempt("p", p.Module.Hash, "ok")
				_ = reg.List()
				if err := reg.Check("p"); err != nil { // what every submit asks, beside deploys
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	info, _ := reg.Get("p")
	n := 0
	for _, byOutcome := range info.Attempts {
		n += byOutcome["ok"]
	}
	if n != 20 {
		t.Errorf("%d attempts recorded, want 20: %v", n, info.Attempts)
	}
}

func TestRecordAttempt(t *testing.T) {
	t.Parallel()
	reg, b := setup(t, plugins.Options{})
	echo := module(t, "echo")
	v := host.Hash(echo)
	if _, err := reg.Deploy(b.ctx, "p", echo, nil, "test"); err != nil {
		t.Fatal(err)
	}
	reg.RecordAttempt("p", v, "ok")
	reg.RecordAttempt("p@"+v, v, "ok") // a pinned handler counts for its plugin
	reg.RecordAttempt("p", v, "trap")
	info, _ := reg.Get("p")
	if got := info.Attempts[v]; got["ok"] != 2 || got["trap"] != 1 || len(info.Attempts) != 1 {
		t.Errorf("Attempts = %v, want %s: ok 2, trap 1", info.Attempts, v)
	}
}
