package api

import (
	"unicode/utf8"
)

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
	if !utf8.Valid(b) {
		return spec, false
	}
	p := specParser{b: b, shared: shared}
	p.space()
	if !p.byte('{') {
		return spec, false
	}
	var seen uint16
	p.space()
	if p.byte('}') {
		return spec, p.end()
	}
	for {
		p.space()
		key, ok := p.strBytes()
		if !ok {
			return spec, false
		}
		p.space()
		if !p.byte(':') {
			return spec, false
		}
		p.space()
		bit, ok := specMembers[string(key)] // no copy for a map lookup
		if !ok || seen&bit != 0 {
			return spec, false
		}
		seen |= bit
		switch bit {
		case memberID:
			spec.ID, ok = p.str()
		case memberHandler:
			spec.Handler, ok = p.sharedStr()
		case memberInput:
			var s string
			s, ok = p.str()
			spec.Input = &s
		case memberInputB64:
			var s string
			s, ok = p.str()
			spec.InputB64 = &s
		case memberMaxAttempts:
			spec.MaxAttempts, ok = p.int()
			ok = ok && spec.MaxAttempts != 0 // an explicit 0 is refused by the full decoder
		case memberTimeout:
			spec.Timeout, ok = p.sharedStr()
		case memberPriority:
			spec.Priority, ok = p.int()
		case memberConcurrencyKey:
			spec.ConcurrencyKey, ok = p.sharedStr()
		case memberNotBefore:
			spec.NotBefore, ok = p.str()
		case memberTolerateChildFailures:
			spec.TolerateChildFailures, ok = p.bool()
		case memberLabels:
			spec.Labels, ok = p.labels()
		}
		if !ok {
			return spec, false
		}
		p.space()
		if p.byte('}') {
			return spec, p.end()
		}
		if !p.byte(',') {
			return spec, false
		}
	}
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

type specParser struct {
	b      []byte
	i      int
	shared *stringCache // nil: every string is its own copy
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

func (p *specParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *specParser) byte(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// end reports whether only white space follows.
func (p *specParser) end() bool {
	p.space()
	return p.i == len(p.b)
}

// str reads a string without escapes or control characters.
func (p *specParser) str() (string, bool) {
	b, ok := p.strBytes()
	if !ok {
		return "", false
	}
	return string(b), true
}

// sharedStr is str taking the string from p.shared, if any.
func (p *specParser) sharedStr() (string, bool) {
	b, ok := p.strBytes()
	if !ok {
		return "", false
	}
	if p.shared != nil {
		return p.shared.get(b), true
	}
	return string(b), true
}

// strBytes reads a string without escapes or control characters and
// returns its bytes (in p.b).
func (p *specParser) strBytes() ([]byte, bool) {
	if !p.byte('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			b := p.b[start:p.i]
			p.i++
			return b, true
		case c == '\\' || c < 0x20:
			return nil, false
		}
		p.i++
	}
	return nil, false
}

// int reads an integer as JSON writes it (no fraction, no exponent, no
// leading zeros), of at most 15 digits.
func (p *specParser) int() (int, bool) {
	neg := p.byte('-')
	start := p.i
	n := 0
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		n = n*10 + int(p.b[p.i]-'0')
		p.i++
	}
	digits := p.i - start
	if digits == 0 || digits > 15 || (digits > 1 && p.b[start] == '0') {
		return 0, false
	}
	if p.i < len(p.b) {
		switch p.b[p.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	if neg {
		n = -n
	}
	return n, true
}

func (p *specParser) bool() (bool, bool) {
	rest := p.b[p.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		p.i += 4
		return true, true
	case len(rest) >= 5 && string(rest[:5]) == "false":
		p.i += 5
		return false, true
	}
	return false, false
}

// labels reads an object of strings (a repeated key keeps the last value,
// as encoding/json does).
func (p *specParser) labels() (map[string]string, bool) {
	start := p.i
	if !p.byte('{') {
		return nil, false
	}
	if c := p.shared; c != nil && c.labels != nil && len(p.b)-start >= len(c.labelsRaw) &&
		string(p.b[start:start+len(c.labelsRaw)]) == string(c.labelsRaw) {
		p.i = start + len(c.labelsRaw)
		return c.labels, true
	}
	m, ok := p.labelMembers()
	if ok && p.shared != nil {
		p.shared.labelsRaw = append(p.shared.labelsRaw[:0], p.b[start:p.i]...)
		p.shared.labels = m
	}
	return m, ok
}

// labelMembers reads the members of a labels object, after its '{'.
func (p *specParser) labelMembers() (map[string]string, bool) {
	m := map[string]string{}
	p.space()
	if p.byte('}') {
		return m, true
	}
	for {
		p.space()
		k, ok := p.sharedStr()
		if !ok {
			return nil, false
		}
		p.space()
		if !p.byte(':') {
			return nil, false
		}
		p.space()
		v, ok := p.sharedStr()
		if !ok {
			return nil, false
		}
		m[k] = v
		p.space()
		if p.byte('}') {
			return m, true
		}
		if !p.byte(',') {
			return nil, false
		}
	}
}
