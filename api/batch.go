package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/wasmtask/wasmtask/dispatch"
)

// BatchResult is one entry of a batch submit response.
type BatchResult struct {
	ID        string `json:"id,omitempty"`
	Status    int    `json:"status"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Error     *Error `json:"error,omitempty"`
}

// maxBatchTasks bounds the tasks of one batch.
const maxBatchTasks = 10_000

// submitBatch takes {"tasks": [spec, ...]} and submits them together (they
// share WAL frames); each gets its own status.
//
// Memory is bounded twice: a body is at most Config.MaxBatchBytes (413),
// and the bodies being decoded at once, over all requests, reserve at most
// Config.BatchMemory (their Content-Length, or MaxBatchBytes when the
// length is not known up front): a batch that does not fit gets 429 with
// Retry-After. The body is decoded as a stream, one spec at a time, never
// held whole. A body that is not valid JSON is refused whole (400) before
// anything is submitted, so a client can resend it.
func (s *Server) submitBatch(w http.ResponseWriter, r *http.Request) {
	if err := s.diskFull(); err != nil { // 507 for the whole batch, before reading it
		writeError(w, err)
		return
	}
	limit := s.cfg.MaxBatchBytes
	if r.ContentLength > limit {
		writeError(w, batchTooLarge(limit))
		return
	}
	reserve := limit
	if r.ContentLength >= 0 {
		reserve = r.ContentLength
	}
	if used, ok := s.batches.tryAcquire(reserve); !ok {
		w.Header().Set("Retry-After", "1")
		writeError(w, &Error{Status: http.StatusTooManyRequests, Code: "busy", Message: fmt.Sprintf(
			"the server is decoding other batches (%d of the %d bytes it decodes at once are taken, this one needs %d); retry after the Retry-After seconds, or send smaller batches",
			used, s.batches.max, reserve)})
		return
	}
	defer s.batches.release(reserve)
	release, err := s.admit(reserve, limit)
	if err != nil {
		refuseBody(w, r, limit)
		writeError(w, err)
		return
	}
	defer release()

	specs, err := s.decodeBatch(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			err = batchTooLarge(limit)
		}
		writeError(w, err)
		return
	}
	// One SubmitMany for the valid specs: one input to the loop, one tick,
	// one fsync, rather than a goroutine and a reply channel per task.
	results := make([]BatchResult, len(specs))
	valid := make([]dispatch.TaskSpec, 0, len(specs))
	for i, sp := range specs {
		if sp.err != nil {
			e := toError(sp.err)
			results[i] = BatchResult{ID: string(sp.spec.ID), Status: e.Status, Error: e}
			continue
		}
		valid = append(valid, sp.spec)
	}
	res, errs, err := s.cfg.Engine.SubmitMany(r.Context(), valid)
	if err != nil { // none was answered: each gets the error, as before
		res, errs = make([]dispatch.SubmitResult, len(valid)), make([]error, len(valid))
		for k := range errs {
			errs[k] = err
		}
	}
	k := 0
	for i, sp := range specs {
		if sp.err != nil {
			continue
		}
		switch {
		case errs[k] != nil:
			e := toError(errs[k])
			results[i] = BatchResult{ID: string(sp.spec.ID), Status: e.Status, Error: e}
		case res[k].Duplicate:
			results[i] = BatchResult{ID: string(res[k].Task), Status: 200, Duplicate: true}
		default:
			results[i] = BatchResult{ID: string(res[k].Task), Status: 201}
		}
		k++
	}
	writeBuilt(w, 200, func(o *indentedJSON) { o.batchResults(results) })
}

func batchTooLarge(limit int64) *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Field: "tasks",
		Message: fmt.Sprintf("batch body exceeds %d bytes; split it into smaller batches", limit)}
}

// batchSpec is one decoded entry: a spec, or why it is invalid.
type batchSpec struct {
	spec dispatch.TaskSpec
	err  error
}

// decodeBatch reads {"tasks": [...]} one element at a time. Each element
// is converted (and its raw JSON dropped) before the next is read.
func (s *Server) decodeBatch(body io.Reader) ([]batchSpec, error) {
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
		return nil, syntax(err)
	} else if tok != json.Delim('{') {
		return nil, bad("body", `want an object {"tasks": [task spec, ...]}`)
	}
	var specs []batchSpec
	seen := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntax(err)
		}
		if key, _ := tok.(string); key != "tasks" {
			return nil, bad(key, "unknown field (a batch is {\"tasks\": [task spec, ...]})")
		}
		if seen {
			return nil, bad("tasks", "given twice")
		}
		seen = true
		if tok, err := dec.Token(); err != nil {
			return nil, syntax(err)
		} else if tok != json.Delim('[') {
			return nil, bad("tasks", "want an array of task specs")
		}
		for dec.More() {
			if len(specs) == maxBatchTasks {
				return nil, bad("tasks", "at most %d tasks per batch", maxBatchTasks)
			}
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, syntax(err)
			}
			spec, err := s.specFromBody(raw)
			specs = append(specs, batchSpec{spec: spec, err: err})
		}
		if _, err := dec.Token(); err != nil { // ']'
			return nil, syntax(err)
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, syntax(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, syntax(err)
		}
		return nil, bad("body", "unexpected data after the batch object")
	}
	return specs, nil
}

// byteBudget is a counting semaphore of bytes that never waits.
type byteBudget struct {
	mu   sync.Mutex
	used int64
	max  int64
}

// tryAcquire takes n bytes if they fit; it reports the bytes taken before.
func (b *byteBudget) tryAcquire(n int64) (int64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max {
		return b.used, false
	}
	b.used += n
	return b.used - n, true
}

func (b *byteBudget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}
