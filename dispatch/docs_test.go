package dispatch

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestSpecFieldsDocumented: every JSON field of the task spec, nested ones
// included, is in docs/task-spec.md.
func TestSpecFieldsDocumented(t *testing.T) {
	b, err := os.ReadFile("../docs/task-spec.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, path := range jsonFields(reflect.TypeFor[SpecJSON](), "") {
		leaf := path[strings.LastIndex(path, ".")+1:]
		if !strings.Contains(doc, "`"+path+"`") && !strings.Contains(doc, "`"+leaf+"`") {
			t.Errorf("task spec field %s is not in docs/task-spec.md: add it to the fields table", path)
		}
	}
}

// jsonFields lists the JSON field paths of a struct type, nested structs
// (through pointers and slices) as "outer.inner".
func jsonFields(typ reflect.Type, prefix string) []string {
	var out []string
	for f := range typ.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		out = append(out, prefix+name)
		ft := f.Type
		for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft.NumField() > 0 {
			out = append(out, jsonFields(ft, prefix+name+".")...)
		}
	}
	return out
}
