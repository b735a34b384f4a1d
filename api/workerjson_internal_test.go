package api

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/wasmtask/wasmtask/plugins"
)

// TestLeaseResponseJSONMatchesEncoder: the hand-written lease response is
// byte for byte what encoding/json writes (plus writeJSON's final
// newline, without its indentation), on responses filled at random; a
// field added to LeaseResponse, Lease or ResultStatus and not to
// workerjson.go fails it.
func TestLeaseResponseJSONMatchesEncoder(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	manifests := []*plugins.Manifest{nil, {}, {Placement: "remote", Env: map[string]string{"B": "<b>", "A": "grüße"}, Args: []string{"x", "\xff"},
		Limits: plugins.ManifestLimits{}, Config: map[string]string{"k": "v"}}}
	inputs := [][]byte{nil, {}, []byte("hi"), {0, 1, 2, 0xff, 0xfe}, make([]byte, 100)}
	var cache manifestCache
	for i := range 3000 {
		var out LeaseResponse
		fill(r, reflect.ValueOf(&out.Results).Elem())
		fill(r, reflect.ValueOf(&out.LeaseTimeoutMs).Elem())
		fill(r, reflect.ValueOf(&out.HeartbeatMs).Elem())
		if r.IntN(4) > 0 {
			out.Leases = make([]Lease, r.IntN(4))
		}
		for j := range out.Leases {
			l := reflect.ValueOf(&out.Leases[j]).Elem()
			for f := range l.NumField() {
				if fd := l.Type().Field(f); fd.IsExported() && fd.Name != "Manifest" && fd.Name != "Input" {
					fill(r, l.Field(f))
				}
			}
			out.Leases[j].Manifest = manifests[r.IntN(len(manifests))]
			out.Leases[j].Input = inputs[r.IntN(len(inputs))]
		}
		want, err := json.Marshal(out)
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		writeLeaseResponse(rec, &out, &cache)
		if got := rec.Body.String(); got != string(want)+"\n" {
			t.Fatalf("case %d: hand-written JSON differs from encoding/json\ngot:\n%s\nwant:\n%s", i, got, want)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("Content-Type %q", ct)
		}
	}
}

// TestDecodeLeaseResponseMatchesEncoding: the worker's hand-written
// decoder gives what encoding/json gives, or gives up (and the client
// falls back to encoding/json): on responses filled at random, as the
// server writes them, indented, and with members it does not know; a
// response of plain strings (what servers send) never makes it give up.
func TestDecodeLeaseResponseMatchesEncoding(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	manifests := []*plugins.Manifest{nil, {}, {Placement: "remote", Env: map[string]string{"B": "<b>\n"}, Args: []string{"x"}}}
	inputs := [][]byte{nil, {}, []byte("hi"), {0, 1, 2, 0xff, 0xfe}}
	var cache manifestCache
	plain := func(s string) bool {
		for _, c := range []byte(s) {
			if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				return false
			}
		}
		return true
	}
	gaveUp := 0
	for i := range 3000 {
		var in LeaseResponse
		fill(r, reflect.ValueOf(&in.Results).Elem())
		fill(r, reflect.ValueOf(&in.LeaseTimeoutMs).Elem())
		fill(r, reflect.ValueOf(&in.HeartbeatMs).Elem())
		if r.IntN(4) > 0 {
			in.Leases = make([]Lease, r.IntN(4))
		}
		for j := range in.Leases {
			l := reflect.ValueOf(&in.Leases[j]).Elem()
			for f := range l.NumField() {
				if fd := l.Type().Field(f); fd.IsExported() && fd.Name != "Manifest" && fd.Name != "Input" {
					fill(r, l.Field(f))
				}
			}
			in.Leases[j].Manifest = manifests[r.IntN(len(manifests))]
			in.Leases[j].Input = inputs[r.IntN(len(inputs))]
		}
		compact := appendLeaseResponse(nil, &in, &cache)
		indented, _ := json.MarshalIndent(in, "", "  ")
		unknown := append([]byte(`{"extra": 1, `), compact[1:]...)
		for _, body := range [][]byte{compact, indented, unknown} {
			got, raws, ok := decodeLeaseResponse(body)
			if !ok {
				gaveUp++
				continue
			}
			var want LeaseResponse
			if err := json.Unmarshal(body, &want); err != nil {
				t.Fatal(err)
			}
			for j := range got.Leases {
				if raws[j] != nil {
					got.Leases[j].Manifest = new(plugins.Manifest)
					if err := json.Unmarshal(raws[j], got.Leases[j].Manifest); err != nil {
						t.Fatalf("case %d: manifest %q: %v", i, raws[j], err)
					}
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("case %d: decoded\n%+v\nencoding/json:\n%+v\nfrom %s", i, got, want, body)
			}
		}
		if _, _, ok := decodeLeaseResponse(unknown); ok {
			t.Fatalf("case %d: an unknown member was not refused", i)
		}
		allPlain := true
		for _, l := range in.Leases {
			for _, s := range []string{l.Lease, l.Task, l.Run, l.Handler, l.Plugin, l.Version, l.Parent} {
				allPlain = allPlain && plain(s)
			}
			for k, v := range l.Labels {
				allPlain = allPlain && plain(k) && plain(v)
			}
		}
		for _, rs := range in.Results {
			allPlain = allPlain && plain(rs.Lease) && plain(rs.Status) && plain(rs.Error)
		}
		if _, _, ok := decodeLeaseResponse(compact); allPlain && !ok {
			t.Fatalf("case %d: gave up on plain strings: %s", i, compact)
		}
	}
	if gaveUp == 3*3000 {
		t.Fatal("the decoder gave up on every response")
	}
}

