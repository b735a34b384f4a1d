package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// Mode is how a module is called.
type Mode string

const (
	// ModeHandler: the module exports wasmtask_handle (and maybe
	// _initialize); input and output go through the wasmtask_v1 imports.
	ModeHandler Mode = "handler"
	// ModeCommand: the module exports _start and no wasmtask_handle; stdin
	// is the input, stdout the output, stderr the log, exit code 0 success.
	ModeCommand Mode = "command"
	// ModeExtism: the module imports extism:host/env; the export named by
	// the plugin's manifest (Attempt.Extism.Function) runs through the
	// Extism ABI (package host/extism).
	ModeExtism Mode = "extism"
)

// Module is a validated, compiled module, shared by all its attempts.
type Module struct {
	Hash     string // "sha256:<hex>" of the module bytes
	Size     int
	Mode     Mode
	MinPages uint32
	// TableElements is the declared minimum of all its tables together.
	TableElements uint64
	Imports       []string // "module.name"
	Exports       []string // function exports

	hasInit bool
	// freshEntry: the compiled module has the export freshEntryExport
	// (entry.go), which a fresh attempt calls instead of _initialize and
	// wasmtask_handle.
	freshEntry bool
	// memMaxPages is what memory.grow may reach: the limit, or the
	// module's declared maximum when lower (memDeclaredMax); see memory.go.
	memMaxPages    uint32
	memDeclaredMax bool
	// memHint is the memory its instances grow to (bytes): an instance
	// reserves it up front, so that a guest growing its memory step by
	// step (a Go guest does, to megabytes) does not copy it at each step.
	// Raised by every grow, set by every close (memory.go).
	memHint    atomic.Uint64
	compiled   wazero.CompiledModule
	tableLimit uint32              // the table limit compiled in, for a reset pool's variant (reset.go)
	cfg        wazero.ModuleConfig // see moduleConfig
	// initCalls and handleCalls keep the call engines of finished fresh
	// attempts for the next instances (callengine.go).
	initCalls, handleCalls, entryCalls callEngines
	freshConfigs                       sync.Pool // of *freshConfig (attempt.go)
	rt                                 *runtime
}

// ValidationError says why a module was rejected, naming the import or
// export at fault.
type ValidationError struct {
	Module string // sha256:<hex>
	Reason string
}

func (e *ValidationError) Error() string { return "module " + e.Module + ": " + e.Reason }

