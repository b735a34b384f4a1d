package api

import (
	"encoding/json"

	"github.com/wasmtask/wasmtask/dispatch"
)

// The worker decodes lease responses by hand: with encoding/json they
// took a seventh of a no-op worker's CPU. decodeLeaseResponse handles JSON
// as the server writes it (appendLeaseResponse; whitespace allowed) and
// gives up (ok false) on anything else: an escape in a string, invalid
// UTF-8, a member it does not know, a number with a fraction. The caller
// then decodes the body with encoding/json, so the result never differs
// (TestDecodeLeaseResponseMatchesEncoding). It reads with jsonReader.

// decodeLeaseResponse decodes b into out, with each lease's manifest as
// raw JSON in manifests (nil where none); ok false: use encoding/json.
func decodeLeaseResponse(b []byte) (out LeaseResponse, manifests [][]byte, ok bool) {
	r := newJSONReader(b)
	for more := r.openObject(); more; more = r.more('}') {
		switch string(r.key()) {
		case "leases":
			if r.null() {
				out.Leases = nil
				continue
			}
			// Sized for the rest of the body at minLeaseJSON bytes a lease
			// (a lease as the server writes it takes more): grown by
			// append, the copies of a response of hundreds of leases were
			// most of its decoding.
			n := min((len(r.b)-r.i)/minLeaseJSON+1, maxResultsSized)
			out.Leases = make([]Lease, 0, n)
			manifests = make([][]byte, 0, n)
			var prev Lease // the previous lease's handler, plugin and version, shared when repeated
			for more := r.openArray(); more; more = r.more(']') {
				var l Lease
				var m []byte
				decodeLease(&r, &l, &m, &prev)
				out.Leases = append(out.Leases, l)
				manifests = append(manifests, m)
			}
		case "results":
			if r.null() {
				out.Results = nil
				continue
			}
			out.Results = make([]ResultStatus, 0, min((len(r.b)-r.i)/minStatusJSON+1, maxResultsSized))
			for more := r.openArray(); more; more = r.more(']') {
				var rs ResultStatus
				for more := r.openObject(); more; more = r.more('}') {
					switch string(r.key()) {
					case "lease":
						rs.Lease = r.str()
					case "status":
						rs.Status = r.str()
					case "error":
						rs.Error = r.str()
					default:
						r.fail()
					}
				}
				out.Results = append(out.Results, rs)
			}
		case "lease_timeout_ms":
			out.LeaseTimeoutMs = r.int64()
		case "heartbeat_ms":
			out.HeartbeatMs = r.int64()
		default:
			r.fail()
		}
	}
	return out, manifests, r.end()
}

func decodeLease(r *jsonReader, l *Lease, manifest *[]byte, prev *Lease) {
	for more := r.openObject(); more; more = r.more('}') {
		switch string(r.key()) {
		case "lease":
			l.Lease = r.str()
		case "task":
			l.Task = r.str()
		case "run":
			l.Run = r.str()
		case "attempt":
			l.Attempt = r.int()
		case "max_attempts":
			l.MaxAttempts = r.int()
		case "handler":
			l.Handler = r.strLike(&prev.Handler)
		case "plugin":
			l.Plugin = r.strLike(&prev.Plugin)
		case "version":
			l.Version = r.strLike(&prev.Version)
		case "manifest":
			if r.null() {
				*manifest = nil
				continue
			}
			*manifest = r.skip()
		case "input":
			if r.null() {
				l.Input = nil
				continue
			}
			l.Input = r.base64()
		case "timeout_ms":
			l.TimeoutMs = r.int64()
		case "remaining_ms":
			l.RemainingMs = r.int64()
		case "labels":
			if r.null() {
				l.Labels = nil
				continue
			}
			if l.Labels == nil {
				l.Labels = map[string]string{}
			}
			for more := r.openObject(); more; more = r.more('}') {
				k := r.key()
				l.Labels[string(k)] = r.str()
			}
		case "parent":
			l.Parent = r.str()
		default:
			r.fail()
		}
	}
}

// The server decodes the bodies of lease and result requests by hand too
// (decodeLeaseRequest, decodeResultRequest): with encoding/json they were
// a sixth of the server's CPU per remote attempt (reflection, and a
// string per field). Same rule: JSON as the worker writes it, anything
// else (an escape, a member it does not know or in another case, a null
// where a value belongs, a member given twice that holds an array) makes
// the caller decode with encoding/json, so the result never differs
// (FuzzDecodeWorkerRequest).

// decodeLeaseRequest decodes a POST /v1/workers/lease body; ok false: use
// encoding/json.
func decodeLeaseRequest(b []byte) (req LeaseRequest, ok bool) {
	r := newJSONReader(b)
	var seen workerMembers
	for more := r.openObject(); more; more = r.more('}') {
		k := r.key()
		switch string(k) {
		case "max":
			req.Max = r.int()
		case "wait_ms":
			if r.null() {
				req.WaitMs = nil
				continue
			}
			n := r.int64()
			req.WaitMs = &n
		case "results":
			req.Results = decodeWorkerResults(&r, &seen)
		default:
			decodeHelloMember(&r, k, &req.WorkerHello, &seen)
		}
	}
	return req, r.end()
}

