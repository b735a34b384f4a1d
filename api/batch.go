package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
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

	buf := batchBufs.Get().(*batchBuf)
	defer buf.put()
	valid, entries, err := s.decodeBatchInto(buf, http.MaxBytesReader(w, r.Body, limit), r.ContentLength)
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
	res, errs, err := s.cfg.Engine.SubmitValidMany(r.Context(), valid)
	if err != nil { // none was answered: each gets the error, as before
		res, errs = make([]dispatch.SubmitResult, len(valid)), make([]error, len(valid))
		for k := range errs {
			errs[k] = err
		}
	}
	results := slices.Grow(buf.results[:0], len(entries))[:len(entries)] // each is set below
	buf.valid, buf.entries, buf.results = valid, entries, results
	for i, en := range entries {
		k := en.valid
		switch {
		case k < 0:
			e := toError(en.err)
			results[i] = BatchResult{ID: en.id, Status: e.Status, Error: e}
		case errs[k] != nil:
			e := toError(errs[k])
			results[i] = BatchResult{ID: string(valid[k].ID()), Status: e.Status, Error: e}
		case res[k].Duplicate:
			results[i] = BatchResult{ID: string(res[k].Task), Status: 200, Duplicate: true}
		default:
			results[i] = BatchResult{ID: string(res[k].Task), Status: 201}
		}
	}
	writeBuilt(w, 200, func(o *indentedJSON) { o.batchResults(results) })
}

func batchTooLarge(limit int64) *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Field: "tasks",
		Message: fmt.Sprintf("batch body exceeds %d bytes; split it into smaller batches", limit)}
}

// batchEntry is one decoded entry of a batch: valid indexes its spec in
// the valid specs, or it is -1 and err says why it is invalid.
type batchEntry struct {
	valid int
	id    string // of an invalid entry, as far as it was read
	err   error
}

// batchBuf holds the slices of one batch request (its specs, entries and
// results, about 400 bytes per task), kept for the next one: a server
// taking batches of thousands otherwise makes megabytes of fresh garbage
// per request, new pages while its heap grows.
type batchBuf struct {
	valid   []dispatch.ValidSpec
	entries []batchEntry
	results []BatchResult
}

var batchBufs = sync.Pool{New: func() any { return new(batchBuf) }}

// put clears what b's slices hold (nothing of a batch stays reachable)
// and gives b back, unless they grew past a batch's bound.
func (b *batchBuf) put() {
	if cap(b.valid) > maxBatchTasks || cap(b.entries) > maxBatchTasks || cap(b.results) > maxBatchTasks {
		return
	}
	// Whole capacities: a batch refused half decoded appended to them.
	clear(b.valid[:cap(b.valid)])
	clear(b.entries[:cap(b.entries)])
	clear(b.results[:cap(b.results)])
	b.valid, b.entries, b.results = b.valid[:0], b.entries[:0], b.results[:0]
	batchBufs.Put(b)
}

// decodeBatchInto reads {"tasks": [...]} one element at a time, into
// buf's slices when they are large enough. Each element
// is converted (and its raw JSON dropped) before the next is read. It
// returns the valid specs and, in order, an entry for every element.
// length is the body's Content-Length (-1: unknown), to size the slices.
func (s *Server) decodeBatchInto(buf *batchBuf, body io.Reader, length int64) (valid []dispatch.ValidSpec, entries []batchEntry, err error) {
	bad := func(field, format string, args ...any) error {
		return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	sc := newBatchScanner(body)
	c, err := sc.next()
	switch {
	case err != nil:
		return nil, nil, readErr(err)
	case c != '{' && startsValue(c):
		return nil, nil, bad("body", `want an object {"tasks": [task spec, ...]}`)
	case c != '{':
		return nil, nil, syntaxErr(c, "looking for beginning of value")
	}
	var shared stringCache
	seen := false
	for member := 0; ; member++ {
		if c, err = sc.next(); err != nil {
			return nil, nil, readErr(err)
		}
		if member == 0 && c == '}' {
			break
		}
		if c != '"' {
			return nil, nil, syntaxErr(c, "looking for beginning of object key string")
		}
		key, err := sc.key()
		if err != nil {
			return nil, nil, readErr(err)
		}
		if key != "tasks" {
			return nil, nil, bad(key, "unknown field (a batch is {\"tasks\": [task spec, ...]})")
		}
		if seen {
			return nil, nil, bad("tasks", "given twice")
		}
		seen = true
		if c, err = sc.next(); err != nil {
			return nil, nil, readErr(err)
		} else if c != ':' {
			return nil, nil, syntaxErr(c, "after object key")
		}
		if c, err = sc.next(); err != nil {
			return nil, nil, readErr(err)
		} else if c != '[' {
			if startsValue(c) {
				return nil, nil, bad("tasks", "want an array of task specs")
			}
			return nil, nil, syntaxErr(c, "looking for beginning of value")
		}
		if c, err = sc.next(); err != nil {
			return nil, nil, readErr(err)
		}
		for c != ']' { // c starts an element
			if !startsValue(c) {
				return nil, nil, syntaxErr(c, "looking for beginning of value")
			}
			if len(entries) == maxBatchTasks {
				return nil, nil, bad("tasks", "at most %d tasks per batch", maxBatchTasks)
			}
			raw, err := sc.value(c)
			if err != nil {
				return nil, nil, readErr(err)
			}
			if entries == nil {
				// Sized for a batch of elements like the first: growing a
				// slice of specs (a few hundred bytes each) copies them all.
				n := min(maxBatchTasks, 16)
				if length > 0 {
					n = min(maxBatchTasks, int(length/int64(len(raw)+1))+1)
				}
				valid, entries = buf.valid[:0], buf.entries[:0]
				if cap(valid) < n {
					valid = make([]dispatch.ValidSpec, 0, n)
				}
				if cap(entries) < n {
					entries = make([]batchEntry, 0, n)
				}
			}
			spec, id, err := s.specFromBodyShared(raw, &shared)
			switch {
			case err == nil:
				entries = append(entries, batchEntry{valid: len(valid)})
				valid = append(valid, spec)
			case invalidElement(raw) != nil: // not JSON: the whole batch is refused
				return nil, nil, invalidElement(raw)
			default:
				entries = append(entries, batchEntry{valid: -1, id: id, err: err})
			}
			if c, err = sc.next(); err != nil {
				return nil, nil, readErr(err)
			}
			switch c {
			case ']':
			case ',':
				if c, err = sc.next(); err != nil {
					return nil, nil, readErr(err)
				}
				if c == ']' {
					return nil, nil, syntaxErr(c, "looking for beginning of value")
				}
			default:
				return nil, nil, syntaxErr(c, "after array element")
			}
		}
		if c, err = sc.next(); err != nil {
			return nil, nil, readErr(err)
		}
		if c == '}' {
			break
		}
		if c != ',' {
			return nil, nil, syntaxErr(c, "after object key:value pair")
		}
	}
	if end, err := sc.atEnd(); err != nil {
		return nil, nil, readErr(err)
	} else if !end {
		return nil, nil, bad("body", "unexpected data after the batch object")
	}
	if entries == nil {
		entries = []batchEntry{}
	}
	return valid, entries, nil
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
