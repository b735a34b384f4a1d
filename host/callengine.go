package host

import (
	"reflect"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/tetratelabs/wazero/api"
)

// wazero (v1.12) makes a new call engine for every ExportedFunction: a
// struct of ~1.2 KiB and a 10 KiB stack, zeroed, per lookup. A fresh
// attempt looks up two exports (_initialize, wasmtask_handle) of a new
// instance, so these were ~80 % of what it allocated and, with the
// collection of that garbage, a third of its CPU.
//
// A call engine is tied to its instance by one pointer (its parent module
// engine); everything else in it is the compiled function (the same for
// every instance of a compiled module) and scratch space the next call
// overwrites: its stack, where wasm code never reads what it did not
// write (wasm locals start at zero, code initialises them), and its
// execution context, set on entry. wazero itself reuses one call engine
// for any number of calls, after traps too (the reuse policy does). So the
// host keeps the call engines of finished fresh attempts, per compiled
// module and export, and points one at the next instance instead of
// making a new one.
//
// wazero has no API for this: the parent pointer is found by reflection
// once, and every use checks the types it relies on (engineLayout); with
// another wazero whose types differ, callEngines falls back to
// ExportedFunction (TestCallEngineReuseActive says which one runs).

// engineLayout is where, in wazero's types, an instance's module engine
// and a call engine's parent are.
type engineLayout struct {
	callEngine   reflect.Type // *wazevo.callEngine
	moduleInst   reflect.Type // *wasm.ModuleInstance
	parentOff    uintptr      // callEngine.parent (*wazevo.moduleEngine)
	stackOff     uintptr      // callEngine.stack ([]byte)
	engineOff    uintptr      // ModuleInstance.Engine (wasm.ModuleEngine)
	meCompiled   uintptr      // moduleEngine.parent (*wazevo.compiledModule)
	engineItab   unsafe.Pointer
	initialStack int // the stack a new call engine has
}

var (
	layoutOnce sync.Once
	layout     atomic.Pointer[engineLayout] // nil: wazero's types are not the expected ones
)

// findLayout reads the layout from a live instance and a call engine of it.
func findLayout(mod api.Module, fn api.Function) *engineLayout {
	ce, mi := reflect.TypeOf(fn), reflect.TypeOf(mod)
	if ce == nil || mi == nil || ce.Kind() != reflect.Pointer || mi.Kind() != reflect.Pointer ||
		ce.Elem().Kind() != reflect.Struct || mi.Elem().Kind() != reflect.Struct {
		return nil
	}
	parent, ok1 := ce.Elem().FieldByName("parent")
	stack, ok2 := ce.Elem().FieldByName("stack")
	engine, ok3 := mi.Elem().FieldByName("Engine")
	if !ok1 || !ok2 || !ok3 || parent.Type.Kind() != reflect.Pointer || parent.Type.Elem().Kind() != reflect.Struct ||
		stack.Type != reflect.TypeOf([]byte(nil)) || engine.Type.Kind() != reflect.Interface {
		return nil
	}
	compiled, ok := parent.Type.Elem().FieldByName("parent")
	if !ok || compiled.Type.Kind() != reflect.Pointer {
		return nil
	}
	// The instance's Engine must hold the call engine's parent type.
	ev := reflect.ValueOf(mod).Elem().FieldByIndex(engine.Index)
	if ev.IsNil() || ev.Elem().Type() != parent.Type {
		return nil
	}
	l := &engineLayout{callEngine: ce, moduleInst: mi, parentOff: parent.Offset, stackOff: stack.Offset,
		engineOff: engine.Offset, meCompiled: compiled.Offset}
	l.engineItab = (*[2]unsafe.Pointer)(unsafe.Add(ptrOf(mod), l.engineOff))[0]
	l.initialStack = len(*(*[]byte)(unsafe.Add(ptrOf(fn), l.stackOff)))
	// The parent read through the layout must be the instance's engine.
	if *(*unsafe.Pointer)(unsafe.Add(ptrOf(fn), l.parentOff)) != l.moduleEngine(mod) {
		return nil
	}
	return l
}

// ptrOf returns the data word of an interface holding a pointer.
func ptrOf[T any](v T) unsafe.Pointer {
	return (*[2]unsafe.Pointer)(unsafe.Pointer(&v))[1]
}

// moduleEngine returns mod's module engine, or nil when mod is not of the
// layout's types.
func (l *engineLayout) moduleEngine(mod api.Module) unsafe.Pointer {
	if reflect.TypeOf(mod) != l.moduleInst {
		return nil
	}
	iface := (*[2]unsafe.Pointer)(unsafe.Add(ptrOf(mod), l.engineOff))
	if iface[0] != l.engineItab {
		return nil
	}
	return iface[1]
}

// callEngines keeps the call engines of one export of one compiled module.
type callEngines struct {
	name     string
	compiled atomic.Pointer[byte] // the compiled module of the kept engines (wazevo's), set by the first put
	free     sync.Pool            // of api.Function whose parent is nil
	reused   atomic.Int64         // engines handed to another instance (tests)
}

// get returns a call engine of the export for mod, kept or new.
func (c *callEngines) get(mod api.Module) api.Function {
	if l := layout.Load(); l != nil {
		if me := l.moduleEngine(mod); me != nil && (*byte)(*(*unsafe.Pointer)(unsafe.Add(me, l.meCompiled))) == c.compiled.Load() {
			if fn, _ := c.free.Get().(api.Function); fn != nil {
				*(*unsafe.Pointer)(unsafe.Add(ptrOf(fn), l.parentOff)) = me
				c.reused.Add(1)
				return fn
			}
		}
	}
	return mod.ExportedFunction(c.name)
}

// put keeps fn, a call engine of the export for mod whose call returned
// without an error, for another instance of the same compiled module.
func (c *callEngines) put(mod api.Module, fn api.Function) {
	if c.keep(mod, fn) {
		l := layout.Load()
		*(*unsafe.Pointer)(unsafe.Add(ptrOf(fn), l.parentOff)) = nil // keep no closed instance alive
		// The stack still holds the finished call's spilled values. Compiled
		// wasm never reads a slot it did not write, but fresh promises that
		// nothing of one task's attempt reaches another's, and the next
		// instance may run another task: zeroed, the kept engine carries
		// nothing (10 KiB, ~0.2 us of a fresh attempt's ~8).
		clear(*(*[]byte)(unsafe.Add(ptrOf(fn), l.stackOff)))
		c.free.Put(fn)
	}
}

// keep reports whether fn can be kept: a call engine of mod's compiled
// module (the one of the engines kept already) with the stack it started
// with (a deep call's grown stack is not kept).
func (c *callEngines) keep(mod api.Module, fn api.Function) bool {
	layoutOnce.Do(func() { layout.Store(findLayout(mod, fn)) })
	l := layout.Load()
	if l == nil || fn == nil || reflect.TypeOf(fn) != l.callEngine {
		return false
	}
	fp := ptrOf(fn)
	me := *(*unsafe.Pointer)(unsafe.Add(fp, l.parentOff))
	if me == nil || me != l.moduleEngine(mod) || len(*(*[]byte)(unsafe.Add(fp, l.stackOff))) != l.initialStack {
		return false
	}
	compiled := (*byte)(*(*unsafe.Pointer)(unsafe.Add(me, l.meCompiled)))
	return c.compiled.CompareAndSwap(nil, compiled) || c.compiled.Load() == compiled
}
