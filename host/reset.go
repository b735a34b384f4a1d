package host

import (
	"context"
	"fmt"
	"strconv"

	"github.com/tetratelabs/wazero/api"
)

// The reset policy restores an instance to its state right after
// _initialize before each attempt: its linear memory and its mutable
// globals. wazero reaches a global only through an export, and toolchains
// export none (a Go guest keeps its stack pointer and scheduler state in
// unexported globals), so the host compiles a variant of the module with
// one extra export per mutable global it defines. The guest cannot tell:
// its own code never sees its exports.

const resetGlobalPrefix = "wasmtask:global:"

const sectionGlobal, sectionExport = 6, 7

// exportGlobals returns wasm with an export named resetGlobalPrefix+index
// for every mutable global the module defines, and those names.
func exportGlobals(wasm []byte) ([]byte, []string, error) {
	var imported int
	var mutable []uint32 // global indices (imports counted first)
	var exportStart, exportEnd int
	var exports []byte
	err := eachSection(wasm, func(id byte, body []byte, start, end int) error {
		var err error
		switch id {
		case sectionImport:
			imported, err = countImports(body, importGlobal)
		case sectionGlobal:
			mutable, err = mutableGlobals(body, uint32(imported))
		case sectionExport:
			exportStart, exportEnd, exports = start, end, body
		}
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	if exports == nil {
		return nil, nil, fmt.Errorf("%w: no export section", errLayout)
	}
	r := reader{b: exports}
	n := r.u32()
	if r.err != nil {
		return nil, nil, fmt.Errorf("%w: export section: %v", errLayout, r.err)
	}
	body := appendU32(nil, n+uint32(len(mutable)))
	body = append(body, exports[r.pos:]...)
	names := make([]string, len(mutable))
	for i, idx := range mutable {
		names[i] = resetGlobalPrefix + strconv.Itoa(int(idx))
		body = appendU32(body, uint32(len(names[i])))
		body = append(body, names[i]...)
		body = append(body, 0x03) // global
		body = appendU32(body, idx)
	}
	out := make([]byte, 0, len(wasm)+len(body)-len(exports)+5)
	out = append(out, wasm[:exportStart]...)
	out = append(out, sectionExport)
	out = appendU32(out, uint32(len(body)))
	out = append(out, body...)
	out = append(out, wasm[exportEnd:]...)
	return out, names, nil
}

// mutableGlobals returns the indices of the mutable globals of a global
// section, the first defined global having index first.
func mutableGlobals(body []byte, first uint32) ([]uint32, error) {
	r := reader{b: body}
	var out []uint32
	n := r.u32()
	for i := range n {
		r.refType()
		if mut := r.byte(); mut == 1 {
			out = append(out, first+i)
		}
		if err := r.skipConstExpr(); err != nil {
			return nil, fmt.Errorf("%w: global %d: %v", errLayout, first+i, err)
		}
		if r.err != nil {
			return nil, fmt.Errorf("%w: global section: %v", errLayout, r.err)
		}
	}
	return out, r.err
}

// skipConstExpr skips a constant expression up to and including its end.
func (r *reader) skipConstExpr() error {
	for r.err == nil {
		switch op := r.byte(); op {
		case 0x0b: // end
			return nil
		case 0x41, 0x42, 0x23, 0xd2, 0xd0: // i32/i64.const, global.get, ref.func, ref.null heap type
			r.skipLEB()
		case 0x43: // f32.const
			r.skip(4)
		case 0x44: // f64.const
			r.skip(8)
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended-const add, sub, mul
		case 0xfd: // v128.const
			if sub := r.u32(); sub != 12 {
				return fmt.Errorf("opcode 0xfd %d in a constant expression", sub)
			}
			r.skip(16)
		default:
			return fmt.Errorf("opcode %#x in a constant expression", op)
		}
	}
	return r.err
}

// skipLEB skips one LEB128 number, signed or not, of any width.
func (r *reader) skipLEB() {
	for r.err == nil && r.byte()&0x80 != 0 {
	}
}

// resetState is an instance's state right after _initialize.
type resetState struct {
	memory  []byte
	globals []api.MutableGlobal
	values  []uint64
}

// snapshotInstance records mod's memory and the globals named.
func snapshotInstance(mod api.Module, names []string) (*resetState, error) {
	mem := mod.Memory()
	b, ok := mem.Read(0, mem.Size())
	if !ok {
		return nil, fmt.Errorf("reset: cannot read memory")
	}
	s := &resetState{memory: append([]byte(nil), b...)}
	for _, name := range names {
		g, ok := mod.ExportedGlobal(name).(api.MutableGlobal)
		if !ok {
			return nil, fmt.Errorf("reset: global %s is not exported as mutable", name)
		}
		s.globals = append(s.globals, g)
		s.values = append(s.values, g.Get())
	}
	return s, nil
}

// restore puts mod back in the recorded state. Memory that grew since
// cannot shrink: it is zeroed, as fresh pages would be.
func (s *resetState) restore(mod api.Module) bool {
	mem := mod.Memory()
	if !mem.Write(0, s.memory) {
		return false
	}
	if size := mem.Size(); size > uint32(len(s.memory)) {
		grown, ok := mem.Read(uint32(len(s.memory)), size-uint32(len(s.memory)))
		if !ok {
			return false
		}
		clear(grown)
	}
	for i, g := range s.globals {
		g.Set(s.values[i])
	}
	return true
}

// compileReset compiles the reset variant of m (exportGlobals) from the
// bytes m was loaded from.
func compileReset(ctx context.Context, m *Module, src []byte) (*resetVariant, error) {
	if src == nil {
		return nil, fmt.Errorf("instance policy %q: NewPool needs the module's bytes (the Module does not keep them)", InstancesReset)
	}
	if Hash(src) != m.Hash {
		return nil, fmt.Errorf("instance policy %q: the bytes given to NewPool are not those of module %s", InstancesReset, m.Hash)
	}
	layout, err := readLayout(src)
	if err != nil {
		return nil, fmt.Errorf("instance policy %q: %w", InstancesReset, err)
	}
	wasm, names, err := exportGlobals(boundedModule(src, layout, m.tableLimit, true))
	if err != nil {
		return nil, fmt.Errorf("instance policy %q: %w", InstancesReset, err)
	}
	compiled, err := m.rt.rt.CompileModule(ctx, wasm)
	if err != nil {
		return nil, fmt.Errorf("instance policy %q: compile the module with its globals exported: %w", InstancesReset, err)
	}
	return &resetVariant{compiled: compiled, globals: names}, nil
}
