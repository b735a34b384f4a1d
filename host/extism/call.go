package extism

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// ModuleName is the import module of the Extism host ABI.
const ModuleName = "extism:host/env"

// Level is an Extism log level, numbered as get_log_level reports it.
type Level int32

// Log levels (get_log_level: 0 trace ... 4 error).
const (
	LevelTrace Level = iota
	LevelDebug
	LevelInfo
	LevelWarn
	LevelError
)

var levelNames = []string{"trace", "debug", "info", "warn", "error"}

func (l Level) String() string {
	if l >= 0 && int(l) < len(levelNames) {
		return levelNames[l]
	}
	return fmt.Sprintf("level(%d)", int32(l))
}

// ParseLevel reads "trace", "debug", "info", "warn" or "error".
func ParseLevel(s string) (Level, error) {
	for i, n := range levelNames {
		if s == n {
			return Level(i), nil
		}
	}
	return 0, fmt.Errorf("unknown log level %q (want trace, debug, info, warn or error)", s)
}

// Options are a plugin's Extism settings (the manifest's "extism" object).
// Zero fields mean the defaults documented on each.
type Options struct {
	// Function is the export to call. Required.
	Function string
	// AllowedHosts may be reached by http_request: exact host names or
	// globs ("*.example.com", "*" for any). Empty: http_request is denied.
	AllowedHosts []string
	// HTTPTimeout bounds one http_request (never past the attempt's
	// deadline). Default 10s.
	HTTPTimeout time.Duration
	// HTTPMaxBytes caps one response body. Default 1 MiB.
	HTTPMaxBytes int64
	// MaxVarBytes caps the variable store (keys and values). Default 1 MiB.
	MaxVarBytes int
	// LogLevel is the lowest log_* level kept. Default info.
	LogLevel *Level
}

// Defaults for Options.
const (
	DefaultHTTPTimeout  = 10 * time.Second
	DefaultHTTPMaxBytes = 1 << 20
	DefaultMaxVarBytes  = 1 << 20
)

func (o Options) withDefaults() Options {
	if o.HTTPTimeout <= 0 {
		o.HTTPTimeout = DefaultHTTPTimeout
	}
	if o.HTTPMaxBytes <= 0 {
		o.HTTPMaxBytes = DefaultHTTPMaxBytes
	}
	if o.MaxVarBytes <= 0 {
		o.MaxVarBytes = DefaultMaxVarBytes
	}
	if o.LogLevel == nil {
		l := LevelInfo
		o.LogLevel = &l
	}
	return o
}

// Call is the state of one Extism function call (one attempt): the kernel
// memory, input, output, error, config and vars. One goroutine runs the
// guest, so it needs no lock. Use it once.
type Call struct {
	opts   Options
	k      *kernel
	input  uint64 // offset of the input block
	inLen  uint64
	config map[string]string
	vars   map[string][]byte
	log    func(Level, []byte)
	client *http.Client

	outOff, outLen uint64
	errMsg         string
	errSet         bool
	status         int32
	headers        []byte
	fault          *Fault
}

// NewCall prepares a call: input is copied into the kernel memory, which
// may grow to memoryBytes; log receives the log_* lines kept by
// Options.LogLevel. client, when not nil, replaces the HTTP client (tests).
func NewCall(opts Options, input []byte, config map[string]string, memoryBytes uint64, log func(Level, []byte), client *http.Client) (*Call, error) {
	c := &Call{opts: opts.withDefaults(), k: newKernel(memoryBytes), config: config,
		vars: map[string][]byte{}, log: log, client: client}
	var err error
	if c.input, err = c.k.put(input); err != nil {
		return nil, err
	}
	c.inLen = uint64(len(input))
	if c.client == nil {
		c.client = &http.Client{}
	}
	c.client = c.guardedClient(c.client)
	return c, nil
}

type callKey struct{}

