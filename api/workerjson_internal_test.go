package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

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

// randomWorkerRequests returns n lease and result requests filled at
// random (strings from randomStrings, so some need escapes; times with
// and without fractions and offsets; children as the host writes them),
// marshaled as the client marshals them.
func randomWorkerRequests(r *rand.Rand, n int) (bodies [][]byte) {
	for _, v := range randomWorkerRequestValues(r, n) {
		b, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		bodies = append(bodies, b)
	}
	return bodies
}

// randomWorkerRequestValues returns n lease and result requests filled at
// random (see randomWorkerRequests).
func randomWorkerRequestValues(r *rand.Rand, n int) (reqs []any) {
	str := func() string { return randomStrings[r.IntN(len(randomStrings))] }
	times := []time.Time{{}, time.Date(2026, 12, 4, 16, 0, 0, 123456789, time.UTC), time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("", 3600))}
	bytesOf := [][]byte{nil, {}, []byte("hi"), {0, 1, 2, 0xff}}
	hello := func() WorkerHello {
		h := WorkerHello{Worker: str(), Name: str(), Concurrency: r.IntN(20), Ahead: r.IntN(3) * 100}
		switch r.IntN(3) {
		case 1:
			h.Handlers = []string{}
		case 2:
			h.Handlers = []string{str(), str()}
		}
		return h
	}
	results := func() []WorkerResult {
		if r.IntN(4) == 0 {
			return nil
		}
		out := make([]WorkerResult, r.IntN(4))
		for i := range out {
			out[i] = WorkerResult{Lease: str(), Outcome: []string{"ok", "failed", "trap"}[r.IntN(3)], Retryable: r.IntN(2) == 0,
				Output: bytesOf[r.IntN(len(bytesOf))], Log: bytesOf[r.IntN(len(bytesOf))], StartedAt: times[r.IntN(len(times))],
				FinishedAt: times[r.IntN(len(times))]}
			if r.IntN(2) == 0 {
				out[i].Error, out[i].Module = str(), str()
			}
			switch r.IntN(3) {
			case 1:
				out[i].Children = []json.RawMessage{}
			case 2:
				out[i].Children = []json.RawMessage{json.RawMessage(`{"handler":"child","input":"x"}`), json.RawMessage(`{"handler":"c2","labels":{"a":"b"}}`)}
			}
		}
		return out
	}
	for range n {
		var v any
		if r.IntN(2) == 0 {
			req := LeaseRequest{WorkerHello: hello(), Max: r.IntN(300), Results: results()}
			if r.IntN(2) == 0 {
				req.WaitMs = new(int64)
				*req.WaitMs = int64(r.IntN(6000))
			}
			v = req
		} else {
			v = ResultRequest{WorkerHello: hello(), Results: results()}
		}
		reqs = append(reqs, v)
	}
	return reqs
}

// checkWorkerRequestDecoders decodes b with the hand-written decoders
// and, where they do not give up, with encoding/json: the two must agree
// (and encoding/json must accept what they accept). It returns whether
// the lease (or result) decoder took b.
func checkWorkerRequestDecoders(t *testing.T, b []byte) (leaseOK, resultOK bool) {
	t.Helper()
	if got, ok := decodeLeaseRequest(b); ok {
		var want LeaseRequest
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("the lease request decoder accepted %q, encoding/json refuses it: %v", b, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q decoded differently as a lease request:\n%+v\nencoding/json:\n%+v", b, got, want)
		}
		leaseOK = true
	}
	if got, ok := decodeResultRequest(b); ok {
		var want ResultRequest
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("the result request decoder accepted %q, encoding/json refuses it: %v", b, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q decoded differently as a result request:\n%+v\nencoding/json:\n%+v", b, got, want)
		}
		resultOK = true
	}
	return leaseOK, resultOK
}

// TestDecodeWorkerRequestsMatchEncoding: the server's hand-written
// decoders of lease and result requests give what encoding/json gives, or
// give up (unmarshalWorkerBody then uses encoding/json), on requests
// filled at random, as clients write them and indented; and they do not
// give up on what a worker sends for no-op tasks.
func TestDecodeWorkerRequestsMatchEncoding(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	took := 0
	for _, b := range randomWorkerRequests(r, 4000) {
		var indented bytes.Buffer
		if err := json.Indent(&indented, b, "", "  "); err != nil {
			t.Fatal(err)
		}
		for _, body := range [][]byte{b, indented.Bytes()} {
			if l, res := checkWorkerRequestDecoders(t, body); l || res {
				took++
			}
		}
	}
	if took == 0 {
		t.Fatal("the decoders gave up on every request")
	}
	now := time.Now()
	typical := LeaseRequest{WorkerHello: WorkerHello{Worker: "9a514420b78c", Name: "w1", Concurrency: 16, Ahead: 40}, Max: 20, WaitMs: new(int64),
		Results: []WorkerResult{{Lease: "01KBMX8ZJ0W0Q3E0G6Z0S1K8PQ#1.1.2d1c3f35b1877e31", Outcome: "ok", Module: "sha256:7a70", StartedAt: now, FinishedAt: now}}}
	b, _ := json.Marshal(typical)
	if _, ok := decodeLeaseRequest(b); !ok {
		t.Fatalf("gave up on a worker's lease request: %s", b)
	}
	b, _ = json.Marshal(ResultRequest{WorkerHello: typical.WorkerHello, Results: typical.Results})
	if _, ok := decodeResultRequest(b); !ok {
		t.Fatalf("gave up on a worker's result request: %s", b)
	}
}

