package api

import (
	"encoding/base64"
	"strconv"
	"unicode/utf8"
)

// The worker decodes lease responses by hand: with encoding/json they
// took a seventh of a no-op worker's CPU. decodeLeaseResponse handles JSON
// as the server writes it (appendLeaseResponse; whitespace allowed) and
// gives up (ok false) on anything else: an escape in a string, invalid
// UTF-8, a member it does not know, a number with a fraction. The caller
// then decodes the body with encoding/json, so the result never differs
// (TestDecodeLeaseResponseMatchesEncoding).

type leaseParser struct {
	b  []byte
	i  int
	ok bool
}

// decodeLeaseResponse decodes b into out, with each lease's manifest as
// raw JSON in manifests (nil where none); ok false: use encoding/json.
func decodeLeaseResponse(b []byte) (out LeaseResponse, manifests [][]byte, ok bool) {
	p := &leaseParser{b: b, ok: true}
	p.object(func(key string) {
		switch key {
		case "leases":
			if p.null() {
				out.Leases = nil
				return
			}
			out.Leases = []Lease{}
			manifests = manifests[:0]
			p.array(func() {
				var l Lease
				var m []byte
				p.lease(&l, &m)
				out.Leases = append(out.Leases, l)
				manifests = append(manifests, m)
			})
		case "results":
			if p.null() {
				out.Results = nil
				return
			}
			out.Results = []ResultStatus{}
			p.array(func() {
				var r ResultStatus
				p.object(func(key string) {
					switch key {
					case "lease":
						r.Lease = p.str()
					case "status":
						r.Status = p.str()
					case "error":
						r.Error = p.str()
					default:
						p.ok = false
					}
				})
				out.Results = append(out.Results, r)
			})
		case "lease_timeout_ms":
			out.LeaseTimeoutMs = p.int()
		case "heartbeat_ms":
			out.HeartbeatMs = p.int()
		default:
			p.ok = false
		}
	})
	p.ws()
	if p.i != len(p.b) {
		p.ok = false
	}
	return out, manifests, p.ok
}

func (p *leaseParser) lease(l *Lease, manifest *[]byte) {
	p.object(func(key string) {
		switch key {
		case "lease":
			l.Lease = p.str()
		case "task":
			l.Task = p.str()
		case "run":
			l.Run = p.str()
		case "attempt":
			l.Attempt = int(p.int())
		case "max_attempts":
			l.MaxAttempts = int(p.int())
		case "handler":
			l.Handler = p.str()
		case "plugin":
			l.Plugin = p.str()
		case "version":
			l.Version = p.str()
		case "manifest":
			if p.null() {
				*manifest = nil
				return
			}
			start := p.i
			p.skip()
			*manifest = p.b[start:p.i]
		case "input":
			if p.null() {
				l.Input = nil
				return
			}
			s := p.str()
			in := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
			n, err := base64.StdEncoding.Decode(in, []byte(s))
			if err != nil {
				p.ok = false
			}
			l.Input = in[:n]
		case "timeout_ms":
			l.TimeoutMs = p.int()
		case "remaining_ms":
			l.RemainingMs = p.int()
		case "labels":
			if p.null() {
				l.Labels = nil
				return
			}
			if l.Labels == nil {
				l.Labels = map[string]string{}
			}
			p.object(func(key string) { l.Labels[key] = p.str() })
		case "parent":
			l.Parent = p.str()
		default:
			p.ok = false
		}
	})
}

func (p *leaseParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// next skips whitespace and reports whether the next byte is c (and takes it).
func (p *leaseParser) next(c byte) bool {
	p.ws()
	if p.ok && p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *leaseParser) null() bool {
	p.ws()
	if p.ok && len(p.b)-p.i >= 4 && string(p.b[p.i:p.i+4]) == "null" {
		p.i += 4
		return true
	}
	return false
}

// object calls member for each member, positioned at its value.
func (p *leaseParser) object(member func(key string)) {
	if !p.next('{') {
		p.ok = false
		return
	}
	if p.next('}') {
		return
	}
	for p.ok {
		key := p.str()
		if !p.next(':') {
			p.ok = false
			return
		}
		member(key)
		if p.next(',') {
			continue
		}
		if !p.next('}') {
			p.ok = false
		}
		return
	}
}

func (p *leaseParser) array(elem func()) {
	if !p.next('[') {
		p.ok = false
		return
	}
	if p.next(']') {
		return
	}
	for p.ok {
		elem()
		if p.next(',') {
			continue
		}
		if !p.next(']') {
			p.ok = false
		}
		return
	}
}

// str reads a string holding no escape and valid UTF-8.
func (p *leaseParser) str() string {
	if !p.next('"') {
		p.ok = false
		return ""
	}
	start, ascii := p.i, true
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			if !ascii && !utf8.Valid(s) {
				p.ok = false
			}
			return string(s)
		case c == '\\' || c < 0x20:
			p.ok = false
			return ""
		case c >= 0x80:
			ascii = false
		}
		p.i++
	}
	p.ok = false
	return ""
}

// int reads an integer (no fraction, no exponent).
func (p *leaseParser) int() int64 {
	p.ws()
	start := p.i
	if p.i < len(p.b) && p.b[p.i] == '-' {
		p.i++
	}
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	n, err := strconv.ParseInt(string(p.b[start:p.i]), 10, 64)
	if err != nil || p.i < len(p.b) && (p.b[p.i] == '.' || p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.ok = false
	}
	return n
}

// skip passes over one value of any kind (escapes included); encoding/json
// checks it when it decodes the manifest.
func (p *leaseParser) skip() {
	p.ws()
	depth := 0
	for p.ok && p.i < len(p.b) {
		c := p.b[p.i]
		switch c {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth < 0 {
				p.ok = false
				return
			}
		case '"':
			for p.i++; p.i < len(p.b) && p.b[p.i] != '"'; p.i++ {
				if p.b[p.i] == '\\' {
					p.i++
				}
			}
			if p.i >= len(p.b) {
				p.ok = false
				return
			}
		case ',', ':':
			if depth == 0 {
				return
			}
		}
		p.i++
		if depth == 0 && (c == '}' || c == ']' || c == '"') {
			return
		}
		if depth == 0 && c != '{' && c != '[' {
			// a literal (number, true, false, null): up to a delimiter
			for p.i < len(p.b) && !isDelim(p.b[p.i]) {
				p.i++
			}
			return
		}
	}
	if depth != 0 {
		p.ok = false
	}
}

func isDelim(c byte) bool {
	switch c {
	case ',', '}', ']', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}
