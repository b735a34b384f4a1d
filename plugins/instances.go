package plugins

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wasmtask/wasmtask/host"
)

// ManifestInstances is a manifest's "instances" setting: how the attempts
// of the plugin version share instances (host.InstancePolicy). It is
// either a policy name or an object:
//
//	"instances": "reuse"
//	"instances": {"policy": "reuse", "max_uses": 1000, "max_memory_pages": 128, "idle_timeout": "60s"}
//
// policy is "fresh" (the default: a new instance per attempt), "reuse"
// (the instance stays alive between attempts) or "reset" (alive too, with
// its memory and globals restored to their state after _initialize before
// each attempt). The other fields tune reuse and reset; zero or absent
// means the host's default (max_uses 1000, max_memory_pages three quarters of
// limits.memory_pages, idle_timeout 60s).
type ManifestInstances struct {
	Policy         string `json:"policy"`
	MaxUses        int    `json:"max_uses,omitempty"`
	MaxMemoryPages uint32 `json:"max_memory_pages,omitempty"`
	IdleTimeout    string `json:"idle_timeout,omitempty"`
}

const instancesKnown = "known: policy, max_uses, max_memory_pages, idle_timeout"

// UnmarshalJSON accepts a policy name or an object, rejecting unknown
// members with an error naming them.
func (mi *ManifestInstances) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		*mi = ManifestInstances{}
		return json.Unmarshal(b, &mi.Policy)
	}
	type plain ManifestInstances // without this method
	var v plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typ) && typ.Field != "":
			return &ValidationError{Field: "manifest.instances." + typ.Field, Reason: fmt.Sprintf("want %s, got a JSON %s", jsonKind(typ.Type.Kind().String()), typ.Value)}
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			if !fieldName.MatchString(name) {
				return &ValidationError{Field: "manifest.instances", Reason: "an unknown field (" + instancesKnown + ")"}
			}
			return &ValidationError{Field: "manifest.instances", Reason: fmt.Sprintf("unknown field %q (%s)", name, instancesKnown)}
		}
		return &ValidationError{Field: "manifest.instances", Reason: `want a policy name ("fresh", "reuse" or "reset") or an object like {"policy": "reuse", "max_uses": 1000}`}
	}
	*mi = ManifestInstances(v)
	return nil
}

// InstancePolicy returns the manifest's instance policy (zero fields: the
// host's defaults). No "instances" setting means fresh.
func (m *Manifest) InstancePolicy() (host.InstancePolicy, error) {
	var p host.InstancePolicy
	if m == nil || m.Instances == nil {
		return host.InstancePolicy{Mode: host.InstancesFresh}, nil
	}
	mi := m.Instances
	switch host.InstanceMode(mi.Policy) {
	case host.InstancesFresh, host.InstancesReuse, host.InstancesReset:
		p.Mode = host.InstanceMode(mi.Policy)
	case "":
		return p, &ValidationError{Field: "manifest.instances.policy", Reason: `is missing; want "fresh", "reuse" or "reset"`}
	default:
		return p, &ValidationError{Field: "manifest.instances.policy", Reason: fmt.Sprintf("want \"fresh\", \"reuse\" or \"reset\", got %q", mi.Policy)}
	}
	if mi.MaxUses < 0 {
		return p, &ValidationError{Field: "manifest.instances.max_uses", Reason: fmt.Sprintf("must not be negative, got %d", mi.MaxUses)}
	}
	p.MaxUses = mi.MaxUses
	if mi.MaxMemoryPages > 65536 {
		return p, &ValidationError{Field: "manifest.instances.max_memory_pages", Reason: fmt.Sprintf("must be at most 65536, got %d", mi.MaxMemoryPages)}
	}
	p.MaxMemoryPages = mi.MaxMemoryPages
	if mi.IdleTimeout != "" {
		d, err := time.ParseDuration(mi.IdleTimeout)
		if err != nil || d <= 0 {
			return p, &ValidationError{Field: "manifest.instances.idle_timeout", Reason: fmt.Sprintf("want a positive Go duration such as \"60s\", got %q", mi.IdleTimeout)}
		}
		p.IdleTimeout = d
	}
	return p, nil
}
