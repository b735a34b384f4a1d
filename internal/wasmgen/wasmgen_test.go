package wasmgen

import (
	"bytes"
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

func TestCommandRuns(t *testing.T) {
	for _, size := range []int{1, 200 << 10, 1 << 20} {
		wasm := Command(size, min(size, 300<<10))
		if len(wasm) < size {
			t.Fatalf("Command(%d) is %d bytes", size, len(wasm))
		}
		ctx := context.Background()
		rt := wazero.NewRuntime(ctx)
		wasi_snapshot_preview1.MustInstantiate(ctx, rt)
		var out bytes.Buffer
		mod, err := rt.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithStdout(&out))
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		mod.Close(ctx)
		rt.Close(ctx)
		if out.String() != "big\n" {
			t.Errorf("size %d: stdout %q", size, out.String())
		}
	}
}
