package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/internal/cputime"
	"github.com/wasmtask/wasmtask/internal/wasmgen"
	"github.com/wasmtask/wasmtask/plugins"
)

// largeModule is a generated WASI command of 20 MB that prints "big\n":
// all of it code, or, with the race detector (which makes wazero's
// compiler about ten times slower), 1 MB of code and padding.
func largeModule() []byte {
	code := 20 << 20
	if raceEnabled {
		code = 1 << 20
	}
	return wasmgen.Command(20<<20, code)
}

// TestLargePluginDoesNotBlock starts serve on a plugin folder holding a
// generated 20 MB module and two small ones: the small ones are active
// while the large one still compiles (listed as loading), and the large
// one runs once compiled.
func TestLargePluginDoesNotBlock(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles a 20 MB module")
	}
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "big.wasm"), largeModule(), 0o644)
	os.WriteFile(filepath.Join(dir, "small1.wasm"), hostModule(t, "echo"), 0o644)
	os.WriteFile(filepath.Join(dir, "small2.wasm"), hostModule(t, "wasicmd"), 0o644)
	os.WriteFile(filepath.Join(dir, "broken.wasm"), hostModule(t, "unknownimport"), 0o644)
	s := startServer(t, serverOpts{plugins: dir})

	list := func() map[string]plugins.Info {
		t.Helper()
		r := s.do("GET", "/v1/plugins", nil)
		var body struct{ Plugins []plugins.Info }
		if r.status != 200 || json.Unmarshal(r.body, &body) != nil {
			t.Fatalf("GET /v1/plugins: %d %s", r.status, r.body)
		}
		out := map[string]plugins.Info{}
		for _, p := range body.Plugins {
			out[p.Name] = p
		}
		return out
	}
	var seen map[string]plugins.Info
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		seen = list()
		if seen["small1"].State == "active" && seen["small2"].State == "active" && seen["broken"].State == "failed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the small plugins did not activate: %+v", seen)
		}
	}
	if big := seen["big"]; big.State != "loading" || big.Active != "" {
		t.Fatalf("when the small plugins were active, big was %+v; want it still loading", big)
	}
	if !strings.Contains(seen["broken"].LastError, "import wasmtask_v1.fetch is not provided") {
		t.Errorf("broken, never activated, is listed without its error: %+v", seen["broken"])
	}
	r := s.mustCLI(0, "plugin", "list")
	if !strings.Contains(r.stdout, "broken") || !strings.Contains(r.stdout, "failed") {
		t.Errorf("plugin list does not show the failed plugin:\n%s", r.stdout)
	}
	res, err := s.client.Submit(context.Background(), api.TaskSpec{Handler: "small2"})
	if err != nil {
		t.Fatal(err)
	}
	if v := s.waitFinal(res.Task.ID, 30*time.Second); v.State != "completed" {
		t.Fatalf("small2 while big compiles: %+v", v)
	}

	for deadline := time.Now().Add(5 * time.Minute); list()["big"].State != "active"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("big never activated: %+v", list()["big"])
		}
	}
	res, err = s.client.Submit(context.Background(), api.TaskSpec{Handler: "big"})
	if err != nil {
		t.Fatal(err)
	}
	if v := s.waitFinal(res.Task.ID, 30*time.Second); v.State != "completed" || v.Output == nil || *v.Output != "big\n" {
		t.Fatalf("big: %+v", v)
	}
}

// TestCallCompileCache runs `wasmtask call` of a 20 MB module twice with
// the same --cache-dir: the first compiles and stores the code, the second
// finds it and stores no code. (The figures are BenchmarkCallLargeModule's.
// The module hashes call remembers, under files/, are not compiled code.)
func TestCallCompileCache(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles a 20 MB module")
	}
	t.Parallel()
	dir := t.TempDir()
	mod := filepath.Join(dir, "big.wasm")
	os.WriteFile(mod, largeModule(), 0o644)
	cache := filepath.Join(dir, "cache")
	snapshot := func() map[string]time.Time {
		out := map[string]time.Time{}
		filepath.Walk(cache, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.IsDir() && p == filepath.Join(cache, "files") {
				return filepath.SkipDir
			}
			if err == nil && !fi.IsDir() {
				out[p] = fi.ModTime()
			}
			return nil
		})
		return out
	}
	var times [2]time.Duration
	var after [2]map[string]time.Time
	for i := range 2 {
		start := time.Now()
		r := runCLI(t, nil, "call", mod, "--cache-dir", cache)
		times[i] = time.Since(start)
		if r.code != 0 || r.stdout != "big\n" {
			t.Fatalf("call %d: %s", i+1, r)
		}
		after[i] = snapshot()
	}
	if len(after[0]) == 0 {
		t.Fatal("the first call cached no compiled code")
	}
	if len(after[1]) != len(after[0]) {
		t.Fatalf("the second call added cache files: %v, then %v", after[0], after[1])
	}
	for p, mt := range after[0] {
		if !after[1][p].Equal(mt) {
			t.Errorf("the second call rewrote %s: it compiled again", p)
		}
	}
	t.Logf("wasmtask call of a 20 MB module: first %v, second %v (%.1fx)", times[0], times[1], float64(times[0])/float64(times[1]))
}

// BenchmarkCallLargeModule: `wasmtask call` of a generated 20 MB module
// (all code) with an empty compile cache (cold) and with the cache the
// previous call filled (warm); child-cpu-ns/op is the CPU time of the
// wasmtask process, less inflated than wall time on a shared machine. Run:
//
//	go test -run='^$' -bench=BenchmarkCallLargeModule -benchtime=3x ./e2e/
func BenchmarkCallLargeModule(b *testing.B) {
	dir := b.TempDir()
	mod := filepath.Join(dir, "big.wasm")
	os.WriteFile(mod, wasmgen.Command(20<<20, 20<<20), 0o644)
	call := func(b *testing.B, cache string) {
		if r := runCLI(b, nil, "call", mod, "--cache-dir", cache); r.code != 0 || r.stdout != "big\n" {
			b.Fatalf("call: %s", r)
		}
	}
	b.Run("cold", func(b *testing.B) {
		start := cputime.Children()
		for i := range b.N {
			call(b, filepath.Join(dir, "cold", string(rune('a'+i%26)), time.Now().Format("150405.000000000")))
		}
		cputime.ReportChildren(b, start)
	})
	warm := filepath.Join(dir, "warm")
	call(b, warm)
	b.Run("warm", func(b *testing.B) {
		start := cputime.Children()
		for range b.N {
			call(b, warm)
		}
		cputime.ReportChildren(b, start)
	})
}
