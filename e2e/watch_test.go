package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
)

func versionOf(wasm []byte) string {
	sum := sha256.Sum256(wasm)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// TestWatchedFolder deploys modules copied into --plugins DIR, replaces
// one, rejects a broken one (the active version stays), and keeps them
// across a restart.
func TestWatchedFolder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	echo := hostModule(t, "echo")
	if err := os.WriteFile(filepath.Join(dir, "up.wasm"), echo, 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, serverOpts{plugins: dir})
	ctx := context.Background()

	// activeIn polls `wasmtask plugin list` until name shows version.
	activeIn := func(name, version string) {
		t.Helper()
		re := regexp.MustCompile(`(?m)^` + name + ` +` + version + ` `)
		waitFor(t, 30*time.Second, "plugin list to show "+name+" at "+version, func() bool {
			return re.MatchString(s.mustCLI(0, "plugin", "list").stdout)
		})
	}
	run := func(handler, input string) api.TaskView {
		t.Helper()
		res, err := s.client.Submit(ctx, api.TaskSpec{Handler: handler, Input: &input})
		if err != nil {
			t.Fatal(err)
		}
		return s.waitFinal(res.Task.ID, 30*time.Second)
	}

	// A module present at start is loaded.
	activeIn("up", versionOf(echo))
	if v := run("up", "watched"); v.State != "completed" || *v.Output != "WATCHED" {
		t.Errorf("task on the watched module: %s %v", v.State, v.Output)
	}

	// A module copied in while the server runs, written in two halves a
	// moment apart: only the whole file is deployed.
	v1, v2 := module(t, "swap_v1"), module(t, "swap_v2")
	f, err := os.Create(filepath.Join(dir, "sw.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	f.Write(v1[:len(v1)/2])
	f.Sync()
	time.Sleep(50 * time.Millisecond) // a slow copy, not synchronization
	f.Write(v1[len(v1)/2:])
	f.Close()
	activeIn("sw", versionOf(v1))
	if v := run("sw", ""); *v.Output != "v1" {
		t.Errorf("sw: output %q, want v1", *v.Output)
	}
	info, _ := s.client.PluginGet(ctx, "sw")
	if len(info.History) != 1 || !strings.HasPrefix(info.History[0].Source, "watch:") {
		t.Errorf("sw history after one copy (half-written file deployed?): %+v", info.History)
	}

	// Replaced atomically by v2.
	tmp := filepath.Join(dir, "sw.wasm.tmp")
	os.WriteFile(tmp, v2, 0o644)
	if err := os.Rename(tmp, filepath.Join(dir, "sw.wasm")); err != nil {
		t.Fatal(err)
	}
	activeIn("sw", versionOf(v2))
	if v := run("sw", ""); *v.Output != "v2" || attempts(v)[0].Module != versionOf(v2) {
		t.Errorf("sw after replacement: %q on %s", *v.Output, attempts(v)[0].Module)
	}

	// A broken module is reported; v2 stays active.
	os.WriteFile(tmp, []byte("\x00asm but not really"), 0o644)
	os.Rename(tmp, filepath.Join(dir, "sw.wasm"))
	waitFor(t, 30*time.Second, "the broken module to be reported", func() bool {
		info, err := s.client.PluginGet(ctx, "sw")
		return err == nil && info.LastError != ""
	})
	r := s.mustCLI(0, "plugin", "list")
	if !regexp.MustCompile(`(?m)^sw +` + versionOf(v2) + ` .*not a valid WebAssembly module`).MatchString(r.stdout) {
		t.Errorf("plugin list after a broken module:\n%s", r.stdout)
	}
	if v := run("sw", ""); v.State != "completed" || *v.Output != "v2" {
		t.Errorf("sw after the broken module: %s %v", v.State, v.Output)
	}

	// Restart: the registry keeps the active versions; the broken file in
	// the folder is rejected again and changes nothing.
	s.restart()
	activeIn("sw", versionOf(v2))
	activeIn("up", versionOf(echo))
	waitFor(t, 30*time.Second, "the broken module to be reported after the restart", func() bool {
		info, err := s.client.PluginGet(ctx, "sw")
		return err == nil && info.LastError != ""
	})
	if v := run("sw", ""); *v.Output != "v2" {
		t.Errorf("sw after restart: %q", *v.Output)
	}
}

// TestRestartKeepsDeploy: a module loaded from the watched folder (v1),
// then `wasmtask plugin deploy` of v2, then SIGTERM and a restart: v2 stays
// active and runs tasks (the unchanged file does not revert the deploy).
// A file changed afterwards in the folder still activates (the watch
// works).
func TestRestartKeepsDeploy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	v1, v2, v3 := module(t, "swap_v1"), module(t, "swap_v2"), hostModule(t, "echo")
	mustWrite(t, filepath.Join(dir, "wc.wasm"), v1)
	s := startServer(t, serverOpts{plugins: dir})
	ctx := context.Background()

	activeIn := func(version string) {
		t.Helper()
		re := regexp.MustCompile(`(?m)^wc +` + version + ` `)
		waitFor(t, 30*time.Second, "plugin list to show wc at "+version, func() bool {
			return re.MatchString(s.mustCLI(0, "plugin", "list").stdout)
		})
	}
	runOn := func(wantVersion, input, wantOutput string) {
		t.Helper()
		res, err := s.client.Submit(ctx, api.TaskSpec{Handler: "wc", Input: &input})
		if err != nil {
			t.Fatal(err)
		}
		v := s.waitFinal(res.Task.ID, 30*time.Second)
		if v.State != "completed" || v.Output == nil || *v.Output != wantOutput || attempts(v)[0].Module != wantVersion {
			t.Fatalf("task on wc: %s, output %v on %s; want completed, %q on %s", v.State, v.Output, attempts(v)[0].Module, wantOutput, wantVersion)
		}
	}

	activeIn(versionOf(v1))
	v2file := filepath.Join(t.TempDir(), "wc_v2.wasm")
	mustWrite(t, v2file, v2)
	s.mustCLI(0, "plugin", "deploy", "wc", v2file)
	activeIn(versionOf(v2))
	runOn(versionOf(v2), "", "v2")

	if code := s.stop(30 * time.Second); code != 0 {
		t.Fatalf("SIGTERM: exit %d", code)
	}
	s.start()
	waitFor(t, 30*time.Second, "the watch to look at wc.wasm after the restart", func() bool {
		return strings.Contains(s.log.String(), "watched file unchanged since it was last loaded")
	})
	activeIn(versionOf(v2))
	if strings.Contains(s.log.String(), "plugins: activated") {
		t.Errorf("the restart activated a version:\n%s", s.log.String())
	}
	runOn(versionOf(v2), "", "v2")

	// A changed file in the watched folder activates.
	tmp := filepath.Join(dir, "wc.wasm.tmp")
	mustWrite(t, tmp, v3)
	if err := os.Rename(tmp, filepath.Join(dir, "wc.wasm")); err != nil {
		t.Fatal(err)
	}
	activeIn(versionOf(v3))
	runOn(versionOf(v3), "after", "AFTER")

	// A genuine conflict: v2 deployed again, then, while the server is down,
	// the file replaced by one written before that deploy (a copy that kept
	// its old time). The later change (v2) stays; the log and plugin list
	// say so.
	s.mustCLI(0, "plugin", "deploy", "wc", v2file)
	if code := s.stop(30 * time.Second); code != 0 {
		t.Fatalf("SIGTERM: exit %d", code)
	}
	mustWrite(t, filepath.Join(dir, "wc.wasm"), v1)
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "wc.wasm"), old, old); err != nil {
		t.Fatal(err)
	}
	s.start()
	waitFor(t, 30*time.Second, "the conflict in the log", func() bool {
		return strings.Contains(s.log.String(), "plugins: conflict: watched file")
	})
	list := s.mustCLI(0, "plugin", "list").stdout
	if !regexp.MustCompile(`(?m)^wc +` + versionOf(v2) + ` .*conflict: watched file \S*wc.wasm holds ` + versionOf(v1)).MatchString(list) {
		t.Errorf("plugin list does not show the conflict:\n%s", list)
	}
	runOn(versionOf(v2), "", "v2")
}