// Hash returns the content hash of a module as "sha256:<hex>".
func Hash(wasm []byte) string {
	sum := sha256.Sum256(wasm)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Load validates and compiles wasm for the given memory limit (pages;
// 0 = default; clamped to the operator maximum) and the default table
// limit. See LoadLimits.
func (h *Host) Load(ctx context.Context, wasm []byte, memoryPages uint32) (*Module, error) {
	return h.LoadLimits(ctx, wasm, Limits{MemoryPages: memoryPages})
}

// LoadLimits validates and compiles wasm under lim's memory and table
// limits (zero fields: defaults; clamped to the operator maxima), once per
// content hash and limits: concurrent loads of the same module wait for
// one compilation. The other fields of lim apply per attempt (Run).
func (h *Host) LoadLimits(ctx context.Context, wasm []byte, lim Limits) (*Module, error) {
	return h.loadHashed(ctx, wasm, Hash(wasm), lim)
}

// loadHashed is LoadLimits for wasm whose Hash is known.
func (h *Host) loadHashed(ctx context.Context, wasm []byte, hash string, lim Limits) (*Module, error) {
	lim = lim.Clamp(h.cfg.Max)
	key := moduleKey{hash: hash, pages: lim.MemoryPages, tables: lim.TableElements}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	if e, ok := h.modules[key]; ok {
		h.mu.Unlock()
		select {
		case <-e.ready:
			return e.mod, e.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	e := &moduleEntry{ready: make(chan struct{})}
	h.modules[key] = e
	h.mu.Unlock()

	e.mod, e.err = h.compile(ctx, wasm, key)
	if e.err != nil {
		h.mu.Lock()
		delete(h.modules, key) // a failed load is not cached: the next may succeed (e.g. ctx canceled)
		h.mu.Unlock()
	}
	close(e.ready)
	return e.mod, e.err
}

func (h *Host) compile(ctx context.Context, wasm []byte, key moduleKey) (*Module, error) {
	layout, err := readLayout(wasm)
	if err != nil {
		return nil, h.unreadable(ctx, key, wasm, err)
	}
	if err := checkTables(key, layout); err != nil {
		return nil, err
	}
	m := &Module{Hash: key.hash, Size: len(wasm), TableElements: layout.tableMinElements()}
	shape, err := readShape(wasm)
	if err != nil {
		return nil, h.unreadable(ctx, key, wasm, err)
	}
	// Everything the sections tell is checked before the compile (inspect.go).
	provided, err := h.providedFuncs()
	if err != nil {
		return nil, err
	}
	if err := h.precheck(m, shape, layout, provided, key.pages); err != nil {
		return nil, err
	}
	if err := m.checkTableMemory(key.pages); err != nil {
		return nil, err
	}
	rt, err := h.runtimeFor(ctx, key.pages, key.hash)
	if err != nil {
		return nil, err
	}
	m.rt = rt
	release, err := h.compileSlot(ctx, len(wasm))
	if err != nil {
		return nil, err
	}
	m.memMaxPages = key.pages
	if layout.memMax > 0 && layout.memMax < key.pages {
		m.memMaxPages, m.memDeclaredMax = layout.memMax, true
	}
	// The bytes are not kept: wazero keeps a copy of what it needs, and a
	// reset pool, the only other user, is given them (NewPool).
	m.tableLimit = key.tables
	bounded := boundedModule(wasm, layout, key.tables, true)
	src := bounded
	if m.hasInit {
		if e := withFreshEntry(bounded); e != nil {
			src, m.freshEntry = e, true
		}
	}
	compiled, err := h.compileBytes(ctx, rt, key.hash, src)
	if err != nil && m.freshEntry && !noSpace(err) {
		// Only a module that compiles without the entry is the entry's
		// fault (entry.go); an invalid one is reported as it is.
		m.freshEntry = false
		compiled, err = h.compileBytes(ctx, rt, key.hash, bounded)
	}
	release()
	if noSpace(err) {
		// The module may well be valid (the API answers 507).
		return nil, fmt.Errorf("compile module %s: %w", key.hash, err)
	}
	if err != nil {
		return nil, &ValidationError{Module: key.hash, Reason: "not a valid WebAssembly module: " + err.Error()}
	}
	m.compiled = compiled
	m.cfg = moduleConfig(m.Mode)
	m.initCalls.name, m.handleCalls.name, m.entryCalls.name = "_initialize", handleExport, freshEntryExport
	return m, nil
}

// compileBytes compiles wasm in rt, without the compile cache when its
// disk is full.
func (h *Host) compileBytes(ctx context.Context, rt *runtime, hash string, wasm []byte) (wazero.CompiledModule, error) {
	compiled, err := rt.rt.CompileModule(ctx, wasm)
	if noSpace(err) && rt.cache != nil {
		// The compiled code could not be written to the cache: its disk
		// is full. The cache only spares a later start the compile, so
		// go on without it: wazero (v1.12) keeps what it compiled in
		// memory before it writes the cache, and a second compile takes
		// it from there; the next start with space writes the cache.
		h.log.Warn("host: the compile cache's disk is full: module compiled without caching it", "module", hash, "err", err)
		compiled, err = rt.rt.CompileModule(ctx, wasm)
	}
	return compiled, err
}

// unreadable reports a module whose sections the host could not read:
// wazero's own message when it rejects the module too (compiled in a
// throwaway runtime, so nothing is cached for it), else the host's.
func (h *Host) unreadable(ctx context.Context, key moduleKey, wasm []byte, err error) error {
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	if _, cerr := rt.CompileModule(ctx, wasm); cerr != nil {
		return &ValidationError{Module: key.hash, Reason: "not a valid WebAssembly module: " + cerr.Error()}
	}
	return &ValidationError{Module: key.hash, Reason: err.Error()}
}

// checkTableMemory rejects a module whose tables and minimum memory do not
// fit the memory limit together (tables count against it).
func (m *Module) checkTableMemory(maxPages uint32) error {
	if tb := m.TableElements * tableElementBytes; tb > 0 && uint64(m.MinPages)*65536+tb > uint64(maxPages)*65536 {
		return &ValidationError{Module: m.Hash, Reason: fmt.Sprintf("declares a minimum memory of %d pages and tables of %d elements, %d KiB together, above the memory limit of %d pages (%d KiB): "+
			"tables count against limits.memory_pages at %d bytes an element", m.MinPages, m.TableElements, (uint64(m.MinPages)*65536+tb+1023)/1024, maxPages, maxPages*64, tableElementBytes)}
	}
	return nil
}

const handleExport = "wasmtask_handle"

type funcSig struct{ params, results []api.ValueType }

func sigOf(def api.FunctionDefinition) funcSig {
	return funcSig{params: def.ParamTypes(), results: def.ResultTypes()}
}

func (s funcSig) equal(o funcSig) bool {
	return slices.Equal(s.params, o.params) && slices.Equal(s.results, o.results)
}

func (s funcSig) String() string {
	names := func(ts []api.ValueType) string {
		var out []string
		for _, t := range ts {
			out = append(out, api.ValueTypeName(t))
		}
		return "(" + strings.Join(out, ", ") + ")"
	}
	return names(s.params) + " -> " + names(s.results)
}

// noSpace reports a write that failed because the disk (or a quota) is full.
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
