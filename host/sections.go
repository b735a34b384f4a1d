package host

import (
	"errors"
	"fmt"
)

// The host reads three sections of a module itself, before wazero compiles
// it, because wazero offers no hook for them:
//
//   - the table section: wazero backs every table element with 8 bytes and
//     grows a table without bound unless the module declares a maximum, so
//     a module could take gigabytes outside its memory limit. The host
//     checks the declared minimums against Limits.TableElements and writes a
//     maximum into every table so that table.grow past the limit returns -1
//     (refused, as the spec allows) instead of allocating.
//   - the memory section: a declared maximum is removed (and remembered), so
//     that every memory.grow the module can ever make reaches the host's
//     allocator (memory.go), which refuses it at the same bound and records
//     the refusal (a trap after a refused grow is an oom).
//   - the data section: neighbouring segments are merged where that cannot
//     change an instance's initial memory (datamerge.go): a Go guest's
//     21,000 segments cost wazero 40 % of every instantiation.
//
// The rewritten bytes are what wazero compiles; Module.Hash stays the hash
// of the bytes the user deployed. The guest cannot tell the difference.

// wasmLayout is what the host learned from a module's sections.
type wasmLayout struct {
	tables         []tableDecl
	importedTables int
	memMin         uint32
	memMax         uint32 // declared maximum in pages; 0 when none
	hasMem         bool
	dataCount      bool // a data count section: code may name data segments by index
}

type tableDecl struct {
	refType []byte // the reference type bytes as encoded
	min     uint32
	max     uint32
	hasMax  bool
}

// tableMinElements is the total declared minimum of the module's tables.
func (l wasmLayout) tableMinElements() uint64 {
	var n uint64
	for _, t := range l.tables {
		n += uint64(t.min)
	}
	return n
}

// tableElementBytes is what wazero spends per table element (a uintptr).
const tableElementBytes = 8

var errLayout = errors.New("unsupported module layout")

const (
	sectionImport    = 2
	sectionTable     = 4
	sectionMemory    = 5
	sectionData      = 11
	sectionDataCount = 12
)

// readLayout parses the table and memory sections of wasm. It returns
// errLayout (wrapped) for an encoding it does not understand; the caller
// then lets wazero report what is wrong, or rejects the module.
func readLayout(wasm []byte) (wasmLayout, error) {
	var l wasmLayout
	err := eachSection(wasm, func(id byte, body []byte, _, _ int) error {
		var err error
		switch id {
		case sectionImport:
			l.importedTables, err = countImports(body, importTable)
		case sectionTable:
			l.tables, err = parseTables(body)
		case sectionMemory:
			err = l.parseMemory(body)
		case sectionDataCount:
			l.dataCount = true
		}
		return err
	})
	return l, err
}

// boundedModule returns wasm with every table's maximum set so that all
// tables together can never hold more than tableLimit elements, with
// (with dropMemMax) the memory's declared maximum removed, for the
// allocator to enforce, and with its data segments merged where that
// changes nothing (mergeDataSegments). It returns wasm itself when nothing
// changes.
func boundedModule(wasm []byte, l wasmLayout, tableLimit uint32, dropMemMax bool) []byte {
	type patch struct {
		start, end int    // the section replaced, header included
		sec        []byte // its new encoding
	}
	var patches []patch
	_ = eachSection(wasm, func(id byte, sectionBody []byte, start, end int) error {
		var body []byte
		switch {
		case id == sectionTable && len(l.tables) > 0:
			body = tableSection(l.tables, tableLimit)
		case id == sectionMemory && dropMemMax && l.hasMem && l.memMax > 0 && l.memMax >= l.memMin && l.memMax <= 65536:
			body = appendU32(appendU32(nil, 1), 0) // one memory, flag 0: min only
			body = appendU32(body, l.memMin)
		case id == sectionData && !l.dataCount:
			if body = mergeDataSegments(sectionBody); body == nil {
				return nil
			}
		default:
			return nil
		}
		sec := append([]byte{id}, appendU32(nil, uint32(len(body)))...)
		patches = append(patches, patch{start: start, end: end, sec: append(sec, body...)})
		return nil
	})
	if len(patches) == 0 {
		return wasm
	}
	// One copy of the module (tens of MB for some), whatever the number
	// of sections rewritten.
	size := len(wasm)
	for _, p := range patches {
		size += len(p.sec) - (p.end - p.start)
	}
	out := make([]byte, 0, size)
	prev := 0
	for _, p := range patches {
		out = append(out, wasm[prev:p.start]...)
		out = append(out, p.sec...)
		prev = p.end
	}
	return append(out, wasm[prev:]...)
}

