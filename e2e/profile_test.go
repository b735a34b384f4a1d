package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeCPUProfile: serve --cpuprofile writes a Go CPU profile (gzip,
// as runtime/pprof writes it) when SIGTERM stops the server, and a path
// that cannot be created is a usage error naming the flag.
func TestServeCPUProfile(t *testing.T) {
	t.Parallel()
	t.Run("written on SIGTERM", func(t *testing.T) {
		prof := filepath.Join(t.TempDir(), "serve.prof")
		s := startServer(t, serverOpts{extra: []string{"--cpuprofile", prof}})
		s.deploy("flaky", module(t, "flaky"))
		s.submitEach("p", 20)
		if code := s.stop(30 * time.Second); code != 0 {
			t.Fatalf("serve exited %d after SIGTERM:\n%s", code, s.log.String())
		}
		b, err := os.ReadFile(prof)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 2 || !bytes.Equal(b[:2], []byte{0x1f, 0x8b}) {
			t.Fatalf("%s: %d bytes, not a gzip-compressed pprof profile", prof, len(b))
		}
	})
	t.Run("bad path", func(t *testing.T) {
		for _, args := range [][]string{
			{"serve", "--data-dir", t.TempDir(), "--addr", "127.0.0.1:0"},
			{"worker", "--server", "http://127.0.0.1:1"},
		} {
			args := append(args, "--cpuprofile", filepath.Join(t.TempDir(), "missing", "x.prof"))
			out, err := exec.Command(binPath, args...).CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 2 {
				t.Fatalf("%s: exit %v, want 2 (usage):\n%s", args[0], err, out)
			}
			if !strings.Contains(string(out), "--cpuprofile") || !strings.Contains(string(out), "no such file") {
				t.Errorf("%s: the error does not name --cpuprofile and the cause:\n%s", args[0], out)
			}
		}
	})
}
