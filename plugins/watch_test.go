package plugins_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wasmtask/wasmtask/host"
	"github.com/wasmtask/wasmtask/plugins"
)

// The watch tests are not parallel: each checks, when it ends, that every
// goroutine Watch started has ended once its context is canceled.

const watchTimeout = 20 * time.Second

// watch starts reg.Watch on dir. At cleanup it cancels the watch and
// requires that the goroutines it started (event loop, fsnotify, timers,
// a deploy in progress) end.
func watch(t *testing.T, reg *plugins.Registry, dir string, debounce time.Duration) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	ctx, cancel := context.WithCancel(context.Background())
	if err := reg.Watch(ctx, dir, debounce); err != nil {
		cancel()
		t.Fatalf("Watch: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := goleak.Find(before); err != nil {
			t.Errorf("Watch left goroutines behind after its context was canceled: %v", err)
		}
	})
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// activeIs waits until plugin name is active at version.
func activeIs(t *testing.T, reg *plugins.Registry, name, version string) plugins.Info {
	t.Helper()
	var info plugins.Info
	waitFor(t, watchTimeout, name+" active at "+version, func() bool {
		info, _ = reg.Get(name)
		return info.Active == version
	})
	return info
}

func TestWatchDeploys(t *testing.T) {
	reg, _ := setup(t, plugins.Options{})
	dir := t.TempDir()
	echo, config := module(t, "echo"), module(t, "config")
	writeFile(t, filepath.Join(dir, "present.wasm"), echo)
	writeFile(t, filepath.Join(dir, "README.txt"), []byte("not a module"))
	watch(t, reg, dir, 50*time.Millisecond)

	// A module present at start is deployed.
	info := activeIs(t, reg, "present", host.Hash(echo))
	if src := info.History[0].Source; src != "watch:"+filepath.Join(dir, "present.wasm") {
		t.Errorf("source = %q, want watch:<file>", src)
	}
	// A module copied in later is deployed.
	writeFile(t, filepath.Join(dir, "copied.wasm"), config)
	activeIs(t, reg, "copied", host.Hash(config))
	// A replaced module becomes the new active version; the old one stays in
	// the history.
	writeFile(t, filepath.Join(dir, "present.wasm"), config)
	info = activeIs(t, reg, "present", host.Hash(config))
	if len(info.History) != 2 || info.History[0].Version != host.Hash(echo) {
		t.Errorf("history after a replace: %+v, want echo then config", info.History)
	}
	// A module written under another name and renamed in is deployed.
	part := filepath.Join(dir, "moved.wasm.part")
	writeFile(t, part, echo)
	if err := os.Rename(part, filepath.Join(dir, "moved.wasm")); err != nil {
		t.Fatal(err)
	}
	activeIs(t, reg, "moved", host.Hash(echo))
	if list := reg.List(); len(list) != 3 {
		t.Errorf("List = %+v, want present, copied and moved only", list)
	}
}

