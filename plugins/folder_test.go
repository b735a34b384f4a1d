//go:build unix

// Symbolic links and FIFOs as a unix user makes them: Windows has no FIFOs
// and needs a privilege to make links.

package plugins_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/host"
	"github.com/wasmtask/wasmtask/plugins"
)

// TestWatchSymlinks puts real symbolic links in a watched folder: links
// leading outside it are refused without reading their target (the
// plugin's LastError and the log say so and quote nothing of the target);
// a relative link to a file inside the folder is followed; a FIFO is
// refused instead of blocking the watch.
func TestWatchSymlinks(t *testing.T) {
	reg, b := setup(t, plugins.Options{})
	dir, outside := t.TempDir(), t.TempDir()
	echo, config := module(t, "echo"), module(t, "config")
	const secret = "root:$6$SeCrEtSaLt$SeCrEtHaSh:19000:0:99999:7:::\n"
	writeFile(t, filepath.Join(outside, "shadow"), []byte(secret))
	writeFile(t, filepath.Join(outside, "module.wasm"), config)
	writeFile(t, filepath.Join(dir, "shadow.wasm"), echo) // its manifest is the link
	os.MkdirAll(filepath.Join(dir, "builds"), 0o755)
	writeFile(t, filepath.Join(dir, "builds", "v2.bin"), config)
	links := []struct{ link, target string }{
		{"shadow.json", filepath.Join(outside, "shadow")},
		{"pw.wasm", filepath.Join(outside, "shadow")},
		{"ext.wasm", filepath.Join(outside, "module.wasm")},
		{"up.wasm", filepath.Join("..", filepath.Base(outside), "module.wasm")},
		{"abs.wasm", filepath.Join(dir, "builds", "v2.bin")}, // absolute, even inside: refused
		{"inside.wasm", filepath.Join("builds", "v2.bin")},
	}
	for _, l := range links {
		if err := os.Symlink(l.target, filepath.Join(dir, l.link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.wasm"), 0o644); err != nil {
		t.Fatal(err)
	}
	watch(t, reg, dir, 20*time.Millisecond)

	// A relative link inside the folder is followed.
	activeIs(t, reg, "inside", host.Hash(config))
	refused := []struct{ plugin, file, reason string }{
		{"shadow", "shadow.json", "symbolic link that leads outside the plugin folder"},
		{"pw", "pw.wasm", "symbolic link that leads outside the plugin folder"},
		{"ext", "ext.wasm", "symbolic link that leads outside the plugin folder"},
		{"up", "up.wasm", "symbolic link that leads outside the plugin folder"},
		{"abs", "abs.wasm", "only relative links"},
		{"fifo", "fifo.wasm", "is not a regular file"},
	}
	for _, tc := range refused {
		var info plugins.Info
		waitFor(t, watchTimeout, tc.plugin+" refused", func() bool {
			info, _ = reg.Get(tc.plugin)
			return info.LastError != ""
		})
		if info.Active != "" {
			t.Errorf("%s: active at %s, want nothing activated", tc.plugin, info.Active)
		}
		if !strings.Contains(info.LastError, tc.file) || !strings.Contains(info.LastError, tc.reason) {
			t.Errorf("%s: LastError %q, want it to name %s and say %q", tc.plugin, info.LastError, tc.file, tc.reason)
		}
	}
	for _, leak := range []string{"SeCrEt", "root:", "'r'", "99999"} {
		if strings.Contains(b.logs.String(), leak) {
			t.Errorf("the log quotes %q of a file outside the folder:\n%s", leak, b.logs.String())
		}
	}
}
