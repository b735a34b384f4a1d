package api

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
)

// The responses of the hot routes (submit, batch submit, get, wait) are
// written by hand, byte for byte what writeJSON writes (encoding/json,
// indented by two spaces, HTML characters escaped, a final newline): the
// reflection-based encoder followed by its indentation pass cost a submit
// several times what building the view did. TestViewJSONMatchesEncoder
// compares the two on views filled at random, every field included, so a
// field added to a view without being added here fails it.

// indentedJSON appends indented JSON to b.
type indentedJSON struct {
	b     []byte
	count []int // members or elements written so far, per open object or array
}

var jsonBufs = sync.Pool{New: func() any { return new(indentedJSON) }}

func (o *indentedJSON) newline() {
	o.b = append(o.b, '\n')
	for range len(o.count) {
		o.b = append(o.b, "  "...)
	}
}

func (o *indentedJSON) open(c byte) {
	o.b = append(o.b, c)
	o.count = append(o.count, 0)
}

func (o *indentedJSON) close(c byte) {
	n := o.count[len(o.count)-1]
	o.count = o.count[:len(o.count)-1]
	if n > 0 {
		o.newline()
	}
	o.b = append(o.b, c)
}

// next starts a member or an element.
func (o *indentedJSON) next() {
	if o.count[len(o.count)-1] > 0 {
		o.b = append(o.b, ',')
	}
	o.count[len(o.count)-1]++
	o.newline()
}

func (o *indentedJSON) key(k string) {
	o.next()
	o.b = append(o.b, '"')
	o.b = append(o.b, k...)
	o.b = append(o.b, `": `...)
}

func (o *indentedJSON) str(s string) { o.b = appendJSONString(o.b, s) }

func (o *indentedJSON) strField(k, v string) {
	o.key(k)
	o.str(v)
}

func (o *indentedJSON) strOmit(k, v string) {
	if v != "" {
		o.strField(k, v)
	}
}

func (o *indentedJSON) strPtrOmit(k string, v *string) {
	if v != nil {
		o.strField(k, *v)
	}
}

func (o *indentedJSON) intField(k string, v int) {
	o.key(k)
	o.b = strconv.AppendInt(o.b, int64(v), 10)
}

func (o *indentedJSON) intOmit(k string, v int) {
	if v != 0 {
		o.intField(k, v)
	}
}

func (o *indentedJSON) strings(k string, v []string, omitEmpty bool) {
	if omitEmpty && len(v) == 0 {
		return
	}
	o.key(k)
	if v == nil {
		o.b = append(o.b, "null"...)
		return
	}
	o.open('[')
	for _, s := range v {
		o.next()
		o.str(s)
	}
	o.close(']')
}

// value appends v through encoding/json, indented to the current depth
// (for the rare nested structures not written by hand).
// runPolicy writes a run policy (every view has one: {"once": {}} for
// most) as the encoder does, fields in their struct order.
func (o *indentedJSON) runPolicy(p *RunPolicy) {
	o.open('{')
	if p.Once != nil {
		o.key("once")
		o.b = append(o.b, "{}"...)
	}
	if r := p.Repeat; r != nil {
		o.key("repeat")
		o.open('{')
		o.intField("count", r.Count)
		o.strOmit("every", r.Every)
		o.close('}')
	}
	if c := p.Cron; c != nil {
		o.key("cron")
		o.open('{')
		o.strField("expr", c.Expr)
		o.intOmit("max_runs", c.MaxRuns)
		o.strOmit("time_zone", c.TimeZone)
		o.strOmit("misfire", c.Misfire)
		o.close('}')
	}
	o.close('}')
}

// appendJSONString appends s quoted as encoding/json does: plain ASCII
// directly, anything else (escapes, HTML characters, non-ASCII, invalid
// UTF-8) through encoding/json itself.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func (o *indentedJSON) taskView(v *TaskView) {
	o.open('{')
	o.strField("id", v.ID)
	o.strField("handler", v.Handler)
	o.strField("state", v.State)
	o.key("runs")
	if v.Runs == nil {
		o.b = append(o.b, "null"...)
	} else {
		o.open('[')
		for i := range v.Runs {
			o.next()
			o.runView(&v.Runs[i])
		}
		o.close(']')
	}
	o.strPtrOmit("output", v.Output)
	o.strPtrOmit("output_b64", v.OutputB64)
	o.strings("children", v.Children, false)
	o.strField("parent", v.Parent)
	o.strField("submitted_at", v.SubmittedAt)
	o.strOmit("finished_at", v.FinishedAt)
	o.intField("max_attempts", v.MaxAttempts)
	o.intField("priority", v.Priority)
	if len(v.Labels) > 0 {
		o.key("labels")
		o.open('{')
		for _, k := range slices.Sorted(maps.Keys(v.Labels)) {
			o.next()
			o.str(k)
			o.b = append(o.b, ": "...)
			o.str(v.Labels[k])
		}
		o.close('}')
	}
	o.strOmit("cancel_reason", v.CancelNote)
	o.strings("after", v.After, true)
	o.strings("waiting_for", v.WaitingFor, true)
	o.strOmit("timeout", v.Timeout)
	o.strOmit("effective_timeout", v.EffectiveTimeout)
	o.strOmit("timeout_note", v.TimeoutNote)
	o.strOmit("concurrency_key", v.ConcurrencyKey)
	if v.RunPolicy != nil {
		o.key("run_policy")
		o.runPolicy(v.RunPolicy)
	}
	o.intOmit("retries", v.Retries)
	o.intOmit("pruned_runs", v.PrunedRuns)
	o.strOmit("payload_error", v.PayloadError)
	o.close('}')
}

