package api

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/wasmtask/wasmtask/dispatch"
)

var specFastSeeds = []string{
	`{"handler":"bench-noop","labels":{"wasmtask-bench":"20261204T073017.436Z"}}`,
	`{"handler": "resize", "input": "hello", "max_attempts": 3, "timeout": "10s", "priority": -5}`,
	`{"id":"job-1","handler":"h","input_b64":"aGk=","concurrency_key":"k","not_before":"2030-01-02T03:04:05Z","tolerate_child_failures":true}`,
	` { "handler" : "h" , "labels" : { } } `,
	`{"handler":"h","labels":{"a":"1","a":"2"}}`,
	`{}`,
	`{"handler":"h","max_attempts":0}`,
	`{"handler":"h","max_attempts":-0}`,
	`{"handler":"h","max_attempts":1.5}`,
	`{"handler":"h","max_attempts":1e2}`,
	`{"handler":"h","max_attempts":01}`,
	`{"handler":"h","priority":99999999999999999999}`,
	`{"handler":"h","input":"a\"b"}`,
	`{"handler":"h","input":"\u00e9"}`,
	`{"handler":"h","input":null}`,
	`{"Handler":"h"}`,
	`{"handler":"h","handler":"g"}`,
	`{"handler":"h","unknown":1}`,
	`{"handler":"h"} {}`,
	`{"handler":"h",}`,
	`{"handler":"h","run_policy":{"once":{}}}`,
	`{"handler":"h","after":["a"]}`,
	`{"handler":"h","tolerate_child_failures":tru}`,
	`{"handler":"h","labels":{"k":1}}`,
	"{\"handler\":\"h\",\"input\":\"tab\there\"}",
	"{\"handler\":\"h\",\"input\":\"bad \xff\"}",
	`[]`, `"x"`, ``, `{`, `{"handler"`, `{"handler":`, `{"handler":"h"`,
}

// FuzzDecodeSpecFast: whatever the fast decoder accepts, the full decoder
// decodes to the same spec (and whatever it refuses goes to the full one).
func FuzzDecodeSpecFast(f *testing.F) {
	for _, s := range specFastSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := decodeSpecFast(b)
		if !ok {
			return
		}
		full, err := dispatch.DecodeSpecJSON(b)
		if err != nil {
			t.Fatalf("fast decoder accepted %q, the full one refuses it: %v", b, err)
		}
		if d := cmp.Diff(full, fast); d != "" {
			t.Fatalf("%q decoded differently (-full +fast):\n%s", b, d)
		}
	})
}

// TestDecodeSpecFastTakesTheUsualSpecs: the specs of wasmtask bench, the
// Go client and the docs' examples take the fast path.
func TestDecodeSpecFastTakesTheUsualSpecs(t *testing.T) {
	for _, s := range specFastSeeds[:5] {
		if _, ok := decodeSpecFast([]byte(s)); !ok {
			t.Errorf("%s: not decoded by the fast path", s)
		}
	}
	for _, s := range []string{`{"handler":"h","max_attempts":0}`, `{"Handler":"h"}`, `{"handler":"h","run_policy":{"once":{}}}`,
		`{"handler":"h","input":"a\"b"}`, `{"handler":"h"} {}`} {
		if _, ok := decodeSpecFast([]byte(s)); ok {
			t.Errorf("%s: decoded by the fast path, which must leave it to the full decoder", s)
		}
	}
}

// BenchmarkDecodeTaskSpec: the spec wasmtask bench submits, through the
// full decoder (encoding/json) and DecodeTaskSpec (the fast path).
//
//	go test -run='^$' -bench=DecodeTaskSpec ./api/
func BenchmarkDecodeTaskSpec(b *testing.B) {
	in := []byte(specFastSeeds[0])
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := dispatch.DecodeSpecJSON(in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeTaskSpec(in); err != nil {
				b.Fatal(err)
			}
		}
	})
}
