package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/internal/tmpfstest"
)

// mountTmpfs mounts a tmpfs of the given size (e.g. "64m") on a new
// directory until the test ends (after the servers started later are
// killed); it skips the test unless the process may mount (root).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	return mountTmpfsOn(t, t.TempDir(), size)
}

// mountTmpfsOn is mountTmpfs on dir, which must exist.
func mountTmpfsOn(t *testing.T, dir, size string) string {
	t.Helper()
	return tmpfstest.Mount(t, dir, size, "sudo -E go test ./e2e -run 'TestDiskFull|TestDeployCompileCacheFull'")
}

// tryNoop submits a noop task and returns the HTTP result.
func (s *server) tryNoop(id string) httpResult {
	s.t.Helper()
	return s.do("POST", "/v1/tasks", map[string]any{"id": id, "handler": "noop"})
}

// checkDiskFull checks a 507 answer: insufficient_storage, naming the
// data dir and its free space.
func checkDiskFull(t *testing.T, r httpResult, dataDir string) {
	t.Helper()
	if r.status != 507 {
		t.Fatalf("status %d, want 507: %s", r.status, r.body)
	}
	e := r.apiError(t)
	if e.Code != "insufficient_storage" || !strings.Contains(e.Message, "data dir "+dataDir) || !strings.Contains(e.Message, "free") {
		t.Fatalf("507 body %s: want insufficient_storage naming the data dir %s and its free space", r.body, dataDir)
	}
}

