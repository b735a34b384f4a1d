package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// commitGate holds the committer before its fsync until the test lets it go.
type commitGate struct {
	mu      sync.Mutex
	closed  bool
	open    chan struct{}
	entered chan struct{} // one value each time the committer reaches the gate
	fail    error
}

func newCommitGate() *commitGate {
	return &commitGate{open: make(chan struct{}), entered: make(chan struct{}, 1024)}
}

func (g *commitGate) hook() error {
	g.entered <- struct{}{}
	<-g.open
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.fail
}

// release lets the held commit and every later one go; fail stands for
// their fsync's error. The gate starts closed.
func (g *commitGate) release(fail error) {
	g.mu.Lock()
	if !g.closed {
		g.fail = fail
		g.closed = true
		close(g.open)
	}
	g.mu.Unlock()
}

// gatedRig is an engine rig whose commits wait at a gate; opts change its
// Config further.
func gatedRig(t *testing.T, opts ...func(*Config)) (*engineRig, *commitGate) {
	gate := newCommitGate()
	r := newEngineRig(t, func(c *Config) {
		c.beforeCommit = gate.hook
		for _, o := range opts {
			o(c)
		}
	})
	t.Cleanup(func() { gate.release(nil) }) // before the rig's Close, should the test stop early
	return r, gate
}

// submitAsync submits task id on another goroutine; the channel gets
// Submit's error once it returns.
func submitAsync(ctx context.Context, r *engineRig, id TaskID) chan error {
	done := make(chan error, 1)
	go func() {
		_, err := r.e.Submit(ctx, TaskSpec{ID: id, Handler: "h"})
		done <- err
	}()
	return done
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// notWithin asserts that ch yields nothing for a while.
func notWithin[T any](t *testing.T, what string, ch <-chan T) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s before its tick was durable", what)
	case <-time.After(50 * time.Millisecond):
	}
}

// TestCommitReleasesOnlyDurableTicks: while the fsync of a tick is held,
// nothing of it is acknowledged or visible (the Submit does not return,
// readers wait rather than show it), yet the loop goes on stepping and
// appending the next ticks. Its attempt starts once the tick is written
// (the submission and the lease, which a crash of the process keeps), or
// with DurableLeases only after the fsync. Letting the fsync go releases
// it all.
func TestCommitReleasesOnlyDurableTicks(t *testing.T) {
	for _, durableLeases := range []bool{false, true} {
		t.Run(fmt.Sprintf("durable_leases=%v", durableLeases), func(t *testing.T) {
			testCommitReleasesOnlyDurableTicks(t, durableLeases)
		})
	}
}

func testCommitReleasesOnlyDurableTicks(t *testing.T, durableLeases bool) {
	started := make(chan struct{}, 4)
	r, gate := gatedRig(t, func(c *Config) { c.DurableLeases = durableLeases })
	r.ex.set(func(context.Context, Job) Result {
		started <- struct{}{}
		return Result{Outcome: OutcomeOK}
	})
	ctx := r.ctx()

	submitted := submitAsync(ctx, r, "a")
	<-gate.entered // the tick with a's submission and lease is appended, its fsync held
	if durableLeases {
		notWithin(t, "the attempt started", started)
	} else {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("the attempt of a submission written, its fsync held, did not start")
		}
	}
	notWithin(t, "Submit returned", submitted)

	read := make(chan TaskView, 1)
	go func() {
		v, _ := r.e.Task("a")
		read <- v
	}()
	notWithin(t, "Task returned a's view", read)

	// The loop does not wait for the fsync: it steps b's tick (and holds
	// it for the next fsync).
	applied := func() uint64 {
		r.e.mu.RLock()
		defer r.e.mu.RUnlock()
		return r.e.state.Applied
	}
	before := applied()
	second := submitAsync(ctx, r, "b")
	waitFor(t, "the loop to step the next tick during the held fsync", func() bool { return applied() > before })
	notWithin(t, "the second Submit returned", second)

	gate.release(nil)
	for _, ch := range []chan error{submitted, second} {
		if err := <-ch; err != nil {
			t.Fatalf("Submit: %v", err)
		}
	}
	if v := <-read; v.ID != "a" {
		t.Fatalf("Task(a) after the fsync = %+v", v)
	}
	r.idle()
	r.checkStates(map[TaskID]TaskState{"a": TaskCompleted, "b": TaskCompleted})
}

