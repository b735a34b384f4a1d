package host

import (
	"context"
	"fmt"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wasmtask/wasmtask/dispatch"
)

// TestStress runs 10,000 attempts (1,000 with -short) of testdata/mix.wasm
// on 8 goroutines: mostly ok, with traps, 20 ms timeouts and memory bombs
// mixed in. Every attempt must get its outcome, and afterwards the
// goroutines and the heap must be back to where they were: no instance,
// watcher or timer outlives its attempt.
func TestStress(t *testing.T) {
	attempts := 10_000
	if testing.Short() {
		attempts = 1_000
	}
	const (
		workers = 8
		pages   = 4 // the memory bombs stop at 256 KiB
	)
	// kind picks attempt i's behaviour: 2% timeouts (each spins a core
	// for 20 ms), 10% traps, 10% oom, the rest ok.
	kind := func(i int) (input string, want dispatch.Outcome, lim Limits) {
		switch r := i % 100; {
		case r < 2:
			return "l", dispatch.OutcomeTimeout, Limits{Timeout: 20 * time.Millisecond}
		case r < 12:
			return "t", dispatch.OutcomeTrap, Limits{}
		case r < 22:
			return "g", dispatch.OutcomeOOM, Limits{}
		default:
			return fmt.Sprintf("o%06d", i), dispatch.OutcomeOK, Limits{}
		}
	}

	h := newTestHost(t, Config{})
	m := mustLoad(t, h, readWasm(t, "mix"), pages)
	ctx := context.Background()
	// One attempt of each kind first, so lazily built runtime state is part
	// of the baseline.
	for i := range 25 {
		in, _, lim := kind(i)
		h.Run(ctx, m, Attempt{Input: []byte(in), Limits: lim})
	}
	ignore := goleak.IgnoreCurrent()
	goroutinesBefore := goruntime.NumGoroutine()
	heapBefore := heapAlloc()

	start := time.Now()
	var next atomic.Int64
	var mu sync.Mutex
	counts := map[dispatch.Outcome]int{}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= attempts {
					return
				}
				in, want, lim := kind(i)
				res := h.Run(ctx, m, Attempt{Input: []byte(in), Limits: lim})
				if res.Outcome != want {
					t.Errorf("attempt %d (%q): Outcome = %s (%s), want %s", i, in, res.Outcome, res.Error, want)
				}
				if want == dispatch.OutcomeOK && string(res.Output) != in {
					t.Errorf("attempt %d: Output = %q, want %q", i, res.Output, in)
				}
				mu.Lock()
				counts[res.Outcome]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("%d attempts on %d goroutines in %v (%.0f/s): %v", attempts, workers, elapsed.Round(time.Millisecond),
		float64(attempts)/elapsed.Seconds(), counts)

	// goleak polls until the close-on-deadline watchers have exited.
	if err := goleak.Find(ignore); err != nil {
		t.Errorf("goroutines left behind: %v", err)
	}
	if n := goruntime.NumGoroutine(); n > goroutinesBefore+2 {
		t.Errorf("NumGoroutine = %d, was %d before the attempts", n, goroutinesBefore)
	}
	// A leaked instance holds at least its 64 KiB memory: 1% of them leaked
	// would be over 6 MiB.
	const slack = 4 << 20
	heapAfter := heapAlloc()
	t.Logf("HeapAlloc %d KiB before, %d KiB after", heapBefore>>10, heapAfter>>10)
	if heapAfter > heapBefore+slack {
		t.Errorf("HeapAlloc = %d KiB after the attempts, %d KiB before: want within %d KiB", heapAfter>>10, heapBefore>>10, slack>>10)
	}
}

// heapAlloc returns the live heap after a full collection.
func heapAlloc() uint64 {
	var ms goruntime.MemStats
	goruntime.GC()
	goruntime.GC()
	goruntime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
