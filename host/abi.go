package host

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// abiModule is the import module of the guest ABI; its name carries the
// major version.
const abiModule = "wasmtask_v1"

// Negative results of the ABI (see sdk/ABI.md).
const (
	errInvalid     = -1
	errNotFound    = -2
	errTooLarge    = -3
	errCancelled   = -4
	errUnsupported = -5
	errQuota       = -6
)

// hostFunc is one import of wasmtask_v1.
type hostFunc struct {
	name    string
	params  []string // all i32
	results int      // 0 or 1 i32
	fn      func(ctx context.Context, st *attemptState, mem api.Memory, p args) int32
}

// args are the i32 parameters of an import call, by value so that a call
// allocates nothing; parameters past the import's count are 0.
type args [4]uint32

// abiFunctions lists the imports in the order of ABI.md.
var abiFunctions = []hostFunc{
	{name: "input_len", results: 1, fn: inputLen},
	{name: "input_read", params: []string{"offset", "buf", "limit"}, results: 1, fn: inputRead},
	{name: "output_write", params: []string{"ptr", "len"}, results: 1, fn: outputWrite},
	{name: "fail", params: []string{"kind", "ptr", "len"}, fn: fail},
	{name: "log", params: []string{"level", "ptr", "len"}, fn: logLine},
	{name: "task_info", params: []string{"buf", "limit"}, results: 1, fn: taskInfo},
	{name: "config_get", params: []string{"key_ptr", "key_len", "buf", "limit"}, results: 1, fn: configGet},
	{name: "submit", params: []string{"spec_ptr", "spec_len", "id_buf", "id_limit"}, results: 1, fn: submit},
	{name: "heartbeat", params: []string{"ptr", "len"}, results: 1, fn: heartbeat},
	{name: "cancelled", results: 1, fn: cancelled},
}

func abiFunctionNames() []string {
	var names []string
	for _, f := range abiFunctions {
		names = append(names, f.name)
	}
	return names
}

// exportFunctions registers every import of wasmtask_v1 on b.
func exportFunctions(b wazero.HostModuleBuilder) wazero.HostModuleBuilder {
	for _, f := range abiFunctions {
		f := f
		params := make([]api.ValueType, len(f.params))
		for i := range params {
			params[i] = api.ValueTypeI32
		}
		var results []api.ValueType
		if f.results == 1 {
			results = []api.ValueType{api.ValueTypeI32}
		}
		b.NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
				st, ok := ctx.Value(stateKey{}).(*attemptState)
				if !ok {
					panic(abiViolation{fn: f.name, reason: "called outside an attempt"})
				}
				var p args
				for i := range f.params {
					p[i] = api.DecodeU32(stack[i])
				}
				r := f.fn(ctx, st, mod.Memory(), p)
				if f.results == 1 {
					stack[0] = api.EncodeI32(r)
				}
			}), params, results).
			WithParameterNames(f.params...).
			Export(f.name)
	}
	return b
}

type stateKey struct{}

// abiViolation ends an attempt as abi_violation. Host functions panic with
// it; wazero unwinds the guest and returns it wrapped in the call's error.
type abiViolation struct {
	fn     string
	reason string
}

func (v abiViolation) Error() string { return abiModule + "." + v.fn + ": " + v.reason }

// read returns guest memory [ptr, ptr+n) or ends the attempt: the one
// bounds-checked path for every read of guest memory.
func read(st *attemptState, mem api.Memory, fn string, ptr, n uint32) []byte {
	if n == 0 {
		return nil
	}
	if mem != nil {
		if b, ok := mem.Read(ptr, n); ok {
			return b
		}
	}
	st.violate(fn, fmt.Sprintf("range [%d, %d) is outside the module's memory", ptr, uint64(ptr)+uint64(n)))
	return nil
}

// write copies b to guest memory at ptr or ends the attempt.
func write(st *attemptState, mem api.Memory, fn string, ptr uint32, b []byte) {
	if len(b) == 0 {
		return
	}
	if mem == nil || !mem.Write(ptr, b) {
		st.violate(fn, fmt.Sprintf("range [%d, %d) is outside the module's memory", ptr, uint64(ptr)+uint64(len(b))))
	}
}

// fitsOrNothing writes b when it fits in limit and returns its length;
// limit 0 is a size probe.
func fitsOrNothing(st *attemptState, mem api.Memory, fn string, b []byte, buf, limit uint32) int32 {
	if uint64(len(b)) <= uint64(limit) {
		write(st, mem, fn, buf, b)
	}
	return int32(len(b))
}

// input_len() -> i32: the size of the task input in bytes.
func inputLen(_ context.Context, st *attemptState, _ api.Memory, _ args) int32 {
	return int32(len(st.input))
}

