package api

import (
	"fmt"
	"reflect"
	"strings"
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
	`{"handler":"h","priority":9223372036854775807}`,
	`{"handler":"h","max_attempts":-9223372036854775808}`,
	`{"handler":"h","priority":1234567890123456}`,
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

// TestDecodeSpecFastShared: decoding the specs of a batch with one shared
// string cache gives each the spec it gets alone; equal labels written
// alike share one map, other labels get their own; past the cache's bound
// strings are still right.
func TestDecodeSpecFastShared(t *testing.T) {
	specs := append([]string(nil), specFastSeeds...)
	specs = append(specs,
		`{"handler":"h","labels":{"a":"1"}}`,
		`{"handler":"h","labels":{"a":"1"}}`,
		`{"handler":"h","labels":{"a":"1","b":"2"}}`,
		`{"handler":"h","labels":{"a":"1"} ,"priority":2}`,
		`{"handler":"h","labels":{"a":"1"`,
		`{"handler":"h","labels":{"a":"1"}}`,
	)
	for i := range 2 * maxSharedStrings {
		specs = append(specs, fmt.Sprintf(`{"handler":"h%d","labels":{"k%d":"v%d"},"timeout":"%ds"}`, i, i, i, i+1))
	}
	var shared stringCache
	var prev map[string]string
	prevRaw := ""
	for _, s := range specs {
		want, wantOK := decodeSpecFast([]byte(s))
		got, ok := decodeSpecFastShared([]byte(s), &shared)
		if ok != wantOK {
			t.Fatalf("%s: ok %v shared, %v alone", s, ok, wantOK)
		}
		if !ok {
			continue
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("%s: decoded differently (-alone +shared):\n%s", s, d)
		}
		i := strings.Index(s, `"labels":`)
		raw := ""
		if i >= 0 {
			raw = s[i:]
		}
		same := got.Labels != nil && prev != nil && reflect.ValueOf(got.Labels).UnsafePointer() == reflect.ValueOf(prev).UnsafePointer()
		if want := raw != "" && strings.HasPrefix(raw, `"labels":{"a":"1"}`) && strings.HasPrefix(prevRaw, `"labels":{"a":"1"}`); same != want {
			t.Errorf("%s after %s: shares the previous labels map: %v, want %v", s, prevRaw, same, want)
		}
		if got.Labels != nil {
			prev, prevRaw = got.Labels, raw
		}
	}
	if len(shared.m) > maxSharedStrings {
		t.Errorf("the cache holds %d strings, more than its bound %d", len(shared.m), maxSharedStrings)
	}
}
