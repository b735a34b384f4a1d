package machine

import (
	"strings"
	"testing"
)

// TestDecodeSpecJSONNamesFirstUnknownField: of several unknown members
// the error names the first in the document, every time (it named a
// random one when members were walked through a map).
func TestDecodeSpecJSONNamesFirstUnknownField(t *testing.T) {
	cases := []struct {
		name, doc, want, notWant string
	}{
		{"top level", `{"handler":"h","zeta":1,"alpha":2,"mid":3}`, "zeta", "alpha"},
		{"top level reversed", `{"alpha":2,"zeta":1,"handler":"h"}`, "alpha", "zeta"},
		{"nested", `{"handler":"h","run_policy":{"zz":1,"aa":2}}`, "zz", "aa"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for range 50 {
				_, err := DecodeSpecJSON([]byte(c.doc))
				if err == nil {
					t.Fatalf("DecodeSpecJSON(%s): no error", c.doc)
				}
				if msg := err.Error(); !strings.Contains(msg, c.want) || strings.Contains(msg, c.notWant) {
					t.Fatalf("DecodeSpecJSON(%s) = %q, want it to name %q only", c.doc, msg, c.want)
				}
			}
		})
	}
}
