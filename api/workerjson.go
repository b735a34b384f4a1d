package api

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"sync"

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