// input_read(offset, buf, limit) -> i32: copies up to limit bytes of the
// input starting at offset into buf; returns the bytes copied, 0 at the
// end, -1 when offset is past the end.
func inputRead(_ context.Context, st *attemptState, mem api.Memory, p args) int32 {
	offset, buf, limit := p[0], p[1], p[2]
	if uint64(offset) > uint64(len(st.input)) {
		return errInvalid
	}
	n := min(uint64(limit), uint64(len(st.input))-uint64(offset))
	write(st, mem, "input_read", buf, st.input[offset:uint64(offset)+n])
	return int32(n)
}

// output_write(ptr, len) -> i32: appends to the output; -3 past the output
// limit (and the attempt will end as output_too_large).
func outputWrite(_ context.Context, st *attemptState, mem api.Memory, p args) int32 {
	b := read(st, mem, "output_write", p[0], p[1])
	if st.output.Len()+len(b) > st.limits.OutputBytes {
		st.outputOver = true
		return errTooLarge
	}
	st.output.Write(b)
	return int32(len(b))
}

// fail(kind, ptr, len): records the failure message; kind 0 permanent,
// 1 retryable. Takes effect when wasmtask_handle returns 1.
func fail(_ context.Context, st *attemptState, mem api.Memory, p args) int32 {
	kind := int32(p[0])
	msg := read(st, mem, "fail", p[1], p[2])
	if kind != 0 && kind != 1 {
		st.violate("fail", fmt.Sprintf("kind %d, want 0 (permanent) or 1 (retryable)", kind))
	}
	st.failKind = int(kind)
	st.failMsg = truncate(msg, 4096)
	return 0
}

// log(level, ptr, len): one log line; level -1 debug, 0 info, 1 warn,
// 2 error. Dropped (and counted) past the log quota.
func logLine(_ context.Context, st *attemptState, mem api.Memory, p args) int32 {
	msg := read(st, mem, "log", p[1], p[2])
	level := "info"
	switch int32(p[0]) {
	case -1:
		level = "debug"
	case 1:
		level = "warn"
	case 2:
		level = "error"
	}
	st.log.line(level, msg)
	return 0
}

// task_info(buf, limit) -> i32: the attempt's JSON description, fits or
// nothing; the same bytes for the whole attempt.
func taskInfo(_ context.Context, st *attemptState, mem api.Memory, p args) int32 {
	return fitsOrNothing(st, mem, "task_info", st.taskInfo(), p[0], p[1])
}

// config_get(key_ptr, key_len, buf, limit) -> i32: a manifest config
// value, fits or nothing; -2 when absent.
func configGet(_ context.Context, st *attemptState, mem api.Memory, p args) int32 {
	key := read(st, mem, "config_get", p[0], p[1])
	v, ok := st.config[string(key)]
	if !ok {
		return errNotFound
	}
	return fitsOrNothing(st, mem, "config_get", []byte(v), p[2], p[3])
}

// submit(spec_ptr, spec_len, id_buf, id_limit) -> i32: stages a child task
// (committed with the attempt's success) and writes its id, fits or
// nothing (nothing is staged when the id does not fit: -3). -1 for a spec
// that is not a JSON object with a handler, -6 past the children limit.
func submit(_ context.Context, st *attemptState, mem api.Memory, p args) int32 {
	spec := read(st, mem, "submit", p[0], p[1])
	var probe struct {
		ID      string `json:"id"`
		Handler string `json:"handler"`
	}
	if err := json.Unmarshal(spec, &probe); err != nil || probe.Handler == "" {
		st.log.line("warn", []byte("submit: spec is not a JSON object with a handler"))
		return errInvalid
	}
	if len(st.children) >= st.limits.Children {
		return errQuota
	}
	id := probe.ID
	if id == "" {
		id = st.childID(len(st.children) + 1)
	}
	if uint64(len(id)) > uint64(p[3]) {
		return errTooLarge
	}
	write(st, mem, "submit", p[2], []byte(id))
	st.children = append(st.children, Child{ID: id, Spec: append([]byte(nil), spec...)})
	return int32(len(id))
}

// heartbeat(ptr, len) -> i32: reports progress and extends the lease;
// 0 go on, 1 stop requested.
func heartbeat(_ context.Context, st *attemptState, mem api.Memory, p args) int32 {
	read(st, mem, "heartbeat", p[0], p[1])
	if st.heartbeat != nil {
		st.heartbeat()
	}
	if st.stopRequested() {
		return 1
	}
	return 0
}

// cancelled() -> i32: 1 when the attempt should stop (canceled, or its
// deadline is within the grace period).
func cancelled(_ context.Context, st *attemptState, _ api.Memory, _ args) int32 {
	if st.stopRequested() {
		return 1
	}
	return 0
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
		for len(b) > 0 && !utf8.Valid(b) {
			b = b[:len(b)-1]
		}
	}
	return string(b)
}

var _ = strconv.Itoa
var _ = errCancelled
var _ = errUnsupported
