package api_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/dispatch"
)

// BenchmarkListFirstPage: the dashboard's task list with 100,000 retained
// tasks, the first page of 50 (and the second, through its cursor), server
// time through the HTTP handler. Target (issue 15): < 300 ms per page.
//
//	go test -run='^$' -bench=ListFirstPage -benchtime=20x ./api/
func BenchmarkListFirstPage(b *testing.B) {
	bundle := setup(b, api.Config{})
	ctx := context.Background()
	if err := bundle.engine.Pause(ctx); err != nil { // the tasks stay pending
		b.Fatal(err)
	}
	const tasks = 100_000
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < tasks; i += 64 {
				in := []byte("x")
				if _, err := bundle.engine.Submit(ctx, dispatch.TaskSpec{ID: dispatch.TaskID(fmt.Sprintf("t%06d", i)), Handler: "echo", Input: in, MaxAttempts: 1}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	if st := bundle.engine.Stats(); st.Tasks != tasks {
		b.Fatalf("%d tasks retained, want %d", st.Tasks, tasks)
	}
	b.Run("first", func(b *testing.B) {
		for b.Loop() {
			r := bundle.do(b, "GET", "/v1/tasks?limit=50", nil)
			if r.status != 200 {
				b.Fatalf("HTTP %d", r.status)
			}
		}
	})
	var page api.TaskList
	bundle.do(b, "GET", "/v1/tasks?limit=50", nil).decode(b, &page)
	b.Run("next", func(b *testing.B) {
		for b.Loop() {
			if r := bundle.do(b, "GET", "/v1/tasks?limit=50&cursor="+page.NextCursor, nil); r.status != 200 {
				b.Fatalf("HTTP %d", r.status)
			}
		}
	})
	b.Run("state=failed", func(b *testing.B) { // matches nothing: a full scan
		for b.Loop() {
			if r := bundle.do(b, "GET", "/v1/tasks?limit=50&state=failed", nil); r.status != 200 {
				b.Fatalf("HTTP %d", r.status)
			}
		}
	})
}
