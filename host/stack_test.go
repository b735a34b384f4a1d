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

// TestPoolDropsGrownStack: wazero never shrinks the stack of a call
// handle, so a reused instance whose attempt recursed deep would keep
// that stack (tens of MB) while idle; the pool gives such an instance a
// new handle. Not parallel: it reads the process's heap.
func TestPoolDropsGrownStack(t *testing.T) {
	h := newTestHost(t, Config{})
	p, err := h.NewPool(mustLoad(t, h, readWasm(t, "deep"), 0), InstancePolicy{Mode: InstancesReuse}, nil)
	if err != nil {
		t.Fatal(err)
	}
	heap := func() uint64 {
		var ms goruntime.MemStats
		goruntime.GC()
		goruntime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	run := func(depthBytes int) {
		t.Helper()
		res := p.Run(context.Background(), Attempt{Input: make([]byte, depthBytes), Limits: DefaultLimits()})
		if res.Outcome != dispatch.OutcomeOK {
			t.Fatalf("outcome %s (%s)", res.Outcome, res.Error)
		}
	}
	run(1) // 10,000 frames: the instance exists
	before := heap()
	run(100) // 1,000,000 frames
	after := heap()
	if st := p.Stats(); st.Created != 1 || st.Idle != 1 {
		t.Fatalf("stats %+v: want one instance, idle", st)
	}
	const mb = 1 << 20
	t.Logf("heap with the instance idle: %d MiB before the deep attempt, %d MiB after", before/mb, after/mb)
	if after > before+4*mb {
		t.Errorf("the idle instance keeps %d MiB more after a deep attempt: its grown stack", (after-before)/mb)
	}
	run(1) // the instance still works
}
