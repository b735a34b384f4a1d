package host

import "bytes"

// A fresh attempt of a reactor calls two exports, _initialize and then
// wasmtask_handle, and wazero starts a goroutine per call (the watcher
// that closes the instance at the attempt's deadline): with the call's
// entry and exit, ~2.5 µs of a WAT attempt's ~10. So the host adds to
// such a module, before wazero compiles it, one export that makes both
// calls, in one call from the host:
//
//	(func $wasmtask$fresh (result i32)
//	  call $_initialize
//	  i32.const 1
//	  global.set $wasmtask$initialized
//	  call $wasmtask_handle)
//
// and a mutable global, exported, that says whether _initialize returned
// (an error in it is reported as "_initialize: ..." as before). The new
// function, type and global come after the module's own, so no index the
// module uses changes; the module cannot name them, and sees nothing else.
// Modules whose sections have forms this does not rewrite (types other
// than plain function types, such as GC proposal rec groups) keep the two
// calls.

// Names of what withFreshEntry adds.
const (
	freshEntryExport  = "wasmtask$fresh"
	freshInitedExport = "wasmtask$initialized"
)

const sectionCode = 10

// withFreshEntry returns wasm with the export freshEntryExport added, or
// nil when the module has a form it does not rewrite. wasm must export
// _initialize and wasmtask_handle as functions.
func withFreshEntry(wasm []byte) []byte {
	type found struct {
		body       []byte
		start, end int
		ok         bool
	}
	var secs [14]found
	err := eachSection(wasm, func(id byte, body []byte, start, end int) error {
		if int(id) < len(secs) && id != 0 {
			if secs[id].ok {
				return errLayout // a section twice: wazero rejects it
			}
			secs[id] = found{body: body, start: start, end: end, ok: true}
		}
		return nil
	})
	if err != nil || !secs[sectionType].ok || !secs[sectionFunction].ok || !secs[sectionExport].ok || !secs[sectionCode].ok {
		return nil
	}
	types, ok := countFuncTypes(secs[sectionType].body)
	if !ok {
		return nil
	}
	var importedFuncs, importedGlobals int
	if s := secs[sectionImport]; s.ok {
		if importedFuncs, err = countImports(s.body, 0x00); err != nil {
			return nil
		}
		if importedGlobals, err = countImports(s.body, importGlobal); err != nil {
			return nil
		}
	}
	funcs, ok := vecCount(secs[sectionFunction].body)
	if !ok {
		return nil
	}
	globals := 0
	if s := secs[sectionGlobal]; s.ok {
		if globals, ok = vecCount(s.body); !ok {
			return nil
		}
	}
	exports, ok := readExports(secs[sectionExport].body)
	if !ok {
		return nil
	}
	initIdx, ok1 := exports["_initialize"]
	handleIdx, ok2 := exports[handleExport]
	_, taken1 := exports[freshEntryExport]
	_, taken2 := exports[freshInitedExport]
	if !ok1 || !ok2 || taken1 || taken2 {
		return nil
	}
	codes, ok := vecCount(secs[sectionCode].body)
	if !ok || codes != funcs {
		return nil
	}
	entryIdx := uint32(importedFuncs + funcs)
	globalIdx := uint32(importedGlobals + globals)

	appendToVec := func(body []byte, n, added int, add []byte) []byte {
		_, skip, _ := readU32(body)
		out := appendU32(nil, uint32(n+added))
		out = append(out, body[skip:]...)
		return append(out, add...)
	}
	section := func(id byte, body []byte) []byte {
		return append(appendU32([]byte{id}, uint32(len(body))), body...)
	}
	newType := appendToVec(secs[sectionType].body, types, 1, []byte{0x60, 0x00, 0x01, 0x7f}) // () -> i32
	newFunc := appendToVec(secs[sectionFunction].body, funcs, 1, appendU32(nil, uint32(types)))
	global := []byte{0x7f, 0x01, 0x41, 0x00, 0x0b} // (mut i32) (i32.const 0)
	var newGlobal []byte
	if s := secs[sectionGlobal]; s.ok {
		newGlobal = appendToVec(s.body, globals, 1, global)
	} else {
		newGlobal = append(appendU32(nil, 1), global...)
	}
	var add []byte
	add = appendName(add, freshEntryExport)
	add = appendU32(append(add, 0x00), entryIdx)
	add = appendName(add, freshInitedExport)
	add = appendU32(append(add, 0x03), globalIdx)
	newExport := appendToVec(secs[sectionExport].body, len(exports), 2, add)
	var code []byte
	code = append(code, 0x00) // no locals
	code = appendU32(append(code, 0x10), initIdx)
	code = appendU32(append(code, 0x41, 0x01, 0x24), globalIdx) // i32.const 1, global.set
	code = appendU32(append(code, 0x10), handleIdx)
	code = append(code, 0x0b)
	newCode := appendToVec(secs[sectionCode].body, codes, 1, append(appendU32(nil, uint32(len(code))), code...))

	// Sections in the module's order; the global section, when the module
	// has none, goes right before the export section (its place in the
	// order: after memory and tag sections, before exports).
	type patch struct {
		start, end int
		sec        []byte
	}
	patches := []patch{
		{secs[sectionType].start, secs[sectionType].end, section(sectionType, newType)},
		{secs[sectionFunction].start, secs[sectionFunction].end, section(sectionFunction, newFunc)},
		{secs[sectionExport].start, secs[sectionExport].end, section(sectionExport, newExport)},
		{secs[sectionCode].start, secs[sectionCode].end, section(sectionCode, newCode)},
	}
	if s := secs[sectionGlobal]; s.ok {
		patches = append(patches, patch{s.start, s.end, section(sectionGlobal, newGlobal)})
	} else {
		at := secs[sectionExport].start
		patches = append(patches, patch{at, at, section(sectionGlobal, newGlobal)})
	}
	// Apply in byte order; an insertion at the export section's start
	// comes before the export section's own patch.
	for i := range patches {
		for j := i + 1; j < len(patches); j++ {
			if patches[j].start < patches[i].start || (patches[j].start == patches[i].start && patches[j].end < patches[i].end) {
				patches[i], patches[j] = patches[j], patches[i]
			}
		}
	}
	var out bytes.Buffer
	prev := 0
	for _, p := range patches {
		out.Write(wasm[prev:p.start])
		out.Write(p.sec)
		prev = p.end
	}
	out.Write(wasm[prev:])
	return out.Bytes()
}

