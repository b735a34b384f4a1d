package plugins

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/wasmtask/wasmtask/host"
)

// Manifest is the optional per-plugin settings file (JSON) beside a module:
// NAME.json next to NAME.wasm in the plugin directory, or sent with a deploy.
//
//	{"limits": {"memory_pages": 64, "timeout": "5s", "output_bytes": 65536,
//	            "log_bytes": 16384, "children": 10, "table_elements": 65536},
//	 "config": {"greeting": "hello"},
//	 "args": ["--flag", "x"], "env": {"KEY": "value"},
//	 "mounts": [{"host": "/srv/models", "guest": "/models", "read_only": true}],
//	 "input": "stdin", "scratch_bytes": 16777216,
//	 "exit_codes": {"1": "permanent", "75": "retryable"},
//	 "instances": {"policy": "reuse", "max_uses": 1000, "idle_timeout": "60s"},
//	 "extism": {"function": "count_vowels", "allowed_hosts": ["api.example.com"]}}
//
// args, env, mounts, input, input_name, scratch_bytes and exit_codes are the
// WASI grants of host.Command; a mount must lie under a directory the
// operator allows (serve --allow-dir).
type Manifest struct {
	Limits ManifestLimits    `json:"limits,omitempty"`
	Config map[string]string `json:"config,omitempty"`

	Args         []string          `json:"args,omitempty"`
	Env          map[string]string `json:"env,omitempty"`
	Mounts       []ManifestMount   `json:"mounts,omitempty"`
	Input        string            `json:"input,omitempty"`
	InputName    string            `json:"input_name,omitempty"`
	ScratchBytes int64             `json:"scratch_bytes,omitempty"`
	ExitCodes    map[string]string `json:"exit_codes,omitempty"`

	// Instances is the instance policy: fresh (default) or reuse
	// (instances.go).
	Instances *ManifestInstances `json:"instances,omitempty"`

	// Extism says how an Extism plugin is called (extism.go).
	Extism *ManifestExtism `json:"extism,omitempty"`

	// Placement says where attempts run: "any" (default: the server's own
	// workers or remote ones) or "remote" (only on `wasmtask worker`
	// processes, e.g. a handler that needs a GPU box or must not share the
	// server's machine). A task of a remote-only plugin waits, ready, until
	// a worker that serves it connects.
	Placement string `json:"placement,omitempty"`
}

// Placements a manifest may name.
const (
	PlacementAny    = "any"
	PlacementRemote = "remote"
)

// RemoteOnly reports whether the manifest restricts its plugin to remote workers.
func (m *Manifest) RemoteOnly() bool { return m != nil && m.Placement == PlacementRemote }

// ManifestMount is a host directory the guest sees at Guest. ReadOnly
// defaults to true: a writable mount says "read_only": false.
type ManifestMount struct {
	Host     string `json:"host"`
	Guest    string `json:"guest"`
	ReadOnly *bool  `json:"read_only,omitempty"`
}

// Command returns the manifest's WASI grants, checked for syntax (not for
// the operator's allowed directories: see Registry).
func (m *Manifest) Command() (host.Command, error) {
	var c host.Command
	if m == nil {
		return c, nil
	}
	c.Args, c.Env, c.Input, c.InputName, c.ScratchBytes = m.Args, m.Env, host.InputMode(m.Input), m.InputName, m.ScratchBytes
	for _, mt := range m.Mounts {
		c.Mounts = append(c.Mounts, host.Mount{Host: mt.Host, Guest: mt.Guest, ReadOnly: mt.ReadOnly == nil || *mt.ReadOnly})
	}
	if len(m.ExitCodes) > 0 {
		c.ExitCodes = host.ExitCodes{}
		for k, v := range m.ExitCodes {
			c.ExitCodes[k] = host.ExitAction(v)
		}
	}
	if err := c.Validate(); err != nil {
		var ge *host.GrantError
		if errors.As(err, &ge) {
			return c, &ValidationError{Field: "manifest." + ge.Field, Reason: ge.Reason}
		}
		return c, err
	}
	return c, nil
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
		var ve *ValidationError
		if errors.As(err, &ve) { // from ManifestInstances, naming its field
			return nil, ve
		}
		if where, name, known, ok := unknownMember(b, reflect.TypeFor[Manifest](), "manifest"); ok {
			return nil, &ValidationError{Field: where, Reason: describeUnknown(name, known)}
		}
		return nil, &ValidationError{Field: "manifest", Reason: describeJSONError(err)}
	}
	if dec.More() {
		return nil, &ValidationError{Field: "manifest", Reason: "unexpected data after the manifest object"}
	}
	if _, err := m.HostLimits(); err != nil {
		return nil, err
	}
	if m.Placement != "" && m.Placement != PlacementAny && m.Placement != PlacementRemote {
		return nil, &ValidationError{Field: "manifest.placement", Reason: fmt.Sprintf("want \"any\" (default) or \"remote\" (only wasmtask worker processes run it), got %q", m.Placement)}
	}
	if _, err := m.Command(); err != nil {
		return nil, err
	}
	if _, err := m.InstancePolicy(); err != nil {
		return nil, err
	}
	if _, err := m.ExtismOptions(); err != nil {
		return nil, err
	}
	return &m, nil
}