// decodeResultRequest decodes a POST /v1/workers/result body; ok false:
// use encoding/json.
func decodeResultRequest(b []byte) (req ResultRequest, ok bool) {
	r := newJSONReader(b)
	var seen workerMembers
	for more := r.openObject(); more; more = r.more('}') {
		k := r.key()
		if string(k) == "results" {
			req.Results = decodeWorkerResults(&r, &seen)
			continue
		}
		decodeHelloMember(&r, k, &req.WorkerHello, &seen)
	}
	return req, r.end()
}

// workerMembers records the members holding arrays read so far: given
// twice, encoding/json decodes the second into the first's elements (a
// merge), which these decoders leave to it.
type workerMembers struct{ handlers, results bool }

// decodeHelloMember reads member k of a WorkerHello (embedded in the
// request); any other member gives up.
func decodeHelloMember(r *jsonReader, k []byte, h *WorkerHello, seen *workerMembers) {
	switch string(k) {
	case "worker":
		h.Worker = r.str()
	case "name":
		h.Name = r.str()
	case "concurrency":
		h.Concurrency = r.int()
	case "ahead":
		h.Ahead = r.int()
	case "handlers":
		r.once(&seen.handlers)
		if r.null() {
			h.Handlers = nil
			return
		}
		h.Handlers = []string{}
		for more := r.openArray(); more; more = r.more(']') {
			h.Handlers = append(h.Handlers, r.str())
		}
	default:
		r.fail()
	}
}

func decodeWorkerResults(r *jsonReader, seen *workerMembers) []WorkerResult {
	r.once(&seen.results)
	if r.null() {
		return nil
	}
	// Sized for the rest of the body at minResultJSON bytes a result (a
	// result as workers write it takes more): grown by append, the
	// slice's copies were a third of the decode.
	out := make([]WorkerResult, 0, min((len(r.b)-r.i)/minResultJSON+1, maxResultsSized))
	var module string // the previous result's: most name the same one
	for more := r.openArray(); more; more = r.more(']') {
		out = append(out, WorkerResult{})
		decodeWorkerResult(r, &out[len(out)-1], &module)
	}
	return out
}

// minResultJSON is about the shortest result a worker writes (lease id,
// outcome and two times); maxResultsSized bounds the capacity reserved.
const (
	minResultJSON   = 120
	maxResultsSized = 4096
)

// minLeaseJSON and minStatusJSON are about the shortest lease and result
// status the server writes, for sizing decodeLeaseResponse's slices.
const (
	minLeaseJSON  = 200
	minStatusJSON = 60
)

// outcomeNames: a known outcome is decoded into its constant (no string
// allocated per result).
var outcomeNames = func() map[string]string {
	m := map[string]string{}
	for _, o := range []dispatch.Outcome{dispatch.OutcomeOK, dispatch.OutcomeFailed, dispatch.OutcomeTrap, dispatch.OutcomeTimeout,
		dispatch.OutcomeCancelled, dispatch.OutcomeOOM, dispatch.OutcomeOutputTooLarge, dispatch.OutcomeABIViolation, dispatch.OutcomeLost} {
		m[string(o)] = string(o)
	}
	return m
}()

func decodeWorkerResult(r *jsonReader, res *WorkerResult, module *string) {
	children := false
	for more := r.openObject(); more; more = r.more('}') {
		switch string(r.key()) {
		case "lease":
			res.Lease = r.str()
		case "outcome":
			s := r.strBytes()
			if o, ok := outcomeNames[string(s)]; ok {
				res.Outcome = o
			} else {
				res.Outcome = string(s)
			}
		case "retryable":
			res.Retryable = r.bool()
		case "error":
			res.Error = r.str()
		case "module":
			res.Module = r.strLike(module)
		case "output":
			res.Output = r.base64()
		case "log":
			res.Log = r.base64()
		case "started_at":
			res.StartedAt = r.time()
		case "finished_at":
			res.FinishedAt = r.time()
		case "children":
			r.once(&children)
			if r.null() {
				res.Children = nil
				continue
			}
			res.Children = []json.RawMessage{}
			for more := r.openArray(); more; more = r.more(']') {
				raw := r.skip()
				// Objects only (a task spec is one), checked as
				// encoding/json checks a RawMessage, and copied as it does.
				if len(raw) == 0 || raw[0] != '{' || !json.Valid(raw) {
					r.fail()
					break
				}
				res.Children = append(res.Children, append(json.RawMessage(nil), raw...))
			}
		default:
			r.fail()
		}
	}
}
