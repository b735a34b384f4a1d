package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// bigModuleBytes: modules at least this large take a compile slot.
const bigModuleBytes = 1 << 20

// compileSlot waits for one of Config.CompileConcurrency slots when the
// module is large, so that a few big compiles (seconds and hundreds of MiB
// each) run at once while small modules (milliseconds) are never queued
// behind them. The returned func releases the slot.
func (h *Host) compileSlot(ctx context.Context, size int) (func(), error) {
	if size < bigModuleBytes {
		return func() {}, nil
	}
	select {
	case h.compileSem <- struct{}{}:
		return func() { <-h.compileSem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// moduleCacheDir is the compiled-code cache of one module.
func (h *Host) moduleCacheDir(hash string) string {
	return filepath.Join(h.cfg.CacheDir, strings.TrimPrefix(hash, "sha256:"))
}

// PruneCache removes from Config.CacheDir the compiled code of every
// module for which keep("sha256:<hex>") is false and that this Host has
// not loaded, and anything else in the directory (the single shared cache
// of earlier versions) but the module hashes of LoadFile. It returns what it removed. Without a CacheDir it
// does nothing.
func (h *Host) PruneCache(keep func(hash string) bool) ([]string, error) {
	if h.cfg.CacheDir == "" {
		return nil, nil
	}
	entries, err := os.ReadDir(h.cfg.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("host: prune cache: %w", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	inUse := map[string]bool{}
	for k := range h.modules {
		inUse[k.hash] = true
	}
	for k := range h.runtimes {
		inUse[k.hash] = true
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		hash := "sha256:" + e.Name()
		if isHex64(e.Name()) && (inUse[hash] || keep(hash)) || e.Name() == fileHashesDir {
			continue
		}
		if err := os.RemoveAll(filepath.Join(h.cfg.CacheDir, e.Name())); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, e.Name())
	}
	return removed, errors.Join(errs...)
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