func (o *indentedJSON) runView(r *RunView) {
	o.open('{')
	o.strField("id", r.ID)
	o.intField("index", r.Index)
	o.strField("state", r.State)
	o.strOmit("due_at", r.DueAt)
	o.strOmit("reason", r.Reason)
	o.key("attempts")
	if r.Attempts == nil {
		o.b = append(o.b, "null"...)
	} else {
		o.open('[')
		for i := range r.Attempts {
			o.next()
			o.attemptView(&r.Attempts[i])
		}
		o.close(']')
	}
	o.close('}')
}

func (o *indentedJSON) attemptView(a *AttemptView) {
	o.open('{')
	o.intField("number", a.Number)
	o.strOmit("outcome", a.Outcome)
	if a.Retryable {
		o.key("retryable")
		o.b = append(o.b, "true"...)
	}
	o.strOmit("error", a.Error)
	o.strOmit("module", a.Module)
	o.strOmit("worker", a.Worker)
	o.strOmit("leased_at", a.LeasedAt)
	o.strOmit("started_at", a.StartedAt)
	o.strOmit("finished_at", a.FinishedAt)
	o.strPtrOmit("output", a.Output)
	o.strPtrOmit("output_b64", a.OutputB64)
	o.strOmit("log", a.Log)
	o.close('}')
}

// batchResults writes {"results": [...]}, the batch submit's answer.
func (o *indentedJSON) batchResults(results []BatchResult) {
	// About 60 bytes per result: one allocation rather than doubling.
	o.b = slices.Grow(o.b, 64*len(results))
	o.open('{')
	o.key("results")
	o.open('[')
	for i := range results {
		r := &results[i]
		o.next()
		o.open('{')
		o.strOmit("id", r.ID)
		o.intField("status", r.Status)
		if r.Duplicate {
			o.key("duplicate")
			o.b = append(o.b, "true"...)
		}
		if r.Error != nil {
			o.key("error")
			o.open('{')
			o.strField("code", r.Error.Code)
			o.strField("message", r.Error.Message)
			o.strOmit("field", r.Error.Field)
			o.close('}')
		}
		o.close('}')
	}
	o.close(']')
	o.close('}')
}

// writeBuilt writes the JSON that build appends, as writeJSON would.
func writeBuilt(w http.ResponseWriter, status int, build func(o *indentedJSON)) {
	o := newIndentedJSON()
	build(o)
	o.send(w, status)
}

func newIndentedJSON() *indentedJSON {
	o := jsonBufs.Get().(*indentedJSON)
	o.b, o.count = o.b[:0], o.count[:0]
	return o
}

// send writes what o holds as writeJSON would (a final newline added)
// and gives o back to the pool.
func (o *indentedJSON) send(w http.ResponseWriter, status int) {
	o.b = append(o.b, '\n')
	h := w.Header()
	h["Content-Type"] = jsonContentType
	if len(o.b) > 2048 {
		// net/http sends what it cannot hold in its 2 KiB buffer chunked;
		// the length is known here.
		h["Content-Length"] = []string{strconv.Itoa(len(o.b))}
	}
	w.WriteHeader(status)
	w.Write(o.b)
	if cap(o.b) <= 1<<20 { // a batch's answer (~80 bytes a task) is kept too
		jsonBufs.Put(o)
	}
}

// jsonContentType is the Content-Type of every JSON answer: one slice
// shared by all of them rather than one made per response by Header.Set.
// net/http only reads it.
var jsonContentType = []string{"application/json"}

// writeTaskView writes a task view as writeJSON(w, status, v) does.
// (No closure: one that captures v moves the view to the heap.)
func writeTaskView(w http.ResponseWriter, status int, v TaskView) {
	o := newIndentedJSON()
	o.taskView(&v)
	o.send(w, status)
}
