package host

import (
	goruntime "runtime"
	"testing"
	"time"
)

// TestModuleDropsBytes: a loaded Module does not keep the bytes it was
// compiled from (wazero keeps a copy of what it needs), so a large module
// is not resident twice; a reset pool is given them (NewPool).
func TestModuleDropsBytes(t *testing.T) {
	h := newTestHost(t, Config{})
	wasm := commandModule(4<<20, 'a') // no table, no memory maximum: compiled as given
	freed := make(chan struct{})
	goruntime.SetFinalizer(&wasm[0], func(*byte) { close(freed) })
	m := mustLoad(t, h, wasm, 0)
	wasm = nil
	deadline := time.Now().Add(5 * time.Second)
	for {
		goruntime.GC()
		select {
		case <-freed:
			goruntime.KeepAlive(m)
			return
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the module's bytes are still reachable after it was loaded")
		}
	}
}
