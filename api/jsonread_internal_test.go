package api

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var jsonReaderSeeds = []string{
	`{}`, `[]`, ` { "a" : [ 1 , -2 , true , false , null , "x" ] } `, `{"a":{"b":{"c":[]}}}`,
	`{"a":1,"a":2}`, `"plain"`, `"gr\u00fc\u00dfe"`, "\"grüße\"", "\"bad \xff\"", "\"tab\there\"", `"a\"b"`,
	`0`, `-0`, `01`, `-`, `1.5`, `1e2`, `1E2`, `-1.0`, `9223372036854775807`, `9223372036854775808`,
	`-9223372036854775808`, `-9223372036854775809`, `99999999999999999999`, `00`,
	`true`, `tru`, `truex`, `null`, `nul`, `[1,]`, `{"a":1,}`, `{"a"}`, `{"a":}`, `{,}`, `[,1]`, `{"a":1}}`,
	`{"a":1} {}`, `[1 2]`, `{1:2}`, ``, ` `, `{`, `[`, `"`, `"\`, `["a\\"]`, `{"k":"v","m":{"x":["y\"}"]}}`,
}

// readValue reads any value the reader reads, as encoding/json decodes it
// into an any (numbers as int64).
func readValue(r *jsonReader) any {
	r.space()
	if r.i >= len(r.b) {
		r.fail()
		return nil
	}
	switch r.b[r.i] {
	case '{':
		m := map[string]any{}
		for more := r.openObject(); more; more = r.more('}') {
			k := string(r.key())
			m[k] = readValue(r)
		}
		return m
	case '[':
		a := []any{}
		for more := r.openArray(); more; more = r.more(']') {
			a = append(a, readValue(r))
		}
		return a
	case '"':
		return r.str()
	case 't', 'f':
		return r.bool()
	case 'n':
		if !r.null() {
			r.fail()
		}
		return nil
	}
	return r.int64()
}

// decodeStd decodes b as encoding/json does, integers as int64; ok false
// if it refuses b or b holds a number that is not an int64.
func decodeStd(b []byte) (v any, ok bool) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if d.Decode(&v) != nil {
		return nil, false
	}
	if _, err := d.Token(); err == nil { // trailing data: json.Unmarshal refuses it
		return nil, false
	}
	return intsOf(v)
}

func intsOf(v any) (any, bool) {
	switch v := v.(type) {
	case json.Number:
		n, err := strconv.ParseInt(string(v), 10, 64)
		return n, err == nil
	case map[string]any:
		for k, e := range v {
			var ok bool
			if v[k], ok = intsOf(e); !ok {
				return nil, false
			}
		}
	case []any:
		for i, e := range v {
			var ok bool
			if v[i], ok = intsOf(e); !ok {
				return nil, false
			}
		}
	}
	return v, true
}

// FuzzJSONReader: what the shared reader reads (objects, arrays, strings,
// integers, true, false, null) it reads as encoding/json does, which
// accepts it too; encoding/json's own writing of a value of that subset
// without escapes, the reader always reads; skip finds the end of any
// valid value that encoding/json finds, in an object and in an array.
func FuzzJSONReader(f *testing.F) {
	for _, s := range jsonReaderSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := newJSONReader(b)
		got := readValue(&r)
		read := r.end()
		std, stdOK := decodeStd(b)
		if read {
			if !json.Valid(b) {
				t.Fatalf("the reader read %q, encoding/json refuses it", b)
			}
			if !stdOK {
				t.Fatalf("the reader read %q, not a value of integers for encoding/json", b)
			}
			if d := cmp.Diff(std, got); d != "" {
				t.Fatalf("%q read differently (-encoding/json +reader):\n%s", b, d)
			}
		}
		if stdOK {
			var out bytes.Buffer
			e := json.NewEncoder(&out)
			e.SetEscapeHTML(false)
			if err := e.Encode(std); err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(out.Bytes(), []byte{'\\'}) {
				r := newJSONReader(out.Bytes())
				again := readValue(&r)
				if !r.end() {
					t.Fatalf("the reader gave up on %q, as encoding/json writes %q", out.Bytes(), b)
				}
				if d := cmp.Diff(std, again); d != "" {
					t.Fatalf("%q read differently (-encoding/json +reader):\n%s", out.Bytes(), d)
				}
			}
		}
		if !json.Valid(b) {
			return
		}
		trimmed := bytes.Trim(b, " \t\r\n")
		for _, wrap := range []struct{ open, close string }{{`{"m":`, `,"n":1}`}, {`[`, `, 1]`}, {``, ``}} {
			in := []byte(wrap.open + string(b) + wrap.close)
			r := newJSONReader(in)
			var skipped []byte
			switch wrap.open {
			case "":
				skipped = r.skip()
			case `{"m":`:
				if !r.openObject() || string(r.key()) != "m" {
					t.Fatalf("%q: no member m", in)
				}
				skipped = r.skip()
				if !r.more('}') || string(r.key()) != "n" || r.int64() != 1 || r.more('}') {
					r.fail()
				}
			case `[`:
				if !r.openArray() {
					t.Fatalf("%q: no element", in)
				}
				skipped = r.skip()
				if !r.more(']') || r.int64() != 1 || r.more(']') {
					r.fail()
				}
			}
			if !r.end() || !bytes.Equal(skipped, trimmed) {
				t.Fatalf("skip in %q: passed over %q (ok %v), want %q", in, skipped, r.ok, trimmed)
			}
		}
	})
}

// TestJSONReaderGivesUpForGood: after the reader gave up, every read
// reads nothing and reports nothing read, so a decoder built on it needs
// to check ok only at the end.
func TestJSONReaderGivesUpForGood(t *testing.T) {
	reads := map[string]func(r *jsonReader) bool{
		"openObject": func(r *jsonReader) bool { return r.openObject() },
		"openArray":  func(r *jsonReader) bool { return r.openArray() },
		"more":       func(r *jsonReader) bool { return r.more('}') },
		"key":        func(r *jsonReader) bool { return r.key() != nil },
		"str":        func(r *jsonReader) bool { return r.str() != "" },
		"int64":      func(r *jsonReader) bool { return r.int64() != 0 },
		"bool":       func(r *jsonReader) bool { return r.bool() },
		"null":       func(r *jsonReader) bool { return r.null() },
		"skip":       func(r *jsonReader) bool { return r.skip() != nil },
		"end":        func(r *jsonReader) bool { return r.end() },
	}
	for name, read := range reads {
		t.Run(name, func(t *testing.T) {
			for _, in := range []string{`{"a":1}`, `[1]`, `"a":1`, `1,`, `true`, `null`, `"a"`, ``} {
				r := newJSONReader([]byte(in))
				r.fail()
				if read(&r) || r.ok || r.i != 0 {
					t.Errorf("%s on %q after the reader gave up: read something (at %d, ok %v)", name, in, r.i, r.ok)
				}
			}
		})
	}
}
