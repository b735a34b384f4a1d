package plugins

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/wasmtask/wasmtask/host"
)

// Manifest is the optional per-plugin settings file (JSON) beside a module:
// NAME.json next to NAME.wasm in the plugin directory, or sent with a deploy.
//
//	{"limits": {"memory_pages": 64, "timeout": "5s", "output_bytes": 65536,
//	            "log_bytes": 16384, "children": 10, "table_elements": 65536},
//	 "config": {"greeting": "hello"}}
type Manifest struct {
	Limits ManifestLimits    `json:"limits,omitempty"`
	Config map[string]string `json:"config,omitempty"`
}

// ManifestLimits are the limits a plugin asks for; the operator's maxima
// clamp them.
type ManifestLimits struct {
	MemoryPages uint32 `json:"memory_pages,omitempty"`
	Timeout     string `json:"timeout,omitempty"`
	OutputBytes int    `json:"output_bytes,omitempty"`
	LogBytes    int    `json:"log_bytes,omitempty"`
	Children    int    `json:"children,omitempty"`
	// TableElements bounds the elements of the module's tables together
	// (declared minimums and table.grow); they also count against
	// memory_pages at 8 bytes an element.
	TableElements uint32 `json:"table_elements,omitempty"`
}

// ParseManifest decodes a manifest, rejecting unknown fields and trailing
// data with an error naming them.
func ParseManifest(b []byte) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, &ValidationError{Field: "manifest", Reason: err.Error()}
	}
	if dec.More() {
		return nil, &ValidationError{Field: "manifest", Reason: "unexpected data after the manifest object"}
	}
	if _, err := m.limits(); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *Manifest) limits() (host.Limits, error) {
	var l host.Limits
	if m == nil {
		return l, nil
	}
	l.MemoryPages = m.Limits.MemoryPages
	if l.MemoryPages > 65536 {
		return l, &ValidationError{Field: "manifest.limits.memory_pages", Reason: fmt.Sprintf("must be at most 65536, got %d", l.MemoryPages)}
	}
	if m.Limits.Timeout != "" {
		d, err := time.ParseDuration(m.Limits.Timeout)
		if err != nil || d <= 0 {
			return l, &ValidationError{Field: "manifest.limits.timeout", Reason: fmt.Sprintf("want a positive Go duration such as \"30s\", got %q", m.Limits.Timeout)}
		}
		l.Timeout = d
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"output_bytes", m.Limits.OutputBytes}, {"log_bytes", m.Limits.LogBytes}, {"children", m.Limits.Children}} {
		if f.v < 0 {
			return l, &ValidationError{Field: "manifest.limits." + f.name, Reason: fmt.Sprintf("must not be negative, got %d", f.v)}
		}
	}
	l.OutputBytes, l.LogBytes, l.Children = m.Limits.OutputBytes, m.Limits.LogBytes, m.Limits.Children
	l.TableElements = m.Limits.TableElements
	if l.TableElements > 1<<27 {
		return l, &ValidationError{Field: "manifest.limits.table_elements", Reason: fmt.Sprintf("must be at most 134217728, got %d", l.TableElements)}
	}
	return l, nil
}
