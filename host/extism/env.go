package extism

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

const (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

// envFunc is one function of extism:host/env. fn reads its parameters from
// stack and writes its result to stack[0]; it returns an error to end the
// call (a *Fault).
type envFunc struct {
	name    string
	params  []api.ValueType
	results []api.ValueType
	fn      func(ctx context.Context, c *Call, stack []uint64) error
}

func sig(params ...api.ValueType) []api.ValueType { return params }

// envFuncs is the whole of extism:host/env as go-sdk v1.7.1 exports it, so
// that any plugin linking against the Extism runtime links here.
var envFuncs = []envFunc{
	{"alloc", sig(i64), sig(i64), func(_ context.Context, c *Call, s []uint64) error {
		off, err := c.k.alloc(s[0])
		s[0] = off
		return err
	}},
	{"free", sig(i64), nil, func(_ context.Context, c *Call, s []uint64) error { c.k.release(s[0]); return nil }},
	{"length", sig(i64), sig(i64), func(_ context.Context, c *Call, s []uint64) error { s[0] = c.k.length(s[0]); return nil }},
	{"length_unsafe", sig(i64), sig(i64), func(_ context.Context, c *Call, s []uint64) error { s[0] = c.k.length(s[0]); return nil }},
	{"load_u8", sig(i64), sig(i32), func(_ context.Context, c *Call, s []uint64) error {
		v, err := c.k.loadU8("load_u8", s[0])
		s[0] = uint64(v)
		return err
	}},
	{"load_u64", sig(i64), sig(i64), func(_ context.Context, c *Call, s []uint64) error {
		v, err := c.k.loadU64("load_u64", s[0])
		s[0] = v
		return err
	}},
	{"store_u8", sig(i64, i32), nil, func(_ context.Context, c *Call, s []uint64) error { return c.k.storeU8(s[0], uint8(s[1])) }},
	{"store_u64", sig(i64, i64), nil, func(_ context.Context, c *Call, s []uint64) error { return c.k.storeU64(s[0], s[1]) }},
	{"input_length", nil, sig(i64), func(_ context.Context, c *Call, s []uint64) error { s[0] = c.inLen; return nil }},
	{"input_offset", nil, sig(i64), func(_ context.Context, c *Call, s []uint64) error { s[0] = c.input; return nil }},
	{"input_load_u8", sig(i64), sig(i32), func(_ context.Context, c *Call, s []uint64) error {
		if s[0] >= c.inLen {
			return c.inputFault("input_load_u8", s[0], 1)
		}
		v, err := c.k.loadU8("input_load_u8", c.input+s[0])
		s[0] = uint64(v)
		return err
	}},
	{"input_load_u64", sig(i64), sig(i64), func(_ context.Context, c *Call, s []uint64) error {
		if s[0] >= c.inLen || s[0]+8 < s[0] {
			return c.inputFault("input_load_u64", s[0], 8)
		}
		// The input block is 8-byte padded, so a u64 read of its last
		// bytes stays inside (PDKs only do that when 8 bytes remain).
		v, err := c.k.loadU64("input_load_u64", c.input+s[0])
		s[0] = v
		return err
	}},
	{"output_set", sig(i64, i64), nil, func(_ context.Context, c *Call, s []uint64) error {
		if _, err := c.k.span("output_set", s[0], s[1]); err != nil && s[1] > 0 {
			return err
		}
		c.outOff, c.outLen = s[0], s[1]
		c.k.pinned = s[0]
		return nil
	}},
	{"error_set", sig(i64), nil, func(_ context.Context, c *Call, s []uint64) error {
		if s[0] == 0 {
			c.errMsg, c.errSet = "", false
			return nil
		}
		b := c.k.bytes(s[0])
		c.errMsg, c.errSet = truncate(b, 4096), true
		if c.errMsg == "" {
			c.errMsg = "error_set with an empty message"
		}
		return nil
	}},
	{"config_get", sig(i64), sig(i64), func(_ context.Context, c *Call, s []uint64) error {
		v, ok := c.config[string(c.k.bytes(s[0]))]
		if !ok {
			s[0] = 0
			return nil
		}
		off, err := c.k.put([]byte(v))
		s[0] = off
		return err
	}},
	{"var_get", sig(i64), sig(i64), func(_ context.Context, c *Call, s []uint64) error {
		v, ok := c.vars[string(c.k.bytes(s[0]))]
		if !ok {
			s[0] = 0
			return nil
		}
		off, err := c.k.put(v)
		s[0] = off
		return err
	}},
	{"var_set", sig(i64, i64), nil, func(_ context.Context, c *Call, s []uint64) error {
		return c.varSet(string(c.k.bytes(s[0])), s[1])
	}},
	{"http_request", sig(i64, i64), sig(i64), func(ctx context.Context, c *Call, s []uint64) error {
		off, err := c.httpRequest(ctx, s[0], s[1])
		s[0] = off
		return err
	}},
	{"http_status_code", nil, sig(i32), func(_ context.Context, c *Call, s []uint64) error {
		s[0] = api.EncodeI32(c.status)
		return nil
	}},
	{"http_headers", nil, sig(i64), func(_ context.Context, c *Call, s []uint64) error {
		off, err := c.k.put(c.headers)
		s[0] = off
		return err
	}},
	{"log_trace", sig(i64), nil, logAt(LevelTrace)},
	{"log_debug", sig(i64), nil, logAt(LevelDebug)},
	{"log_info", sig(i64), nil, logAt(LevelInfo)},
	{"log_warn", sig(i64), nil, logAt(LevelWarn)},
	{"log_error", sig(i64), nil, logAt(LevelError)},
	{"get_log_level", nil, sig(i32), func(_ context.Context, c *Call, s []uint64) error {
		s[0] = api.EncodeI32(int32(*c.opts.LogLevel))
		return nil
	}},
	// The functions below are the host's side of the kernel in go-sdk; it
	// exports them in the same module, so a plugin may import them.
	{"memory_bytes", nil, sig(i64), func(_ context.Context, c *Call, s []uint64) error { s[0] = uint64(len(c.k.mem)); return nil }},
	{"reset", nil, nil, func(_ context.Context, c *Call, s []uint64) error { return nil }},
	{"input_set", sig(i64, i64), nil, func(_ context.Context, c *Call, s []uint64) error {
		if _, err := c.k.span("input_set", s[0], s[1]); err != nil && s[1] > 0 {
			return err
		}
		c.input, c.inLen = s[0], s[1]
		return nil
	}},
	{"output_length", nil, sig(i64), func(_ context.Context, c *Call, s []uint64) error { s[0] = c.outLen; return nil }},
	{"output_offset", nil, sig(i64), func(_ context.Context, c *Call, s []uint64) error { s[0] = c.outOff; return nil }},
	{"error_get", nil, sig(i64), func(_ context.Context, c *Call, s []uint64) error {
		s[0] = 0
		if c.errSet {
			off, err := c.k.put([]byte(c.errMsg))
			s[0] = off
			return err
		}
		return nil
	}},
}

func logAt(level Level) func(context.Context, *Call, []uint64) error {
	return func(_ context.Context, c *Call, s []uint64) error {
		msg := c.k.bytes(s[0])
		if level >= *c.opts.LogLevel && c.log != nil {
			c.log(level, msg)
		}
		c.k.release(s[0]) // the Extism runtime frees log messages
		return nil
	}
}

func (c *Call) inputFault(fn string, i, n uint64) error {
	return &Fault{Kind: FaultABI, Func: fn, Reason: fmt.Sprintf("read of %d bytes at input index %d, the input has %d bytes", n, i, c.inLen)}
}

// varSet stores (or, for valOff 0, deletes) a variable within MaxVarBytes.
func (c *Call) varSet(name string, valOff uint64) error {
	if valOff == 0 {
		delete(c.vars, name)
		return nil
	}
	val := c.k.bytes(valOff)
	size := len(name) + len(val)
	for k, v := range c.vars {
		if k != name {
			size += len(k) + len(v)
		}
	}
	if size > c.opts.MaxVarBytes {
		return &Fault{Kind: FaultDenied, Func: "var_set", Reason: fmt.Sprintf(
			"the variable store would hold %d bytes, above its limit of %d (raise extism.max_var_bytes in the manifest)", size, c.opts.MaxVarBytes)}
	}
	c.vars[name] = append([]byte(nil), val...)
	return nil
}

// Instantiate adds the host module extism:host/env to rt. Its functions
// find their Call in the context (WithCall); called without one they end
// the call as an ABI fault.
func Instantiate(ctx context.Context, rt wazero.Runtime) error {
	b := rt.NewHostModuleBuilder(ModuleName)
	for _, f := range envFuncs {
		f := f
		b.NewFunctionBuilder().WithGoFunction(api.GoFunc(func(ctx context.Context, stack []uint64) {
			c, ok := ctx.Value(callKey{}).(*Call)
			if !ok {
				panic(&Fault{Kind: FaultABI, Func: f.name, Reason: "called outside an Extism function call"})
			}
			if err := f.fn(ctx, c, stack); err != nil {
				c.raise(err)
			}
		}), f.params, f.results).Export(f.name)
	}
	_, err := b.Instantiate(ctx)
	return err
}

// FunctionNames lists the functions of extism:host/env, sorted.
func FunctionNames() []string {
	var out []string
	for _, f := range envFuncs {
		out = append(out, f.name)
	}
	sort.Strings(out)
	return out
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

// headersJSON encodes response headers as go-sdk does: lower-case names,
// values joined with ",".
func headersJSON(h map[string]string) []byte {
	b, _ := json.Marshal(h)
	return b
}
