package plugins

import (
	"fmt"
	"strings"
)

// Pinned is the exact version of a plugin an attempt runs and the
// manifest it runs with: what a remote worker is told at lease time, so
// that it runs what the server would have run (a hot swap after the lease
// changes nothing under the attempt).
type Pinned struct {
	Name     string
	Version  string // sha256:<hex>
	Manifest *Manifest
}

// Handler is "name@version", the pinned handler a worker resolves.
func (p Pinned) Handler() string { return p.Name + "@" + p.Version }

// Pin resolves handler ("name" or "name@sha256:<hex>") to the version an
// attempt starting now runs: the active one, or the pinned one.
func (r *Registry) Pin(handler string) (Pinned, error) {
	name, version, pinned := strings.Cut(handler, "@")
	r.mu.RLock()
	defer r.mu.RUnlock()
	if l := r.active[name]; l != nil && (!pinned || l.version == version) {
		return Pinned{Name: name, Version: l.version, Manifest: l.manifest}, nil
	}
	rec := r.state.Plugins[name]
	if rec == nil {
		return Pinned{}, fmt.Errorf("%w: no plugin named %q is deployed", ErrNotFound, name)
	}
	if !pinned {
		return Pinned{}, fmt.Errorf("%w: plugin %q: its active version %s is not loaded (%s); redeploy it", ErrNotFound, name, rec.Active, r.lastErr[name])
	}
	a := rec.find(version)
	if a == nil {
		return Pinned{}, fmt.Errorf("%w: plugin %q has no version %s", ErrNotFound, name, version)
	}
	return Pinned{Name: name, Version: a.Version, Manifest: a.Manifest}, nil
}

// RemoteOnly reports whether handler's version (as Pin resolves it) may
// run only on remote workers (manifest placement "remote"). An unknown
// handler is not: the local executor reports it.
func (r *Registry) RemoteOnly(handler string) bool {
	p, err := r.Pin(handler)
	return err == nil && p.Manifest.RemoteOnly()
}

// Module returns a stored module's bytes by version (sha256:<hex>),
// checked against the hash.
func (r *Registry) Module(version string) ([]byte, error) {
	return r.store.get(version)
}
