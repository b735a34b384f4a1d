package api

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestOpenAPIMatchesRoutes: every route the server registers is documented
// and every documented route is registered.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	registered := map[string]bool{}
	for _, r := range append((&Server{}).routes(), (&ClusterFront{}).routes()...) {
		if r.pattern == "/" {
			continue // the 404 catch-all
		}
		if !strings.Contains(r.pattern, " ") {
			t.Errorf("route %q has no method: document it with one", r.pattern)
			continue
		}
		registered[r.pattern] = true
	}
	documented := map[string]bool{}
	for _, op := range apiDocs() {
		key := op.method + " " + op.path
		if documented[key] {
			t.Errorf("%s is documented twice", key)
		}
		documented[key] = true
		if !registered[key] {
			t.Errorf("%s is in the OpenAPI document but the server does not register it", key)
		}
	}
	for key := range registered {
		if !documented[key] {
			t.Errorf("the server registers %s but the OpenAPI document (api/openapi.go apiDocs) does not describe it", key)
		}
	}
}

// TestOpenAPIExamples: every request and response example decodes strictly
// (no unknown field) into the type the server uses.
func TestOpenAPIExamples(t *testing.T) {
	strict := func(t *testing.T, what, example string, v any) {
		t.Helper()
		dec := json.NewDecoder(strings.NewReader(example))
		dec.DisallowUnknownFields()
		p := reflect.New(reflect.TypeOf(v))
		if err := dec.Decode(p.Interface()); err != nil {
			t.Errorf("%s example does not decode into %T: %v\n%s", what, v, err, example)
		}
	}
	n := 0
	for _, op := range apiDocs() {
		key := op.method + " " + op.path
		if op.requestExample != "" {
			strict(t, key+" request", op.requestExample, op.request)
			n++
		}
		for _, r := range op.responses {
			if r.example != "" {
				if r.body == nil {
					t.Errorf("%s %d has an example but no type", key, r.status)
					continue
				}
				strict(t, key+" response", r.example, r.body)
				n++
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d examples checked", n)
	}
}

// TestOpenAPIDocument: the served document is OpenAPI 3.1 JSON whose
// references all resolve.
func TestOpenAPIDocument(t *testing.T) {
	rec := httptest.NewRecorder()
	(&Server{}).openAPI(rec, httptest.NewRequest("GET", "/v1/openapi.json", nil))
	body := rec.Body.Bytes()
	var doc struct {
		OpenAPI    string                    `json:"openapi"`
		Paths      map[string]map[string]any `json:"paths"`
		Components struct {
			Schemas map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if doc.OpenAPI != "3.1.0" || len(doc.Paths) < 15 {
		t.Fatalf("openapi %q with %d paths", doc.OpenAPI, len(doc.Paths))
	}
	for _, ref := range regexp.MustCompile(`"\$ref": "#/components/schemas/([^"]+)"`).FindAllSubmatch(body, -1) {
		if _, ok := doc.Components.Schemas[string(ref[1])]; !ok {
			t.Errorf("unresolved $ref %s", ref[1])
		}
	}
	for _, want := range []string{`"TaskView"`, `"handler"`, `"run_policy"`, `"bearer"`} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("the document does not mention %s", want)
		}
	}
}
