package api

// decodeSpecFast decodes the usual task spec without reflection: an object
// of the plain members (id, handler, input, input_b64, max_attempts,
// timeout, priority, concurrency_key, not_before, tolerate_child_failures,
// labels), strings without escapes, integers without fraction or
// exponent, each member once. ok is false for anything else (another
// member, a name in another case, an escape, null, a nested policy,
// max_attempts 0, invalid JSON, trailing data): the caller then decodes
// with dispatch.DecodeSpecJSON, which decodes what this accepts to the same
// spec (FuzzDecodeSpecFast) and names the field of every error.
func decodeSpecFast(b []byte) (spec TaskSpec, ok bool) {
	return decodeSpecFastShared(b, nil)
}

// decodeSpecFastShared is decodeSpecFast taking the strings that repeat
// from spec to spec (handler, labels, concurrency key) from shared, when
// not nil: the specs of a batch then hold one copy of each.
func decodeSpecFastShared(b []byte, shared *stringCache) (spec TaskSpec, ok bool) {
	r := newJSONReader(b)
	var seen uint16
	for more := r.openObject(); more; more = r.more('}') {
		bit := specMembers[string(r.key())] // no copy for a map lookup
		if bit == 0 || seen&bit != 0 {
			return spec, false
		}
		seen |= bit
		switch bit {
		case memberID:
			spec.ID = r.str()
		case memberHandler:
			spec.Handler = shared.str(&r)
		case memberInput:
			s := r.str()
			spec.Input = &s
		case memberInputB64:
			s := r.str()
			spec.InputB64 = &s
		case memberMaxAttempts:
			if spec.MaxAttempts = r.int(); spec.MaxAttempts == 0 {
				r.fail() // an explicit 0 is refused by the full decoder
			}
		case memberTimeout:
			spec.Timeout = shared.str(&r)
		case memberPriority:
			spec.Priority = r.int()
		case memberConcurrencyKey:
			spec.ConcurrencyKey = shared.str(&r)
		case memberNotBefore:
			spec.NotBefore = r.str()
		case memberTolerateChildFailures:
			spec.TolerateChildFailures = r.bool()
		case memberLabels:
			spec.Labels = shared.readLabels(&r)
		}
	}
	return spec, r.end()
}

// The members decodeSpecFast knows, one bit each.
const (
	memberID uint16 = 1 << iota
	memberHandler
	memberInput
	memberInputB64
	memberMaxAttempts
	memberTimeout
	memberPriority
	memberConcurrencyKey
	memberNotBefore
	memberTolerateChildFailures
	memberLabels
)

var specMembers = map[string]uint16{
	"id": memberID, "handler": memberHandler, "input": memberInput, "input_b64": memberInputB64,
	"max_attempts": memberMaxAttempts, "timeout": memberTimeout, "priority": memberPriority,
	"concurrency_key": memberConcurrencyKey, "not_before": memberNotBefore,
	"tolerate_child_failures": memberTolerateChildFailures, "labels": memberLabels,
}

// stringCache hands out one copy of each string it was asked for, up to
// a bound: the specs of a batch mostly repeat their handler and labels.
// It also keeps the last labels object read: a spec whose labels are
// written byte for byte like the previous one's shares its map (the
// engine never changes a task's labels).
type stringCache struct {
	m         map[string]string
	labelsRaw []byte
	labels    map[string]string
}

// maxSharedStrings bounds a stringCache (a batch of distinct labels keeps
// the usual copy per spec beyond it).
const maxSharedStrings = 256

func (c *stringCache) get(b []byte) string {
	if s, ok := c.m[string(b)]; ok {
		return s
	}
	s := string(b)
	if c.m == nil {
		c.m = make(map[string]string)
	}
	if len(c.m) < maxSharedStrings {
		c.m[s] = s
	}
	return s
}

// str reads a string, taking it from c if c is not nil.
func (c *stringCache) str(r *jsonReader) string {
	b := r.strBytes()
	if !r.ok {
		return ""
	}
	return c.of(b)
}

// of is b as a string, taken from c if c is not nil.
func (c *stringCache) of(b []byte) string {
	if c != nil {
		return c.get(b)
	}
	return string(b)
}

// readLabels reads an object of strings (a repeated key keeps the last value,
// as encoding/json does); of two objects in a row written alike, c (if
// not nil) gives the second the first one's map.
func (c *stringCache) readLabels(r *jsonReader) map[string]string {
	r.space()
	start := r.i
	if c != nil && c.labels != nil && len(r.b)-start >= len(c.labelsRaw) &&
		string(r.b[start:start+len(c.labelsRaw)]) == string(c.labelsRaw) {
		r.i = start + len(c.labelsRaw)
		return c.labels
	}
	m := map[string]string{}
	for more := r.openObject(); more; more = r.more('}') {
		k := r.key()
		if !r.ok {
			break
		}
		key := c.of(k)
		m[key] = c.str(r)
	}
	if c != nil && r.ok {
		c.labelsRaw = append(c.labelsRaw[:0], r.b[start:r.i]...)
		c.labels = m
	}
	return m
}
