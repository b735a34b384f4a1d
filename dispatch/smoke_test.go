package dispatch

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

func TestSmokeEngine(t *testing.T) {
	dir := t.TempDir()
	var calls atomic.Int64
	ex := ExecutorFunc(func(ctx context.Context, j Job) Result {
		n := calls.Add(1)
		if j.Attempt < 2 && n%3 == 0 {
			return Result{Outcome: OutcomeFailed, Retryable: true, Error: "boom"}
		}
		return Result{Outcome: OutcomeOK, Output: []byte("out-" + string(j.Run))}
	})
	e, err := Open(Config{Dir: dir, Executor: ex, Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 200; i++ {
		_, err := e.Submit(ctx, TaskSpec{ID: TaskID(fmt.Sprintf("t%d", i)), Handler: "h", MaxAttempts: 3, Backoff: Backoff{Kind: BackoffFixed, BaseMs: 1}})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 200; i++ {
		v, err := e.Wait(ctx, TaskID(fmt.Sprintf("t%d", i)))
		if err != nil || v.State != TaskCompleted {
			t.Fatalf("t%d: %v %+v", i, err, v)
		}
	}
	st := e.Stats()
	t.Logf("stats %+v calls %d", st, calls.Load())
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = Open(Config{Dir: dir, Executor: ex, Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	t.Logf("recovery %+v", e.Recovery())
	if got := e.Stats().RunsByState[RunCompleted]; got != 200 {
		t.Fatalf("completed after restart = %d", got)
	}
}
