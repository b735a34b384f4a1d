package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	goruntime "runtime"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wasmtask/wasmtask/host/extism"
)

// Config configures a Host.
type Config struct {
	// CacheDir keeps wazero's compiled code on disk so a restart does not
	// pay full compilation again. "" keeps it in memory only.
	CacheDir string
	// Max are the operator maxima every plugin's limits are clamped to.
	// Zero fields mean DefaultMaxLimits.
	Max Limits
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// MaxIdleInstances bounds the warm instances kept idle across all pools
	// (plugins with the reuse policy): more than the attempts that can run
	// at once would never be used. Default 2 x GOMAXPROCS (dispatch's
	// default worker count); serve sets it to --workers. Negative: none.
	MaxIdleInstances int
}

// Host compiles modules once per content hash and runs attempts, each in a
// fresh, anonymous wazero instance. It is safe for concurrent use.
type Host struct {
	cfg   Config
	log   *slog.Logger
	cache wazero.CompilationCache

	mu       sync.Mutex
	closed   bool
	runtimes map[uint32]*runtime // by memory limit in pages
	modules  map[moduleKey]*moduleEntry

	idle idleSet // warm instances of every Pool (pool.go)
}

// runtime is a wazero runtime with the host modules instantiated; one per
// memory limit. (wazero's own cap is the wasm32 maximum: the limit is
// enforced by the host's allocator, memory.go.)
type runtime struct {
	rt    wazero.Runtime
	pages uint32
	// provided lists the functions of the host modules, by "module.name".
	provided map[string]funcSig
}

type moduleKey struct {
	hash   string
	pages  uint32
	tables uint32 // Limits.TableElements
}

type moduleEntry struct {
	ready chan struct{}
	mod   *Module
	err   error
}

// New returns a Host.
func New(ctx context.Context, cfg Config) (*Host, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxIdleInstances == 0 {
		cfg.MaxIdleInstances = 2 * goruntime.GOMAXPROCS(0)
	}
	h := &Host{cfg: cfg, log: cfg.Logger, runtimes: map[uint32]*runtime{}, modules: map[moduleKey]*moduleEntry{}}
	h.idle = idleSet{max: cfg.MaxIdleInstances, pools: map[*Pool]struct{}{}}
	if cfg.CacheDir != "" {
		if err := os.MkdirAll(cfg.CacheDir, 0o750); err != nil {
			return nil, fmt.Errorf("host: compilation cache: %w", err)
		}
		c, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("host: compilation cache %s: %w", cfg.CacheDir, err)
		}
		h.cache = c
	} else {
		h.cache = wazero.NewCompilationCache()
	}
	return h, nil
}

// ErrClosed is returned after Close.
var ErrClosed = errors.New("host: closed")

// runtimeFor returns the runtime for a memory limit, creating it once.
func (h *Host) runtimeFor(ctx context.Context, pages uint32) (*runtime, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if r, ok := h.runtimes[pages]; ok {
		return r, nil
	}
	cfg := wazero.NewRuntimeConfig().
		WithCloseOnContextDone(true). // the only way to stop a runaway guest
		WithMemoryLimitPages(65536).  // the allocator enforces pages (memory.go)
		WithCompilationCache(h.cache)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("host: instantiate WASI: %w", err)
	}
	if _, err := exportFunctions(rt.NewHostModuleBuilder(abiModule)).Instantiate(ctx); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("host: instantiate %s: %w", abiModule, err)
	}
	if err := extism.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("host: instantiate %s: %w", extism.ModuleName, err)
	}
	r := &runtime{rt: rt, pages: pages, provided: map[string]funcSig{}}
	for _, name := range []string{wasi_snapshot_preview1.ModuleName, abiModule, extism.ModuleName} {
		for fn, def := range rt.Module(name).ExportedFunctionDefinitions() {
			r.provided[name+"."+fn] = sigOf(def)
		}
	}
	h.runtimes[pages] = r
	return r, nil
}

// Close releases every runtime, compiled module and warm instance.
func (h *Host) Close(ctx context.Context) error {
	h.idle.close()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	var errs []error
	for _, r := range h.runtimes {
		errs = append(errs, r.rt.Close(ctx))
	}
	errs = append(errs, h.cache.Close(ctx))
	return errors.Join(errs...)
}