func FuzzDecodeWorkerRequest(f *testing.F) {
	for _, b := range randomWorkerRequests(rand.New(rand.NewPCG(9, 10)), 12) {
		f.Add(b)
	}
	for _, s := range []string{`{"results":[{"lease":"a","error":"x"}],"results":[{"lease":"b"}]}`, `{"handlers":["a"],"handlers":null}`,
		`{"Max":1}`, `{"max":1.0}`, `{"wait_ms":null,"wait_ms":5}`, `{"results":[{"started_at":null}]}`, `{"results":[{"started_at":"2026-12-04T16:00:00Z"}]}`,
		`{"results":[{"started_at":"2026-12-04 16:00:00Z"}]}`, `{"results":[{"output":"aGk"}]}`, `{"results":[{"children":[null]}]}`,
		`{"results":[{"children":[{"a":1},]}]}`, `{"results":[{"children":[{"a":tru}]}]}`, `{"results":[{"retryable":null}]}`, `{"concurrency":01}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkWorkerRequestDecoders(t, b)
	})
}

// BenchmarkDecodeWorkerRequest: a lease request carrying 64 results of
// no-op attempts, as the server decodes it: by hand, and with
// encoding/json for scale.
//
//	go test -run='^$' -bench=DecodeWorkerRequest -benchmem ./api/
func BenchmarkDecodeWorkerRequest(b *testing.B) {
	now := time.Now()
	req := LeaseRequest{WorkerHello: WorkerHello{Worker: "9a514420b78c", Name: "w1", Concurrency: 16, Ahead: 40}, Max: 64, WaitMs: new(int64)}
	for i := range 64 {
		req.Results = append(req.Results, WorkerResult{Lease: fmt.Sprintf("01KBMX8ZJ0W0Q3E0G6Z0S1K8PQ#%d.1.2d1c3f35b1877e31", i), Outcome: "ok",
			Module: "sha256:7a70028e3c44af996c36c903afdba05d3b466359ed8a582194b9ccc3b4f1123f", StartedAt: now, FinishedAt: now})
	}
	body, _ := json.Marshal(req)
	b.Run("hand", func(b *testing.B) {
		for b.Loop() {
			if _, ok := decodeLeaseRequest(body); !ok {
				b.Fatal("gave up")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			var out LeaseRequest
			if err := json.Unmarshal(body, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestWorkerRequestJSONMatchesEncoder: the worker's hand-written lease
// and result requests are byte for byte what json.Marshal writes, on
// requests filled at random; where it declines (a time or a child
// json.Marshal would write otherwise or refuse), json.Marshal is used.
func TestWorkerRequestJSONMatchesEncoder(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	reqs := randomWorkerRequestValues(r, 4000)
	odd := ResultRequest{WorkerHello: WorkerHello{Worker: "w", Name: "n", Concurrency: 1}, Results: []WorkerResult{
		{Lease: "l", Outcome: "ok", StartedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Lease: "l", Outcome: "ok", StartedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 24*3600))},
		{Lease: "l", Outcome: "ok", Children: []json.RawMessage{json.RawMessage(`{ "handler": "<x>" }`)}},
	}}
	for _, res := range odd.Results {
		reqs = append(reqs, ResultRequest{WorkerHello: odd.WorkerHello, Results: []WorkerResult{res}})
	}
	declined := 0
	for i, v := range reqs {
		got, ok := v.(jsonAppender).appendJSON(nil)
		want, err := json.Marshal(v)
		if !ok {
			declined++
			continue
		}
		if err != nil {
			t.Fatalf("case %d: written by hand, json.Marshal refuses it: %v", i, err)
		}
		if string(got) != string(want) {
			t.Fatalf("case %d: hand-written JSON differs from encoding/json\ngot:\n%s\nwant:\n%s", i, got, want)
		}
	}
	if declined != len(odd.Results) {
		t.Fatalf("declined %d requests, want the %d odd ones", declined, len(odd.Results))
	}
}
