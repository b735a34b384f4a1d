package host

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/wasmtask/wasmtask/internal/testguests"
	"github.com/wasmtask/wasmtask/internal/wasmgen"
)

// newTestHost returns a Host closed when the test ends.
func newTestHost(t testing.TB, cfg Config) *Host {
	t.Helper()
	h, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if _, bench := t.(*testing.B); h.mem != nil && !bench { // benchmarks measure the pool as it runs
		// Every test of the package runs with released guest memory
		// poisoned: a result that kept a slice of an instance's memory
		// past its Close would show the poison (TestNoGuestMemoryAlias).
		h.mem.poison = poisonByte
	}
	t.Cleanup(func() {
		if err := h.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// newGuestTestHost is newTestHost for tests that load Go guests: unless
// cfg names one, its compiled code is kept in the compile cache folder the
// sdk and examples tests share (testguests.CacheDir), where a Go guest
// compiled once (a minute or more under -race on a busy machine) loads in
// milliseconds for every later host and test run.
func newGuestTestHost(t testing.TB, cfg Config) *Host {
	t.Helper()
	if cfg.CacheDir == "" {
		cfg.CacheDir = testguests.CacheDir()
	}
	return newTestHost(t, cfg)
}

// readWasm returns testdata/<name>.wasm.
func readWasm(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".wasm"))
	if err != nil {
		t.Fatalf("read test module (run `make wasm` after editing a .wat): %v", err)
	}
	return b
}

// mustLoad loads wasm for the given memory limit.
func mustLoad(t testing.TB, h *Host, wasm []byte, pages uint32) *Module {
	t.Helper()
	m, err := h.Load(context.Background(), wasm, pages)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return m
}

// le32 encodes the i32 results the test guests output, little-endian.
func le32(vs ...int32) string {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	return string(b)
}

// largeModule is a generated WASI command of 20 MB: all of it code, or,
// under the race detector (whose compiles are ten times slower), 256 KB of
// code and padding: still seconds to compile against milliseconds for a
// small module.
func largeModule() []byte {
	code := 20 << 20
	if raceEnabled {
		code = 256 << 10
	}
	return wasmgen.Command(20<<20, code)
}

// commandModule is a WASI command printing "big\n", size bytes (padded
// with a custom section) and ending with the byte pad, so that two
// modules of one size differ.
func commandModule(size int, pad byte) []byte {
	b := wasmgen.Command(size, 4096)
	b[len(b)-1] = pad
	return b
}
