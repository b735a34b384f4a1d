package api

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestRoutesDocumented: every route the server registers is in
// docs/http-api.md, spelled as registered ("GET /v1/tasks/{id}").
func TestRoutesDocumented(t *testing.T) {
	doc := readDoc(t, "../docs/http-api.md")
	for _, r := range append((&Server{}).routes(), (&ClusterFront{}).routes()...) {
		if r.pattern == "/" {
			continue // the not-found answer
		}
		if !strings.Contains(doc, "`"+r.pattern+"`") {
			t.Errorf("route %s is not in docs/http-api.md: add a \"### `%s`\" section saying what it takes and answers", r.pattern, r.pattern)
		}
	}
}

// TestViewFieldsDocumented: every JSON field of the task view (task, run,
// attempt) is in docs/task-spec.md.
func TestViewFieldsDocumented(t *testing.T) {
	doc := readDoc(t, "../docs/task-spec.md")
	for _, typ := range []reflect.Type{reflect.TypeFor[TaskView](), reflect.TypeFor[RunView](), reflect.TypeFor[AttemptView]()} {
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			if !strings.Contains(doc, "`"+name+"`") {
				t.Errorf("%s field %q is not in docs/task-spec.md: add it to the table of the task view", typ.Name(), name)
			}
		}
	}
}

func readDoc(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
