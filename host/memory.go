package host

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

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
//
// The buffers come from the Host's memPool: a fresh attempt of a small
// module would otherwise allocate (and the kernel fault in, and the GC
// zero and later sweep) its whole memory, 64 KiB or more, per attempt.
// A released buffer is reused once wazero has closed its instance; only
// the bytes its last owner could have written are zeroed again.

// guestMemory is the linear memory of one instance. It is its own
// experimental.MemoryAllocator: wazero asks it once, at instantiation.
type guestMemory struct {
	pool     *memPool
	hint     *atomic.Uint64 // the module's memHint
	buf      []byte
	clean    uint64 // buf[clean:cap(buf)] is known to be zero (a reused buffer is dirty below)
	max      uint64 // bytes: the limit, or the module's declared maximum when lower
	declared bool   // max is the module's declared maximum
	started  bool   // the first Reallocate (the declared minimum) happened
	refused  atomic.Uint32
}

// Allocate implements experimental.MemoryAllocator.
func (g *guestMemory) Allocate(capBytes, _ uint64) experimental.LinearMemory {
	if g.hint != nil {
		capBytes = max(capBytes, g.hint.Load())
	}
	g.buf, g.clean = g.pool.get(min(capBytes, g.max))
	return g
}

// Reallocate implements experimental.LinearMemory: it grows the memory to
// size bytes, or returns nil (memory.grow returns -1) past max. New bytes
// are zero, as the spec wants of new pages.
func (g *guestMemory) Reallocate(size uint64) []byte {
	if size > g.max && g.started {
		g.refused.Add(1)
		return nil
	}
	g.started = true // the minimum is checked at load: never refuse it (wazero would panic)
	old := uint64(len(g.buf))
	if size <= uint64(cap(g.buf)) {
		g.buf = g.buf[:size]
		if end := min(size, g.clean); old < end {
			clear(g.buf[old:end])
		}
		return g.buf
	}
	// Grow like append (room to grow without copying every page), never
	// reserving past max.
	newCap := max(size, min(2*uint64(cap(g.buf)), g.max))
	buf, clean := g.pool.get(newCap)
	buf = buf[:size]
	copy(buf, g.buf)
	if end := min(size, clean); old < end {
		clear(buf[old:end])
	}
	// wazero replaces its view of the memory with the new buffer when this
	// returns, and no host function grows memory, so nothing reads the old
	// one again.
	g.release()
	g.buf, g.clean = buf, clean
	if g.hint != nil {
		for h := g.hint.Load(); h < size && !g.hint.CompareAndSwap(h, size); h = g.hint.Load() {
		}
	}
	return g.buf
}

// Free implements experimental.LinearMemory. wazero calls it when the
// instance is closed (Close, proc_exit, or the guest's goroutine noticing
// a stop), never while the guest runs but for Host.Close (see memPool.close).
func (g *guestMemory) Free() {
	if g.buf != nil {
		if g.hint != nil && g.started {
			// The size this instance ended at, not the largest ever: one
			// instance that grew exceptionally does not make every later
			// one reserve as much.
			g.hint.Store(uint64(len(g.buf)))
		}
		g.release()
		g.buf = nil
	}
}

// release gives g.buf back to the pool with the extent that may be dirty:
// what this instance could write, and what an earlier owner wrote past it
// (a buffer reserved larger than this instance grew).
func (g *guestMemory) release() {
	g.pool.put(g.buf[:max(uint64(len(g.buf)), min(g.clean, uint64(cap(g.buf))))])
}

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
	g := &guestMemory{pool: m.rt.mem, hint: &m.memHint, max: uint64(m.memMaxPages) * 65536, declared: m.memDeclaredMax}
	*into = g
	return experimental.WithMemoryAllocator(ctx, g)
}

// memPool keeps the buffers of closed instances for the next ones, by
// capacity (a module's instances ask for the same capacities in the same
// order). It holds at most maxBytes, no buffer over maxBytes/4, and drops
// a buffer nobody took for idle: the memory of a burst of attempts goes
// back to the GC soon after it.
type memPool struct {
	mu       sync.Mutex
	free     map[uint64][]pooledBuf // by cap; oldest first
	bytes    int64                  // capacity held
	maxBytes int64
	idle     time.Duration
	timer    *time.Timer
	armed    bool
	closed   bool
	stats    MemoryPoolStats
	// poison, when not 0, fills every released buffer (to its capacity):
	// a slice of guest memory kept past its instance's Close then reads
	// poison instead of the bytes the guest wrote (TestNoGuestMemoryAlias).
	poison byte
}

