package plugins

import (
	"fmt"
	"strings"
	"time"

	"github.com/wasmtask/wasmtask/host"
	"github.com/wasmtask/wasmtask/host/extism"
)

// ManifestExtism is the manifest's "extism" object: how an Extism plugin
// (a module importing extism:host/env) is called.
//
//	"extism": {"function": "count_vowels",
//	           "allowed_hosts": ["api.example.com", "*.example.org"],
//	           "http_timeout": "10s", "http_max_bytes": 1048576,
//	           "max_var_bytes": 1048576, "log_level": "info"}
//
// function is required for an Extism plugin and refused for a wasmtask_v1
// handler; a module that imports nothing of extism:host/env runs as an
// Extism plugin when it has this object. The plugin's config_get reads the manifest's "config" plus the
// task under wasmtask.* keys (host/extism_mode.go).
type ManifestExtism struct {
	Function     string   `json:"function"`
	AllowedHosts []string `json:"allowed_hosts,omitempty"`
	HTTPTimeout  string   `json:"http_timeout,omitempty"`
	HTTPMaxBytes int64    `json:"http_max_bytes,omitempty"`
	MaxVarBytes  int      `json:"max_var_bytes,omitempty"`
	LogLevel     string   `json:"log_level,omitempty"`
}

// ExtismOptions returns the manifest's Extism settings (nil when it has
// none), checked for syntax; Registry checks them against the module.
func (m *Manifest) ExtismOptions() (*host.ExtismOptions, error) {
	if m == nil || m.Extism == nil {
		return nil, nil
	}
	e := m.Extism
	bad := func(field, format string, args ...any) error {
		return &ValidationError{Field: "manifest.extism." + field, Reason: fmt.Sprintf(format, args...)}
	}
	if e.Function == "" {
		return nil, bad("function", "is required: the name of the plugin's export to call, e.g. \"count_vowels\"")
	}
	o := &host.ExtismOptions{Function: e.Function, HTTPMaxBytes: e.HTTPMaxBytes, MaxVarBytes: e.MaxVarBytes}
	for i, h := range e.AllowedHosts {
		if h == "" || strings.ContainsAny(h, "/: ") {
			return nil, bad(fmt.Sprintf("allowed_hosts[%d]", i), "want a host name or a glob such as \"*.example.com\" (no scheme, port or path), got %q", h)
		}
		o.AllowedHosts = append(o.AllowedHosts, h)
	}
	if e.HTTPTimeout != "" {
		d, err := time.ParseDuration(e.HTTPTimeout)
		if err != nil || d <= 0 {
			return nil, bad("http_timeout", "want a positive Go duration such as \"10s\", got %q", e.HTTPTimeout)
		}
		o.HTTPTimeout = d
	}
	if e.HTTPMaxBytes < 0 {
		return nil, bad("http_max_bytes", "must not be negative, got %d", e.HTTPMaxBytes)
	}
	if e.MaxVarBytes < 0 {
		return nil, bad("max_var_bytes", "must not be negative, got %d", e.MaxVarBytes)
	}
	if e.LogLevel != "" {
		l, err := extism.ParseLevel(e.LogLevel)
		if err != nil {
			return nil, bad("log_level", "%v", err)
		}
		o.LogLevel = &l
	}
	return o, nil
}

// extismFor checks the manifest's Extism settings against the module: an
// Extism plugin must name an exported function; other modules take none.
func extismFor(name string, m *Manifest, mod *host.Module) (*host.ExtismOptions, error) {
	o, err := m.ExtismOptions()
	if err != nil {
		if ve, ok := err.(*ValidationError); ok {
			ve.Plugin = name
		}
		return nil, err
	}
	if mod.RunsAsExtism(o) && m != nil {
		for _, f := range []struct {
			name string
			set  bool
		}{{"args", len(m.Args) > 0}, {"env", len(m.Env) > 0}, {"mounts", len(m.Mounts) > 0}, {"input", m.Input != ""},
			{"scratch_bytes", m.ScratchBytes != 0}, {"exit_codes", len(m.ExitCodes) > 0}} {
			if f.set {
				return nil, &ValidationError{Plugin: name, Field: "manifest." + f.name, Reason: "is a WASI command grant; an Extism plugin gets no arguments, environment, files or exit-code mapping (remove it)"}
			}
		}
	}
	if err := mod.CheckExtism(o); err != nil {
		field := "manifest.extism.function"
		if mod.Mode == host.ModeHandler {
			field = "manifest.extism"
		}
		return nil, &ValidationError{Plugin: name, Field: field, Reason: err.Error()}
	}
	return o, nil
}