// TestCommitFailureStopsEngine: a failed fsync fails the callers of the
// ticks it covered, starts none of their attempts (under DurableLeases;
// by default a new task's attempt may start once its tick is written) and
// stops the engine with an error naming the fsync.
func TestCommitFailureStopsEngine(t *testing.T) {
	r, gate := gatedRig(t, func(c *Config) { c.DurableLeases = true })
	ctx := r.ctx()
	submitted := submitAsync(ctx, r, "a")
	<-gate.entered
	gate.release(errors.New("disk on fire"))
	err := <-submitted
	if !errors.Is(err, ErrStopped) || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Submit = %v, want ErrStopped naming the fsync error", err)
	}
	select {
	case <-r.e.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the engine did not stop after a failed fsync")
	}
	if err := r.e.Err(); err == nil || !strings.Contains(err.Error(), "fsync WAL") {
		t.Fatalf("Err() = %v, want the fsync failure", err)
	}
	if _, err := r.e.Submit(context.Background(), TaskSpec{ID: "b", Handler: "h"}); !errors.Is(err, ErrStopped) {
		t.Fatalf("Submit after the failure = %v, want ErrStopped", err)
	}
	if n := len(r.ex.calls()); n != 0 {
		t.Fatalf("%d attempts started from a tick whose fsync failed", n)
	}
	e := r.e
	r.e = nil // the rig's cleanup would report Close's error
	if err := e.Close(); err == nil {
		t.Error("Close after a failed fsync returned nil")
	}
}

// TestSnapshotWaitsForDurableTick: a snapshot taken while its tick's fsync
// is held is not written until that fsync is done.
func TestSnapshotWaitsForDurableTick(t *testing.T) {
	r, gate := gatedRig(t)
	ctx := r.ctx()
	submitAsync(ctx, r, "a") // checked through the snapshot below
	<-gate.entered
	snapped := make(chan error, 1)
	go func() { snapped <- r.e.Snapshot(ctx) }()
	notWithin(t, "the snapshot was written", snapped)
	if seqs, _ := r.e.snapshots.list(); len(seqs) != 0 {
		t.Fatalf("snapshot files %v exist before the WAL they continue is durable", seqs)
	}
	gate.release(nil)
	if err := <-snapped; err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	seqs, _ := r.e.snapshots.list()
	if len(seqs) != 1 || seqs[0] == 0 {
		t.Fatalf("snapshots %v, want one covering the submission", seqs)
	}
}

// TestAttemptStartsBeforeItsLeaseIsDurable: an attempt of a task whose
// submission is durable starts while the fsync of its lease is held (no
// fsync in a worker's cycle), unless Config.DurableLeases; either way the
// resume that leased it is not acknowledged, nor its result visible, before
// that fsync.
func TestAttemptStartsBeforeItsLeaseIsDurable(t *testing.T) {
	for _, durableLeases := range []bool{false, true} {
		t.Run(fmt.Sprintf("durable_leases=%v", durableLeases), func(t *testing.T) {
			var holding atomic.Bool
			gate := newCommitGate()
			t.Cleanup(func() { gate.release(nil) })
			r := newEngineRig(t, func(c *Config) {
				c.DurableLeases = durableLeases
				c.beforeCommit = func() error {
					if holding.Load() {
						return gate.hook()
					}
					return nil
				}
			})
			ctx := r.ctx()
			started := make(chan struct{}, 1)
			r.ex.set(func(context.Context, Job) Result {
				started <- struct{}{}
				return Result{Outcome: OutcomeOK}
			})
			r.pause()
			r.submit(TaskSpec{ID: "a", Handler: "h"}) // durable: Submit returned
			holding.Store(true)
			resumed := make(chan error, 1)
			go func() { resumed <- r.e.Resume(ctx) }()
			<-gate.entered // the tick that resumed and leased a, its fsync held
			if durableLeases {
				notWithin(t, "the attempt started", started)
			} else {
				select {
				case <-started:
				case <-time.After(10 * time.Second):
					t.Fatal("the attempt of a durable task did not start while its lease's fsync was held")
				}
			}
			notWithin(t, "Resume returned", resumed)
			read := make(chan TaskView, 1)
			go func() {
				v, _ := r.e.Task("a")
				read <- v
			}()
			notWithin(t, "Task returned a's view", read)
			gate.release(nil)
			if err := <-resumed; err != nil {
				t.Fatalf("Resume: %v", err)
			}
			r.idle()
			r.checkStates(map[TaskID]TaskState{"a": TaskCompleted})
			if n := len(r.ex.calls()); n != 1 {
				t.Fatalf("%d executions, want 1", n)
			}
		})
	}
}

