package wasmtask

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Fake is an in-memory host for testing handlers with go test, outside
// WebAssembly: set its fields, call Run, read what the handler did.
type Fake struct {
	Input       []byte
	Info        Info
	Config      map[string]string
	OutputLimit int // 0: unlimited
	StopNow     bool

	Output   []byte
	Logs     []string
	Failed   bool
	FailKind int32 // 0 permanent, 1 retryable
	FailMsg  string
	Children []ChildSpec
}

// Run runs the registered handler (or fn, if given) against f and returns
// what wasmtask_handle would: 0 success, 1 failure.
func (f *Fake) Run(fn func(*Task) error) int32 {
	prevAbi, prevHandler := abi, handler
	defer func() { abi, handler = prevAbi, prevHandler }()
	abi = fakeHost{f}
	if fn != nil {
		handler = fn
	}
	return run()
}

type fakeHost struct{ f *Fake }

func (h fakeHost) inputLen() int32 { return int32(len(h.f.Input)) }
func (h fakeHost) inputRead(off uint32, buf []byte) int32 {
	if int(off) > len(h.f.Input) {
		return errInvalid
	}
	return int32(copy(buf, h.f.Input[off:]))
}
func (h fakeHost) outputWrite(b []byte) int32 {
	if h.f.OutputLimit > 0 && len(h.f.Output)+len(b) > h.f.OutputLimit {
		return errTooLarge
	}
	h.f.Output = append(h.f.Output, b...)
	return int32(len(b))
}
func (h fakeHost) fail(kind int32, msg []byte) {
	h.f.Failed, h.f.FailKind, h.f.FailMsg = true, kind, string(msg)
}
func (h fakeHost) log(level int32, msg []byte) {
	h.f.Logs = append(h.f.Logs, fmt.Sprintf("[%d] %s", level, msg))
}
func (h fakeHost) taskInfo(buf []byte) int32 {
	b, _ := json.Marshal(h.f.Info)
	if len(b) <= len(buf) {
		copy(buf, b)
	}
	return int32(len(b))
}
func (h fakeHost) configGet(key, buf []byte) int32 {
	v, ok := h.f.Config[string(key)]
	if !ok {
		return errNotFound
	}
	if len(v) <= len(buf) {
		copy(buf, v)
	}
	return int32(len(v))
}
func (h fakeHost) submit(spec, idBuf []byte) int32 {
	var c ChildSpec
	if json.Unmarshal(spec, &c) != nil || c.Handler == "" {
		return errInvalid
	}
	id := c.ID
	if id == "" {
		id = fmt.Sprintf("%s-c%d", strings.ReplaceAll(h.f.Info.RunID, "#", "-r"), len(h.f.Children)+1)
	}
	if len(id) > len(idBuf) {
		return errTooLarge
	}
	h.f.Children = append(h.f.Children, c)
	return int32(copy(idBuf, id))
}
func (h fakeHost) heartbeat([]byte) int32 {
	if h.f.StopNow {
		return 1
	}
	return 0
}
func (h fakeHost) cancelled() int32 {
	if h.f.StopNow {
		return 1
	}
	return 0
}