// BenchmarkDecodeLeaseResponse: a response of 64 leases of wasmtask
// bench's no-op tasks (a manifest, labels, a small input), as the worker
// decodes it: the hand-written decoder, and encoding/json for scale.
//
//	go test -run='^$' -bench=DecodeLeaseResponse -benchmem ./api/
func BenchmarkDecodeLeaseResponse(b *testing.B) {
	out := LeaseResponse{LeaseTimeoutMs: 30000, HeartbeatMs: 10000, Results: []ResultStatus{{Lease: "l-00000000000000ff", Status: "ok"}}}
	manifest := &plugins.Manifest{Placement: "remote"}
	for i := range 64 {
		out.Leases = append(out.Leases, Lease{
			Lease: fmt.Sprintf("l-%016x", i), Task: fmt.Sprintf("t-%016x", i), Run: fmt.Sprintf("r-%016x", i),
			Attempt: 1, MaxAttempts: 3, Handler: "bench-noop", Plugin: "bench-noop", Version: "sha256:0123456789abcdef",
			Manifest: manifest, Input: []byte("hello"), TimeoutMs: 30000, RemainingMs: 29998,
			Labels: map[string]string{"wasmtask-bench": "20261204T073017.436Z"},
		})
	}
	var cache manifestCache
	body := appendLeaseResponse(nil, &out, &cache)
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if got, _, ok := decodeLeaseResponse(body); !ok || len(got.Leases) != 64 {
				b.Fatalf("%d leases, ok %v", len(got.Leases), ok)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var got LeaseResponse
			if err := json.Unmarshal(body, &got); err != nil || len(got.Leases) != 64 {
				b.Fatalf("%d leases, %v", len(got.Leases), err)
			}
		}
	})
}

// FuzzDecodeLeaseResponse: whatever the worker's hand-written decoder
// accepts, encoding/json decodes to the same response (the manifests
// decoded as Client.WorkerLease decodes them), or refuses too where a
// manifest does not decode.
func FuzzDecodeLeaseResponse(f *testing.F) {
	var cache manifestCache
	for _, out := range []LeaseResponse{
		{},
		{Leases: []Lease{}, LeaseTimeoutMs: 30000, HeartbeatMs: 10000},
		{Leases: []Lease{{Lease: "l1", Task: "t1", Run: "r1", Attempt: 1, MaxAttempts: 3, Handler: "h", Plugin: "h", Version: "v",
			Manifest: &plugins.Manifest{Placement: "remote", Env: map[string]string{"A": "<b>\n"}}, Input: []byte("hi"),
			TimeoutMs: 100, RemainingMs: -1, Labels: map[string]string{"a": "1"}, Parent: "p"}},
			Results: []ResultStatus{{Lease: "l0", Status: "conflict", Error: "gone"}}},
	} {
		f.Add(appendLeaseResponse(nil, &out, &cache))
	}
	for _, s := range []string{`{"leases":null,"results":null}`, `{"leases":[{"manifest":}]}`, `{"leases":[{"manifest":,"task":"t"}]}`, `{"leases":[{"manifest":tru}]}`,
		`{"leases":[{"attempt":01}]}`, `{"leases":[{"input":"aGk"}]}`, `{"leases":[{"labels":{"a":"1"},"labels":{"b":"2"}}]}`,
		`{"leases":[{"Lease":"x"}]}`, `{"heartbeat_ms":1.5}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, raws, ok := decodeLeaseResponse(b)
		if !ok {
			return
		}
		var want LeaseResponse
		stdErr := json.Unmarshal(b, &want)
		for j, raw := range raws {
			if len(raw) == 0 || string(raw) == "null" {
				continue
			}
			got.Leases[j].Manifest = new(plugins.Manifest)
			if err := json.Unmarshal(raw, got.Leases[j].Manifest); err != nil {
				if stdErr == nil {
					t.Fatalf("%q: manifest %q does not decode (%v), encoding/json decodes the response", b, raw, err)
				}
				return
			}
		}
		if stdErr != nil {
			t.Fatalf("the hand-written decoder accepted %q, encoding/json refuses it: %v", b, stdErr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q decoded differently:\n%+v\nencoding/json:\n%+v", b, got, want)
		}
	})
}
