package host

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
)

func TestLoadRejects(t *testing.T) {
	cases := []struct {
		name      string
		module    string // testdata/<module>.wasm; "" uses wasm
		wasm      []byte
		max       Limits // operator maxima of the host
		pages     uint32 // memory limit given to Load
		wantError []string
	}{
		{name: "no wasmtask_handle", module: "nohandle",
			wantError: []string{"wasmtask_handle", "_start"}},
		{name: "wasmtask_handle with parameters", module: "badhandlesig",
			wantError: []string{"export wasmtask_handle has signature (i32) -> (i32)"}},
		{name: "import the host does not know", module: "unknownimport",
			wantError: []string{"import wasmtask_v1.fetch is not provided"}},
		{name: "import from an unknown module", module: "unknownmodule",
			wantError: []string{"import env.now is not provided"}},
		{name: "import with the wrong signature", module: "badsig",
			wantError: []string{"import wasmtask_v1.output_write has signature (i32) -> (i32)", "(i32, i32) -> (i32)"}},
		{name: "no exported memory", module: "nomemory",
			wantError: []string{`does not export a memory named "memory"`}},
		{name: "imported memory", module: "importmemory",
			wantError: []string{"imports a memory"}},
		{name: "minimum memory above the default cap", module: "hugememory",
			wantError: []string{"1025 pages", "limit of 1024 pages"}},
		{name: "minimum memory above the requested cap", module: "bigmemory", pages: 299,
			wantError: []string{"300 pages", "limit of 299 pages"}},
		{name: "minimum memory above the operator maximum", module: "bigmemory", pages: 512,
			max:       Limits{MemoryPages: 64},
			wantError: []string{"300 pages", "limit of 64 pages"}},
		{name: "minimum memory within the requested cap", module: "bigmemory", pages: 300},
		{name: "not WebAssembly", wasm: []byte("\x00asm but not really"),
			wantError: []string{"not a valid WebAssembly module"}},
		{name: "empty", wasm: []byte{},
			wantError: []string{"not a valid WebAssembly module"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHost(t, Config{Max: tc.max})
			wasm := tc.wasm
			if tc.module != "" {
				wasm = readWasm(t, tc.module)
			}
			m, err := h.Load(context.Background(), wasm, tc.pages)
			if len(tc.wantError) == 0 {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if m.Hash != Hash(wasm) {
					t.Errorf("Hash = %q, want %q", m.Hash, Hash(wasm))
				}
				return
			}
			if err == nil {
				t.Fatalf("Load succeeded, want an error containing %q", tc.wantError)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Load: %v (%T), want a *ValidationError", err, err)
			}
			if ve.Module != Hash(wasm) {
				t.Errorf("ValidationError.Module = %q, want %q", ve.Module, Hash(wasm))
			}
			for _, s := range tc.wantError {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Load: %v, want it to contain %q", err, s)
				}
			}
			// A rejected module is not cached: loading it again says the same.
			if _, err2 := h.Load(context.Background(), wasm, tc.pages); err2 == nil || err2.Error() != err.Error() {
				t.Errorf("second Load: %v, want %v", err2, err)
			}
		})
	}
}

func TestLoadDescribesModule(t *testing.T) {
	cases := []struct {
		name        string
		module      string
		wantMode    Mode
		wantImports []string
		wantExports []string
	}{
		{name: "handler", module: "echo", wantMode: ModeHandler,
			wantImports: []string{"wasmtask_v1.input_read", "wasmtask_v1.output_write"},
			wantExports: []string{"wasmtask_handle"}},
		{name: "reactor", module: "reactor", wantMode: ModeHandler,
			wantImports: []string{"wasmtask_v1.output_write"},
			wantExports: []string{"_initialize", "wasmtask_handle"}},
		{name: "command", module: "command", wantMode: ModeCommand,
			wantImports: []string{"wasi_snapshot_preview1.fd_read", "wasi_snapshot_preview1.fd_write", "wasi_snapshot_preview1.proc_exit"},
			wantExports: []string{"_start"}},
	}
	h := newTestHost(t, Config{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wasm := readWasm(t, tc.module)
			m := mustLoad(t, h, wasm, 0)
			if m.Mode != tc.wantMode {
				t.Errorf("Mode = %q, want %q", m.Mode, tc.wantMode)
			}
			if strings.Join(m.Imports, ",") != strings.Join(tc.wantImports, ",") {
				t.Errorf("Imports = %q, want %q", m.Imports, tc.wantImports)
			}
			if strings.Join(m.Exports, ",") != strings.Join(tc.wantExports, ",") {
				t.Errorf("Exports = %q, want %q", m.Exports, tc.wantExports)
			}
			if m.Size != len(wasm) || m.MinPages != 1 {
				t.Errorf("Size, MinPages = %d, %d, want %d, 1", m.Size, m.MinPages, len(wasm))
			}
		})
	}
}

// TestLoadConcurrentCompilesOnce: concurrent loads of one module wait for
// one compilation and share its *Module; another memory limit is another
// compilation.
func TestLoadConcurrentCompilesOnce(t *testing.T) {
	h := newTestHost(t, Config{})
	wasm := readWasm(t, "echo")
	const n = 8
	mods := make([]*Module, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			// A copy: the cache is keyed by content, not by slice.
			mods[i], errs[i] = h.Load(context.Background(), append([]byte(nil), wasm...), 0)
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Load %d: %v", i, errs[i])
		}
		if mods[i] != mods[0] {
			t.Errorf("Load %d returned %p, Load 0 %p: want the same *Module", i, mods[i], mods[0])
		}
	}
	if m := mustLoad(t, h, wasm, DefaultLimits().MemoryPages); m != mods[0] {
		t.Errorf("Load with the default limit spelled out returned another *Module")
	}
	other := mustLoad(t, h, wasm, 16)
	if other == mods[0] {
		t.Errorf("Load with another memory limit returned the same *Module")
	}
	if other.Hash != mods[0].Hash {
		t.Errorf("Hash = %q, want %q", other.Hash, mods[0].Hash)
	}
}

func TestLoadAfterClose(t *testing.T) {
	h, err := New(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Load(context.Background(), readWasm(t, "echo"), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Load after Close: %v, want ErrClosed", err)
	}
}
