package api_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
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

// BenchmarkSubmitHTTP: the submit routes through a real HTTP server and
// engine (fsync on), the engine paused so that no attempt runs beside them:
// what a submission costs the server's HTTP side and the engine's submit
// path, per task. single: 32 goroutines, one POST /v1/tasks each at a time;
// batch: POST /v1/tasks/batch of 5,000, one at a time.
//
//	go test -run='^$' -bench=SubmitHTTP -benchmem ./api/
func BenchmarkSubmitHTTP(b *testing.B) {
	spec := []byte(`{"handler": "echo", "labels": {"wasmtask-bench": "20261204T101641.337Z"}}`)
	b.Run("single", func(b *testing.B) {
		bundle := setup(b, api.Config{})
		if err := bundle.engine.Pause(context.Background()); err != nil {
			b.Fatal(err)
		}
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		defer client.CloseIdleConnections()
		b.SetParallelism(16) // x GOMAXPROCS (2 here): 32 clients
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				resp, err := client.Post(bundle.srv.URL+"/v1/tasks", "application/json", bytes.NewReader(spec))
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 201 {
					b.Errorf("HTTP %d", resp.StatusCode)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
	})
	b.Run("batch", func(b *testing.B) {
		bundle := setup(b, api.Config{})
		if err := bundle.engine.Pause(context.Background()); err != nil {
			b.Fatal(err)
		}
		const size = 5000
		body := append([]byte(nil), `{"tasks": [`...)
		for i := range size {
			if i > 0 {
				body = append(body, ',')
			}
			body = append(body, spec...)
		}
		body = append(body, "]}"...)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			r := bundle.do(b, "POST", "/v1/tasks/batch", body)
			if r.status != 200 || bytes.Count(r.body, []byte(`"status": 201`)) != size {
				b.Fatalf("HTTP %d: %.300s", r.status, r.body)
			}
		}
		b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "tasks/s")
	})
}