// WithCall returns ctx carrying c for the host functions of ModuleName.
func WithCall(ctx context.Context, c *Call) context.Context {
	return context.WithValue(ctx, callKey{}, c)
}

// FaultKind says how a fault ends the attempt.
type FaultKind int

const (
	// FaultABI: the guest broke the ABI (an offset outside the kernel
	// memory, a malformed request): abi_violation.
	FaultABI FaultKind = iota
	// FaultOOM: the kernel memory limit was reached: oom.
	FaultOOM
	// FaultDenied: the guest asked for something its manifest does not
	// grant (a host not in allowed_hosts, a full variable store): a
	// permanent failure.
	FaultDenied
	// FaultIO: an allowed HTTP request failed (network, timeout, response
	// too large): a retryable failure.
	FaultIO
)

// Fault is why a host function ended the call. Host functions panic with
// it; wazero returns it wrapped in the call's error (errors.As finds it),
// and Call.Fault keeps it too.
type Fault struct {
	Kind   FaultKind
	Func   string
	Reason string
}

func (f *Fault) Error() string { return ModuleName + "." + f.Func + ": " + f.Reason }

// Fault returns the fault that ended the call, if any.
func (c *Call) Fault() *Fault { return c.fault }

func (c *Call) raise(err error) {
	var f *Fault
	if !errors.As(err, &f) {
		f = &Fault{Kind: FaultABI, Func: "?", Reason: err.Error()}
	}
	if c.fault == nil {
		c.fault = f
	}
	panic(f)
}

// Output is the range given to the last output_set, read now.
func (c *Call) Output() ([]byte, error) {
	if c.outLen == 0 {
		return nil, nil
	}
	b, err := c.k.span("output_set", c.outOff, c.outLen)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// OutputLen is the length given to the last output_set.
func (c *Call) OutputLen() uint64 { return c.outLen }

// Error is the message given to error_set, and whether one is set.
func (c *Call) Error() (string, bool) { return c.errMsg, c.errSet }

// Run initializes the guest runtime of mod the way the Extism runtime does
// and calls the function named by Options.Function. rc is the function's
// i32 result (0 when it returns nothing). ctx must come from WithCall(c).
func (c *Call) Run(ctx context.Context, mod api.Module) (rc uint32, err error) {
	if err := initRuntime(ctx, mod); err != nil {
		return 0, err
	}
	fn := mod.ExportedFunction(c.opts.Function)
	if fn == nil {
		return 0, fmt.Errorf("the plugin does not export %q (manifest extism.function)", c.opts.Function)
	}
	res, err := fn.Call(ctx)
	if err != nil {
		return 0, err
	}
	if len(res) > 0 {
		rc = api.DecodeU32(res[0])
	}
	return rc, nil
}

// initRuntime: hs_init(0, 0) after _initialize for Haskell, else
// _initialize for a WASI reactor, else __wasm_call_ctors (go-sdk's order).
func initRuntime(ctx context.Context, mod api.Module) error {
	call := func(name string, args ...uint64) error {
		if _, err := mod.ExportedFunction(name).Call(ctx, args...); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	has := func(name string, params int) bool {
		f := mod.ExportedFunction(name)
		return f != nil && len(f.Definition().ParamTypes()) == params
	}
	switch {
	case has("hs_init", 2):
		if has("_initialize", 0) {
			if err := call("_initialize"); err != nil {
				return err
			}
		}
		return call("hs_init", 0, 0)
	case has("_initialize", 0):
		return call("_initialize")
	case has("__wasm_call_ctors", 0):
		return call("__wasm_call_ctors")
	}
	return nil
}

// CheckFunction reports whether a plugin exporting fn with these param and
// result counts can be called as an Extism function.
func CheckFunction(fn string, params, results []api.ValueType) error {
	if len(params) != 0 || len(results) > 1 || (len(results) == 1 && results[0] != api.ValueTypeI32) {
		return fmt.Errorf("export %q must take no parameters and return an i32 or nothing", fn)
	}
	return nil
}
