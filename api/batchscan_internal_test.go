package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/wasmtask/wasmtask/dispatch"
)

// decodeBatch is decodeBatchInto with new slices (the handler passes
// pooled ones).
func (s *Server) decodeBatch(body io.Reader, length int64) (valid []dispatch.ValidSpec, entries []batchEntry, err error) {
	return s.decodeBatchInto(new(batchBuf), body, length)
}

// decodeBatchDecoder is decodeBatch as it was written with encoding/json's
// Decoder (tokens, and each element decoded into a RawMessage): the
// reference the batch scanner is compared with.
func (s *Server) decodeBatchDecoder(body io.Reader, length int64) (valid []dispatch.ValidSpec, entries []batchEntry, err error) {
	dec := json.NewDecoder(body)
	bad := func(field, format string, args ...any) error {
		return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	syntax := func(err error) error {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return bad("body", "the JSON ends too early")
		}
		return jsonFieldError(err)
	}
	if tok, err := dec.Token(); err != nil {
		return nil, nil, syntax(err)
	} else if tok != json.Delim('{') {
		return nil, nil, bad("body", `want an object {"tasks": [task spec, ...]}`)
	}
	seen := false
	var raw json.RawMessage // one buffer for every element
	var shared stringCache
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, syntax(err)
		}
		if key, _ := tok.(string); key != "tasks" {
			return nil, nil, bad(key, "unknown field (a batch is {\"tasks\": [task spec, ...]})")
		}
		if seen {
			return nil, nil, bad("tasks", "given twice")
		}
		seen = true
		if tok, err := dec.Token(); err != nil {
			return nil, nil, syntax(err)
		} else if tok != json.Delim('[') {
			return nil, nil, bad("tasks", "want an array of task specs")
		}
		for dec.More() {
			if len(entries) == maxBatchTasks {
				return nil, nil, bad("tasks", "at most %d tasks per batch", maxBatchTasks)
			}
			raw = raw[:0]
			if err := dec.Decode(&raw); err != nil {
				return nil, nil, syntax(err)
			}
			if entries == nil {
				// Sized for a batch of elements like the first: growing a
				// slice of specs (a few hundred bytes each) copies them all.
				n := min(maxBatchTasks, 16)
				if length > 0 {
					n = min(maxBatchTasks, int(length/int64(len(raw)+1))+1)
				}
				valid, entries = make([]dispatch.ValidSpec, 0, n), make([]batchEntry, 0, n)
			}
			spec, id, err := s.specFromBodyShared(raw, &shared)
			if err != nil {
				entries = append(entries, batchEntry{valid: -1, id: id, err: err})
				continue
			}
			entries = append(entries, batchEntry{valid: len(valid)})
			valid = append(valid, spec)
		}
		if _, err := dec.Token(); err != nil { // ']'
			return nil, nil, syntax(err)
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, nil, syntax(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, nil, syntax(err)
		}
		return nil, nil, bad("body", "unexpected data after the batch object")
	}
	if entries == nil {
		entries = []batchEntry{}
	}
	return valid, entries, nil
}

var batchBodies = []string{
	`{"tasks": []}`, `{}`, ` { "tasks" : [ ] } `, `{"tasks":[{"handler":"h"}]}`,
	`{"tasks": [{"handler": "h", "labels": {"a": "1"}}, {"handler": "h", "labels": {"a": "1"}}, {"id": "x", "handler": "h"}]}`,
	`{"tasks": [{"id": "b1", "handler": "h", "input": "one"}, {"id": "b2", "handler": "h", "max_attempts": 101}, {"handler": "h", "colour": "red"}]}`,
	`{"tasks": [1, "x", null, true, [], {}]}`,
	`{"tasks": [{"handler": "h", "input": "a \\\" ] } \\\\"}, {"handler": "h", "input": "\\u005d"}]}`,
	`{"tasks": [{"handler": "h", "run_policy": {"repeat": {"count": 2, "every": "1s"}}, "after": ["a", "b"]}]}`,
	"{\"tasks\": [{\"handler\": \"h\", \"input\": \"\xff\"}, {\"id\": \"fine\", \"handler\": \"h\"}]}",
	`{"ta\\u0073ks": [{"handler":"h"}]}`,
	// Refused whole.
	``, ` `, `{`, `{"tasks": [`, `{"tasks": [{"handler": "h"}`, `{"tasks": [{"handler": "h"},`, `{"tasks": [{"handler": "h"}]`,
	`[]`, `"tasks"`, `x`, `{"tasks": {}}`, `{"tasks": "x"}`, `{"tasks": x}`, `{"taks": []}`, `{"tasks": [], "tasks": []}`,
	`{"tasks": [], "other": 1}`, `{"tasks": []} {}`, `{"tasks": []} x`, `{tasks: []}`, `{"tasks" []}`, `{"tasks": [] "x": 1}`,
	`{"tasks": [{"handler": "h"},]}`, `{"tasks": [,]}`, `{"tasks": [{"handler": "h"} {"handler": "h"}]}`,
	`{"tasks": [{"handler": "h"]}`, `{"tasks": [{"handler": "h"}}]}`, `{"tasks": [{"handler": x}]}`, `{"tasks": [tru]}`,
	`{"tasks": [01]}`, `{"tasks": [{"handler": "h\u00"}]}`, "{\"tasks\": [{\"handler\": \"a\tb\"}]}", `{"tasks": [], }`,
	`{"tasks": [], "tasks"}`, `{"tasks": [{"handler": "h"}], "tasks": [{"handler": "h"}]}`,
}

