package api

import "encoding/base64"

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
			out.Leases = []Lease{}
			manifests = manifests[:0]
			for more := r.openArray(); more; more = r.more(']') {
				var l Lease
				var m []byte
				decodeLease(&r, &l, &m)
				out.Leases = append(out.Leases, l)
				manifests = append(manifests, m)
			}
		case "results":
			if r.null() {
				out.Results = nil
				continue
			}
			out.Results = []ResultStatus{}
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

func decodeLease(r *jsonReader, l *Lease, manifest *[]byte) {
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
			l.Handler = r.str()
		case "plugin":
			l.Plugin = r.str()
		case "version":
			l.Version = r.str()
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
			s := r.strBytes()
			in := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
			n, err := base64.StdEncoding.Decode(in, s)
			if err != nil {
				r.fail()
			}
			l.Input = in[:n]
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
