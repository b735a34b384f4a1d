package api

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/wasmtask/wasmtask/plugins"
)

// The lease response is written by hand, compact, byte for byte what
// json.Marshal writes for it: with tens of leases per response, the
// reflection-based encoder and its indentation pass cost the server about
// as much as the rest of the exchange (BenchmarkRemoteWorkers, 64 leases
// in flight: 1 ms of a 6 ms round trip). A plugin's manifest is encoded
// once per loaded version (manifestCache), not once per lease.
// TestLeaseResponseJSONMatchesEncoder compares the two on responses filled
// at random, every field included.

// manifestCache holds the JSON of the manifests leases carried, by
// pointer: a loaded version's manifest is never changed in place (a new
// deploy loads a new one), and a key keeps its manifest alive, so an
// address is never reused for another while cached.
type manifestCache struct {
	mu sync.Mutex
	m  map[*plugins.Manifest][]byte
}

// maxCachedManifests bounds manifestCache (emptied when full: versions
// come and go with deploys).
const maxCachedManifests = 256

func (c *manifestCache) json(m *plugins.Manifest) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.m[m]; ok {
		return b
	}
	b, err := json.Marshal(m)
	if err != nil {
		b = []byte("null")
	}
	if c.m == nil || len(c.m) >= maxCachedManifests {
		c.m = make(map[*plugins.Manifest][]byte)
	}
	c.m[m] = b
	return b
}

// appendLeaseResponse appends out as json.Marshal would.
func appendLeaseResponse(b []byte, out *LeaseResponse, manifests *manifestCache) []byte {
	b = append(b, `{"leases":`...)
	if out.Leases == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range out.Leases {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendLease(b, &out.Leases[i], manifests)
		}
		b = append(b, ']')
	}
	if len(out.Results) > 0 {
		b = append(b, `,"results":[`...)
		for i, r := range out.Results {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"lease":`...)
			b = appendJSONString(b, r.Lease)
			b = append(b, `,"status":`...)
			b = appendJSONString(b, r.Status)
			if r.Error != "" {
				b = append(b, `,"error":`...)
				b = appendJSONString(b, r.Error)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"lease_timeout_ms":`...)
	b = strconv.AppendInt(b, out.LeaseTimeoutMs, 10)
	b = append(b, `,"heartbeat_ms":`...)
	b = strconv.AppendInt(b, out.HeartbeatMs, 10)
	return append(b, '}')
}

func appendLease(b []byte, l *Lease, manifests *manifestCache) []byte {
	b = append(b, `{"lease":`...)
	b = appendJSONString(b, l.Lease)
	b = append(b, `,"task":`...)
	b = appendJSONString(b, l.Task)
	b = append(b, `,"run":`...)
	b = appendJSONString(b, l.Run)
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(l.Attempt), 10)
	b = append(b, `,"max_attempts":`...)
	b = strconv.AppendInt(b, int64(l.MaxAttempts), 10)
	b = append(b, `,"handler":`...)
	b = appendJSONString(b, l.Handler)
	b = append(b, `,"plugin":`...)
	b = appendJSONString(b, l.Plugin)
	b = append(b, `,"version":`...)
	b = appendJSONString(b, l.Version)
	if l.Manifest != nil {
		b = append(b, `,"manifest":`...)
		b = append(b, manifests.json(l.Manifest)...)
	}
	if len(l.Input) > 0 {
		b = append(b, `,"input":"`...)
		b = base64.StdEncoding.AppendEncode(b, l.Input)
		b = append(b, '"')
	}
	b = append(b, `,"timeout_ms":`...)
	b = strconv.AppendInt(b, l.TimeoutMs, 10)
	b = append(b, `,"remaining_ms":`...)
	b = strconv.AppendInt(b, l.RemainingMs, 10)
	if len(l.Labels) > 0 {
		b = append(b, `,"labels":{`...)
		keys := make([]string, 0, len(l.Labels))
		for k := range l.Labels {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, l.Labels[k])
		}
		b = append(b, '}')
	}
	if l.Parent != "" {
		b = append(b, `,"parent":`...)
		b = appendJSONString(b, l.Parent)
	}
	return append(b, '}')
}

var leaseBufs = sync.Pool{New: func() any { return new([]byte) }}

