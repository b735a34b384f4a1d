package payload

import "sync"

// Budget counts bytes held in memory against a limit. It never waits:
// TryAcquire refuses what does not fit, Acquire takes bytes already held
// (an accepted task's input must run, whatever the budget).
type Budget struct {
	mu   sync.Mutex
	used int64
	max  int64
	peak int64

	// freed counts bytes released since onFreed last ran; past every
	// freedEvery of them, onFreed runs (the engine starts a collection).
	freed      int64
	freedEvery int64
	onFreed    func()
}

// OnFreed calls fn (on the releasing goroutine; fn must not block) each
// time another every bytes were released: the bytes of payloads that are
// garbage now. The engine collects then, so that the garbage of payloads
// never grows to the GC's own target, a multiple of the live heap.
func (b *Budget) OnFreed(every int64, fn func()) {
	b.mu.Lock()
	b.freedEvery, b.onFreed = every, fn
	b.mu.Unlock()
}

// NewBudget returns a budget of max bytes.
func NewBudget(max int64) *Budget { return &Budget{max: max} }

// Max returns the limit.
func (b *Budget) Max() int64 { return b.max }

// Used returns the bytes held now.
func (b *Budget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// Peak returns the most bytes held at once.
func (b *Budget) Peak() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peak
}

// TryAcquire takes n bytes if they fit under the limit, or if nothing is
// held (so that one request larger than the whole budget is served alone
// rather than refused forever). It returns the bytes held before.
func (b *Budget) TryAcquire(n int64) (used int64, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used > 0 && b.used+n > b.max {
		return b.used, false
	}
	b.add(n)
	return b.used - n, true
}

// Acquire takes n bytes even past the limit.
func (b *Budget) Acquire(n int64) {
	b.mu.Lock()
	b.add(n)
	b.mu.Unlock()
}

// Release returns n bytes.
func (b *Budget) Release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.freed += n
	var fn func()
	if b.onFreed != nil && b.freed >= b.freedEvery {
		b.freed, fn = 0, b.onFreed
	}
	b.mu.Unlock()
	if fn != nil {
		fn()
	}
}

func (b *Budget) add(n int64) {
	b.used += n
	b.peak = max(b.peak, b.used)
}
