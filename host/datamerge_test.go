package host

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tetratelabs/wazero"
)

// seg is a data segment of a generated module: active at offset (an
// i32.const, so -1 is 0xffffffff), or passive.
type seg struct {
	offset  int32
	init    string
	passive bool
}

// dataModule is a module with one exported memory of pages pages and the
// data segments segs (with a data count section when dataCount).
func dataModule(pages uint32, segs []seg, dataCount bool) []byte {
	section := func(out []byte, id byte, body []byte) []byte {
		out = append(out, id)
		out = appendU32(out, uint32(len(body)))
		return append(out, body...)
	}
	out := []byte("\x00asm\x01\x00\x00\x00")
	out = section(out, sectionMemory, appendU32([]byte{1, 0}, pages))
	out = section(out, 7, []byte{1, 6, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0}) // export "memory"
	if dataCount {
		out = section(out, sectionDataCount, appendU32(nil, uint32(len(segs))))
	}
	body := appendU32(nil, uint32(len(segs)))
	for _, s := range segs {
		if s.passive {
			body = append(body, 1)
		} else {
			body = append(body, 0, 0x41)
			body = appendS32(body, s.offset)
			body = append(body, 0x0b)
		}
		body = appendU32(body, uint32(len(s.init)))
		body = append(body, s.init...)
	}
	return section(out, sectionData, body)
}

// dataSegments counts the data segments of wasm (-1: no data section).
func dataSegments(t testing.TB, wasm []byte) int {
	t.Helper()
	n := -1
	_ = eachSection(wasm, func(id byte, body []byte, _, _ int) error {
		if id == sectionData {
			v, _, err := readU32(body)
			if err != nil {
				t.Fatal(err)
			}
			n = int(v)
		}
		return nil
	})
	return n
}

// initialMemory instantiates wasm (imports provided by a host's runtime)
// and returns its memory, or the instantiation's error.
func initialMemory(t testing.TB, rt wazero.Runtime, wasm []byte) ([]byte, error) {
	t.Helper()
	ctx := context.Background()
	compiled, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	defer compiled.Close(ctx)
	mod, err := rt.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName("").WithStartFunctions())
	if err != nil {
		return nil, err
	}
	defer mod.Close(ctx)
	b, _ := mod.Memory().Read(0, mod.Memory().Size())
	return bytes.Clone(b), nil
}

// checkSameMemory: the module as boundedModule rewrites it starts with
// the same memory as wasm, or fails to instantiate as wasm does; it
// returns the rewritten module.
func checkSameMemory(t *testing.T, rt wazero.Runtime, wasm []byte) []byte {
	t.Helper()
	l, err := readLayout(wasm)
	if err != nil {
		t.Fatal(err)
	}
	merged := boundedModule(wasm, l, 1000, true)
	want, wantErr := initialMemory(t, rt, wasm)
	got, gotErr := initialMemory(t, rt, merged)
	switch {
	case (wantErr != nil) != (gotErr != nil):
		t.Fatalf("instantiation: merged %v, original %v", gotErr, wantErr)
	case !bytes.Equal(got, want):
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("the merged module's memory differs from the original's at byte %d (sizes %d, %d)", i, len(got), len(want))
	}
	return merged
}

