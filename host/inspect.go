package host

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tetratelabs/wazero/api"

	"github.com/wasmtask/wasmtask/host/extism"
)

// The host checks a module's imports, exports and memory from its sections
// before it compiles it: decoding those sections takes microseconds even
// for a 20 MB module, whose compile takes seconds and hundreds of MiB. A
// module that cannot run here is rejected at once, naming every missing
// import together, and never holds up the compiles of other plugins.

// moduleShape is what the host reads from a module's type, import,
// function and export sections.
type moduleShape struct {
	types          []funcSig
	imports        []importedFunc
	importedMemory bool
	funcs          []uint32 // type index of every function, imported ones first
	exports        map[string]export
}

type importedFunc struct {
	module, name string
	sig          funcSig
}

type export struct {
	kind byte // 0 function, 1 table, 2 memory, 3 global
	idx  uint32
}

const (
	sectionType     = 1
	sectionFunction = 3
	// sectionExport: reset.go
)

// readShape parses the sections precheck needs; errLayout (wrapped) for an
// encoding it does not understand.
func readShape(wasm []byte) (*moduleShape, error) {
	s := &moduleShape{exports: map[string]export{}}
	err := eachSection(wasm, func(id byte, body []byte, _, _ int) error {
		r := reader{b: body}
		switch id {
		case sectionType:
			for range r.u32() {
				if r.byte() != 0x60 {
					if r.err == nil {
						r.err = errors.New("a type other than a function type")
					}
					break
				}
				s.types = append(s.types, funcSig{params: r.valueTypes(), results: r.valueTypes()})
			}
		case sectionImport:
			for range r.u32() {
				mod, name := r.name(), r.name()
				switch kind := r.byte(); kind {
				case 0x00:
					t := r.u32()
					if r.err == nil && int(t) >= len(s.types) {
						r.err = fmt.Errorf("import %s.%s: type index %d out of range", mod, name, t)
					}
					if r.err == nil {
						s.imports = append(s.imports, importedFunc{module: mod, name: name, sig: s.types[t]})
						s.funcs = append(s.funcs, t)
					}
				case 0x01:
					r.refType()
					r.limits()
				case 0x02:
					r.limits()
					s.importedMemory = true
				case 0x03:
					r.refType()
					r.byte()
				case 0x04:
					r.byte()
					r.u32()
				default:
					if r.err == nil {
						r.err = fmt.Errorf("import kind %#x", kind)
					}
				}
			}
		case sectionFunction:
			for range r.u32() {
				s.funcs = append(s.funcs, r.u32())
			}
		case sectionExport:
			for range r.u32() {
				name := r.name()
				kind := r.byte()
				s.exports[name] = export{kind: kind, idx: r.u32()}
			}
		default:
			return nil
		}
		if r.err != nil {
			return fmt.Errorf("%w: section %d: %v", errLayout, id, r.err)
		}
		return nil
	})
	return s, err
}

// exportedFunc returns the signature of an exported function.
func (s *moduleShape) exportedFunc(name string) (funcSig, bool) {
	e, ok := s.exports[name]
	if !ok || e.kind != 0 || int(e.idx) >= len(s.funcs) || int(s.funcs[e.idx]) >= len(s.types) {
		return funcSig{}, false
	}
	return s.types[s.funcs[e.idx]], true
}

func (r *reader) name() string {
	n := int(r.u32())
	start := r.pos
	r.skip(n)
	if r.err != nil {
		return ""
	}
	return string(r.b[start:r.pos])
}

func (r *reader) valueTypes() []api.ValueType {
	n := r.u32()
	if r.err != nil || int(n) > len(r.b)-r.pos {
		if r.err == nil {
			r.err = errors.New("value type count")
		}
		return nil
	}
	out := make([]api.ValueType, 0, n)
	for range n {
		t := r.refType()
		if len(t) != 1 {
			if r.err == nil {
				r.err = errors.New("a reference type this host does not read")
			}
			return nil
		}
		out = append(out, t[0])
	}
	return out
}

