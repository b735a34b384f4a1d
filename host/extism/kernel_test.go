package extism

import (
	"errors"
	"testing"
)

func TestKernelBlocks(t *testing.T) {
	k := newKernel(1 << 16)
	if off, err := k.alloc(0); off != 0 || err != nil {
		t.Fatalf("alloc(0) = %d, %v, want 0, nil", off, err)
	}
	a, _ := k.alloc(5)
	b, _ := k.alloc(20)
	if a == 0 || b == 0 || a == b || a%8 != 0 || b%8 != 0 {
		t.Fatalf("alloc gave %d and %d, want distinct, non-zero, 8-byte aligned offsets", a, b)
	}
	if k.length(a) != 5 || k.length(b) != 20 || k.length(a+1) != 0 || k.length(0) != 0 {
		t.Errorf("length: a %d, b %d, a+1 %d, 0 %d; want 5, 20, 0, 0", k.length(a), k.length(b), k.length(a+1), k.length(0))
	}
	if err := k.storeU64(a, 0x0102030405060708); err != nil {
		t.Fatal(err)
	}
	if v, _ := k.loadU8("load_u8", a); v != 8 {
		t.Errorf("load_u8 after store_u64 = %d, want 8 (little-endian)", v)
	}
	k.release(a)
	if k.length(a) != 0 {
		t.Errorf("length of a freed block = %d, want 0", k.length(a))
	}
	c, _ := k.alloc(3)
	if c != a {
		t.Errorf("alloc after free = %d, want the freed block %d reused", c, a)
	}
	if v, _ := k.loadU8("load_u8", c); v != 0 {
		t.Errorf("a reused block starts with %d, want zeroed", v)
	}
	k.release(b) // the top block: the arena shrinks
	if d, _ := k.alloc(20); d != b {
		t.Errorf("alloc after freeing the top block = %d, want %d", d, b)
	}
}

func TestKernelPinnedOutput(t *testing.T) {
	k := newKernel(1 << 16)
	off, _ := k.put([]byte("output"))
	k.pinned = off
	k.release(off)
	if b := k.bytes(off); string(b) != "output" {
		t.Fatalf("the pinned output block after free = %q, want it kept", b)
	}
	if next, _ := k.alloc(6); next == off {
		t.Fatal("alloc reused the pinned output block")
	}
}

// TestKernelCoalesce: freeing many blocks in any order merges them, so the
// free list stays short and the arena returns to its size.
func TestKernelCoalesce(t *testing.T) {
	k := newKernel(1 << 20)
	var offs []uint64
	for range 1000 {
		off, _ := k.alloc(24)
		offs = append(offs, off)
	}
	keep, _ := k.alloc(8) // the top block stays live
	for i := 0; i < len(offs); i += 2 {
		k.release(offs[i])
	}
	for i := 1; i < len(offs); i += 2 {
		k.release(offs[i])
	}
	if len(k.free) > 256 {
		t.Errorf("free list has %d spans after freeing every block, want them merged", len(k.free))
	}
	k.release(keep)
	k.coalesce()
	if len(k.mem) != kernelBase || len(k.free) != 0 {
		t.Errorf("after freeing everything: arena %d bytes, %d free spans; want %d and 0", len(k.mem), len(k.free), kernelBase)
	}
}

func TestKernelFaults(t *testing.T) {
	k := newKernel(4096)
	off, _ := k.alloc(8)
	cases := []struct {
		name string
		err  error
		kind FaultKind
	}{
		{"LoadPastEnd", func() error { _, err := k.loadU64("load_u64", off+4); return err }(), FaultABI},
		{"LoadZero", func() error { _, err := k.loadU8("load_u8", 0); return err }(), FaultABI},
		{"StoreHuge", k.storeU8(1<<40, 1), FaultABI},
		{"StoreWrap", k.storeU64(^uint64(0)-3, 1), FaultABI},
		{"AllocPastLimit", func() error { _, err := k.alloc(5000); return err }(), FaultOOM},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var f *Fault
			if !errors.As(tc.err, &f) || f.Kind != tc.kind {
				t.Fatalf("err = %v, want a fault of kind %d", tc.err, tc.kind)
			}
		})
	}
}
