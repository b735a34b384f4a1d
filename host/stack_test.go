package host

import (
	"context"
	goruntime "runtime"
	"testing"

	"github.com/wasmtask/wasmtask/dispatch"
)

// TestStackOverflowMemory pins the figure host/doc.go and
// docs/manifest.md give for the host memory one attempt can take outside
// its memory limit: wazero's stack for wasm code is a Go slice doubled
// from 10 KiB until it is over 50,000,000 bytes (a constant of wazero's,
// no option), so unbounded recursion allocates about 168 MB in all
// (84 MB the last, the 42 MB before it alive while copied) before the
// trap. Not parallel: it reads the process's allocation counter.
func TestStackOverflowMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's allocations blur the figure")
	}
	h := newTestHost(t, Config{})
	m := mustLoad(t, h, readWasm(t, "recurse"), 0)
	var before, after goruntime.MemStats
	goruntime.GC()
	goruntime.ReadMemStats(&before)
	res := h.Run(context.Background(), m, Attempt{Limits: DefaultLimits()})
	goruntime.ReadMemStats(&after)
	if res.Outcome != dispatch.OutcomeTrap {
		t.Fatalf("outcome %s (%s), want trap", res.Outcome, res.Error)
	}
	const mb = 1 << 20
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("unbounded recursion: %d MiB allocated before the stack overflow", alloc/mb)
	if alloc < 120*mb || alloc > 200*mb {
		t.Errorf("unbounded recursion allocated %d MiB; the docs say about 160 MiB (host/doc.go, docs/manifest.md): update them", alloc/mb)
	}
}
