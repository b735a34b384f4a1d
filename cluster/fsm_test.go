package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/dispatch"
)

// The leader's commits do not wait for its own FSM to apply its dispatch
// entries (hashicorp/raft answers an entry's future only once the FSM's
// Apply returned): a submit is acknowledged while the FSM's state is
// locked, as by a long read or an apply running behind, and the FSM then
// applies what was queued, in order, before a snapshot or a later entry.
func TestLeaderCommitsWithoutWaitingForItsApply(t *testing.T) {
	c := newTestCluster(t)
	defer c.closeAll()
	n1 := c.start("n1", true)
	e := c.leader().Engine()
	ctx, cancel := context.WithTimeout(context.Background(), 2*testWait)
	defer cancel()
	submitAndWait(t, e, "a", 5)

	n1.fsm.mu.Lock()
	submitted := make(chan error, 1)
	go func() {
		_, err := e.Submit(ctx, dispatch.TaskSpec{ID: "b", Handler: "noop"})
		submitted <- err
	}()
	select {
	case err := <-submitted:
		if err != nil {
			n1.fsm.mu.Unlock()
			t.Fatal(err)
		}
	case <-time.After(testWait): // the FSM stays locked until then: any bound shows it
		n1.fsm.mu.Unlock()
		t.Fatal("the submit waited for the leader's FSM to apply its entry")
	}
	seq := e.DurableSeq()
	if got := n1.fsm.seq.Load(); got >= seq {
		n1.fsm.mu.Unlock()
		t.Fatalf("the locked FSM is at sequence %d, the engine's durable one %d: nothing was queued", got, seq)
	}
	// A member entry applies after the queued ones, once they applied.
	member := make(chan error, 1)
	go func() { member <- n1.applyMember(memberEntry{ID: "n9", HTTP: "http://n9.invalid"}) }()
	n1.fsm.mu.Unlock()
	if err := <-member; err != nil {
		t.Fatal(err)
	}
	if got := n1.fsm.seq.Load(); got < seq {
		t.Errorf("the member entry applied at sequence %d, before the queued dispatch entries (%d)", got, seq)
	}
	waitCompleted(t, ctx, e, []dispatch.TaskID{"b"})
	snapshot(t, n1)
	if !n1.Replica().WaitApplied(ctx, e.DurableSeq()) {
		t.Fatalf("the leader's FSM did not reach the engine's durable sequence %d", e.DurableSeq())
	}
	v, ok := n1.Replica().TaskWithoutInput("b")
	if !ok || v.State != dispatch.TaskCompleted {
		t.Errorf("task b in the leader's committed state: %v %+v", ok, v)
	}
	if st := n1.Status(); st.Tasks != 6 {
		t.Errorf("the leader's committed state holds %d tasks, want 6", st.Tasks)
	}
}
