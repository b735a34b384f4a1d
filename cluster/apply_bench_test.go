package cluster

import (
	"fmt"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/wasmtask/wasmtask/dispatch"
)

// BenchmarkFollowerApply: a follower's FSM applying the dispatch entries
// of a real run (1000 no-op tasks through a one-node cluster's leader),
// from an empty state: decode and reduce, CPU-bound on one goroutine, so
// steadier than BenchmarkSubmit's rates on a shared machine. ns/op and
// allocs/op are per task.
//
//	go test ./cluster -run '^$' -bench BenchmarkFollowerApply -benchmem -count 5
func BenchmarkFollowerApply(b *testing.B) {
	const tasks = 1000
	c := newTestCluster(b)
	n1 := c.start("n1", true)
	e := c.leader().Engine()
	ctx := b.Context()
	for i := range tasks {
		if _, err := e.Submit(ctx, benchSpec(i)); err != nil {
			b.Fatal(err)
		}
	}
	for i := range tasks {
		if _, err := e.Wait(ctx, benchSpec(i).ID); err != nil {
			b.Fatal(err)
		}
	}
	entries, _ := dispatchEntries(b, n1)
	c.closeAll()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += tasks {
		f := newFSM(quietLog, nil, raft.NewInmemStore())
		for _, l := range entries {
			if err := applyOK(f, l); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func benchSpec(i int) dispatch.TaskSpec {
	return dispatch.TaskSpec{ID: dispatch.TaskID(fmt.Sprintf("t%d", i)), Handler: "noop"}
}