// tableSection encodes tables with maxima bounding their total to limit:
// the room the minimums leave is shared equally among the tables (a module
// has one table in practice), and a smaller declared maximum stays.
func tableSection(tables []tableDecl, limit uint32) []byte {
	var sum uint64
	for _, t := range tables {
		sum += uint64(t.min)
	}
	share := (uint64(limit) - min(sum, uint64(limit))) / uint64(len(tables))
	body := appendU32(nil, uint32(len(tables)))
	for _, t := range tables {
		mx := uint64(t.min) + share
		if t.hasMax && uint64(t.max) < mx {
			mx = uint64(t.max)
		}
		body = append(body, t.refType...)
		body = append(body, 0x01)
		body = appendU32(body, t.min)
		body = appendU32(body, uint32(mx))
	}
	return body
}

// eachSection calls fn for every section with its id, body and the byte
// range [start, end) of the whole section (id and size included).
func eachSection(wasm []byte, fn func(id byte, body []byte, start, end int) error) error {
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return fmt.Errorf("%w: no WebAssembly header", errLayout)
	}
	for pos := 8; pos < len(wasm); {
		start := pos
		id := wasm[pos]
		size, n, err := readU32(wasm[pos+1:])
		if err != nil {
			return fmt.Errorf("%w: section at byte %d: %v", errLayout, start, err)
		}
		pos += 1 + n
		if uint64(pos)+uint64(size) > uint64(len(wasm)) {
			return fmt.Errorf("%w: section at byte %d runs past the end of the module", errLayout, start)
		}
		if err := fn(id, wasm[pos:pos+int(size)], start, pos+int(size)); err != nil {
			return err
		}
		pos += int(size)
	}
	return nil
}

func parseTables(body []byte) ([]tableDecl, error) {
	r := reader{b: body}
	n := r.u32()
	if r.err != nil || uint64(n) > uint64(len(body)) {
		return nil, fmt.Errorf("%w: table section count", errLayout)
	}
	tables := make([]tableDecl, 0, n)
	for range n {
		var t tableDecl
		t.refType = r.refType()
		if r.err == nil && len(t.refType) == 1 && t.refType[0] == 0x40 {
			return nil, fmt.Errorf("%w: a table with an initializer expression is not supported", errLayout)
		}
		t.min, t.max, t.hasMax = r.limits()
		if r.err != nil {
			return nil, fmt.Errorf("%w: table section: %v", errLayout, r.err)
		}
		tables = append(tables, t)
	}
	return tables, nil
}

func (l *wasmLayout) parseMemory(body []byte) error {
	r := reader{b: body}
	n := r.u32()
	if r.err != nil {
		return fmt.Errorf("%w: memory section: %v", errLayout, r.err)
	}
	if n != 1 {
		return nil // no memory, or several (wazero rejects them)
	}
	flag := r.byte()
	if flag > 1 { // shared (threads) or 64-bit memories: wazero rejects them here
		return nil
	}
	l.memMin = r.u32()
	if flag == 1 {
		l.memMax = r.u32()
	}
	if r.err != nil {
		return fmt.Errorf("%w: memory section: %v", errLayout, r.err)
	}
	l.hasMem = true
	return nil
}

