package dispatch

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fakeDisk stands in statfs: the free space is what the test sets.
type fakeDisk struct{ avail atomic.Int64 }

func (d *fakeDisk) free(string) (int64, int64, error) { return d.avail.Load(), 1 << 40, nil }

// logBuffer collects a logger's lines for counting.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

// eventually polls cond for up to 10 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestDiskFullThreshold: below Config.MinFreeDisk new submissions (single,
// batch) are refused with a *DiskFullError naming the dir and the free
// space, while reads answer and a running attempt finishes; one log line
// starts the episode; with space back (past the hysteresis) submissions
// are accepted again without a restart, and one line says so.
func TestDiskFullThreshold(t *testing.T) {
	disk := &fakeDisk{}
	disk.avail.Store(1 << 30)
	logs := &logBuffer{}
	const minFree = 10 << 20
	r := newEngineRig(t, func(c *Config) {
		c.MinFreeDisk, c.DiskCheckEvery, c.freeSpace = minFree, 2*time.Millisecond, disk.free
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	ctx := r.ctx()
	release, started := make(chan struct{}), make(chan struct{}, 1)
	r.ex.set(func(ctx context.Context, j Job) Result {
		if j.Handler == "slow" {
			started <- struct{}{}
			<-release
		}
		return Result{Outcome: OutcomeOK, Output: []byte("done")}
	})
	r.submit(TaskSpec{ID: "running", Handler: "slow"})
	<-started
	r.submit(TaskSpec{ID: "before"})

	disk.avail.Store(1 << 20)
	eventually(t, "refusing submissions", func() bool { return r.e.DiskStatus().Full })
	_, err := r.e.Submit(ctx, TaskSpec{ID: "refused", Handler: "h"})
	var dfe *DiskFullError
	if !errors.Is(err, ErrDiskFull) || !errors.As(err, &dfe) || dfe.Dir != r.cfg.Dir ||
		!strings.Contains(err.Error(), "data dir "+r.cfg.Dir+" has 1.0 MiB free") || !strings.Contains(err.Error(), "below 10.0 MiB") {
		t.Fatalf("Submit on a full disk: %v, want a *DiskFullError naming %s and 1.0 MiB free", err, r.cfg.Dir)
	}
	if _, _, err := r.e.SubmitMany(ctx, []TaskSpec{{ID: "refused2", Handler: "h"}}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("SubmitMany on a full disk: %v, want ErrDiskFull", err)
	}
	if r.e.DiskFull() == nil {
		t.Fatal("DiskFull() = nil while submissions are refused")
	}
	// Reads answer; the attempt that was running finishes and is recorded.
	if v := r.view("before"); v.ID != "before" {
		t.Fatalf("Task(before) = %+v", v)
	}
	if got := len(r.e.List(ListFilter{})); got != 2 {
		t.Fatalf("List: %d tasks, want 2", got)
	}
	close(release)
	if v := r.wait("running"); v.State != TaskCompleted || string(v.Output) != "done" {
		t.Fatalf("the attempt running when the disk filled: %s %q, want completed", v.State, v.Output)
	}
	// Just above the threshold is not enough (hysteresis against flapping).
	disk.avail.Store(minFree + 1)
	time.Sleep(20 * time.Millisecond)
	if !r.e.DiskStatus().Full {
		t.Fatal("accepting again 1 byte above the threshold: want min + 1/16 first")
	}
	if n := logs.count("disk full: refusing new submissions"); n != 1 {
		t.Fatalf("%d 'disk full' log lines in one episode, want 1:\n%s", n, logs.buf.String())
	}

	disk.avail.Store(1 << 30)
	eventually(t, "accepting submissions again", func() bool { return !r.e.DiskStatus().Full })
	r.submit(TaskSpec{ID: "after"})
	r.idle()
	r.checkStates(map[TaskID]TaskState{"running": TaskCompleted, "before": TaskCompleted, "after": TaskCompleted})
	st := r.e.DiskStatus()
	if st.Episodes != 1 || st.FreeBytes != 1<<30 || st.MinFree != minFree {
		t.Fatalf("DiskStatus = %+v, want 1 episode, 1 GiB free, min 10 MiB", st)
	}
	if n := logs.count("disk space is back"); n != 1 {
		t.Fatalf("%d 'disk space is back' lines, want 1", n)
	}
	r.reopen()
	for _, id := range []TaskID{"refused", "refused2"} {
		if _, ok := r.e.Task(id); ok {
			t.Fatalf("task %s, refused on a full disk, exists after a restart", id)
		}
	}
	r.checkStates(map[TaskID]TaskState{"running": TaskCompleted, "before": TaskCompleted, "after": TaskCompleted})
}

// TestDiskFullFromTheStart: an engine opened on a disk below the threshold
// refuses submissions at once; MinFreeDisk < 0 turns the threshold off.
func TestDiskFullFromTheStart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		min     int64
		refused bool
	}{{"threshold", 10 << 20, true}, {"threshold off", -1, false}} {
		t.Run(tc.name, func(t *testing.T) {
			disk := &fakeDisk{}
			disk.avail.Store(1 << 20)
			r := newEngineRig(t, func(c *Config) {
				c.MinFreeDisk, c.DiskCheckEvery, c.freeSpace = tc.min, time.Hour, disk.free
			})
			_, err := r.e.Submit(r.ctx(), TaskSpec{ID: "a", Handler: "h"})
			if got := errors.Is(err, ErrDiskFull); got != tc.refused {
				t.Fatalf("Submit: %v, want refused %v", err, tc.refused)
			}
		})
	}
}

