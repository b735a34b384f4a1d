package dispatch

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/wasmtask/wasmtask/segwal"
)

// BenchmarkSubmitPayload: Submit (durable, fsynced) of tasks with inputs
// of several sizes, kept inline (InlinePayloadBytes -1, as before the
// payload store) or spilled to the store (the default, over 1 KiB), from
// 16 submitters. held-KiB/task is the Go heap the run added, per task
// retained: what the state keeps of a task and its input.
//
//	go test -run '^$' -bench BenchmarkSubmitPayload -benchtime 400x ./dispatch/
func BenchmarkSubmitPayload(b *testing.B) {
	for _, size := range []int{512, 4 << 10, 64 << 10, 1 << 20} {
		for _, mode := range []struct {
			name   string
			inline int
		}{{"inline", -1}, {"store", 0}} {
			b.Run(fmt.Sprintf("%s/%dB", mode.name, size), func(b *testing.B) {
				e, err := Open(Config{Dir: b.TempDir(), Executor: ExecutorFunc(func(context.Context, Job) Result { return Result{Outcome: OutcomeOK} }),
					Logger: quietLogger(), InlinePayloadBytes: mode.inline, SnapshotEvery: -1, WAL: segwal.Options{Sync: segwal.SyncAlways}})
				if err != nil {
					b.Fatal(err)
				}
				defer e.Close()
				var n atomic.Int64
				input := make([]byte, size)
				b.SetParallelism(16 / runtime.GOMAXPROCS(0))
				b.SetBytes(int64(size))
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						in := append([]byte(nil), input...) // the engine keeps an inline input: one each
						i := n.Add(1)
						copy(in, fmt.Sprint(i)) // distinct inputs: no two share a file
						if _, err := e.Submit(context.Background(), TaskSpec{Handler: "h", Input: in}); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				b.ReportMetric((float64(ms.HeapAlloc)-float64(before.HeapAlloc))/1024/float64(b.N), "held-KiB/task")
			})
		}
	}
}
