// Package wasmtask is the Go SDK for wasmtask handlers: build a module with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o handler.wasm .
//
// and register one handler function from an init function:
//
//	func init() { wasmtask.Handle(upper) }
//	func main() {}
//
//	func upper(t *wasmtask.Task) error {
//		return t.Output(bytes.ToUpper(t.Input()))
//	}
//
// A nil error is success. An error fails the attempt: retryably by default,
// permanently when wrapped with Permanent. Outside wasip1 (go test on your
// machine) the SDK runs against Fake, an in-memory host.
package wasmtask

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
)

// abiHost is the ABI as the SDK uses it: the wasip1 imports, or Fake.
type abiHost interface {
	inputLen() int32
	inputRead(off uint32, buf []byte) int32
	outputWrite(b []byte) int32
	fail(kind int32, msg []byte)
	log(level int32, msg []byte)
	taskInfo(buf []byte) int32
	configGet(key, buf []byte) int32
	submit(spec, idBuf []byte) int32
	heartbeat(detail []byte) int32
	cancelled() int32
}

var (
	abi     abiHost
	handler func(*Task) error
)

// Handle registers the handler that runs for every attempt. Call it from
// an init function (reactor modules run init in _initialize).
func Handle(fn func(*Task) error) { handler = fn }

// Negative results of the ABI.
const (
	errInvalid     = -1
	errNotFound    = -2
	errTooLarge    = -3
	errCancelled   = -4
	errUnsupported = -5
	errQuota       = -6
)

// Errors returned by Task methods.
var (
	ErrOutputTooLarge = errors.New("wasmtask: output exceeds the plugin's output limit")
	ErrInvalid        = errors.New("wasmtask: invalid argument")
	ErrQuota          = errors.New("wasmtask: quota exceeded")
	ErrTooLarge       = errors.New("wasmtask: too large")
)

func abiError(code int32) error {
	switch code {
	case errInvalid:
		return ErrInvalid
	case errTooLarge:
		return ErrTooLarge
	case errQuota:
		return ErrQuota
	case errCancelled:
		return errors.New("wasmtask: cancelled")
	case errUnsupported:
		return errors.New("wasmtask: unsupported by this host")
	case errNotFound:
		return errors.New("wasmtask: not found")
	}
	return fmt.Errorf("wasmtask: host returned %d", code)
}

// permanentError marks a failure that must not be retried.
type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// Permanent wraps err so the attempt fails without retry (fail kind 0).
func Permanent(err error) error { return permanentError{err} }

// Retryable returns err unchanged: plain errors are retried (under the
// task's max_attempts). It exists to say so at the call site.
func Retryable(err error) error { return err }

// run is wasmtask_handle: it calls the handler and maps its error.
func run() int32 {
	defer runtime.Gosched() // lets a Go guest's runtime settle before the host closes it
	if handler == nil {
		msg := []byte("wasmtask: no handler registered (call wasmtask.Handle in init)")
		abi.fail(0, msg)
		return 1
	}
	t := &Task{}
	err := safeCall(handler, t)
	if err == nil {
		return 0
	}
	kind := int32(1)
	var p permanentError
	if errors.As(err, &p) {
		kind = 0
	}
	abi.fail(kind, []byte(err.Error()))
	return 1
}

func safeCall(fn func(*Task) error, t *Task) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panic: %v", p)
		}
	}()
	return fn(t)
}

// Task is the attempt being run.
type Task struct {
	input []byte
	read  bool
	info  *Info
}

// Input returns the task input (read once, in chunks).
func (t *Task) Input() []byte {
	if t.read {
		return t.input
	}
	n := abi.inputLen()
	buf := make([]byte, n)
	for off := 0; off < len(buf); {
		got := abi.inputRead(uint32(off), buf[off:])
		if got <= 0 {
			buf = buf[:off]
			break
		}
		off += int(got)
	}
	t.input, t.read = buf, true
	return buf
}

