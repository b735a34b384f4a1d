package plugins_test

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/wasmtask/wasmtask/plugins"
)

// TestManifestFieldsDocumented: every manifest field, nested ones as
// "limits.timeout", is in docs/manifest.md.
func TestManifestFieldsDocumented(t *testing.T) {
	b, err := os.ReadFile("../docs/manifest.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	var walk func(typ reflect.Type, prefix string)
	walk = func(typ reflect.Type, prefix string) {
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			if !strings.Contains(doc, "`"+prefix+name+"`") {
				t.Errorf("manifest field %s is not in docs/manifest.md: add a row saying what it does, its default and bounds", prefix+name)
			}
			ft := f.Type
			for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				walk(ft, prefix+name+".")
			}
		}
	}
	walk(reflect.TypeFor[plugins.Manifest](), "")
}
