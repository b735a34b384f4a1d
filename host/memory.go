package host

import (
	"context"
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// Every instance's linear memory comes from the host's allocator
// (wazero's experimental.MemoryAllocator), which is where a memory.grow
// past the limit is refused and the refusal recorded: a trap that follows
// a refused grow is the guest running out of memory (oom), whatever size
// the memory had reached (a guest growing 16 pages at a time under a
// 64-page cap stops at 49). Comparing the final size with the limit would
// call that a plain trap.
//
// So that every refusal reaches the allocator, wazero's own cap is the
// wasm32 maximum (runtimeFor: a lower cap would refuse a large grow before
// the allocator sees it) and a module's declared maximum is taken out of
// the bytes wazero compiles (sections.go) and enforced here instead. The
// allocator is therefore the memory limit: every InstantiateModule of a
// compiled module must go through Module.withMemory (TestEveryInstanceBounded).

// guestMemory is the linear memory of one instance.
type guestMemory struct {
	buf      []byte
	max      uint64 // bytes: the limit, or the module's declared maximum when lower
	declared bool   // max is the module's declared maximum
	started  bool   // the first Reallocate (the declared minimum) happened
	refused  atomic.Uint32
}

// Reallocate implements experimental.LinearMemory: it grows the memory to
// size bytes, or returns nil (memory.grow returns -1) past max.
func (g *guestMemory) Reallocate(size uint64) []byte {
	if size > g.max && g.started {
		g.refused.Add(1)
		return nil
	}
	g.started = true // the minimum is checked at load: never refuse it (wazero would panic)
	if size <= uint64(cap(g.buf)) {
		g.buf = g.buf[:size]
		return g.buf
	}
	// Grow like append (room to grow without copying every page), never
	// reserving past max.
	newCap := max(size, min(2*uint64(cap(g.buf)), g.max))
	buf := make([]byte, size, newCap)
	copy(buf, g.buf)
	g.buf = buf
	return g.buf
}

// Free implements experimental.LinearMemory.
func (g *guestMemory) Free() { g.buf = nil }

// refusals reports the grows refused since the last reset.
func (g *guestMemory) refusals() uint32 {
	if g == nil {
		return 0
	}
	return g.refused.Load()
}

// withMemory returns ctx for instantiating m: the instance's memory comes
// from the host's allocator and is stored in *into.
func (m *Module) withMemory(ctx context.Context, into **guestMemory) context.Context {
	return experimental.WithMemoryAllocator(ctx, experimental.MemoryAllocatorFunc(func(capBytes, _ uint64) experimental.LinearMemory {
		g := &guestMemory{max: uint64(m.memMaxPages) * 65536, declared: m.memDeclaredMax}
		g.buf = make([]byte, 0, min(capBytes, g.max))
		*into = g
		return g
	}))
}