func TestWatchHalfWrittenModule(t *testing.T) {
	reg, b := setup(t, plugins.Options{})
	dir := t.TempDir()
	config := module(t, "config")
	const debounce = 400 * time.Millisecond
	watch(t, reg, dir, debounce)

	// Write half the module, then, well within the debounce, the rest: only
	// the whole file is deployed; the half is never even tried.
	path := filepath.Join(dir, "half.wasm")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(config[:len(config)/2]); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(debounce / 8) // a copy in progress: not an assertion
	if _, err := f.Write(config[len(config)/2:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	info := activeIs(t, reg, "half", host.Hash(config))
	if len(info.History) != 1 || info.LastError != "" {
		t.Errorf("after a two-part write: history %+v, LastError %q; want one activation and no error", info.History, info.LastError)
	}
	if logs := b.logs.String(); strings.Contains(logs, "rejected module") {
		t.Errorf("the half-written module was tried:\n%s", logs)
	}
}

func TestWatchBadModule(t *testing.T) {
	reg, _ := setup(t, plugins.Options{})
	dir := t.TempDir()
	echo, config := module(t, "echo"), module(t, "config")
	writeFile(t, filepath.Join(dir, "w.wasm"), echo)
	watch(t, reg, dir, 50*time.Millisecond)
	activeIs(t, reg, "w", host.Hash(echo))

	tests := []struct {
		name       string
		plugin     string
		wasm       []byte
		wantError  string
		wantActive string // "" when the plugin was never deployed
	}{
		{name: "replacement with an unknown import", plugin: "w", wasm: module(t, "unknownimport"), wantError: "wasmtask_v1.fetch", wantActive: host.Hash(echo)},
		{name: "garbage under a new name", plugin: "junk", wasm: []byte("\x00asm garbage"), wantError: "not a valid WebAssembly module"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, filepath.Join(dir, tc.plugin+".wasm"), tc.wasm)
			var info plugins.Info
			waitFor(t, watchTimeout, tc.plugin+"'s LastError", func() bool {
				info, _ = reg.Get(tc.plugin)
				return info.LastError != ""
			})
			if !strings.Contains(info.LastError, tc.wantError) || info.Active != tc.wantActive {
				t.Errorf("Get(%s) = active %q, LastError %q; want active %q and an error with %q", tc.plugin, info.Active, info.LastError, tc.wantActive, tc.wantError)
			}
			p, err := reg.Resolve(context.Background(), tc.plugin)
			switch {
			case tc.wantActive == "" && !errors.Is(err, plugins.ErrNotFound):
				t.Errorf("Resolve(%s): %v, want ErrNotFound", tc.plugin, err)
			case tc.wantActive != "" && (err != nil || p.Module.Hash != tc.wantActive):
				t.Errorf("Resolve(%s): %v, want the active version %s", tc.plugin, err, tc.wantActive)
			}
		})
	}

	// A good module clears the error.
	writeFile(t, filepath.Join(dir, "w.wasm"), config)
	if info := activeIs(t, reg, "w", host.Hash(config)); info.LastError != "" {
		t.Errorf("LastError after a good module: %q", info.LastError)
	}
}

func TestWatchManifest(t *testing.T) {
	reg, _ := setup(t, plugins.Options{})
	dir := t.TempDir()
	config := module(t, "config")
	version := host.Hash(config)
	manifest := filepath.Join(dir, "m.json")
	writeFile(t, filepath.Join(dir, "m.wasm"), config)
	writeFile(t, manifest, []byte(`{"config": {"greeting": "hi"}, "limits": {"children": 2}}`))
	watch(t, reg, dir, 50*time.Millisecond)

	greeting := func() string {
		p, err := reg.Resolve(context.Background(), "m")
		if err != nil {
			return ""
		}
		return p.Config["greeting"]
	}
	waitFor(t, watchTimeout, "m deployed with its manifest", func() bool { return greeting() == "hi" })
	if p, _ := reg.Resolve(context.Background(), "m"); p.Limits.Children != 2 {
		t.Errorf("limits from m.json: %+v, want children 2", p.Limits)
	}

	// A changed manifest redeploys the same module with it.
	writeFile(t, manifest, []byte(`{"config": {"greeting": "bye"}}`))
	waitFor(t, watchTimeout, "m redeployed with the new manifest", func() bool { return greeting() == "bye" })
	info, _ := reg.Get("m")
	if len(info.History) != 2 || info.History[1].Version != version || info.History[1].Manifest == nil {
		t.Errorf("history after a manifest change: %+v, want a second activation of %s with its manifest", info.History, version)
	}

	// A bad manifest is reported; the active version and its config stay.
	writeFile(t, manifest, []byte(`{"limitz": {}}`))
	waitFor(t, watchTimeout, "m's LastError", func() bool {
		info, _ = reg.Get("m")
		return info.LastError != ""
	})
	if !strings.Contains(info.LastError, "m.json") || !strings.Contains(info.LastError, "limitz") {
		t.Errorf("LastError = %q, want it to name m.json and the unknown field", info.LastError)
	}
	if g := greeting(); g != "bye" || len(info.History) != 2 {
		t.Errorf("after a bad manifest: greeting %q with %d activations, want bye with 2", g, len(info.History))
	}
}

func TestWatchMissingDir(t *testing.T) {
	reg, _ := setup(t, plugins.Options{})
	err := reg.Watch(context.Background(), filepath.Join(t.TempDir(), "nope"), 0)
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("Watch of a missing directory: %v, want an error naming it", err)
	}
}