// DecodeInput decodes a JSON input into v; a malformed input is a
// permanent failure (retrying cannot fix it).
func (t *Task) DecodeInput(v any) error {
	if err := json.Unmarshal(t.Input(), v); err != nil {
		return Permanent(fmt.Errorf("decode input: %w", err))
	}
	return nil
}

// Output appends b to the attempt's output.
func (t *Task) Output(b []byte) error {
	if r := abi.outputWrite(b); r < 0 {
		if r == errTooLarge {
			return ErrOutputTooLarge
		}
		return abiError(r)
	}
	return nil
}

// OutputString appends s to the output.
func (t *Task) OutputString(s string) error { return t.Output([]byte(s)) }

// OutputJSON appends v as JSON to the output.
func (t *Task) OutputJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return Permanent(err)
	}
	return t.Output(b)
}

// Level of a log line.
type Level int32

const (
	LevelDebug Level = -1
	LevelInfo  Level = 0
	LevelWarn  Level = 1
	LevelError Level = 2
)

// Log writes one log line (dropped past the plugin's log quota).
func (t *Task) Log(level Level, msg string) { abi.log(int32(level), []byte(msg)) }

// Logf writes a formatted info line.
func (t *Task) Logf(format string, args ...any) { t.Log(LevelInfo, fmt.Sprintf(format, args...)) }

// Info is what task_info returns.
type Info struct {
	TaskID      string            `json:"task_id"`
	RunID       string            `json:"run_id"`
	Attempt     int               `json:"attempt"`
	MaxAttempts int               `json:"max_attempts"`
	Handler     string            `json:"handler"`
	Module      string            `json:"module"`
	DeadlineMs  int64             `json:"deadline_ms"`
	ParentID    string            `json:"parent_id"`
	Labels      map[string]string `json:"labels"`
}

// Info returns the attempt's description (ids, attempt number, deadline...).
func (t *Task) Info() Info {
	if t.info != nil {
		return *t.info
	}
	var info Info
	n := abi.taskInfo(nil) // size probe
	if n > 0 {
		buf := make([]byte, n)
		if abi.taskInfo(buf) == n {
			json.Unmarshal(buf, &info)
		}
	}
	t.info = &info
	return info
}

// Config returns a value of the plugin's manifest config.
func (t *Task) Config(key string) (string, bool) {
	n := abi.configGet([]byte(key), nil)
	if n < 0 {
		return "", false
	}
	buf := make([]byte, n)
	if abi.configGet([]byte(key), buf) != n {
		return "", false
	}
	return string(buf), true
}

// ChildSpec is a task submitted by a handler (the task spec of
// docs/task-spec.md in the wasmtask repository). Without ID, the host
// derives one from this run and the submission's ordinal, so a retried
// handler creates no duplicates.
type ChildSpec struct {
	ID          string            `json:"id,omitempty"`
	Handler     string            `json:"handler"`
	Input       string            `json:"input,omitempty"`
	InputB64    string            `json:"input_b64,omitempty"`
	MaxAttempts int               `json:"max_attempts,omitempty"`
	Timeout     string            `json:"timeout,omitempty"`
	Priority    int               `json:"priority,omitempty"`
	After       []string          `json:"after,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// Submit stages a child task, committed when this attempt succeeds, and
// returns its id.
func (t *Task) Submit(spec ChildSpec) (string, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return "", Permanent(err)
	}
	buf := make([]byte, 256)
	n := abi.submit(b, buf)
	if n == errTooLarge {
		return "", ErrTooLarge
	}
	if n < 0 {
		return "", abiError(n)
	}
	return string(buf[:n]), nil
}

// Heartbeat reports progress and extends the lease; it returns true when
// the attempt should stop.
func (t *Task) Heartbeat(detail string) (stop bool) { return abi.heartbeat([]byte(detail)) == 1 }

// Cancelled reports whether the attempt should stop (canceled, or close to
// its deadline).
func (t *Task) Cancelled() bool { return abi.cancelled() == 1 }
