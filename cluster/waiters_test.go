package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/dispatch"
)

// waiters close exactly the waits an applied entry concerns: those of the
// tasks it made final and of the sequences it reached; a restore closes
// all; a wait given up leaves nothing behind.
func TestWaitersWakeOnlyWhatTheyWaitFor(t *testing.T) {
	var w waiters
	a1, a2, b := w.task("a"), w.task("a"), w.task("b")
	s5, s10, s7 := w.seq(5), w.seq(10), w.seq(7)
	closed := func(ch chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	w.wake([]dispatch.TaskID{"a", "c"}, 7)
	for _, c := range []struct {
		name string
		ch   chan struct{}
		want bool
	}{{"task a (1)", a1, true}, {"task a (2)", a2, true}, {"task b", b, false}, {"seq 5", s5, true}, {"seq 7", s7, true}, {"seq 10", s10, false}} {
		if got := closed(c.ch); got != c.want {
			t.Errorf("after wake([a c], 7): %s closed %v, want %v", c.name, got, c.want)
		}
	}
	gone := w.task("d")
	w.dropTask("d", gone)
	if _, ok := w.tasks["d"]; ok || len(w.tasks) != 1 {
		t.Errorf("after dropTask: waits %v, want only b's", w.tasks)
	}
	w.wakeAll()
	if !closed(b) || !closed(s10) || len(w.tasks) != 0 || len(w.seqs) != 0 {
		t.Errorf("after wakeAll: b %v, seq 10 %v, %d task and %d sequence waits left", closed(b), closed(s10), len(w.tasks), len(w.seqs))
	}
}

// Many waits on a follower for a task not yet due return when it
// completes, not before, while the follower applies other tasks' entries;
// a wait given up leaves no registration behind.
func TestFollowerWaitsForTheirTask(t *testing.T) {
	c := newTestCluster(t)
	defer c.closeAll()
	n1, n2 := c.startTwo()
	e, rep := n1.Engine(), n2.Replica()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Due in 2 s: the waits below are registered long before it runs.
	due := time.Now().Add(2 * time.Second)
	if _, err := e.Submit(ctx, dispatch.TaskSpec{ID: "late", Handler: "noop", NotBeforeMs: due.UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	if !rep.WaitApplied(ctx, e.DurableSeq()) {
		t.Fatal("the follower did not apply the submit")
	}
	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	if _, err := rep.WaitWithoutInput(short, "late"); err == nil && time.Now().Before(due) {
		t.Error("a 20 ms wait for a task not due yet returned without error")
	}
	cancelShort()

	const waits = 50
	var wg sync.WaitGroup
	errs := make(chan error, waits)
	for range waits {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := rep.WaitWithoutInput(ctx, "late")
			switch {
			case err != nil:
				errs <- err
			case v.State != dispatch.TaskCompleted:
				errs <- fmt.Errorf("woke with the task %s", v.State)
			case time.Now().Before(due):
				errs <- fmt.Errorf("woke before the task was due")
			}
		}()
	}
	for i := range 100 { // other tasks' entries apply meanwhile
		if _, err := e.Submit(ctx, dispatch.TaskSpec{ID: dispatch.TaskID(fmt.Sprintf("other-%d", i)), Handler: "noop"}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	n2.fsm.waits.mu.Lock()
	left := len(n2.fsm.waits.tasks)
	n2.fsm.waits.mu.Unlock()
	if left != 0 {
		t.Errorf("%d tasks still have waits registered on the follower", left)
	}
}