// outcome is what a batch decoder made of a body: the entries with their
// specs or errors, or the error that refused it whole.
// With field, a refusal names the field at fault.
func batchOutcome(s *Server, decode func(io.Reader, int64) ([]dispatch.ValidSpec, []batchEntry, error), body string, field bool) string {
	valid, entries, err := decode(strings.NewReader(body), int64(len(body)))
	if err != nil {
		var fe *FieldError
		if !field {
			return "refused"
		}
		if errors.As(err, &fe) {
			return fmt.Sprintf("refused: field %s", fe.Field)
		}
		return "refused: " + err.Error()
	}
	var b strings.Builder
	for _, e := range entries {
		if e.valid < 0 {
			// Without field, the error's text is left out: with two unknown
			// members, dispatch.DecodeSpecJSON names either.
			if field {
				fmt.Fprintf(&b, "invalid %q: %v\n", e.id, e.err)
			} else {
				fmt.Fprintf(&b, "invalid %q\n", e.id)
			}
			continue
		}
		j, _ := json.Marshal(valid[e.valid].Spec())
		fmt.Fprintf(&b, "spec %s\n", j)
	}
	return b.String()
}

// TestBatchScannerMatchesDecoder: the batch scanner makes of every body
// what encoding/json's Decoder made of it: the same specs and per-entry
// errors, or the whole body refused naming the same field.
func TestBatchScannerMatchesDecoder(t *testing.T) {
	s := New(Config{})
	for _, body := range batchBodies {
		t.Run(body, func(t *testing.T) {
			want := batchOutcome(s, s.decodeBatchDecoder, body, true)
			got := batchOutcome(s, s.decodeBatch, body, true)
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("%s (-decoder +scanner):\n%s", body, d)
			}
		})
	}
}

// FuzzBatchScanner: on any body, the scanner refuses what the Decoder
// refused (the field named may differ for a body cut short or broken
// inside a member's value) and decodes the rest to the same entries.
func FuzzBatchScanner(f *testing.F) {
	for _, b := range batchBodies {
		f.Add([]byte(b))
	}
	s := New(Config{})
	f.Fuzz(func(t *testing.T, body []byte) {
		want := batchOutcome(s, s.decodeBatchDecoder, string(body), false)
		got := batchOutcome(s, s.decodeBatch, string(body), false)
		if want != got {
			t.Fatalf("%q:\ndecoder: %s\nscanner: %s", body, want, got)
		}
	})
}

// TestBatchScannerLimit: a body past its reader's limit is the limit's
// error (413), not a syntax error, wherever it is cut.
func TestBatchScannerLimit(t *testing.T) {
	s := New(Config{})
	body := `{"tasks": [{"handler": "h", "input": "` + strings.Repeat("x", 1000) + `"}, {"handler": "h"}]}`
	for _, limit := range []int{1, 12, 40, 500, 1030, len(body) - 1} {
		r := http.MaxBytesReader(nil, io.NopCloser(bytes.NewReader([]byte(body))), int64(limit))
		_, _, err := s.decodeBatch(r, -1)
		var mbe *http.MaxBytesError
		if !errors.As(err, &mbe) {
			t.Errorf("limit %d: %v, want the MaxBytesError", limit, err)
		}
	}
}

// BenchmarkDecodeBatch: a batch of 5,000 of wasmtask bench's specs,
// decoded by the batch scanner and by encoding/json's Decoder (as before).
//
//	go test -run='^$' -bench=DecodeBatch -benchmem ./api/
func BenchmarkDecodeBatch(b *testing.B) {
	body := []byte(`{"tasks": [`)
	for i := range 5000 {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, `{"handler": "bench-noop", "labels": {"wasmtask-bench": "20261204T101641.337Z"}}`...)
	}
	body = append(body, "]}"...)
	s := New(Config{})
	for _, d := range []struct {
		name   string
		decode func(io.Reader, int64) ([]dispatch.ValidSpec, []batchEntry, error)
	}{{"scanner", s.decodeBatch}, {"encoding-json", s.decodeBatchDecoder}} {
		b.Run(d.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				valid, _, err := d.decode(bytes.NewReader(body), int64(len(body)))
				if err != nil || len(valid) != 5000 {
					b.Fatalf("%d specs, %v", len(valid), err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*5000), "ns/task")
		})
	}
}
