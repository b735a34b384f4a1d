package api

import (
	"encoding/json"
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
