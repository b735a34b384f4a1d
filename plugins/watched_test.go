package plugins_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/host"
	"github.com/wasmtask/wasmtask/plugins"
)

// watchUntil is watch with a stop function, for a test that reopens the
// registry as a restarted server would. stop waits until a deploy in
// progress has finished.
func watchUntil(t *testing.T, reg *plugins.Registry, dir string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if err := reg.Watch(ctx, dir, 50*time.Millisecond); err != nil {
		cancel()
		t.Fatalf("Watch: %v", err)
	}
	return func() {
		cancel()
		time.Sleep(100 * time.Millisecond) // let a timer that already fired finish: not an assertion
	}
}

// TestWatchAcrossRestart: the last change wins across a restart. A watched
// file that did not change since it was last loaded does not take over
// from a later deploy or rollback; a file changed after the deploy does;
// a changed file older than the deploy is a conflict, reported, until the
// file is touched.
func TestWatchAcrossRestart(t *testing.T) {
	echo, config, output := module(t, "echo"), module(t, "config"), module(t, "output")
	v1, v2, v3 := host.Hash(echo), host.Hash(config), host.Hash(output)
	tests := []struct {
		name string
		// whileUp runs with the first registry watching dir (v1 loaded from
		// p.wasm); whileDown between the two runs.
		whileUp      func(t *testing.T, reg *plugins.Registry, b *testBundle, file string)
		whileDown    func(t *testing.T, b *testBundle, file string)
		wantActive   string
		wantLog      string // in the second run's log
		wantConflict bool
	}{
		{
			name: "unchanged file after a deploy",
			whileUp: func(t *testing.T, reg *plugins.Registry, b *testBundle, _ string) {
				mustDeploy(t, reg, b, config)
			},
			wantActive: v2, wantLog: "watched file unchanged since it was last loaded",
		},
		{
			name: "unchanged file after a deploy, registry.json from before the watched record",
			whileUp: func(t *testing.T, reg *plugins.Registry, b *testBundle, _ string) {
				mustDeploy(t, reg, b, config)
			},
			whileDown:  func(t *testing.T, b *testBundle, _ string) { dropWatchedRecords(t, b.dir) },
			wantActive: v2, wantLog: "watched file unchanged since it was last loaded",
		},
		{
			name: "unchanged file after a rollback",
			whileUp: func(t *testing.T, reg *plugins.Registry, b *testBundle, file string) {
				writeFile(t, file, config)
				activeIs(t, reg, "p", v2)
				if _, err := reg.Rollback(b.ctx, "p", ""); err != nil {
					t.Fatal(err)
				}
				writeFile(t, file, config) // the folder keeps v2; v1 stays active
				waitFor(t, watchTimeout, "the rewrite to be judged", func() bool {
					return strings.Contains(b.logs.String(), "watched file unchanged since it was last loaded")
				})
			},
			wantActive: v1, wantLog: "watched file unchanged since it was last loaded",
		},
		{
			name: "file replaced after the deploy",
			whileUp: func(t *testing.T, reg *plugins.Registry, b *testBundle, _ string) {
				mustDeploy(t, reg, b, config)
			},
			whileDown:  func(t *testing.T, _ *testBundle, file string) { writeFile(t, file, output) },
			wantActive: v3, wantLog: "plugins: activated",
		},
		{
			name: "file replaced by an older file than the deploy",
			whileUp: func(t *testing.T, reg *plugins.Registry, b *testBundle, _ string) {
				mustDeploy(t, reg, b, config)
			},
			whileDown: func(t *testing.T, _ *testBundle, file string) {
				writeFile(t, file, output)
				old := time.Now().Add(-time.Hour)
				if err := os.Chtimes(file, old, old); err != nil {
					t.Fatal(err)
				}
			},
			wantActive: v2, wantLog: "conflict", wantConflict: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg, b := setup(t, plugins.Options{})
			dir := t.TempDir()
			file := filepath.Join(dir, "p.wasm")
			writeFile(t, file, echo)
			stop := watchUntil(t, reg, dir)
			activeIs(t, reg, "p", v1)
			tc.whileUp(t, reg, b, file)
			stop()
			if tc.whileDown != nil {
				tc.whileDown(t, b, file)
			}

			mark := len(b.logs.String())
			reg = b.reopen(t)
			watch(t, reg, dir, 50*time.Millisecond)
			waitFor(t, watchTimeout, "the restarted watch to judge p.wasm", func() bool {
				return strings.Contains(b.logs.String()[mark:], tc.wantLog)
			})
			info, _ := reg.Get("p")
			if info.Active != tc.wantActive {
				t.Fatalf("after the restart p is at %s, want %s\nlog:\n%s", info.Active, tc.wantActive, b.logs.String()[mark:])
			}
			if got := info.Conflict != ""; got != tc.wantConflict {
				t.Fatalf("Conflict = %q, want one: %v", info.Conflict, tc.wantConflict)
			}
			if !tc.wantConflict {
				return
			}
			for _, want := range []string{file, v3, v2, "touch"} {
				if !strings.Contains(info.Conflict, want) {
					t.Errorf("Conflict %q does not name %s", info.Conflict, want)
				}
			}
			// Touching the file says "this one": it becomes active and the
			// conflict is gone.
			now := time.Now()
			if err := os.Chtimes(file, now, now); err != nil {
				t.Fatal(err)
			}
			info = activeIs(t, reg, "p", v3)
			if info.Conflict != "" {
				t.Errorf("Conflict after touching the file: %q", info.Conflict)
			}
		})
	}
}

func mustDeploy(t *testing.T, reg *plugins.Registry, b *testBundle, wasm []byte) {
	t.Helper()
	time.Sleep(10 * time.Millisecond) // a later wall-clock time than the watched load
	if _, err := reg.Deploy(b.ctx, "p", wasm, nil, "http"); err != nil {
		t.Fatal(err)
	}
}

// dropWatchedRecords rewrites registry.json as a server from before the
// watched record wrote it.
func dropWatchedRecords(t *testing.T, dir string) {
	t.Helper()
	path := filepath.Join(dir, "registry.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var state map[string]map[string]map[string]json.RawMessage
	if err := json.Unmarshal(b, &state); err != nil {
		t.Fatal(err)
	}
	for _, rec := range state["plugins"] {
		if _, ok := rec["watched"]; !ok {
			t.Fatalf("registry.json has no watched record to drop:\n%s", b)
		}
		delete(rec, "watched")
	}
	if b, err = json.Marshal(state); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b)
}