// TestSubmitView: the view SubmitView returns is the task as of its
// submission (its run ready, although the same tick leased it), durable
// when it returns; a resubmission returns the task as it is then.
func TestSubmitView(t *testing.T) {
	r := newEngineRig(t, nil)
	ctx := r.ctx()
	res, v, err := r.e.SubmitView(ctx, TaskSpec{ID: "a", Handler: "h", Input: []byte("in")})
	if err != nil {
		t.Fatalf("SubmitView: %v", err)
	}
	if res.Task != "a" || res.Duplicate || v.ID != "a" || v.State != TaskPending || string(v.Spec.Input) != "in" ||
		len(v.Runs) != 1 || v.Runs[0].State != RunReady {
		t.Fatalf("SubmitView = %+v, %+v; want a new pending task with one ready run", res, v)
	}
	r.idle()
	res, v, err = r.e.SubmitView(ctx, TaskSpec{ID: "a", Handler: "h", Input: []byte("in")})
	if err != nil || !res.Duplicate || v.State != TaskCompleted {
		t.Fatalf("resubmission: %+v, state %s, %v; want a duplicate of the completed task", res, v.State, err)
	}
	if _, _, err := r.e.SubmitView(ctx, TaskSpec{ID: "a", Handler: "other"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("different spec: %v, want ErrConflict", err)
	}
}

// TestSubmitMany: each spec gets what Submit would answer (new, duplicate,
// conflict, invalid), in order, from one input handled in one tick.
func TestSubmitMany(t *testing.T) {
	r := newEngineRig(t, func(c *Config) { c.Workers = 1 })
	ctx := r.ctx()
	r.submit(TaskSpec{ID: "old", Handler: "h"})
	r.idle()
	r.pause() // the batch's tick then holds its submissions only
	ticks := r.e.Stats().Ticks
	specs := []TaskSpec{
		{ID: "a", Handler: "h"},
		{ID: "old", Handler: "h"},          // duplicate
		{ID: "old", Handler: "other"},      // conflict
		{ID: "bad", Handler: ""},           // invalid: no handler
		{Handler: "h", Input: []byte("x")}, // id generated
		{ID: "a", Handler: "h"},            // the batch's own first task: duplicate
	}
	res, errs, err := r.e.SubmitMany(ctx, specs)
	if err != nil {
		t.Fatalf("SubmitMany: %v", err)
	}
	var ve *ValidationError
	switch {
	case errs[0] != nil || res[0].Task != "a" || res[0].Duplicate:
		t.Errorf("a: %+v %v, want new", res[0], errs[0])
	case errs[1] != nil || !res[1].Duplicate:
		t.Errorf("old again: %+v %v, want a duplicate", res[1], errs[1])
	case !errors.Is(errs[2], ErrConflict):
		t.Errorf("old, other handler: %v, want ErrConflict", errs[2])
	case !errors.As(errs[3], &ve) || ve.Field != "handler":
		t.Errorf("no handler: %v, want a ValidationError naming handler", errs[3])
	case errs[4] != nil || res[4].Task == "":
		t.Errorf("no id: %+v %v, want a generated id", res[4], errs[4])
	case errs[5] != nil || !res[5].Duplicate:
		t.Errorf("a again: %+v %v, want a duplicate", res[5], errs[5])
	}
	if n := r.e.Stats().Ticks - ticks; n != 1 {
		t.Errorf("the batch took %d ticks, want 1", n)
	}
	r.resume()
	r.idle()
	r.checkStates(map[TaskID]TaskState{"old": TaskCompleted, "a": TaskCompleted, res[4].Task: TaskCompleted})
}