// countFuncTypes counts the entries of a type section; ok is false unless
// all are plain function types.
func countFuncTypes(body []byte) (int, bool) {
	r := reader{b: body}
	n := r.u32()
	for range n {
		if r.byte() != 0x60 {
			return 0, false
		}
		for range 2 { // params, results
			for range r.u32() {
				r.refType()
				if r.err != nil {
					return 0, false
				}
			}
		}
		if r.err != nil {
			return 0, false
		}
	}
	return int(n), r.err == nil && r.pos == len(body)
}

// vecCount reads the count at the start of a section body.
func vecCount(body []byte) (int, bool) {
	n, _, err := readU32(body)
	return int(n), err == nil && uint64(n) <= uint64(len(body))
}

// readExports returns the function exports by name (and every export's
// name, with index 0 for non-functions, so that names taken are known).
func readExports(body []byte) (map[string]uint32, bool) {
	r := reader{b: body}
	n := r.u32()
	if r.err != nil || uint64(n) > uint64(len(body)) {
		return nil, false
	}
	out := make(map[string]uint32, n)
	for range n {
		size := int(r.u32())
		start := r.pos
		r.skip(size)
		if r.err != nil {
			return nil, false
		}
		name := string(body[start:r.pos])
		kind := r.byte()
		idx := r.u32()
		if r.err != nil {
			return nil, false
		}
		if _, dup := out[name]; dup {
			return nil, false
		}
		if kind != 0x00 {
			idx = 0
		}
		out[name] = idx
	}
	return out, r.pos == len(body)
}

func appendName(b []byte, name string) []byte {
	return append(appendU32(b, uint32(len(name))), name...)
}
