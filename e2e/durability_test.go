package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
)

// walSegments returns the WAL segment files of a data directory, oldest first.
func walSegments(t testing.TB, dataDir string) []string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dataDir, "engine", "wal", "*.seg"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no WAL segments in %s (%v)", dataDir, err)
	}
	return segs
}

// submitEach submits n tasks one at a time (one WAL frame each, at least)
// and waits until they are final.
func (s *server) submitEach(prefix string, n int) {
	s.t.Helper()
	ctx := context.Background()
	for i := range n {
		in := fmt.Sprintf("x %s-%d", prefix, i)
		if _, err := s.client.Submit(ctx, api.TaskSpec{ID: fmt.Sprintf("%s-%d", prefix, i), Handler: "flaky", Input: &in}); err != nil {
			s.t.Fatal(err)
		}
	}
	for i := range n {
		s.waitFinal(fmt.Sprintf("%s-%d", prefix, i), time.Minute)
	}
}

// adviceAfter returns the indented command line printed after marker.
func adviceAfter(t testing.TB, out, marker string) string {
	t.Helper()
	_, rest, ok := strings.Cut(out, marker)
	if !ok {
		t.Fatalf("no %q in:\n%s", marker, out)
	}
	line, _, _ := strings.Cut(strings.TrimLeft(rest, "\n"), "\n")
	return strings.TrimSpace(line)
}

// TestRepairAdviceRunsAsPrinted damages a frame in the middle of the WAL
// (valid frames follow it, so it is not a torn tail) and checks that
// `wal verify` and a refused `serve` print the same repair command, that
// this command runs as printed (it starts the server, which keeps the
// longest valid prefix) and that the WAL then verifies.
func TestRepairAdviceRunsAsPrinted(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	s.deploy("flaky", module(t, "flaky"))
	s.submitEach("pre", 20)
	if code := s.stop(30 * time.Second); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM:\n%s", code, s.log.String())
	}
	seg := walSegments(t, s.opts.dataDir)[0]
	f, err := os.OpenFile(seg, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	const off = 16 + 28 + 3 // inside the first frame's payload
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	f.Close()

	verify := runCLI(t, nil, "wal", "verify", "--data-dir", s.opts.dataDir)
	if verify.code != 1 || !strings.Contains(verify.stdout, "DAMAGE") || !strings.Contains(verify.stdout, seg) {
		t.Fatalf("wal verify of a damaged WAL: want exit 1, DAMAGE naming %s; got %s", seg, verify)
	}
	advice := adviceAfter(t, verify.stdout, "start the server once with:")
	refused := runCLI(t, []string{"WASMTASK_ADDR=127.0.0.1:0"}, "serve", "--data-dir", s.opts.dataDir)
	if refused.code != 1 || !strings.Contains(refused.stderr, seg) {
		t.Fatalf("serve on a damaged WAL: want exit 1 naming %s, got %s", seg, refused)
	}
	if got := adviceAfter(t, refused.stderr, "start the server once with:"); got != advice {
		t.Errorf("serve advises %q, wal verify %q", got, advice)
	}
	if check := adviceAfter(t, refused.stderr, "Check the WAL with:"); check != binPath+" wal verify --data-dir "+s.opts.dataDir {
		t.Errorf("serve's check advice: %q", check)
	}

	// Run the advice as printed (a data dir without shell metacharacters
	// needs no quoting, so splitting on spaces is what a shell does).
	argv := strings.Fields(advice)
	if strings.ContainsAny(advice, `'"\`) || argv[0] != binPath {
		t.Fatalf("advice %q: want %s followed by plain words", advice, binPath)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "WASMTASK_ADDR=127.0.0.1:0", "WASMTASK_TOKEN=")
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	waitFor(t, time.Minute, "the repairing server to listen", func() bool {
		select {
		case err := <-exited:
			t.Fatalf("%s exited (%v):\n%s", advice, err, log.String())
		default:
		}
		return strings.Contains(log.String(), "listening")
	})
	if !strings.Contains(log.String(), "repair removed data") {
		t.Errorf("the repairing server did not log what it removed:\n%s", log.String())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the repairing server did not stop after SIGTERM")
	}
	exited <- nil // for the deferred cleanup
	if r := runCLI(t, nil, "wal", "verify", "--data-dir", s.opts.dataDir); r.code != 0 || !strings.Contains(r.stdout, "ok") {
		t.Errorf("wal verify after the repair: %s", r)
	}
}

// TestKilledAttemptOfDefaultTaskCompletes submits tasks with the default
// max_attempts (1) whose first attempt hangs, kills the server with
// SIGKILL while they run, and restarts it: each attempt cut short is
// closed as lost, which does not use the task's attempt, so every task
// completes on its second attempt (as the README promises).
func TestKilledAttemptOfDefaultTaskCompletes(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{workers: 2})
	s.deploy("flaky", module(t, "flaky"))
	ctx := context.Background()
	ids := []string{"hang-1", "hang-2"}
	for _, id := range ids {
		in := "h " + id
		if _, err := s.client.Submit(ctx, api.TaskSpec{ID: id, Handler: "flaky", Input: &in}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		waitFor(t, time.Minute, id+" to start its first attempt", func() bool {
			v, err := s.client.TaskGet(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if v.MaxAttempts != 1 {
				t.Fatalf("%s: max_attempts %d, want the default 1", id, v.MaxAttempts)
			}
			a := attempts(v)
			return v.State == "running" && len(a) == 1 && a[0].StartedAt != ""
		})
	}
	s.kill()
	s.start()
	for _, id := range ids {
		v := s.waitFinal(id, time.Minute)
		a := attempts(v)
		if v.State != "completed" || len(a) != 2 || a[0].Outcome != "lost" || a[1].Outcome != "ok" {
			t.Errorf("%s after kill -9 and restart: %s with attempts %+v, want completed after [lost ok]", id, v.State, a)
		}
	}
}

// TestTruncatedSegmentRefused stops a server cleanly (everything fsynced),
// cuts its newest WAL segment to half, as `truncate -s 50%` does, and
// checks that neither `wal verify` nor `serve` calls that a harmless torn
// tail: both refuse, naming the file, and verify says what was fsynced.
func TestTruncatedSegmentRefused(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	s.deploy("flaky", module(t, "flaky"))
	s.submitEach("t", 20)
	if code := s.stop(30 * time.Second); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM:\n%s", code, s.log.String())
	}
	segs := walSegments(t, s.opts.dataDir)
	seg := segs[len(segs)-1]
	fi, err := os.Stat(seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(seg, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	verify := runCLI(t, nil, "wal", "verify", "--data-dir", s.opts.dataDir)
	if verify.code != 1 || !strings.Contains(verify.stdout, "DAMAGE") || !strings.Contains(verify.stdout, seg) ||
		!strings.Contains(verify.stdout, "fsynced") || strings.Contains(verify.stdout, "never acknowledged") {
		t.Errorf("wal verify of a truncated segment: want exit 1, DAMAGE naming %s and what was fsynced, no \"never acknowledged\"; got %s", seg, verify)
	}
	refused := runCLI(t, []string{"WASMTASK_ADDR=127.0.0.1:0"}, "serve", "--data-dir", s.opts.dataDir)
	if refused.code != 1 || !strings.Contains(refused.stderr, seg) || !strings.Contains(refused.stderr, "records below the durable point are missing") {
		t.Errorf("serve on a truncated segment: want exit 1 naming %s, got %s", seg, refused)
	}
}
