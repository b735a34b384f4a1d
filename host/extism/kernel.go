package extism

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
)

// kernel is the Extism kernel memory of one attempt: a byte arena the guest
// addresses with i64 offsets, and the blocks allocated in it. Offset 0 is
// never a block (it means "none" in the ABI).
type kernel struct {
	mem    []byte            // the arena; len(mem) is the high-water mark of allocations
	blocks map[uint64]uint64 // live block offset -> length
	free   []span            // freed blocks, reused first-fit
	limit  uint64            // cap on len(mem)
	pinned uint64            // a block free leaves alone: the output's
}

type span struct{ off, n uint64 }

// kernelBase is the first offset handed out; the bytes below it are never
// part of a block, so 0 stays "none".
const kernelBase = 16

func newKernel(limit uint64) *kernel {
	return &kernel{mem: make([]byte, kernelBase, 4096), blocks: map[uint64]uint64{}, limit: limit}
}

// alloc returns the offset of a new zeroed block of n bytes, 0 for n = 0.
// Blocks are 8-byte aligned so u64 loads and stores of PDKs stay inside.
func (k *kernel) alloc(n uint64) (uint64, error) {
	if n == 0 {
		return 0, nil
	}
	size := (n + 7) &^ 7
	for i, s := range k.free {
		if s.n < size {
			continue
		}
		if s.n-size >= 16 { // split: keep the rest free
			k.free[i] = span{off: s.off + size, n: s.n - size}
		} else {
			size = s.n
			k.free = slices.Delete(k.free, i, i+1)
		}
		clear(k.mem[s.off : s.off+size])
		k.blocks[s.off] = n
		return s.off, nil
	}
	off := uint64(len(k.mem))
	if off+size > k.limit || off+size < off {
		return 0, &Fault{Kind: FaultOOM, Func: "alloc", Reason: fmt.Sprintf(
			"allocating %d bytes would take the kernel memory past its limit of %d bytes (limits.memory_pages)", n, k.limit)}
	}
	k.mem = append(k.mem, make([]byte, size)...)
	k.blocks[off] = n
	return off, nil
}

// release frees a live block; anything else is ignored, as in the Extism
// kernel.
func (k *kernel) release(off uint64) {
	n, ok := k.blocks[off]
	if !ok || off == k.pinned {
		// The output is read when the function returns, as the Extism
		// runtime reads it, so a plugin freeing it after output_set still
		// has its output.
		return
	}
	delete(k.blocks, off)
	size := (n + 7) &^ 7
	if off+size == uint64(len(k.mem)) {
		k.mem = k.mem[:off] // the top block: shrink instead of listing it
		return
	}
	k.free = append(k.free, span{off: off, n: size})
	if len(k.free) > 256 {
		k.coalesce()
	}
}

// coalesce merges adjacent free spans and gives a free tail back to the
// arena, so a plugin that allocates and frees in a loop keeps both the
// free list short (alloc scans it) and the arena small.
func (k *kernel) coalesce() {
	slices.SortFunc(k.free, func(a, b span) int { return cmp.Compare(a.off, b.off) })
	merged := k.free[:1]
	for _, s := range k.free[1:] {
		last := &merged[len(merged)-1]
		if last.off+last.n == s.off {
			last.n += s.n
		} else {
			merged = append(merged, s)
		}
	}
	if last := merged[len(merged)-1]; last.off+last.n == uint64(len(k.mem)) {
		k.mem = k.mem[:last.off]
		merged = merged[:len(merged)-1]
	}
	k.free = merged
}

// length of the live block at off, 0 when off is not one.
func (k *kernel) length(off uint64) uint64 { return k.blocks[off] }

// bytes returns the live block at off (nil when off is not one).
func (k *kernel) bytes(off uint64) []byte {
	n, ok := k.blocks[off]
	if !ok {
		return nil
	}
	return k.mem[off : off+n]
}

// span returns [off, off+n) of the arena, or a fault naming fn.
func (k *kernel) span(fn string, off, n uint64) ([]byte, error) {
	if off < kernelBase || off+n > uint64(len(k.mem)) || off+n < off {
		return nil, &Fault{Kind: FaultABI, Func: fn, Reason: fmt.Sprintf(
			"range [%d, %d) is outside the kernel memory [%d, %d)", off, off+n, kernelBase, len(k.mem))}
	}
	return k.mem[off : off+n], nil
}

func (k *kernel) loadU8(fn string, off uint64) (uint8, error) {
	b, err := k.span(fn, off, 1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (k *kernel) loadU64(fn string, off uint64) (uint64, error) {
	b, err := k.span(fn, off, 8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

func (k *kernel) storeU8(off uint64, v uint8) error {
	b, err := k.span("store_u8", off, 1)
	if err != nil {
		return err
	}
	b[0] = v
	return nil
}

func (k *kernel) storeU64(off, v uint64) error {
	b, err := k.span("store_u64", off, 8)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(b, v)
	return nil
}

// put allocates a block holding b (0 for an empty b).
func (k *kernel) put(b []byte) (uint64, error) {
	off, err := k.alloc(uint64(len(b)))
	if err != nil || off == 0 {
		return off, err
	}
	copy(k.mem[off:], b)
	return off, nil
}
