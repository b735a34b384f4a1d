package machine

import (
	"strings"
	"testing"
)

// TestSpecInputRef: a spec whose input is in the payload store is checked
// (a well-formed reference, no inline input beside it, a size within the
// limit), and it is the same submission as the spec with the input inline
// (a log written before payloads spilled), but not as one with other bytes.
func TestSpecInputRef(t *testing.T) {
	input := []byte(strings.Repeat("payload", 1000))
	ref := PayloadRefOf(input)
	base := TaskSpec{ID: "t", Handler: "h"}
	for _, tc := range []struct {
		name  string
		spec  func(s *TaskSpec)
		field string // "" when valid
	}{
		{"ref", func(s *TaskSpec) { s.InputRef, s.InputSize = ref, int64(len(input)) }, ""},
		{"empty ref with size", func(s *TaskSpec) { s.InputSize = 5 }, "input_ref"},
		{"bad ref", func(s *TaskSpec) { s.InputRef, s.InputSize = "sha256:../../etc/passwd", 5 }, "input_ref"},
		{"ref and inline input", func(s *TaskSpec) { s.InputRef, s.InputSize, s.Input = ref, 3, []byte("abc") }, "input_ref"},
		{"size past the limit", func(s *TaskSpec) { s.InputRef, s.InputSize = ref, MaxInputBytes+1 }, "input_size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := base
			tc.spec(&s)
			err := s.Normalize()
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			ve, ok := err.(*ValidationError)
			if !ok || ve.Field != tc.field {
				t.Fatalf("Normalize: %v, want a ValidationError on %s", err, tc.field)
			}
		})
	}

	spilled, inline, other := base, base, base
	spilled.InputRef, spilled.InputSize = ref, int64(len(input))
	inline.Input = input
	other.Input = append([]byte("x"), input[1:]...)
	for _, s := range []*TaskSpec{&spilled, &inline, &other} {
		if err := s.Normalize(); err != nil {
			t.Fatal(err)
		}
	}
	if !spilled.SameAs(&inline) || !inline.SameAs(&spilled) || !spilled.SameAs(&spilled) {
		t.Error("a spilled input and the same bytes inline are different submissions")
	}
	if spilled.SameAs(&other) || other.SameAs(&spilled) {
		t.Error("a spilled input equals other bytes inline")
	}
}