// metricValue returns the value of an unlabelled metric in /metrics.
func (s *server) metricValue(name string) string {
	s.t.Helper()
	r := s.do("GET", "/metrics", nil)
	for _, line := range strings.Split(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	s.t.Fatalf("no metric %s in /metrics", name)
	return ""
}

// checkAcked restarts nothing: it checks that every id in acked exists and
// ends completed.
func (s *server) checkAcked(acked []string) {
	s.t.Helper()
	for _, id := range acked {
		if v := s.waitFinal(id, time.Minute); v.State != "completed" {
			s.t.Fatalf("acknowledged task %s is %s after the restart, want completed", id, v.State)
		}
	}
}

// TestDiskFull fills the data dir's filesystem (a small tmpfs) under a
// running server: submissions get 507 naming the data dir while reads
// answer and accepted tasks complete; one log line and a metric say so;
// once the space is freed, submissions are accepted again without a
// restart; after kill -9 and a restart every acknowledged task is there.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	mnt := mountTmpfs(t, "64m")
	dataDir := filepath.Join(mnt, "data")
	s := startServer(t, serverOpts{dataDir: dataDir, extra: []string{"--min-free-disk", "8MiB", "--disk-check-interval", "50ms"}})
	s.deploy("noop", module(t, "noop"))
	var acked []string
	for i := range 20 {
		id := fmt.Sprintf("pre-%d", i)
		if r := s.tryNoop(id); r.status != 201 {
			t.Fatalf("submit %s: %d %s", id, r.status, r.body)
		}
		acked = append(acked, id)
	}

	filler := tmpfstest.Fill(t, mnt)
	// Until the watcher sees it (every 50ms), a submission may still be
	// accepted into the WAL's headroom: durable, so acknowledged.
	var refused httpResult
	waitFor(t, 10*time.Second, "a submission refused with 507", func() bool {
		id := fmt.Sprintf("mid-%d", len(acked))
		refused = s.tryNoop(id)
		if refused.status == 201 {
			acked = append(acked, id)
		}
		return refused.status != 201
	})
	engineDir := filepath.Join(dataDir, "engine")
	checkDiskFull(t, refused, engineDir)
	checkDiskFull(t, s.do("POST", "/v1/tasks/batch", map[string]any{"tasks": []map[string]any{{"handler": "noop"}, {"handler": "noop"}}}), engineDir)
	deploy := s.do("PUT", "/v1/plugins/swap", module(t, "swap_v1"))
	if e := deploy.apiError(t); deploy.status != 507 || e.Code != "insufficient_storage" || !strings.Contains(e.Message, "no space left on device") {
		t.Fatalf("deploy on a full disk: %d %s, want 507 insufficient_storage", deploy.status, deploy.body)
	}
	if r := s.cli("submit", "noop"); r.code == 0 || !strings.Contains(r.stderr, "disk full") {
		t.Fatalf("wasmtask submit on a full disk: want a failure saying the disk is full, got %s", r)
	}
	// Reads answer; what was accepted completes (its events fit).
	for _, path := range []string{"/v1/tasks/pre-0", "/v1/tasks?limit=5", "/v1/engine", "/readyz", "/healthz"} {
		if r := s.do("GET", path, nil); r.status != 200 {
			t.Fatalf("GET %s on a full disk: %d %s", path, r.status, r.body)
		}
	}
	for _, id := range acked {
		if v := s.waitFinal(id, time.Minute); v.State != "completed" {
			t.Fatalf("task %s accepted before the disk filled: %s, want completed", id, v.State)
		}
	}
	var status api.EngineStatus
	json.Unmarshal(s.do("GET", "/v1/engine", nil).body, &status)
	if !strings.Contains(status.DiskFull, "disk full") {
		t.Fatalf("GET /v1/engine on a full disk: disk_full %q", status.DiskFull)
	}
	if v := s.metricValue("wasmtask_disk_full"); v != "1" {
		t.Fatalf("wasmtask_disk_full %s on a full disk, want 1", v)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "submissions accepted again", func() bool {
		id := fmt.Sprintf("post-%d", len(acked))
		r := s.tryNoop(id)
		if r.status == 201 {
			acked = append(acked, id)
		} else if r.status != 507 {
			t.Fatalf("submit after space was freed: %d %s", r.status, r.body)
		}
		return r.status == 201
	})
	for i := range 5 {
		id := fmt.Sprintf("post-more-%d", i)
		if r := s.tryNoop(id); r.status != 201 {
			t.Fatalf("submit %s after space was freed: %d %s", id, r.status, r.body)
		}
		acked = append(acked, id)
	}
	if v := s.metricValue("wasmtask_disk_full"); v != "0" {
		t.Fatalf("wasmtask_disk_full %s with space back, want 0", v)
	}
	if v := s.metricValue("wasmtask_disk_full_episodes_total"); v != "1" {
		t.Fatalf("wasmtask_disk_full_episodes_total %s, want 1", v)
	}
	log := s.log.String()
	if n := strings.Count(log, "disk full: refusing new submissions"); n != 1 {
		t.Fatalf("%d 'disk full' log lines, want 1 for the episode:\n%s", n, log)
	}
	if n := strings.Count(log, "disk space is back"); n != 1 {
		t.Fatalf("%d 'disk space is back' log lines, want 1:\n%s", n, log)
	}

	s.restart() // kill -9
	s.checkAcked(acked)
	t.Logf("%d tasks acknowledged, %d recovered after kill -9", len(acked), len(acked))
}

