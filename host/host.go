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

	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/host/extism"
)

// Config configures a Host.
type Config struct {
	// CacheDir keeps wazero's compiled code on disk so a restart does not
	// pay full compilation again, one subdirectory per module (<hex> of its
	// sha256) so that PruneCache can drop what no version uses any more.
	// "" keeps it in memory only.
	CacheDir string
	// CompileConcurrency bounds the compiles of large modules (1 MiB and
	// more) that run at once; smaller ones compile in milliseconds and are
	// never held behind them. Default GOMAXPROCS.
	CompileConcurrency int
	// Max are the operator maxima every plugin's limits are clamped to.
	// Zero fields mean DefaultMaxLimits.
	Max Limits
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// MaxIdleInstances bounds the warm instances kept idle across all pools
	// (plugins with the reuse policy): more than the attempts that can run
	// at once would never be used. Default dispatch.DefaultWorkers() (the
	// default worker count); serve sets it to --workers. Negative: none.
	MaxIdleInstances int
	// MemoryPoolBytes bounds the guest memory kept from closed instances
	// for the next ones (memory.go): a fresh instance then reuses a buffer
	// instead of allocating and faulting in its memory. Buffers unused for
	// 10s are dropped. Default DefaultMemoryPoolBytes (32 MiB); negative:
	// no pool.
	MemoryPoolBytes int64
}

// Host compiles modules once per content hash and runs attempts, each in a
// fresh, anonymous wazero instance. It is safe for concurrent use.
type Host struct {
	cfg   Config
	log   *slog.Logger
	cache wazero.CompilationCache

	compileSem chan struct{} // see compileSlot

	providedOnce sync.Once
	provided     map[string]funcSig // see providedFuncs
	providedErr  error

	mu       sync.Mutex
	closed   bool
	runtimes map[runtimeKey]*runtime
	modules  map[moduleKey]*moduleEntry

	idle idleSet  // warm instances of every Pool (pool.go)
	mem  *memPool // guest memory of closed instances (memory.go); nil: none
}

// runtimeKey: one runtime per memory limit and, with a CacheDir, per module
// (each with its own cache directory, so the cache can be pruned per module).
type runtimeKey struct {
	pages uint32
	hash  string // "" without a CacheDir
}

// runtime is a wazero runtime with the host modules instantiated; one per
// memory limit. (wazero's own cap is the wasm32 maximum: the limit is
// enforced by the host's allocator, memory.go.)
type runtime struct {
	rt    wazero.Runtime
	cache wazero.CompilationCache // closed with rt when it is the runtime's own
	pages uint32
	mem   *memPool // the Host's
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
	if cfg.CompileConcurrency <= 0 {
		cfg.CompileConcurrency = goruntime.GOMAXPROCS(0)
	}
	if cfg.MaxIdleInstances == 0 {
		cfg.MaxIdleInstances = dispatch.DefaultWorkers()
	}
	h := &Host{cfg: cfg, log: cfg.Logger, runtimes: map[runtimeKey]*runtime{}, modules: map[moduleKey]*moduleEntry{},
		compileSem: make(chan struct{}, cfg.CompileConcurrency)}
	h.idle = idleSet{max: cfg.MaxIdleInstances, pools: map[*Pool]struct{}{}}
	if cfg.MemoryPoolBytes == 0 {
		cfg.MemoryPoolBytes = DefaultMemoryPoolBytes
		h.cfg.MemoryPoolBytes = cfg.MemoryPoolBytes
	}
	if cfg.MemoryPoolBytes > 0 {
		h.mem = newMemPool(cfg.MemoryPoolBytes)
	}
	if cfg.CacheDir != "" {
		if err := os.MkdirAll(cfg.CacheDir, 0o750); err != nil {
			return nil, fmt.Errorf("host: compilation cache: %w", err)
		}
	}
	h.cache = wazero.NewCompilationCache() // shared by the runtimes without a CacheDir
	return h, nil
}

// providedFuncs returns the functions of the host modules by
// "module.name", the same in every runtime; read once from a runtime that
// is closed afterwards, so a module can be checked before any runtime or
// cache directory exists for it.
func (h *Host) providedFuncs() (map[string]funcSig, error) {
	h.providedOnce.Do(func() {
		ctx := context.Background() // not a caller's: the result is kept
		rt := wazero.NewRuntime(ctx)
		defer rt.Close(ctx)
		h.provided, h.providedErr = instantiateHostModules(ctx, rt)
	})
	return h.provided, h.providedErr
}

// instantiateHostModules instantiates WASI and the ABI module in rt and
// returns their functions by "module.name".
func instantiateHostModules(ctx context.Context, rt wazero.Runtime) (map[string]funcSig, error) {
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return nil, fmt.Errorf("host: instantiate WASI: %w", err)
	}
	if _, err := exportFunctions(rt.NewHostModuleBuilder(abiModule)).Instantiate(ctx); err != nil {
		return nil, fmt.Errorf("host: instantiate %s: %w", abiModule, err)
	}
	if err := extism.Instantiate(ctx, rt); err != nil {
		return nil, fmt.Errorf("host: instantiate %s: %w", extism.ModuleName, err)
	}
	provided := map[string]funcSig{}
	for _, name := range []string{wasi_snapshot_preview1.ModuleName, abiModule, extism.ModuleName} {
		for fn, def := range rt.Module(name).ExportedFunctionDefinitions() {
			provided[name+"."+fn] = sigOf(def)
		}
	}
	return provided, nil
}

// ErrClosed is returned after Close.
var ErrClosed = errors.New("host: closed")

// runtimeFor returns the runtime for a memory limit (and, with a CacheDir,
// a module), creating it once.
func (h *Host) runtimeFor(ctx context.Context, pages uint32, hash string) (*runtime, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	key := runtimeKey{pages: pages}
	cache := h.cache
	var own wazero.CompilationCache
	if h.cfg.CacheDir != "" {
		key.hash = hash
	}
	if r, ok := h.runtimes[key]; ok {
		return r, nil
	}
	if key.hash != "" {
		c, err := wazero.NewCompilationCacheWithDir(h.moduleCacheDir(hash))
		if err != nil {
			return nil, fmt.Errorf("host: compilation cache %s: %w", h.moduleCacheDir(hash), err)
		}
		cache, own = c, c
	}
	cfg := wazero.NewRuntimeConfig().
		WithCloseOnContextDone(true). // the only way to stop a runaway guest
		WithMemoryLimitPages(65536).  // the allocator enforces pages (memory.go)
		WithCompilationCache(cache)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := instantiateHostModules(ctx, rt); err != nil {
		rt.Close(ctx)
		if own != nil {
			own.Close(ctx)
		}
		return nil, err
	}
	r := &runtime{rt: rt, cache: own, pages: pages, mem: h.mem}
	h.runtimes[key] = r
	return r, nil
}

// Close releases every runtime, compiled module and warm instance.
func (h *Host) Close(ctx context.Context) error {
	h.idle.close()
	h.mem.close() // before the runtimes: closing them frees memories of guests still running
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	var errs []error
	for _, r := range h.runtimes {
		errs = append(errs, r.rt.Close(ctx))
		if r.cache != nil {
			errs = append(errs, r.cache.Close(ctx))
		}
	}
	errs = append(errs, h.cache.Close(ctx))
	return errors.Join(errs...)
}
