package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/dispatch"
)

// A follower's Replica answers from its committed state: a task the
// leader acknowledged is there once the follower applied the leader's
// durable sequence (WaitApplied), a wait on it wakes when the follower
// applies its completion, and an unknown task is ErrNotFound.
func TestReplicaReadsOnAFollower(t *testing.T) {
	c := newTestCluster(t)
	defer c.closeAll()
	n1, n2 := c.startTwo()
	e, rep := n1.Engine(), n2.Replica()
	ctx, cancel := context.WithTimeout(context.Background(), 2*testWait)
	defer cancel()

	for i, id := range []dispatch.TaskID{"t-1", "t-2", "t-3"} {
		if _, err := e.Submit(ctx, dispatch.TaskSpec{ID: id, Handler: "noop"}); err != nil {
			t.Fatal(err)
		}
		seq := e.DurableSeq()
		if !rep.WaitApplied(ctx, seq) {
			t.Fatalf("the follower did not apply sequence %d", seq)
		}
		if got := rep.AppliedSeq(); got < seq {
			t.Fatalf("applied %d after WaitApplied(%d)", got, seq)
		}
		v, ok := rep.TaskWithoutInput(id)
		if !ok || v.ID != id {
			t.Fatalf("task %d (%s) on the follower once it applied the leader's durable sequence: %v %+v", i, id, ok, v)
		}
		w, err := rep.WaitWithoutInput(ctx, id)
		if err != nil || w.State != dispatch.TaskCompleted || string(w.Runs[0].Attempts[0].Output) != "ok" {
			t.Fatalf("wait for %s on the follower: %v %s %+v", id, err, w.State, w.Runs)
		}
	}
	if l := rep.List(dispatch.ListFilter{Limit: 2}); len(l) != 2 || l[0].ID != "t-3" || l[1].ID != "t-2" {
		t.Errorf("list on the follower: %+v", l)
	}
	if st := rep.Stats(); st.Tasks != 3 || st.RunsByState[dispatch.RunCompleted] != 3 {
		t.Errorf("stats on the follower: %+v", st)
	}
	if _, err := rep.WaitWithoutInput(ctx, "nope"); !errors.Is(err, dispatch.ErrNotFound) {
		t.Errorf("wait for an unknown task: %v, want ErrNotFound", err)
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if rep.WaitApplied(short, rep.AppliedSeq()+1000) {
		t.Error("WaitApplied reached a sequence nobody wrote")
	}
}
