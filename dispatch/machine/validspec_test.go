package machine

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestToValidSpecIsToSpec: a JSON spec checked once into a ValidSpec is
// the spec ToSpec makes of it (defaults filled in), and a bad one gets
// ToSpec's error, naming the same field with the same words, whether the
// JSON-only checks or Normalize refuse it.
func TestToValidSpecIsToSpec(t *testing.T) {
	for _, doc := range []string{
		`{"handler":"h"}`,
		`{"id":"a","handler":"h","input":"x","max_attempts":5,"timeout":"2s","priority":-3,"labels":{"k":"v"}}`,
		`{"handler":"h","run_policy":{"repeat":{"count":3,"every":"1s"}},"backoff":{"kind":"fixed","base":"10ms"}}`,
		`{"handler":"h","run_policy":{"cron":{"expr":"*/5 * * * *"}},"after":["a","b"],"concurrency_key":"k"}`,
		`{"handler":"h","not_before":"2030-01-02T03:04:05Z","tolerate_child_failures":true}`,
		// refused by the JSON-only checks
		`{"input":"x"}`, `{"handler":"h","input":"x","input_b64":"eA=="}`, `{"handler":"h","timeout":"soon"}`,
		`{"handler":"h","not_before":"tomorrow"}`, `{"handler":"h","input_b64":"!"}`,
		// refused by Normalize
		`{"handler":"Bad Handler"}`, `{"id":"-x","handler":"h"}`, `{"handler":"h","max_attempts":1000000}`,
		`{"handler":"h","after":["a","a"]}`, `{"handler":"h","run_policy":{"repeat":{"count":0}}}`,
		`{"handler":"h","backoff":{"jitter":2}}`, `{"handler":"h","labels":{"":"v"}}`,
		`{"handler":"h","run_policy":{"cron":{"expr":"not cron"}}}`,
	} {
		t.Run(doc, func(t *testing.T) {
			js, err := DecodeSpecJSON([]byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			want, wantErr := js.ToSpec()
			got, err := js.ToValidSpec()
			if wantErr != nil {
				if err == nil || err.Error() != wantErr.Error() {
					t.Fatalf("ToValidSpec: %v, want ToSpec's error %v", err, wantErr)
				}
				if got.Handler() != "" {
					t.Fatalf("ToValidSpec refused the spec and returned %+v", got.Spec())
				}
				return
			}
			if err != nil {
				t.Fatalf("ToValidSpec: %v (ToSpec accepts it)", err)
			}
			if d := cmp.Diff(want, got.Spec()); d != "" {
				t.Fatalf("(-ToSpec +ToValidSpec):\n%s", d)
			}
			if got.ID() != want.ID || got.Handler() != want.Handler {
				t.Fatalf("ID %q Handler %q, want %q %q", got.ID(), got.Handler(), want.ID, want.Handler)
			}
		})
	}
}

// TestValidateIsNormalize: Validate seals what Normalize makes of a Go
// spec (defaults filled in) and refuses what it refuses, with its error.
func TestValidateIsNormalize(t *testing.T) {
	for _, spec := range []TaskSpec{
		{Handler: "h"},
		{ID: "a", Handler: "h", MaxAttempts: 7, TimeoutMs: 5, Backoff: Backoff{BaseMs: 3}},
		{Handler: "h", Policy: RunPolicy{Kind: PolicyCron, CronExpr: "* * * * *"}},
		{Handler: ""}, {Handler: "h", MaxAttempts: -1}, {Handler: "h", TimeoutMs: -1},
		{Handler: "h", Policy: RunPolicy{Kind: "sometimes"}}, {Handler: "h", Labels: map[string]string{"k": "\xff"}},
	} {
		want := spec
		wantErr := want.Normalize()
		got, err := Validate(spec)
		switch {
		case wantErr != nil && (err == nil || err.Error() != wantErr.Error()):
			t.Errorf("%+v: Validate %v, want Normalize's error %v", spec, err, wantErr)
		case wantErr == nil && err != nil:
			t.Errorf("%+v: Validate %v, Normalize accepts it", spec, err)
		case wantErr == nil && !cmp.Equal(want, got.Spec()):
			t.Errorf("%+v: (-Normalize +Validate):\n%s", spec, cmp.Diff(want, got.Spec()))
		}
	}
}