// TestDefaultMinFreeDisk: 64 MiB, at most 5% of the filesystem.
func TestDefaultMinFreeDisk(t *testing.T) {
	for _, tc := range []struct{ size, want int64 }{{1 << 40, DefaultMinFreeDisk}, {100 << 20, 5 << 20}} {
		c := Config{Dir: "x", freeSpace: func(string) (int64, int64, error) { return 0, tc.size, nil }}
		if got := c.minFreeDisk(); got != tc.want {
			t.Errorf("filesystem of %d bytes: default MinFreeDisk %d, want %d", tc.size, got, tc.want)
		}
	}
}

// TestFsyncFailureKeepsReads: a failed fsync stops the engine (nothing of
// that tick is acknowledged: its submission fails), but reads of durable
// tasks still answer, submissions get ErrStopped naming the fsync, and a
// restart recovers every acknowledged task.
func TestFsyncFailureKeepsReads(t *testing.T) {
	var fail atomic.Bool
	r := newEngineRig(t, func(c *Config) {
		c.beforeCommit = func() error {
			if fail.Load() {
				return errors.New("injected fsync failure")
			}
			return nil
		}
	})
	ctx := r.ctx()
	for _, id := range []TaskID{"a", "b"} {
		r.submit(TaskSpec{ID: id})
	}
	r.idle()
	fail.Store(true)
	_, err := r.e.Submit(ctx, TaskSpec{ID: "c", Handler: "h"})
	if want := "dispatch: engine stopped: fsync WAL: injected fsync failure"; !errors.Is(err, ErrStopped) || err.Error() != want {
		t.Fatalf("Submit in the failed tick: %v, want ErrStopped %q", err, want)
	}
	select {
	case <-r.e.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the engine did not stop after a failed fsync")
	}
	if err := r.e.Err(); err == nil || !strings.Contains(err.Error(), "fsync WAL") {
		t.Fatalf("Err() = %v, want the fsync failure", err)
	}
	for _, id := range []TaskID{"a", "b"} {
		if v := r.view(id); v.State != TaskCompleted {
			t.Fatalf("read of %s after the failure: %s, want completed", id, v.State)
		}
	}
	// c's tick was written before its fsync failed, and its attempt may
	// have run meanwhile (a new task's attempt starts once written): a
	// stopped engine's reads answer from memory, so c may be listed too.
	var listed []TaskID
	for _, v := range r.e.List(ListFilter{State: TaskCompleted}) {
		if v.ID != "c" {
			listed = append(listed, v.ID)
		}
	}
	if !slices.Equal(listed, []TaskID{"b", "a"}) {
		t.Fatalf("List after the failure: completed %v besides c, want [b a]", listed)
	}
	if _, err := r.e.Submit(ctx, TaskSpec{ID: "d", Handler: "h"}); !errors.Is(err, ErrStopped) {
		t.Fatalf("Submit after the failure: %v, want ErrStopped", err)
	}
	if err := r.e.Close(); err == nil {
		t.Fatal("Close after a failed fsync returned nil")
	}
	fail.Store(false)
	r.open()
	r.checkStates(map[TaskID]TaskState{"a": TaskCompleted, "b": TaskCompleted})
	if _, ok := r.e.Task("d"); ok {
		t.Fatal("d, submitted after the engine stopped, exists")
	}
}

