package e2e

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/plugins"
)

// TestTableLimitThroughServe: a module declaring a 1 GiB table is
// rejected at deploy through the CLI and the API, with the limit and how to
// raise it; a table.grow past the operator's maximum returns -1 in a task.
func TestTableLimitThroughServe(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{extra: []string{"--max-table-elements", "100"}})
	ctx := context.Background()

	r := s.cli("plugin", "deploy", "big", filepath.Join("..", "host", "testdata", "bigtable.wasm"))
	if r.code == 0 || !strings.Contains(r.stderr, "tables of 134217728 elements") || !strings.Contains(r.stderr, "limits.table_elements") {
		t.Errorf("deploy of a 1 GiB table through the CLI: %s\nwant a failure naming the table size and limits.table_elements", r)
	}
	if _, err := s.client.PluginDeploy(ctx, "big", hostModule(t, "bigtable"), nil); err == nil ||
		!strings.Contains(err.Error(), "above the limit of 100 elements") {
		t.Errorf("deploy through the API: %v, want the operator's maximum of 100 named", err)
	}
	if info, err := s.client.PluginGet(ctx, "big"); err == nil && info.Active != "" {
		t.Errorf("the rejected module is active: %s", info.Active)
	}

	// The manifest asks for more than the operator allows: clamped to 100.
	s.deployWithManifest("grow", hostModule(t, "tablegrow"), `{"limits": {"table_elements": 100000}}`)
	for _, tc := range []struct {
		grow     int32
		wantOld  int32
		wantSize int32
	}{{90, 10, 100}, {91, -1, 10}} {
		in := base64.StdEncoding.EncodeToString(binary.LittleEndian.AppendUint32(nil, uint32(tc.grow)))
		res, err := s.client.Submit(ctx, api.TaskSpec{Handler: "grow", InputB64: &in})
		if err != nil {
			t.Fatal(err)
		}
		v := s.waitFinal(res.Task.ID, 30*time.Second)
		want := binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, uint32(tc.wantOld)), uint32(tc.wantSize))
		if got := outputBytes(t, v); v.State != "completed" || string(got) != string(want) {
			t.Errorf("table.grow(%d): state %s, output %v, want (old %d, size %d)", tc.grow, v.State, got, tc.wantOld, tc.wantSize)
		}
	}
}

// deployWithManifest deploys wasm under name with a manifest through the API.
func (s *server) deployWithManifest(name string, wasm []byte, manifest string) {
	s.t.Helper()
	if _, err := s.client.PluginDeploy(context.Background(), name, wasm, []byte(manifest)); err != nil {
		s.t.Fatalf("deploy %s: %v", name, err)
	}
}

// outputBytes is a task's output, whether the view carries it as text or
// base64.
func outputBytes(t testing.TB, v api.TaskView) []byte {
	t.Helper()
	switch {
	case v.Output != nil:
		return []byte(*v.Output)
	case v.OutputB64 != nil:
		b, err := base64.StdEncoding.DecodeString(*v.OutputB64)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return nil
}

// TestWatchedFolderSymlinks: through the binary, links in the --plugins
// folder that lead outside it are refused (the plugin's last_error says
// so) and nothing of their targets reaches the log; a relative link inside
// the folder deploys.
func TestWatchedFolderSymlinks(t *testing.T) {
	t.Parallel()
	dir, outside := t.TempDir(), t.TempDir()
	const secret = "root:$6$SeCrEtSaLt$SeCrEtHaSh:19000:0:99999:7:::\n"
	mustWrite(t, filepath.Join(outside, "shadow"), []byte(secret))
	mustWrite(t, filepath.Join(outside, "noop.wasm"), module(t, "noop"))
	mustWrite(t, filepath.Join(dir, "shadow.wasm"), module(t, "noop"))
	mustWrite(t, filepath.Join(dir, "v1.bin"), module(t, "noop"))
	for link, target := range map[string]string{
		"shadow.json": filepath.Join(outside, "shadow"),
		"pw.wasm":     filepath.Join(outside, "shadow"),
		"ext.wasm":    filepath.Join(outside, "noop.wasm"),
		"inside.wasm": "v1.bin",
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	s := startServer(t, serverOpts{plugins: dir})
	ctx := context.Background()
	waitFor(t, 30*time.Second, "inside.wasm deployed", func() bool {
		info, err := s.client.PluginGet(ctx, "inside")
		return err == nil && info.Active != ""
	})
	for _, name := range []string{"shadow", "pw", "ext"} {
		var info plugins.Info
		waitFor(t, 30*time.Second, name+" refused", func() bool {
			var err error
			info, err = s.client.PluginGet(ctx, name)
			return err == nil && info.LastError != ""
		})
		if info.Active != "" || !strings.Contains(info.LastError, "leads outside the plugin folder") {
			t.Errorf("%s: active %q, last_error %q, want refused as a link leading outside", name, info.Active, info.LastError)
		}
	}
	if log := s.log.String(); strings.Contains(log, "SeCrEt") || strings.Contains(log, "'r'") || strings.Contains(log, "root:") {
		t.Errorf("the server log quotes a file outside the plugin folder:\n%s", log)
	}
}

func mustWrite(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestOutcomesThroughServe: a memory bomb growing 16 pages at a time under
// a 64-page cap ends oom (not retried); unbounded recursion is a trap.
func TestOutcomesThroughServe(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	ctx := context.Background()
	s.deployWithManifest("bomb", hostModule(t, "bomb16"), `{"limits": {"memory_pages": 64}}`)
	s.deploy("recurse", hostModule(t, "recurse"))
	for _, tc := range []struct{ handler, outcome, inError string }{
		{"bomb", "oom", "memory limit of 64 pages"},
		{"recurse", "trap", "stack overflow"},
	} {
		res, err := s.client.Submit(ctx, api.TaskSpec{Handler: tc.handler, MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		v := s.waitFinal(res.Task.ID, 60*time.Second)
		if len(v.Runs) != 1 || len(v.Runs[0].Attempts) == 0 {
			t.Fatalf("%s: %+v", tc.handler, v)
		}
		a := v.Runs[0].Attempts[0]
		if v.State != "failed" || a.Outcome != tc.outcome || !strings.Contains(a.Error, tc.inError) {
			t.Errorf("%s: state %s, first attempt %s %q; want failed, %s naming %q", tc.handler, v.State, a.Outcome, a.Error, tc.outcome, tc.inError)
		}
	}
	if r := s.cli("call", "--memory-pages", "64", filepath.Join("..", "host", "testdata", "bomb16.wasm")); r.code != 1 || !strings.Contains(r.stderr, "oom") {
		t.Errorf("wasmtask call of the bomb: %s\nwant exit 1 and outcome oom", r)
	}
}
