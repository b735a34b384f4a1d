package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
)

// configOutput is what testdata config.wasm outputs for a present key.
func configOutput(value string) string {
	return string([]byte{byte(len(value)), 0, 0, 0}) + value
}

// TestPluginManifest deploys a module with a manifest every way there is
// (header, multipart, CLI --manifest, FILE.json beside the module, NAME.json
// in the watched folder) and checks the handler sees its config; a bad
// manifest is rejected naming it and changes nothing.
func TestPluginManifest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, serverOpts{plugins: dir})
	ctx := context.Background()
	wasm := hostModule(t, "config")
	greeting := func(handler string) string {
		t.Helper()
		res, err := s.client.Submit(ctx, api.TaskSpec{Handler: handler, Input: ptr("greeting")})
		if err != nil {
			t.Fatal(err)
		}
		v := s.waitFinal(res.Task.ID, 30*time.Second)
		if v.State != "completed" || v.Output == nil {
			t.Fatalf("%s: %s", handler, v.State)
		}
		return *v.Output
	}

	// Raw body with the manifest in a header (api.Client).
	if _, err := s.client.PluginDeploy(ctx, "cfg", wasm, []byte(`{"config": {"greeting": "from a header"}}`)); err != nil {
		t.Fatal(err)
	}
	if got := greeting("cfg"); got != configOutput("from a header") {
		t.Errorf("header manifest: output %q", got)
	}
	// The same module with another manifest is a new activation.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("module", "config.wasm")
	fw.Write(wasm)
	mw.WriteField("manifest", `{"config": {"greeting": "from multipart"}, "limits": {"timeout": "2s"}}`)
	mw.Close()
	req, _ := http.NewRequest("PUT", s.URL+"/v1/plugins/cfg", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("multipart deploy: %d", resp.StatusCode)
	}
	if got := greeting("cfg"); got != configOutput("from multipart") {
		t.Errorf("multipart manifest: output %q", got)
	}
	info, _ := s.client.PluginGet(ctx, "cfg")
	if len(info.History) != 2 || info.History[1].Manifest == nil || info.History[1].Manifest.Limits.Timeout != "2s" {
		t.Errorf("history: %+v", info.History)
	}

	// A bad manifest: 400 naming it; the active version and config stay.
	for _, tc := range []struct{ manifest, field string }{
		{`{"config": {"greeting": "x"}, "colour": "blue"}`, "manifest"},
		{`{"limits": {"timeout": "soon"}}`, "manifest.limits.timeout"},
		{`{"limits": {"memory_pages": 70000}}`, "manifest.limits.memory_pages"},
	} {
		req, _ := http.NewRequest("PUT", s.URL+"/v1/plugins/cfg", bytes.NewReader(wasm))
		req.Header.Set("X-Wasmtask-Manifest", tc.manifest)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Error errorBody }
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 400 || e.Error.Field != tc.field {
			t.Errorf("manifest %s: %d %+v, want 400 naming %s", tc.manifest, resp.StatusCode, e.Error, tc.field)
		}
	}
	if got := greeting("cfg"); got != configOutput("from multipart") {
		t.Errorf("after rejected manifests: output %q, want the multipart config kept", got)
	}

	// CLI: --manifest, and FILE.json beside FILE.wasm.
	mdir := t.TempDir()
	os.WriteFile(filepath.Join(mdir, "m.json"), []byte(`{"config": {"greeting": "from --manifest"}}`), 0o644)
	os.WriteFile(filepath.Join(mdir, "cfg2.wasm"), wasm, 0o644)
	os.WriteFile(filepath.Join(mdir, "cfg2.json"), []byte(`{"config": {"greeting": "from beside"}}`), 0o644)
	s.mustCLI(0, "plugin", "deploy", "cli1", "../host/testdata/config.wasm", "--manifest", filepath.Join(mdir, "m.json"))
	if got := greeting("cli1"); got != configOutput("from --manifest") {
		t.Errorf("--manifest: output %q", got)
	}
	s.mustCLI(0, "plugin", "deploy", "cli2", filepath.Join(mdir, "cfg2.wasm"))
	if got := greeting("cli2"); got != configOutput("from beside") {
		t.Errorf("FILE.json beside: output %q", got)
	}

	// Watched folder: NAME.json with NAME.wasm; a changed manifest
	// redeploys.
	os.WriteFile(filepath.Join(dir, "w.json"), []byte(`{"config": {"greeting": "watched"}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "w.wasm"), wasm, 0o644)
	waitFor(t, 30*time.Second, "w to be deployed", func() bool {
		info, err := s.client.PluginGet(ctx, "w")
		return err == nil && info.Active != ""
	})
	if got := greeting("w"); got != configOutput("watched") {
		t.Errorf("watched manifest: output %q", got)
	}
	tmp := filepath.Join(dir, "w.json.tmp")
	os.WriteFile(tmp, []byte(`{"config": {"greeting": "changed"}}`), 0o644)
	os.Rename(tmp, filepath.Join(dir, "w.json"))
	waitFor(t, 30*time.Second, "the changed manifest to be deployed", func() bool {
		info, err := s.client.PluginGet(ctx, "w")
		return err == nil && len(info.History) == 2
	})
	if got := greeting("w"); got != configOutput("changed") {
		t.Errorf("changed watched manifest: output %q", got)
	}
	if r := s.cli("plugin", "list"); !strings.Contains(r.stdout, "w ") {
		t.Errorf("plugin list: %s", r)
	}
}
