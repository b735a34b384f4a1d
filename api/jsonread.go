package api

import (
	"encoding/base64"
	"time"
	"unicode/utf8"
)

// jsonReader reads JSON as wasmtask's own clients and server write it,
// without reflection: the fast decoders of task specs (specfast.go) and of
// lease responses and of workers' lease and result requests
// (workerjson_decode.go) are built on it. It reads a
// subset: strings without escapes, control characters or invalid UTF-8;
// integers as JSON writes them (no fraction, exponent or leading zero)
// that fit an int64; true, false and null. On anything else it gives up:
// ok turns false and stays so, every read after that reads nothing, and
// its caller decodes with encoding/json instead, which names what is
// wrong. What it reads it reads as encoding/json does (FuzzJSONReader).
type jsonReader struct {
	b  []byte
	i  int
	ok bool
}

func newJSONReader(b []byte) jsonReader { return jsonReader{b: b, ok: true} }

// fail gives up on the input.
func (r *jsonReader) fail() { r.ok = false }

func (r *jsonReader) space() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// take skips white space and takes c if it comes next.
func (r *jsonReader) take(c byte) bool {
	r.space()
	if r.ok && r.i < len(r.b) && r.b[r.i] == c {
		r.i++
		return true
	}
	return false
}

// end gives up unless only white space is left, and reports whether the
// whole input was read.
func (r *jsonReader) end() bool {
	r.space()
	if r.i != len(r.b) {
		r.ok = false
	}
	return r.ok
}

// openObject reads the '{' of an object and reports whether a member
// follows; with key and more it reads an object:
//
//	for more := r.openObject(); more; more = r.more('}') {
//		switch string(r.key()) { ... read the value ... }
//	}
func (r *jsonReader) openObject() bool { return r.open('{', '}') }

// openArray reads the '[' of an array and reports whether an element
// follows (see openObject; more(']') after each element).
func (r *jsonReader) openArray() bool { return r.open('[', ']') }

func (r *jsonReader) open(c, closer byte) bool {
	if !r.take(c) {
		r.ok = false
		return false
	}
	return !r.take(closer)
}

// more reads what follows a member or an element: a ',' (another one
// follows: true) or closer (the end: false).
func (r *jsonReader) more(closer byte) bool {
	if r.take(',') {
		return true
	}
	if !r.take(closer) {
		r.ok = false
	}
	return false
}

// key reads a member's name and its ':'. The bytes are in the input:
// switch string(r.key()) and map lookups copy nothing.
func (r *jsonReader) key() []byte {
	k := r.strBytes()
	if !r.take(':') {
		r.ok = false
	}
	return k
}

// str reads a string.
func (r *jsonReader) str() string { return string(r.strBytes()) }

// strBytes reads a string and returns its bytes, in the input (nil if
// it gives up).
func (r *jsonReader) strBytes() []byte {
	if !r.take('"') {
		r.ok = false
		return nil
	}
	start, ascii := r.i, true
	for r.i < len(r.b) {
		c := r.b[r.i]
		if !strStop[c] {
			r.i++
			continue
		}
		switch {
		case c == '"':
			s := r.b[start:r.i]
			r.i++
			if !ascii && !utf8.Valid(s) { // encoding/json would replace the bad bytes
				r.ok = false
				return nil
			}
			return s
		case c >= 0x80:
			ascii = false
			r.i++
		default: // an escape or a control character
			r.ok = false
			return nil
		}
	}
	r.ok = false
	return nil
}

// strStop marks the bytes strBytes looks at twice: the closing quote, an
// escape, a control character and the bytes of multi-byte UTF-8 (one
// table lookup per byte of plain ASCII).
var strStop = func() (stop [256]bool) {
	for c := range 256 {
		stop[c] = c == '"' || c == '\\' || c < 0x20 || c >= 0x80
	}
	return stop
}()

