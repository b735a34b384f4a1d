package dispatch

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkFanOut measures a fan-out/fan-in of fanOutChildren children,
// with the default WAL options (zstd, fsync every tick) and 256 workers:
//
//	children=10000     one op: submit a coordinator whose attempt returns
//	                   10,000 child specs (committed with its success) and
//	                   a fan-in task after the coordinator (so after its
//	                   whole subtree); the op ends when the fan-in completed
//	independent=10000  one op: 10,000 tasks submitted directly by 64
//	                   callers; the op ends when all completed
//
// us/child (us/task) compares the two: the difference is the cost of the
// hierarchy per child (parsing the JSON spec, the parent link, the
// parent's bookkeeping when the child ends), offset by the submissions
// the children do not need.
//
//	go test -run '^$' -bench BenchmarkFanOut -benchtime 3x ./dispatch/
func BenchmarkFanOut(b *testing.B) {
	b.Run("children=10000", benchFanOutChildren)
	b.Run("independent=10000", benchFanOutIndependent)
}

const (
	fanOutChildren = 10_000
	fanOutWorkers  = 256
)

func benchFanOutEngine(b *testing.B, ex Executor) *Engine {
	e, err := Open(Config{Dir: b.TempDir(), Executor: ex, Logger: quietLogger(), Workers: fanOutWorkers,
		RetainCount: 1_000_000})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := e.Close(); err != nil {
			b.Error(err)
		}
	})
	return e
}

func benchFanOutChildren(b *testing.B) {
	var specs sync.Map // coordinator task -> its children's JSON specs
	e := benchFanOutEngine(b, ExecutorFunc(func(_ context.Context, j Job) Result {
		if j.Handler == "coord" {
			kids, _ := specs.Load(j.Task)
			return Result{Outcome: OutcomeOK, Children: kids.([][]byte)}
		}
		return Result{Outcome: OutcomeOK}
	}))
	ctx := context.Background()
	w0 := e.WALStats()
	b.ReportAllocs()
	b.ResetTimer()
	var elapsed time.Duration
	for i := range b.N {
		b.StopTimer()
		coord := TaskID("coord-" + strconv.Itoa(i))
		kids := make([][]byte, fanOutChildren)
		base := string(coord) + "-r1-c"
		for k := range kids {
			kids[k] = []byte(`{"id":"` + base + strconv.Itoa(k+1) + `","handler":"noop"}`)
		}
		specs.Store(coord, kids)
		b.StartTimer()
		start := time.Now()
		if _, err := e.Submit(ctx, TaskSpec{ID: coord, Handler: "coord"}); err != nil {
			b.Fatal(err)
		}
		fanin := TaskID("fanin-" + strconv.Itoa(i))
		if _, err := e.Submit(ctx, TaskSpec{ID: fanin, Handler: "noop", After: []TaskID{coord}}); err != nil {
			b.Fatal(err)
		}
		v, err := e.Wait(ctx, fanin)
		if err != nil || v.State != TaskCompleted {
			b.Fatalf("fan-in: %v %s", err, v.State)
		}
		elapsed += time.Since(start)
		b.StopTimer()
		if c, _ := e.Task(coord); c.State != TaskCompleted || len(c.Children) != fanOutChildren {
			b.Fatalf("coordinator %s with %d children", c.State, len(c.Children))
		}
		specs.Delete(coord)
		b.StartTimer()
	}
	b.StopTimer()
	w1 := e.WALStats()
	n := float64(b.N * fanOutChildren)
	b.ReportMetric(float64(elapsed.Microseconds())/n, "us/child")
	b.ReportMetric(float64(w1.Syncs-w0.Syncs)/n, "fsyncs/child")
	b.ReportMetric(float64(w1.FrameBytes-w0.FrameBytes)/n, "walB/child")
}

func benchFanOutIndependent(b *testing.B) {
	e := benchFanOutEngine(b, ExecutorFunc(func(context.Context, Job) Result { return Result{Outcome: OutcomeOK} }))
	ctx := context.Background()
	w0 := e.WALStats()
	b.ReportAllocs()
	b.ResetTimer()
	var elapsed time.Duration
	for range b.N {
		start := time.Now()
		completed := e.Stats().RunsByState[RunCompleted]
		var next atomic.Int64
		var wg sync.WaitGroup
		var failed atomic.Pointer[error]
		for range 64 {
			wg.Go(func() {
				for next.Add(1) <= fanOutChildren {
					if _, err := e.Submit(ctx, TaskSpec{Handler: "noop"}); err != nil {
						failed.CompareAndSwap(nil, &err)
						return
					}
				}
			})
		}
		wg.Wait()
		if p := failed.Load(); p != nil {
			b.Fatal(*p)
		}
		for {
			changed := e.changedCh()
			if e.Stats().RunsByState[RunCompleted] >= completed+fanOutChildren {
				break
			}
			<-changed
		}
		elapsed += time.Since(start)
	}
	b.StopTimer()
	w1 := e.WALStats()
	n := float64(b.N * fanOutChildren)
	b.ReportMetric(float64(elapsed.Microseconds())/n, "us/task")
	b.ReportMetric(float64(w1.Syncs-w0.Syncs)/n, "fsyncs/task")
	b.ReportMetric(float64(w1.FrameBytes-w0.FrameBytes)/n, "walB/task")
}