// Import kinds of the import section.
const (
	importTable  = 0x01
	importGlobal = 0x03
)

// countImports counts the imports of one kind (importTable: the host
// provides none; importGlobal: imported globals come first in the global
// index space).
func countImports(body []byte, want byte) (int, error) {
	r := reader{b: body}
	n := 0
	for range r.u32() {
		r.skip(int(r.u32())) // module name
		r.skip(int(r.u32())) // field name
		kind := r.byte()
		switch kind {
		case 0x00: // function: type index
			r.u32()
		case importTable:
			r.refType()
			r.limits()
		case 0x02: // memory
			r.limits()
		case importGlobal: // value type, mutability
			r.refType()
			r.byte()
		case 0x04: // tag: attribute, type index
			r.byte()
			r.u32()
		default:
			return 0, fmt.Errorf("%w: import kind %#x", errLayout, kind)
		}
		if r.err != nil {
			return 0, fmt.Errorf("%w: import section: %v", errLayout, r.err)
		}
		if kind == want {
			n++
		}
	}
	return n, r.err
}

// reader decodes the few encodings the host needs; the first error sticks.
type reader struct {
	b   []byte
	pos int
	err error
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.pos >= len(r.b) {
		r.err = errors.New("unexpected end")
		return 0
	}
	c := r.b[r.pos]
	r.pos++
	return c
}

func (r *reader) skip(n int) {
	if r.err == nil && (n < 0 || r.pos+n > len(r.b)) {
		r.err = errors.New("unexpected end")
	}
	if r.err == nil {
		r.pos += n
	}
}

func (r *reader) u32() uint32 {
	if r.err != nil {
		return 0
	}
	v, n, err := readU32(r.b[r.pos:])
	if err != nil {
		r.err = err
		return 0
	}
	r.pos += n
	return v
}

// refType returns the bytes of a value or reference type: one byte, or a
// (ref null? heaptype) prefix followed by a signed LEB128 heap type.
func (r *reader) refType() []byte {
	start := r.pos
	switch b := r.byte(); b {
	case 0x63, 0x64:
		for r.err == nil && r.byte()&0x80 != 0 {
		}
	}
	if r.err != nil {
		return nil
	}
	return r.b[start:r.pos]
}

func (r *reader) limits() (lo, hi uint32, hasMax bool) {
	switch flag := r.byte(); flag {
	case 0x00:
		lo = r.u32()
	case 0x01:
		lo, hi, hasMax = r.u32(), r.u32(), true
	default:
		if r.err == nil {
			r.err = fmt.Errorf("limits flag %#x", flag)
		}
	}
	return
}

func readU32(b []byte) (uint32, int, error) {
	var v uint64
	for i := 0; i < 5; i++ {
		if i >= len(b) {
			return 0, 0, errors.New("unexpected end")
		}
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			if v > 0xffffffff {
				return 0, 0, errors.New("integer too large")
			}
			return uint32(v), i + 1, nil
		}
	}
	return 0, 0, errors.New("integer too long")
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

// checkTables rejects a module whose tables are imported or declare more
// elements than the limit, saying how to raise it.
func checkTables(key moduleKey, l wasmLayout) error {
	if l.importedTables > 0 {
		return &ValidationError{Module: key.hash, Reason: "imports a table; a module must define its own tables (this host provides none)"}
	}
	if n := l.tableMinElements(); n > uint64(key.tables) {
		return &ValidationError{Module: key.hash, Reason: fmt.Sprintf(
			"declares tables of %d elements (%d KiB at %d bytes an element), above the limit of %d elements; "+
				"raise limits.table_elements in the plugin's manifest (the operator's maximum is serve --max-table-elements)",
			n, n*tableElementBytes/1024, tableElementBytes, key.tables)}
	}
	return nil
}
