package plugins_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wasmtask/wasmtask/host"
	"github.com/wasmtask/wasmtask/plugins"
)

// TestMain fails the package if a test leaves a goroutine behind: a
// watcher whose goroutine outlived its context, a deploy still running.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testBundle is what setup returns beside the registry.
type testBundle struct {
	ctx  context.Context
	host *host.Host
	dir  string // the registry's directory
	opts plugins.Options
	logs *syncBuffer
}

// setup opens a registry on a fresh directory with its own host. Zero
// opts fields keep their defaults; the logger writes to bundle.logs.
func setup(t *testing.T, opts plugins.Options) (*plugins.Registry, *testBundle) {
	t.Helper()
	b := &testBundle{ctx: context.Background(), dir: filepath.Join(t.TempDir(), "plugins"), logs: &syncBuffer{}}
	b.host = newHost(t)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(b.logs, nil))
	}
	b.opts = opts
	reg, err := plugins.Open(b.ctx, b.dir, b.host, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return reg, b
}

// reopen opens the bundle's directory again, with a new host, as a
// restarted server would.
func (b *testBundle) reopen(t *testing.T) *plugins.Registry {
	t.Helper()
	reg, err := plugins.Open(b.ctx, b.dir, newHost(t), b.opts)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	return reg
}

func newHost(t *testing.T) *host.Host {
	t.Helper()
	h, err := host.New(context.Background(), host.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("host.New: %v", err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h
}

// module reads host/testdata/NAME.wasm.
func module(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "host", "testdata", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for the registry's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