// HostLimits returns the limits the manifest asks for (zero fields: default),
// before the operator's maxima clamp them.
func (m *Manifest) HostLimits() (host.Limits, error) {
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

// fieldName is what a manifest member name looks like; only such names are
// repeated in an error.
var fieldName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,39}$`)

// describeJSONError says what is wrong with a manifest without quoting its
// bytes (encoding/json's messages do: "invalid character 'r'..."), so that
// an error or a log line never shows the content of a file that was not
// meant to be a manifest. Positions, JSON types and member names that look
// like member names are kept.
func describeJSONError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("not valid JSON at byte %d (want an object like {\"limits\": {...}, \"config\": {...}})", syn.Offset)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "the manifest"
		}
		return fmt.Sprintf("%s: want %s, got a JSON %s (at byte %d)", field, jsonKind(typ.Type.Kind().String()), typ.Value, typ.Offset)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON ends too early (an empty or cut manifest)"
	}
	return "not a valid manifest (a JSON object with limits and config)"
}

var unmarshaler = reflect.TypeFor[json.Unmarshaler]()

// unknownMember finds the first member of the JSON object b that no field
// of t takes (as encoding/json matches names: ignoring case), in document
// order, descending into the objects and arrays of objects of t's fields.
// It returns where it is ("manifest.limits", "manifest.mounts[1]"), its
// name and the names t knows there; ok is false when there is none.
// Types that decode themselves (ManifestInstances) and maps are skipped.
func unknownMember(b []byte, t reflect.Type, path string) (where, name string, known []string, ok bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshaler) {
		return "", "", nil, false
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		var items []json.RawMessage
		if json.Unmarshal(b, &items) != nil {
			return "", "", nil, false
		}
		for i, item := range items {
			if w, n, k, ok := unknownMember(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); ok {
				return w, n, k, true
			}
		}
	case reflect.Struct:
		fields := map[string]reflect.StructField{}
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if f.IsExported() && tag != "-" && tag != "" {
				known = append(known, tag)
				fields[tag] = f
			}
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			return "", "", nil, false
		}
		for dec.More() {
			tok, err := dec.Token()
			key, isKey := tok.(string)
			var value json.RawMessage
			if err != nil || !isKey || dec.Decode(&value) != nil {
				return "", "", nil, false
			}
			var f reflect.StructField
			found := false
			for _, k := range known {
				if strings.EqualFold(k, key) {
					f, found = fields[k], true
					break
				}
			}
			if !found {
				return path, key, known, true
			}
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if w, n, k, ok := unknownMember(value, f.Type, path+"."+tag); ok {
				return w, n, k, true
			}
		}
	}
	return "", "", nil, false
}

// describeUnknown names an unknown member (when it looks like a name: a
// file that is not a manifest must not be quoted), the closest known one
// and every known one.
func describeUnknown(name string, known []string) string {
	list := "known: " + strings.Join(known, ", ")
	if !fieldName.MatchString(name) {
		return "an unknown field (" + list + ")"
	}
	if c := closest(name, known); c != "" {
		return fmt.Sprintf("unknown field %q: did you mean %q? (%s)", name, c, list)
	}
	return fmt.Sprintf("unknown field %q (%s)", name, list)
}

// closest returns the known name nearest to name: one that starts with it
// or it starts with ("memory" for "memory_pages"), else one within a few
// edits (a third of its length, at least 2); "" when none is.
func closest(name string, known []string) string {
	lower := strings.ToLower(name)
	best, bestDist := "", 0
	for _, k := range known {
		d := editDistance(lower, k)
		if strings.HasPrefix(k, lower) || strings.HasPrefix(lower, k) {
			d = min(d, 1)
		}
		if d <= max(2, len(k)/3) && (best == "" || d < bestDist) {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func jsonKind(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"), strings.HasPrefix(kind, "float"):
		return "a number"
	case kind == "string":
		return "a string"
	case kind == "map", kind == "struct":
		return "an object"
	}
	return "a " + kind
}