type pooledBuf struct {
	b     []byte // len: the bytes its last owner could have written
	since time.Time
}

// MemoryPoolStats counts what the pool of guest memory did.
type MemoryPoolStats struct {
	Reused   int64 // buffers taken from the pool
	Made     int64 // buffers allocated because none fitted
	Released int64 // buffers dropped: idle, over the budget, or too large
	Bytes    int64 // capacity held now
	Buffers  int   // buffers held now
}

// Defaults of the guest memory pool (Config.MemoryPoolBytes).
const (
	DefaultMemoryPoolBytes = 32 << 20
	memPoolIdle            = 10 * time.Second
)

func newMemPool(maxBytes int64) *memPool {
	return &memPool{free: map[uint64][]pooledBuf{}, maxBytes: maxBytes, idle: memPoolIdle}
}

// get returns a buffer of length 0 and capacity c, and how much of it may
// be dirty (the rest is zero).
func (p *memPool) get(c uint64) ([]byte, uint64) {
	if p == nil {
		return make([]byte, 0, c), 0
	}
	p.mu.Lock()
	if l := p.free[c]; len(l) > 0 {
		b := l[len(l)-1].b
		l[len(l)-1] = pooledBuf{}
		p.free[c] = l[:len(l)-1]
		p.bytes -= int64(c)
		p.stats.Reused++
		p.mu.Unlock()
		return b[:0], uint64(len(b))
	}
	p.stats.Made++
	p.mu.Unlock()
	return make([]byte, 0, c), 0
}

// put takes back a buffer no instance uses any more; len(b) is how far it
// may have been written.
func (p *memPool) put(b []byte) {
	if p == nil || cap(b) == 0 {
		return
	}
	c := uint64(cap(b))
	if p.poison != 0 {
		b = b[:c]
		b[0] = p.poison
		for n := 1; n < len(b); n *= 2 {
			copy(b[n:], b[:n])
		}
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || int64(c) > p.maxBytes/4 {
		p.stats.Released++
		return
	}
	for p.bytes+int64(c) > p.maxBytes && p.dropOldest() {
	}
	p.free[c] = append(p.free[c], pooledBuf{b: b, since: now})
	p.bytes += int64(c)
	if !p.armed {
		p.armed = true
		if p.timer == nil {
			p.timer = time.AfterFunc(p.idle, p.sweep)
		} else {
			p.timer.Reset(p.idle)
		}
	}
}

// dropOldest drops the buffer released the longest ago; false when none.
func (p *memPool) dropOldest() bool {
	var oldest uint64
	var at time.Time
	for c, l := range p.free {
		if len(l) > 0 && (at.IsZero() || l[0].since.Before(at)) {
			oldest, at = c, l[0].since
		}
	}
	if at.IsZero() {
		return false
	}
	p.drop(oldest, 1)
	return true
}

// drop forgets the n oldest buffers of capacity c.
func (p *memPool) drop(c uint64, n int) {
	l := p.free[c]
	clear(l[:n])
	if l = l[n:]; len(l) == 0 {
		delete(p.free, c)
	} else {
		p.free[c] = l
	}
	p.bytes -= int64(n) * int64(c)
	p.stats.Released += int64(n)
}

// sweep drops the buffers idle longer than p.idle and runs again while
// any are left.
func (p *memPool) sweep() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = false
	if p.closed {
		return
	}
	cutoff := time.Now().Add(-p.idle)
	var next time.Time
	for c, l := range p.free {
		n := 0
		for n < len(l) && !l[n].since.After(cutoff) {
			n++
		}
		if n > 0 {
			p.drop(c, n)
		}
		if n < len(l) && (next.IsZero() || l[n].since.Before(next)) {
			next = l[n].since
		}
	}
	if !next.IsZero() {
		p.armed = true
		p.timer.Reset(next.Add(p.idle).Sub(time.Now()) + time.Millisecond)
	}
}

// close drops every buffer and keeps none released from now on: Host.Close
// closes runtimes whose guests may still be running, and wazero frees
// their memories then.
func (p *memPool) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.timer != nil {
		p.timer.Stop()
	}
	for c, l := range p.free {
		p.drop(c, len(l))
	}
}

// snapshot returns the pool's counters.
func (p *memPool) snapshot() MemoryPoolStats {
	if p == nil {
		return MemoryPoolStats{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Bytes = p.bytes
	for _, l := range p.free {
		s.Buffers += len(l)
	}
	return s
}

// MemoryPool returns what the pool of guest memory did and holds now.
func (h *Host) MemoryPool() MemoryPoolStats { return h.mem.snapshot() }