// TestDeployCompileCacheFull: wazero's compile cache is an optimisation.
// With its filesystem full (a real tmpfs on DATA_DIR/wazero-cache, filled)
// while the data dir has room for the module, a deploy succeeds and its
// tasks run; after kill -9 and a restart the plugin is active again. (On
// one full filesystem a deploy still gets 507, TestDiskFull: the module
// file and registry.json must be stored before a version is active.)
func TestDeployCompileCacheFull(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	cacheDir := filepath.Join(dataDir, "wazero-cache")
	if err := os.Mkdir(cacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	mountTmpfsOn(t, cacheDir, "1m")
	s := startServer(t, serverOpts{dataDir: dataDir})
	tmpfstest.Fill(t, cacheDir) // after the start: a start prunes what is not compiled code

	version := s.deploy("noop", module(t, "noop"))
	if version != "sha256:"+fmt.Sprintf("%x", sha256.Sum256(module(t, "noop"))) {
		t.Fatalf("deployed version %s", version)
	}
	if !strings.Contains(s.log.String(), "module compiled without caching it") {
		t.Fatalf("no log line about the full compile cache:\n%s", s.log.String())
	}
	if r := s.tryNoop("cache-full"); r.status != 201 {
		t.Fatalf("submit: %d %s", r.status, r.body)
	}
	if v := s.waitFinal("cache-full", time.Minute); v.State != "completed" {
		t.Fatalf("task of a plugin deployed with the compile cache full: %s", v.State)
	}

	s.restart() // kill -9
	if r := s.tryNoop("after-restart"); r.status != 201 {
		t.Fatalf("submit after the restart: %d %s", r.status, r.body)
	}
	if v := s.waitFinal("after-restart", time.Minute); v.State != "completed" {
		t.Fatalf("task after the restart: %s", v.State)
	}
}

// TestDiskFullStalledWrite: with the threshold off (--min-free-disk 0) a
// WAL frame larger than the WAL's headroom (a batch of thousands of small
// tasks, whose inputs stay inline) cannot be written at all on a full
// disk: its submission waits (not acknowledged), others get 507, reads
// answer; once space is freed the waiting write goes through, the batch is
// acknowledged, and a restart finds everything.
func TestDiskFullStalledWrite(t *testing.T) {
	t.Parallel()
	mnt := mountTmpfs(t, "64m")
	dataDir := filepath.Join(mnt, "data")
	s := startServer(t, serverOpts{dataDir: dataDir, extra: []string{"--min-free-disk", "0", "--disk-check-interval", "50ms"}})
	s.deploy("noop", module(t, "noop"))
	acked := []string{}
	for i := range 5 {
		id := fmt.Sprintf("pre-%d", i)
		if r := s.tryNoop(id); r.status != 201 {
			t.Fatalf("submit %s: %d %s", id, r.status, r.body)
		}
		acked = append(acked, id)
	}
	filler := tmpfstest.Fill(t, mnt)

	// 8,000 tasks of 700 random bytes (inline: under 1 KiB) in one tick: a
	// frame of more than 5 MiB, more than the headroom (1 to 5 MiB of zeros).
	const nBig = 8000
	specs := make([]map[string]any, nBig)
	for i := range specs {
		in := make([]byte, 700)
		rand.Read(in)
		specs[i] = map[string]any{"id": fmt.Sprintf("big-%d", i), "handler": "noop", "input_b64": base64.StdEncoding.EncodeToString(in)}
	}
	bigDone := make(chan httpResult, 1)
	go func() {
		body, _ := json.Marshal(map[string]any{"tasks": specs})
		resp, err := httpClient.Post(s.URL+"/v1/tasks/batch", "application/json", bytes.NewReader(body))
		if err != nil {
			bigDone <- httpResult{status: -1, body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		bigDone <- httpResult{status: resp.StatusCode, body: b}
	}()
	waitFor(t, time.Minute, "the write of the big batch to wait for space", func() bool {
		return strings.Contains(s.log.String(), "retrying until space is freed")
	})
	checkDiskFull(t, s.tryNoop("small"), filepath.Join(dataDir, "engine"))
	for _, path := range []string{"/v1/tasks/pre-0", "/v1/tasks", "/v1/engine"} {
		if r := s.do("GET", path, nil); r.status != 200 {
			t.Fatalf("GET %s while a write waits for space: %d %s", path, r.status, r.body)
		}
	}
	select {
	case r := <-bigDone:
		t.Fatalf("the submission that did not fit was answered before space was freed: %d %s", r.status, r.body)
	default:
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-bigDone:
		var res struct{ Results []api.BatchResult }
		if err := json.Unmarshal(r.body, &res); r.status != 200 || err != nil || len(res.Results) != nBig {
			t.Fatalf("the waiting batch after space was freed: %d %.300s", r.status, r.body)
		}
		for _, br := range res.Results {
			if br.Status != 201 {
				t.Fatalf("batch result %+v after space was freed, want 201", br)
			}
			acked = append(acked, br.ID)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the waiting batch was not answered within two minutes of freeing space")
	}
	waitFor(t, 10*time.Second, "submissions accepted again", func() bool {
		r := s.tryNoop("after")
		return r.status == 201
	})
	acked = append(acked, "after")
	s.restart() // kill -9
	s.checkAcked(acked)
	t.Logf("%d tasks acknowledged (%d in the batch that waited for space), all recovered after kill -9", len(acked), nBig)
}

var (
	faultBinOnce sync.Once
	faultBin     string
	faultBinErr  error
)

// faultBinary builds wasmtask with the wasmtask_faults tag (segwal's fsync
// fault injection) once per test binary.
func faultBinary(t *testing.T) string {
	t.Helper()
	faultBinOnce.Do(func() {
		faultBin = filepath.Join(filepath.Dir(binPath), "wasmtask-faults")
		args := []string{"build", "-tags", "wasmtask_faults", "-o", faultBin}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "github.com/wasmtask/wasmtask/cmd/wasmtask")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput(); err != nil {
			faultBinErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if faultBinErr != nil {
		t.Fatal(faultBinErr)
	}
	return faultBin
}

// TestFsyncFailure: a WAL fsync that fails (injected: a binary built with
// the wasmtask_faults tag fails every segment fsync while a trigger file
// exists) acknowledges nothing of its tick; the process stays up, answers
// reads, /readyz turns 503 naming the cause, writes get 503 naming it;
// after kill -9 and a restart every acknowledged task is there.
func TestFsyncFailure(t *testing.T) {
	t.Parallel()
	trigger := filepath.Join(t.TempDir(), "fail-fsync")
	s := startServer(t, serverOpts{bin: faultBinary(t), env: []string{"WASMTASK_FAULT_FSYNC_FILE=" + trigger}})
	s.deploy("noop", module(t, "noop"))
	var acked []string
	for i := range 10 {
		id := fmt.Sprintf("pre-%d", i)
		if r := s.tryNoop(id); r.status != 201 {
			t.Fatalf("submit %s: %d %s", id, r.status, r.body)
		}
		acked = append(acked, id)
	}
	for _, id := range acked {
		s.waitFinal(id, time.Minute)
	}
	if err := os.WriteFile(trigger, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	r := s.tryNoop("during")
	if r.status != 503 || !strings.Contains(r.apiError(t).Message, "fsync") {
		t.Fatalf("submit in the tick whose fsync failed: %d %s, want 503 naming the fsync", r.status, r.body)
	}
	waitFor(t, 10*time.Second, "/readyz false", func() bool { return s.do("GET", "/readyz", nil).status == 503 })
	ready := s.do("GET", "/readyz", nil)
	if e := ready.apiError(t); e.Code != "not_ready" || !strings.Contains(e.Message, "fsync") || !strings.Contains(e.Message, "input/output error") {
		t.Fatalf("/readyz after a failed fsync: %s, want not_ready naming the fsync error", ready.body)
	}
	time.Sleep(200 * time.Millisecond) // the process would exit about now if it did
	if !s.running() {
		t.Fatalf("the server exited after a failed fsync:\n%s", s.log.String())
	}
	for _, path := range []string{"/v1/tasks/pre-0", "/v1/tasks/pre-9", "/v1/tasks?limit=20", "/v1/engine", "/healthz"} {
		if r := s.do("GET", path, nil); r.status != 200 {
			t.Fatalf("GET %s after a failed fsync: %d %s", path, r.status, r.body)
		}
	}
	if v := s.do("GET", "/v1/tasks/pre-3", nil).view(t); v.State != "completed" {
		t.Fatalf("pre-3 after the failure: %s", v.State)
	}
	after := s.tryNoop("after")
	if after.status != 503 || !strings.Contains(after.apiError(t).Message, "fsync") {
		t.Fatalf("submit after the failure: %d %s, want 503 naming the fsync", after.status, after.body)
	}
	if v := s.metricValue("wasmtask_engine_stopped"); v != "1" {
		t.Fatalf("wasmtask_engine_stopped %s, want 1", v)
	}

	s.kill()
	if err := os.Remove(trigger); err != nil {
		t.Fatal(err)
	}
	s.start()
	s.checkAcked(acked)
	if r := s.do("GET", "/readyz", nil); r.status != 200 {
		t.Fatalf("/readyz after the restart: %d %s", r.status, r.body)
	}
	if r := s.tryNoop("after-restart"); r.status != 201 {
		t.Fatalf("submit after the restart: %d %s", r.status, r.body)
	}
	t.Logf("%d tasks acknowledged before the failed fsync, all recovered", len(acked))
}