// writeLeaseResponse writes out (200), with the final newline writeJSON writes.
func writeLeaseResponse(w http.ResponseWriter, out *LeaseResponse, manifests *manifestCache) {
	bp := leaseBufs.Get().(*[]byte)
	b := append(appendLeaseResponse((*bp)[:0], out, manifests), '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(200)
	_, _ = w.Write(b)
	if cap(b) <= 1<<20 { // a huge response's buffer is not kept
		*bp = b
		leaseBufs.Put(bp)
	}
}

// The worker's lease and result requests are written by hand too
// (appendJSON; Client.doJSON uses it): a lease request carries the
// results of tens of attempts, and encoding/json's reflection cost the
// worker about a twentieth of its CPU per no-op attempt. Byte for byte
// what json.Marshal writes (TestWorkerRequestJSONMatchesEncoder); ok
// false (a time json.Marshal refuses, a child that is not valid JSON):
// json.Marshal writes it, or says what is wrong.

// jsonAppender is a request body that writes itself.
type jsonAppender interface {
	appendJSON(b []byte) ([]byte, bool)
}

func (req LeaseRequest) appendJSON(b []byte) ([]byte, bool) {
	b = appendWorkerHello(append(b, '{'), &req.WorkerHello)
	b = append(b, `,"max":`...)
	b = strconv.AppendInt(b, int64(req.Max), 10)
	if req.WaitMs != nil {
		b = append(b, `,"wait_ms":`...)
		b = strconv.AppendInt(b, *req.WaitMs, 10)
	}
	ok := true
	if len(req.Results) > 0 {
		b = append(b, `,"results":`...)
		b, ok = appendWorkerResults(b, req.Results)
	}
	return append(b, '}'), ok
}

func (req ResultRequest) appendJSON(b []byte) ([]byte, bool) {
	b = appendWorkerHello(append(b, '{'), &req.WorkerHello)
	b = append(b, `,"results":`...)
	if req.Results == nil {
		return append(b, "null}"...), true
	}
	b, ok := appendWorkerResults(b, req.Results)
	return append(b, '}'), ok
}

// appendWorkerHello appends h's members (without braces).
func appendWorkerHello(b []byte, h *WorkerHello) []byte {
	b = append(b, `"worker":`...)
	b = appendJSONString(b, h.Worker)
	b = append(b, `,"name":`...)
	b = appendJSONString(b, h.Name)
	if len(h.Handlers) > 0 {
		b = append(b, `,"handlers":[`...)
		for i, name := range h.Handlers {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, name)
		}
		b = append(b, ']')
	}
	b = append(b, `,"concurrency":`...)
	b = strconv.AppendInt(b, int64(h.Concurrency), 10)
	if h.Ahead != 0 {
		b = append(b, `,"ahead":`...)
		b = strconv.AppendInt(b, int64(h.Ahead), 10)
	}
	return b
}

func appendWorkerResults(b []byte, rs []WorkerResult) ([]byte, bool) {
	b = append(b, '[')
	for i := range rs {
		if i > 0 {
			b = append(b, ',')
		}
		r := &rs[i]
		b = append(b, `{"lease":`...)
		b = appendJSONString(b, r.Lease)
		b = append(b, `,"outcome":`...)
		b = appendJSONString(b, r.Outcome)
		if r.Retryable {
			b = append(b, `,"retryable":true`...)
		}
		if r.Error != "" {
			b = append(b, `,"error":`...)
			b = appendJSONString(b, r.Error)
		}
		if len(r.Output) > 0 {
			b = append(b, `,"output":"`...)
			b = append(base64.StdEncoding.AppendEncode(b, r.Output), '"')
		}
		if len(r.Log) > 0 {
			b = append(b, `,"log":"`...)
			b = append(base64.StdEncoding.AppendEncode(b, r.Log), '"')
		}
		if r.Module != "" {
			b = append(b, `,"module":`...)
			b = appendJSONString(b, r.Module)
		}
		if len(r.Children) > 0 {
			b = append(b, `,"children":[`...)
			for j, c := range r.Children {
				if j > 0 {
					b = append(b, ',')
				}
				// As encoding/json writes a RawMessage: compact, with <, >
				// and & escaped; a child that needs either is left to it.
				if len(c) == 0 || !rawAsMarshaled(c) {
					return b, false
				}
				b = append(b, c...)
			}
			b = append(b, ']')
		}
		var ok bool
		if b, ok = appendJSONTime(b, `,"started_at":`, r.StartedAt); !ok {
			return b, false
		}
		if b, ok = appendJSONTime(b, `,"finished_at":`, r.FinishedAt); !ok {
			return b, false
		}
		b = append(b, '}')
	}
	return append(b, ']'), true
}

// rawAsMarshaled reports whether c is JSON that encoding/json copies as it
// is: valid, with no white space outside strings and no <, > or &.
func rawAsMarshaled(c []byte) bool {
	inString, escaped := false, false
	for _, ch := range c {
		switch {
		case ch == '<' || ch == '>' || ch == '&':
			return false
		case inString:
			switch {
			case escaped:
				escaped = false
			case ch == '\\':
				escaped = true
			case ch == '"':
				inString = false
			}
		case ch == '"':
			inString = true
		case ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r':
			return false
		}
	}
	return json.Valid(c)
}

// appendJSONTime appends member name and t as time.Time's MarshalJSON
// writes it, nothing for the zero time (omitzero); ok false for a time it
// refuses (its checks: a year outside 0-9999, a zone offset of 24 hours
// or more).
func appendJSONTime(b []byte, name string, t time.Time) ([]byte, bool) {
	if t.IsZero() {
		return b, true
	}
	b = append(b, name...)
	b = append(b, '"')
	n0 := len(b)
	b = t.AppendFormat(b, time.RFC3339Nano) // MarshalJSON's format, written by the same code
	switch {
	case b[n0+len("9999")] != '-':
		return b, false
	case b[len(b)-1] != 'Z':
		c := b[len(b)-len("Z07:00")]
		if '0' <= c && c <= '9' || 10*(b[len(b)-5]-'0')+(b[len(b)-4]-'0') >= 24 {
			return b, false
		}
	}
	return append(b, '"'), true
}
