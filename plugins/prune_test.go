package plugins_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/wasmtask/wasmtask/host"
	"github.com/wasmtask/wasmtask/plugins"
)

// TestOpenPrunesCompileCache: at start, the registry drops the compiled
// code of modules no version of any plugin references, and keeps that of
// every version in the history (active or not).
func TestOpenPrunesCompileCache(t *testing.T) {
	cache := t.TempDir()
	dir := filepath.Join(t.TempDir(), "plugins")
	newCachedHost := func() *host.Host {
		h, err := host.New(context.Background(), host.Config{CacheDir: cache, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close(context.Background()) })
		return h
	}
	ctx := context.Background()
	reg, err := plugins.Open(ctx, dir, newCachedHost(), plugins.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v1, v2, other := module(t, "echo"), module(t, "config"), module(t, "wasicmd")
	for _, w := range [][]byte{v1, v2} {
		if _, err := reg.Deploy(ctx, "p", w, nil, "test"); err != nil {
			t.Fatal(err)
		}
	}
	// A module compiled by this host that no plugin references (as a call
	// or a deploy whose trial failed would leave).
	if _, err := newCachedHost().Load(ctx, other, 0); err != nil {
		t.Fatal(err)
	}
	hexOf := func(w []byte) string { return strings.TrimPrefix(host.Hash(w), "sha256:") }
	names := func() []string {
		entries, _ := os.ReadDir(cache)
		var out []string
		for _, e := range entries {
			out = append(out, e.Name())
		}
		return out
	}
	if got := names(); len(got) != 3 {
		t.Fatalf("cache before reopening: %v, want 3 modules", got)
	}
	if _, err := plugins.Open(ctx, dir, newCachedHost(), plugins.Options{}); err != nil {
		t.Fatal(err)
	}
	want := []string{hexOf(v1), hexOf(v2)}
	slices.Sort(want)
	if got := names(); !slices.Equal(got, want) {
		t.Errorf("cache after reopening: %v, want the two versions %v", got, want)
	}
}
