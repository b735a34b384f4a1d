package plugins

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// What a cluster needs to replicate deploys (cluster mode, api's
// ClusterPlugins): the leader validates a module before it proposes the
// deploy, and every node stores and activates what was committed.

// Validate checks a module as Deploy does (name, size, compile with the
// manifest, a trial instantiation) without storing or activating it, and
// returns its version.
func (r *Registry) Validate(ctx context.Context, name string, wasm []byte, m *Manifest) (string, error) {
	l, err := r.validate(ctx, name, wasm, m)
	if err != nil {
		return "", err
	}
	if l.pool != nil {
		l.pool.Close()
	}
	return l.version, nil
}

// ActivateStored makes a stored version of name, with manifest m, the
// active one (what a rollback does; size is the module's, for the history).
func (r *Registry) ActivateStored(ctx context.Context, name, version string, m *Manifest, size int, source string) (DeployResult, error) {
	l, err := r.load(ctx, name, version, m)
	if err != nil {
		return DeployResult{}, r.failed(name, err)
	}
	return r.activate(name, l, size, source, nil)
}

// StoreModule stores wasm under its version without activating it (a
// snapshot's modules of earlier versions, for rollbacks).
func (r *Registry) StoreModule(wasm []byte) (string, error) {
	sum := sha256.Sum256(wasm)
	version := "sha256:" + hex.EncodeToString(sum[:])
	if err := r.store.put(version, wasm); err != nil {
		return "", fmt.Errorf("plugins: store %s: %w", version, err)
	}
	return version, nil
}