// TestDiskFullFrom: an ENOSPC of another store in the data dir starts an
// episode and becomes the *DiskFullError; other errors pass unchanged.
func TestDiskFullFrom(t *testing.T) {
	disk := &fakeDisk{}
	disk.avail.Store(1 << 30)
	r := newEngineRig(t, func(c *Config) { c.MinFreeDisk, c.DiskCheckEvery, c.freeSpace = -1, 2*time.Millisecond, disk.free })
	other := errors.New("permission denied")
	if got := r.e.diskFullFrom(other); got != other {
		t.Fatalf("diskFullFrom(%v) = %v, want it unchanged", other, got)
	}
	if r.e.DiskStatus().Full {
		t.Fatal("a non-ENOSPC error started a disk-full episode")
	}
	enospc := &os.PathError{Op: "write", Path: "payloads/ab", Err: syscall.ENOSPC}
	disk.avail.Store(0)
	got := r.e.diskFullFrom(enospc)
	if !errors.Is(got, ErrDiskFull) || !errors.Is(got, syscall.ENOSPC) || !r.e.DiskStatus().Full {
		t.Fatalf("diskFullFrom(ENOSPC) = %v (full %v), want a *DiskFullError and an episode", got, r.e.DiskStatus().Full)
	}
	if _, err := r.e.Submit(r.ctx(), TaskSpec{ID: "x", Handler: "h"}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Submit after a payload store ENOSPC: %v, want ErrDiskFull", err)
	}
	// With the threshold off, a few free bytes do not end an episode an
	// ENOSPC started: the next write would fill them again.
	disk.avail.Store(enospcResumeBytes - 1)
	time.Sleep(30 * time.Millisecond)
	if !r.e.DiskStatus().Full {
		t.Fatalf("the ENOSPC episode ended with %d bytes free", enospcResumeBytes-1)
	}
	disk.avail.Store(1 << 30)
	eventually(t, "accepting again", func() bool { return !r.e.DiskStatus().Full })
	r.submit(TaskSpec{ID: "y"})
}

// fullLog is a Config.Log whose Appends fail with ENOSPC while full is set.
type fullLog struct {
	mu   sync.Mutex
	full bool
	last uint64
}

func (l *fullLog) setFull(v bool) { l.mu.Lock(); l.full = v; l.mu.Unlock() }

func (l *fullLog) Append(records ...[]byte) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.full {
		return 0, &os.PathError{Op: "write", Path: "log", Err: syscall.ENOSPC}
	}
	l.last += uint64(len(records))
	return l.last, nil
}

func (l *fullLog) Commit() (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last, nil
}

func (l *fullLog) Close() error { return nil }

// TestDiskFullStalledWrite: a frame that cannot be written at all (ENOSPC)
// is kept and retried: its submission is not answered meanwhile, other
// submissions get ErrDiskFull, reads answer; once the write succeeds the
// waiting submission is acknowledged.
func TestDiskFullStalledWrite(t *testing.T) {
	log := &fullLog{}
	e, err := Open(Config{Dir: t.TempDir(), Executor: &recorder{}, Workers: 2, Logger: quietLogger(), Log: log,
		DiskCheckEvery: 5 * time.Millisecond, MinFreeDisk: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.Submit(ctx, TaskSpec{ID: "a", Handler: "h"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Wait(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	log.setFull(true)
	waiting := make(chan error, 1)
	go func() {
		_, err := e.Submit(ctx, TaskSpec{ID: "b", Handler: "h"})
		waiting <- err
	}()
	eventually(t, "the write to stall", func() bool { return e.DiskStatus().Stalled })
	if _, err := e.Submit(ctx, TaskSpec{ID: "c", Handler: "h"}); !errors.Is(err, ErrDiskFull) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Submit while a write waits for space: %v, want ErrDiskFull with the ENOSPC", err)
	}
	if err := e.Cancel(ctx, "a", "x"); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Cancel while a write waits for space: %v, want ErrDiskFull (the loop takes no input)", err)
	}
	read := make(chan TaskView, 1)
	go func() { v, _ := e.Task("a"); read <- v }()
	select {
	case v := <-read:
		if v.State != TaskCompleted {
			t.Fatalf("Task(a) while stalled: %s", v.State)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a read waited for the stalled write")
	}
	select {
	case err := <-waiting:
		t.Fatalf("the submission whose write waits for space was answered: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	log.setFull(false)
	select {
	case err := <-waiting:
		if err != nil {
			t.Fatalf("the submission after space came back: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting submission was not acknowledged once the write succeeded")
	}
	if st := e.DiskStatus(); st.Stalled || st.Full {
		t.Fatalf("after the write succeeded: %+v, want neither stalled nor full (no watcher ends it on a Config.Log)", st)
	}
	if v, err := e.Wait(ctx, "b"); err != nil || v.State != TaskCompleted {
		t.Fatalf("b: %s %v, want completed", v.State, err)
	}
}
