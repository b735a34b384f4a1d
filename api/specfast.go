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
	if !utf8.Valid(b) {
		return spec, false
	}
	p := specParser{b: b}
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
		key, ok := p.str()
		if !ok {
			return spec, false
		}
		p.space()
		if !p.byte(':') {
			return spec, false
		}
		p.space()
		bit, ok := specMembers[key]
		if !ok || seen&bit != 0 {
			return spec, false
		}
		seen |= bit
		switch key {
		case "id":
			spec.ID, ok = p.str()
		case "handler":
			spec.Handler, ok = p.str()
		case "input":
			var s string
			s, ok = p.str()
			spec.Input = &s
		case "input_b64":
			var s string
			s, ok = p.str()
			spec.InputB64 = &s
		case "max_attempts":
			spec.MaxAttempts, ok = p.int()
			ok = ok && spec.MaxAttempts != 0 // an explicit 0 is refused by the full decoder
		case "timeout":
			spec.Timeout, ok = p.str()
		case "priority":
			spec.Priority, ok = p.int()
		case "concurrency_key":
			spec.ConcurrencyKey, ok = p.str()
		case "not_before":
			spec.NotBefore, ok = p.str()
		case "tolerate_child_failures":
			spec.TolerateChildFailures, ok = p.bool()
		case "labels":
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

// specMembers are the members decodeSpecFast knows, one bit each.
var specMembers = map[string]uint16{
	"id": 1 << 0, "handler": 1 << 1, "input": 1 << 2, "input_b64": 1 << 3, "max_attempts": 1 << 4,
	"timeout": 1 << 5, "priority": 1 << 6, "concurrency_key": 1 << 7, "not_before": 1 << 8,
	"tolerate_child_failures": 1 << 9, "labels": 1 << 10,
}

type specParser struct {
	b []byte
	i int
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
	if !p.byte('"') {
		return "", false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := string(p.b[start:p.i])
			p.i++
			return s, true
		case c == '\\' || c < 0x20:
			return "", false
		}
		p.i++
	}
	return "", false
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
	if !p.byte('{') {
		return nil, false
	}
	m := map[string]string{}
	p.space()
	if p.byte('}') {
		return m, true
	}
	for {
		p.space()
		k, ok := p.str()
		if !ok {
			return nil, false
		}
		p.space()
		if !p.byte(':') {
			return nil, false
		}
		p.space()
		v, ok := p.str()
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