// precheck checks everything about m that the sections tell, before any
// compile: imports (every one the host lacks, named together), memory, entry
// points. It fills m's Imports, Exports, Mode, MinPages and hasInit.
func (h *Host) precheck(m *Module, s *moduleShape, l wasmLayout, provided map[string]funcSig, maxPages uint32) error {
	bad := func(format string, args ...any) error {
		return &ValidationError{Module: m.Hash, Reason: fmt.Sprintf(format, args...)}
	}
	var missing, wrongSig []string
	for _, im := range s.imports {
		full := im.module + "." + im.name
		m.Imports = append(m.Imports, full)
		want, ok := provided[full]
		switch {
		case !ok:
			missing = append(missing, full)
		case !im.sig.equal(want):
			wrongSig = append(wrongSig, fmt.Sprintf("import %s has signature %s, the host provides %s", full, im.sig, want))
		}
	}
	var problems []string
	if len(missing) > 0 {
		what := "import " + missing[0] + " is not provided"
		if len(missing) > 1 {
			what = fmt.Sprintf("%d imports are not provided: %s;", len(missing), strings.Join(missing, ", "))
		}
		from := func(mod string) bool {
			return slices.ContainsFunc(missing, func(s string) bool { return strings.HasPrefix(s, mod+".") })
		}
		switch {
		case from(abiModule):
			problems = append(problems, fmt.Sprintf("%s by this host (it provides %s of ABI %s)", what, strings.Join(abiFunctionNames(), ", "), abiModule))
		case from(extism.ModuleName):
			problems = append(problems, fmt.Sprintf("%s by this host (it provides %s of %s)", what, strings.Join(extism.FunctionNames(), ", "), extism.ModuleName))
		default:
			problems = append(problems, fmt.Sprintf("%s by this host (only %s, %s and wasi_snapshot_preview1 are)", what, abiModule, extism.ModuleName))
		}
	}
	problems = append(problems, wrongSig...)
	if len(problems) > 0 {
		return bad("%s", strings.Join(problems, "; "))
	}
	if s.importedMemory {
		return bad("imports a memory; a module must define and export its own memory")
	}
	if e, ok := s.exports["memory"]; !ok || e.kind != 2 || !l.hasMem {
		return bad("does not export a memory named \"memory\"")
	}
	m.MinPages = l.memMin
	if m.MinPages > maxPages {
		return bad("declares a minimum memory of %d pages (%d KiB), above the limit of %d pages (%d KiB); %s",
			m.MinPages, m.MinPages*64, maxPages, maxPages*64, h.raiseMemoryHint(m.MinPages))
	}
	for name, e := range s.exports {
		if e.kind == 0 {
			m.Exports = append(m.Exports, name)
		}
	}
	slices.Sort(m.Exports)
	if m.usesExtism() {
		m.Mode = ModeExtism // the function is named by the manifest: CheckExtism
	} else if sig, ok := s.exportedFunc(handleExport); ok {
		if !sig.equal(funcSig{results: []api.ValueType{api.ValueTypeI32}}) {
			return bad("export %s has signature %s, want () -> (i32)", handleExport, sig)
		}
		m.Mode = ModeHandler
	} else if _, ok := s.exportedFunc("_start"); ok {
		m.Mode = ModeCommand
	} else {
		return bad("exports neither %s (handler mode) nor _start (command mode)", handleExport)
	}
	if sig, ok := s.exportedFunc("_initialize"); ok {
		if !sig.equal(funcSig{}) {
			return bad("export _initialize has signature %s, want () -> ()", sig)
		}
		m.hasInit = m.Mode == ModeHandler
	}
	return nil
}

// raiseMemoryHint says which setting raises the memory limit to pages.
func (h *Host) raiseMemoryHint(pages uint32) string {
	opMax := Limits{MemoryPages: 65536}.Clamp(h.cfg.Max).MemoryPages
	if pages > opMax {
		return fmt.Sprintf("the operator's maximum is %d pages: start the server with --max-memory-pages %d or more (wasmtask call: --memory-pages %d), and set limits.memory_pages in the plugin's manifest", opMax, pages, pages)
	}
	return fmt.Sprintf("set limits.memory_pages to %d or more in the plugin's manifest (NAME.json; wasmtask call: --memory-pages %d); the operator's maximum is %d pages (serve --max-memory-pages)", pages, pages, opMax)
}