// int64 reads an integer.
func (r *jsonReader) int64() int64 {
	r.space()
	if !r.ok {
		return 0
	}
	neg := r.i < len(r.b) && r.b[r.i] == '-'
	if neg {
		r.i++
	}
	start := r.i
	var n uint64
	for r.i < len(r.b) && r.b[r.i] >= '0' && r.b[r.i] <= '9' {
		n = n*10 + uint64(r.b[r.i]-'0')
		r.i++
	}
	digits := r.i - start
	limit := uint64(1<<63 - 1)
	if neg {
		limit++
	}
	// 19 digits cannot wrap a uint64; 1<<63 has 19.
	if digits == 0 || digits > 19 || (digits > 1 && r.b[start] == '0') || n > limit {
		r.ok = false
		return 0
	}
	if r.i < len(r.b) {
		switch r.b[r.i] {
		case '.', 'e', 'E':
			r.ok = false
			return 0
		}
	}
	if neg {
		return -int64(n)
	}
	return int64(n)
}

// int reads an integer that fits an int (what encoding/json decodes into
// an int field).
func (r *jsonReader) int() int {
	n := r.int64()
	if int64(int(n)) != n {
		r.ok = false
		return 0
	}
	return int(n)
}

// bool reads true or false.
func (r *jsonReader) bool() bool {
	r.space()
	rest := r.b[r.i:]
	switch {
	case !r.ok:
	case len(rest) >= 4 && string(rest[:4]) == "true":
		r.i += 4
		return true
	case len(rest) >= 5 && string(rest[:5]) == "false":
		r.i += 5
		return false
	default:
		r.ok = false
	}
	return false
}

// null reads a null if one comes next, and reports whether it did.
func (r *jsonReader) null() bool {
	r.space()
	if r.ok && len(r.b)-r.i >= 4 && string(r.b[r.i:r.i+4]) == "null" {
		r.i += 4
		return true
	}
	return false
}

// skip passes over one value of any kind (escapes included) and returns
// its bytes. It checks no more than it needs to find the value's end
// (FuzzJSONReader: the end encoding/json finds in valid JSON): the
// caller hands the bytes to encoding/json, which checks them. Where no
// value starts it gives up.
func (r *jsonReader) skip() []byte {
	r.space()
	start, depth := r.i, 0
	for r.ok && r.i < len(r.b) {
		c := r.b[r.i]
		switch c {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth < 0 {
				r.ok = false
				return nil
			}
		case '"':
			for r.i++; r.i < len(r.b) && r.b[r.i] != '"'; r.i++ {
				if r.b[r.i] == '\\' {
					r.i++
				}
			}
			if r.i >= len(r.b) {
				r.ok = false
				return nil
			}
		case ',', ':':
			if depth == 0 { // no value at all
				r.ok = false
				return nil
			}
		}
		r.i++
		if depth == 0 && (c == '}' || c == ']' || c == '"') {
			return r.b[start:r.i]
		}
		if depth == 0 && c != '{' && c != '[' {
			// a literal (number, true, false, null): up to a delimiter
			for r.i < len(r.b) && !isDelim(r.b[r.i]) {
				r.i++
			}
			return r.b[start:r.i]
		}
	}
	r.ok = false // the input ended in the value, or before it
	return nil
}

func isDelim(c byte) bool {
	switch c {
	case ',', '}', ']', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// once gives up if *seen is set, and sets it.
func (r *jsonReader) once(seen *bool) {
	if *seen {
		r.fail()
	}
	*seen = true
}

// base64 reads a string of standard base64 into new bytes, or a null
// (nil), as encoding/json reads a []byte.
func (r *jsonReader) base64() []byte {
	if r.null() {
		return nil
	}
	s := r.strBytes()
	if !r.ok {
		return nil
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(out, s)
	if err != nil {
		r.fail()
		return nil
	}
	return out[:n]
}

// time reads a string in RFC 3339 as time.Time's UnmarshalJSON does (a
// null gives up: it would leave the field as it was).
func (r *jsonReader) time() time.Time {
	s := r.strBytes()
	var t time.Time
	if r.ok && t.UnmarshalText(s) != nil {
		r.fail()
	}
	return t
}

// strLike reads a string; when it equals *prev it returns *prev (no new
// string), else it becomes *prev: most leases of a response name the same
// handler, plugin and version.
func (r *jsonReader) strLike(prev *string) string {
	if b := r.strBytes(); string(b) != *prev {
		*prev = string(b)
	}
	return *prev
}