// TestMergeDataSegments: neighbouring segments merge when the gap between
// them is small and no segment writes into it, and the memory an instance
// starts with is the same byte for byte; other forms are left alone.
func TestMergeDataSegments(t *testing.T) {
	rt := wazero.NewRuntime(context.Background())
	t.Cleanup(func() { rt.Close(context.Background()) })
	cases := []struct {
		name      string
		segs      []seg
		dataCount bool
		want      int // segments after merging
	}{
		{name: "ascending, small gaps", segs: []seg{{offset: 8, init: "abc"}, {offset: 16, init: "defg"}, {offset: 20, init: "h"}, {offset: 40, init: "ij"}}, want: 1},
		{name: "gap too wide", segs: []seg{{offset: 0, init: "a"}, {offset: 1 + maxDataGap + 1, init: "b"}}, want: 2},
		{name: "gap of exactly the maximum", segs: []seg{{offset: 0, init: "a"}, {offset: 1 + maxDataGap, init: "b"}}, want: 1},
		{name: "an earlier segment in the gap", segs: []seg{{offset: 4, init: "xx"}, {offset: 0, init: "aa"}, {offset: 8, init: "bb"}}, want: 3},
		{name: "a later segment in the gap", segs: []seg{{offset: 0, init: "aa"}, {offset: 8, init: "bb"}, {offset: 4, init: "yy"}}, want: 3},
		{name: "later segment overwrites", segs: []seg{{offset: 0, init: "aaaaaaaa"}, {offset: 4, init: "bb"}, {offset: 12, init: "cc"}}, want: 3}, // [6, 12) holds the first one's bytes
		{name: "descending", segs: []seg{{offset: 16, init: "aa"}, {offset: 8, init: "bb"}, {offset: 0, init: "cc"}}, want: 3},
		{name: "empty segments", segs: []seg{{offset: 0, init: ""}, {offset: 0, init: "a"}, {offset: 3, init: ""}, {offset: 5, init: "b"}}, want: 1},
		{name: "large offset", segs: []seg{{offset: 65530, init: "ab"}, {offset: 65534, init: "cd"}}, want: 1},
		{name: "last one out of bounds", segs: []seg{{offset: 65530, init: "ab"}, {offset: 65534, init: "cdef"}}, want: 1},
		{name: "negative offset", segs: []seg{{offset: 0, init: "ab"}, {offset: -1, init: "c"}}, want: 2},
		{name: "a passive segment", segs: []seg{{offset: 0, init: "ab"}, {passive: true, init: "p"}, {offset: 4, init: "c"}}, want: 3},
		{name: "data count section", segs: []seg{{offset: 0, init: "ab"}, {offset: 4, init: "c"}}, dataCount: true, want: 2},
		{name: "one segment", segs: []seg{{offset: 0, init: "ab"}}, want: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			merged := checkSameMemory(t, rt, dataModule(1, tc.segs, tc.dataCount))
			if got := dataSegments(t, merged); got != tc.want {
				t.Errorf("%d segments after merging, want %d", got, tc.want)
			}
		})
	}
}

// TestMergeDataSegmentsRandom: random segments (offsets in and out of
// order, overlapping, some out of bounds) start instances with the same
// memory merged or not.
func TestMergeDataSegmentsRandom(t *testing.T) {
	rt := wazero.NewRuntime(context.Background())
	t.Cleanup(func() { rt.Close(context.Background()) })
	for seed := range uint64(300) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 1))
			var segs []seg
			at := int32(r.IntN(64))
			for range 1 + r.IntN(40) {
				if r.IntN(6) == 0 { // out of order, maybe overlapping
					at = int32(r.IntN(int(at) + 1))
				}
				init := make([]byte, r.IntN(24))
				for i := range init {
					init[i] = byte(1 + r.IntN(255))
				}
				segs = append(segs, seg{offset: at, init: string(init)})
				at += int32(len(init) + r.IntN(3*maxDataGap/2))
			}
			checkSameMemory(t, rt, dataModule(1, segs, false))
		})
	}
}

// TestMergeDataSegmentsGoGuest: a Go guest's ~21,000 data segments merge
// into a few, and its instances start with the same memory.
func TestMergeDataSegmentsGoGuest(t *testing.T) {
	wasm := goEchoWasm(t)
	h := newGuestTestHost(t, Config{})
	m := mustLoad(t, h, wasm, 0) // the runtime, with the imports a Go guest needs
	before := dataSegments(t, wasm)
	merged := checkSameMemory(t, m.rt.rt, wasm)
	if after := dataSegments(t, merged); before < 1000 || after > before/100 {
		t.Errorf("%d data segments merged into %d; want a Go guest's thousands merged into tens", before, after)
	}
}
