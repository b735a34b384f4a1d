package api

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
)

// encoderJSON is what writeJSON writes for v.
func encoderJSON(t *testing.T, v any) string {
	t.Helper()
	rec := httptest.NewRecorder()
	writeJSON(rec, 200, v)
	return rec.Body.String()
}

func builtJSON(build func(o *indentedJSON)) string {
	rec := httptest.NewRecorder()
	writeBuilt(rec, 200, build)
	return rec.Body.String()
}

// randomStrings are the texts a field gets: plain, empty, escapes, HTML
// characters, non-ASCII, invalid UTF-8, line separators.
var randomStrings = []string{"", "x", "01KBMX8ZJ0W0Q3E0G6Z0S1K8PQ#1", "2026-12-04T07:40:00.123Z", `a "quoted" \ path`,
	"<b>&amp;</b>", "grüße ☃", "bad \xff byte", "tab\there\nnewline\x00", "\u2028\u2029", "{\"json\": [1]}"}

// fill sets v (a pointer's target) to random values, every field of every
// struct included, with nil and empty slices, maps and pointers among them.
func fill(r *rand.Rand, v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(randomStrings[r.IntN(len(randomStrings))])
	case reflect.Int, reflect.Int64:
		v.SetInt([]int64{0, 0, 1, 3, -7, 1 << 40}[r.IntN(6)])
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 0)
	case reflect.Float64:
		v.SetFloat([]float64{0, 0.5, 1e-9}[r.IntN(3)])
	case reflect.Pointer:
		if r.IntN(3) == 0 {
			return // nil
		}
		p := reflect.New(v.Type().Elem())
		fill(r, p.Elem())
		v.Set(p)
	case reflect.Slice:
		switch r.IntN(4) {
		case 0: // nil
		case 1:
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		default:
			n := 1 + r.IntN(3)
			s := reflect.MakeSlice(v.Type(), n, n)
			for i := range n {
				fill(r, s.Index(i))
			}
			v.Set(s)
		}
	case reflect.Map:
		switch r.IntN(3) {
		case 0: // nil
		default:
			m := reflect.MakeMap(v.Type())
			for range r.IntN(4) {
				k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
				fill(r, k)
				fill(r, e)
				m.SetMapIndex(k, e)
			}
			v.Set(m)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(r, v.Field(i))
			}
		}
	default:
		panic("fill: no rule for " + v.Kind().String())
	}
}

// TestViewJSONMatchesEncoder: the hand-written responses are byte for byte
// what encoding/json writes, on views filled at random (a field added to
// TaskView, RunView, AttemptView or BatchResult and not to viewjson.go
// fails this test).
func TestViewJSONMatchesEncoder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name  string
		value func() any
		built func(v any) func(o *indentedJSON)
	}{
		{name: "task view", value: func() any {
			var v TaskView
			fill(r, reflect.ValueOf(&v).Elem())
			return v
		}, built: func(v any) func(o *indentedJSON) {
			tv := v.(TaskView)
			return func(o *indentedJSON) { o.taskView(&tv) }
		}},
		{name: "batch results", value: func() any {
			var v []BatchResult
			for len(v) == 0 {
				fill(r, reflect.ValueOf(&v).Elem())
			}
			return v
		}, built: func(v any) func(o *indentedJSON) {
			return func(o *indentedJSON) { o.batchResults(v.([]BatchResult)) }
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i := range 2000 {
				v := tc.value()
				var want string
				if res, ok := v.([]BatchResult); ok {
					want = encoderJSON(t, map[string]any{"results": res})
				} else {
					want = encoderJSON(t, v)
				}
				got := builtJSON(tc.built(v))
				if got != want {
					t.Fatalf("case %d: hand-written JSON differs from encoding/json\ngot:\n%s\nwant:\n%s", i, got, want)
				}
				if !json.Valid([]byte(got)) {
					t.Fatalf("case %d: invalid JSON %s", i, got)
				}
			}
		})
	}
}

// TestViewJSONEmptyAndNested: the shapes a random fill may miss: no runs,
// a run without attempts, a run policy, labels whose keys need sorting.
func TestViewJSONEmptyAndNested(t *testing.T) {
	three := 3
	views := []TaskView{
		{},
		{Runs: []RunView{}, Children: []string{}},
		{Runs: []RunView{{ID: "a#1", Attempts: []AttemptView{}}}, Children: []string{"c"}},
		{Labels: map[string]string{"z": "1", "a": "2", "m<": "&"}, RunPolicy: &RunPolicy{Repeat: &RepeatSpec{Count: three, Every: "1s"}}},
		{RunPolicy: &RunPolicy{Once: &struct{}{}}, Runs: []RunView{{Attempts: []AttemptView{{Number: 1, Retryable: true}}}}},
	}
	for i, v := range views {
		want := encoderJSON(t, v)
		if got := builtJSON(func(o *indentedJSON) { o.taskView(&v) }); got != want {
			t.Errorf("view %d:\ngot:\n%s\nwant:\n%s", i, got, want)
		}
	}
	if got, want := builtJSON(func(o *indentedJSON) { o.batchResults([]BatchResult{}) }), encoderJSON(t, map[string]any{"results": []BatchResult{}}); got != want {
		t.Errorf("empty batch:\ngot:\n%s\nwant:\n%s", got, want)
	}
}

// BenchmarkTaskViewJSON: a just-submitted task's view, as POST /v1/tasks
// answers it, through encoding/json (writeJSON) and by hand.
//
//	go test -run='^$' -bench=TaskViewJSON ./api/
func BenchmarkTaskViewJSON(b *testing.B) {
	v := TaskView{ID: "01KBMX8ZJ0W0Q3E0G6Z0S1K8PQ", Handler: "bench-noop", State: "pending", Children: []string{},
		SubmittedAt: "2026-12-04T07:40:00.123Z", MaxAttempts: 1, Labels: map[string]string{"wasmtask-bench": "20261204T073017.436Z"},
		Runs: []RunView{{ID: "01KBMX8ZJ0W0Q3E0G6Z0S1K8PQ#1", Index: 1, State: "ready", Attempts: []AttemptView{}}}}
	w := discardWriter{}
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			writeJSON(w, 201, v)
		}
	})
	b.Run("hand-written", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			writeTaskView(w, 201, v)
		}
	})
}

type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (discardWriter) WriteHeader(int)             {}
