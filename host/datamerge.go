package host

import (
	"cmp"
	"slices"
	"sort"
)

// Go's linker writes a module's data as thousands of small active
// segments (a Go guest: ~21,000 segments of 24 bytes on average, split
// at every run of 8 or more zero bytes), and wazero (v1.12) evaluates each
// segment's offset expression with two allocations and records each
// segment in a per-instance slice on every instantiation: 40 % of a fresh
// Go attempt's CPU and 25,000 of its allocations. The host merges
// neighbouring segments before wazero compiles the module, filling the gap
// between two with zeros, where that cannot change the memory an instance
// starts with:
//
//   - every segment is active in memory 0 at an i32.const offset (no
//     passive segment, no other offset expression), and the module has no
//     data count section (only with one may code name a data segment, in
//     memory.init or data.drop, so segment indices are not observable);
//   - two segments merge only when the second starts at or after the end
//     of the first, at most maxDataGap bytes after it, and no segment of
//     the module writes into the gap: the gap's bytes are then zero after
//     instantiation either way (new memory is zero), and the merged
//     segment writes exactly what the two did, at the same point of the
//     order segments are applied in.
//
// A segment out of the memory's bounds fails the instantiation before and
// after (the merged one ends where its last segment ends); only the index
// in wazero's message can differ.

// maxDataGap is the widest run of zeros merging writes between two
// segments: Go's segments are 8 to 32 bytes apart, and a wider gap would
// make every instantiation copy zeros over memory that is zero already.
const maxDataGap = 64

type dataSegment struct {
	offset uint32
	init   []byte
}

// mergeDataSegments returns the body of a data section with its segments
// merged, or nil when the section has a form it does not merge or merging
// would not reduce the number of segments.
func mergeDataSegments(body []byte) []byte {
	segs, ok := parseDataSegments(body)
	if !ok || len(segs) < 2 {
		return nil
	}
	// Every segment's range, by start, and the furthest end among those
	// starting before each: a gap [a, b) is written by some segment when
	// one starting before b ends after a.
	type span struct{ start, end uint64 }
	spans := make([]span, len(segs))
	for i, s := range segs {
		spans[i] = span{uint64(s.offset), uint64(s.offset) + uint64(len(s.init))}
	}
	slices.SortFunc(spans, func(x, y span) int { return cmp.Compare(x.start, y.start) })
	maxEnd := make([]uint64, len(spans))
	for i, sp := range spans {
		maxEnd[i] = sp.end
		if i > 0 {
			maxEnd[i] = max(maxEnd[i], maxEnd[i-1])
		}
	}
	written := func(a, b uint64) bool {
		n := sort.Search(len(spans), func(i int) bool { return spans[i].start >= b }) // spans[:n] start before b
		return n > 0 && maxEnd[n-1] > a
	}

	type run struct {
		offset uint32
		parts  []dataSegment
		end    uint64
	}
	var runs []run
	for _, s := range segs {
		start := uint64(s.offset)
		if n := len(runs); n > 0 {
			r := &runs[n-1]
			if start >= r.end && start-r.end <= maxDataGap && (start == r.end || !written(r.end, start)) {
				r.parts = append(r.parts, s)
				r.end = start + uint64(len(s.init))
				continue
			}
		}
		runs = append(runs, run{offset: s.offset, parts: []dataSegment{s}, end: start + uint64(len(s.init))})
	}
	if len(runs) == len(segs) {
		return nil
	}
	out := appendU32(make([]byte, 0, len(body)+len(runs)*maxDataGap), uint32(len(runs)))
	for _, r := range runs {
		out = append(out, 0x00, 0x41) // active in memory 0, i32.const
		out = appendS32(out, int32(r.offset))
		out = append(out, 0x0b) // end
		out = appendU32(out, uint32(r.end-uint64(r.offset)))
		at := uint64(r.offset)
		for _, p := range r.parts {
			for ; at < uint64(p.offset); at++ {
				out = append(out, 0)
			}
			out = append(out, p.init...)
			at += uint64(len(p.init))
		}
	}
	return out
}

// parseDataSegments reads a data section whose segments are all active in
// memory 0 at an i32.const offset; ok is false for any other form.
func parseDataSegments(body []byte) (segs []dataSegment, ok bool) {
	r := reader{b: body}
	n := r.u32()
	if r.err != nil || uint64(n) > uint64(len(body)) {
		return nil, false
	}
	segs = make([]dataSegment, 0, n)
	for range n {
		if r.u32() != 0 || r.byte() != 0x41 { // flag 0 (active, memory 0), i32.const
			return nil, false
		}
		v := r.s32()
		if r.byte() != 0x0b {
			return nil, false
		}
		size := r.u32()
		start := r.pos
		r.skip(int(size))
		if r.err != nil {
			return nil, false
		}
		segs = append(segs, dataSegment{offset: uint32(v), init: body[start:r.pos]})
	}
	return segs, r.pos == len(body)
}

// s32 reads a signed LEB128 32-bit integer.
func (r *reader) s32() int32 {
	var v int64
	var shift uint
	for i := 0; i < 5; i++ {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			if v < -1<<31 || v > 1<<31-1 {
				r.err = errLayout
				return 0
			}
			return int32(v)
		}
	}
	r.err = errLayout
	return 0
}

// appendS32 appends v as signed LEB128.
func appendS32(b []byte, v int32) []byte {
	x := int64(v)
	for {
		c := byte(x & 0x7f)
		x >>= 7
		if (x == 0 && c&0x40 == 0) || (x == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
