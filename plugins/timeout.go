package plugins

import (
	"strings"
	"time"

	"github.com/wasmtask/wasmtask/host"
)

// TimeoutSource says which setting bounds a plugin's attempts.
type TimeoutSource string

const (
	TimeoutDefault  TimeoutSource = "default"  // the host's default (no limits.timeout in the manifest)
	TimeoutManifest TimeoutSource = "manifest" // the manifest's limits.timeout
	TimeoutMax      TimeoutSource = "max"      // the operator's maximum (serve --max-timeout)
)

// AttemptTimeout returns the longest attempt the plugin version that
// handler names allows ("name": the active version; "name@sha256:<hex>":
// that one), and which setting decided it. A task's own timeout can only
// lower it. ok is false when handler names no deployed version.
func (r *Registry) AttemptTimeout(handler string) (d time.Duration, source TimeoutSource, ok bool) {
	name, version, pinned := strings.Cut(handler, "@")
	r.mu.RLock()
	rec := r.state.Plugins[name]
	var act *Activation
	if rec != nil {
		if !pinned {
			version = rec.Active
		}
		act = rec.find(version)
	}
	r.mu.RUnlock()
	if act == nil {
		return 0, "", false
	}
	d, source = host.DefaultLimits().Timeout, TimeoutDefault
	if lim, err := act.Manifest.HostLimits(); err == nil && lim.Timeout > 0 {
		d, source = lim.Timeout, TimeoutManifest
	}
	if max := r.MaxTimeout(); max < d {
		d, source = max, TimeoutMax
	}
	return d, source, true
}

// MaxTimeout is the operator's maximum attempt timeout.
func (r *Registry) MaxTimeout() time.Duration {
	if r.opts.Max.Timeout > 0 {
		return r.opts.Max.Timeout
	}
	return host.DefaultMaxLimits().Timeout
}
