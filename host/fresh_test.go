package host

import (
	"context"
	"fmt"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/tetratelabs/wazero"
	"github.com/wasmtask/wasmtask/dispatch"
)

// TestFreshAttemptsShareNothing: fresh attempts keep wazero's call engines
// and their instance config between instances (callengine.go,
// freshConfig), and still share nothing: many at once, with every way an
// attempt ends mixed in (trap, failure, oom, timeout), each sees a new
// instance (the counter guest's global and memory counters are 1, and its
// busy flag would trap if two ran in one instance), and WASI stdout lands
// in the log of the attempt that printed, and only there.
func TestFreshAttemptsShareNothing(t *testing.T) {
	h := newTestHost(t, Config{})
	m := mustLoad(t, h, readWasm(t, "counter"), 64)
	type step struct {
		op      string
		outcome dispatch.Outcome
		printed bool
	}
	steps := []step{
		{op: "", outcome: dispatch.OutcomeOK},
		{op: "p", outcome: dispatch.OutcomeOK, printed: true},
		{op: "t", outcome: dispatch.OutcomeTrap},
		{op: "f", outcome: dispatch.OutcomeFailed},
		{op: "g", outcome: dispatch.OutcomeOOM},
		{op: "s", outcome: dispatch.OutcomeOK},
		{op: "l", outcome: dispatch.OutcomeTimeout},
	}
	const workers, rounds = 8, 30
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				s := steps[(w+i)%len(steps)]
				lim := DefaultLimits()
				if s.op == "l" {
					lim.Timeout, lim.Grace = 50*time.Millisecond, 0
				}
				res := h.Run(context.Background(), m, Attempt{Input: []byte(s.op), Limits: lim,
					Info: TaskInfo{TaskID: "t", RunID: "t#1", Attempt: 1, MaxAttempts: 1, Handler: "counter"}})
				if res.Outcome != s.outcome {
					errs <- fmt.Errorf("op %q: outcome %s (%s), want %s", s.op, res.Outcome, res.Error, s.outcome)
					continue
				}
				if s.outcome == dispatch.OutcomeOK && string(res.Output) != le32(1, 1) {
					errs <- fmt.Errorf("op %q: counters %x, want 1 and 1 (a new instance)", s.op, res.Output)
				}
				if got := strings.Count(string(res.Log), "hi\n"); got != map[bool]int{true: 1}[s.printed] {
					errs <- fmt.Errorf("op %q: log %q has %d lines the guest printed, want %d", s.op, res.Log, got, map[bool]int{true: 1}[s.printed])
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestCallEngineReuseActive: with the wazero the host is built with, fresh
// attempts do use kept call engines (callengine.go reads wazero's types by
// reflection and falls back to a new engine per call when they differ: a
// wazero upgrade that changes them fails here, not silently slower).
func TestCallEngineReuseActive(t *testing.T) {
	if goruntime.GOARCH != "amd64" && goruntime.GOARCH != "arm64" {
		t.Skip("wazero's compiler (whose call engines the host keeps) runs on amd64 and arm64 only")
	}
	h := newTestHost(t, Config{})
	m := mustLoad(t, h, readWasm(t, "bench"), 0) // exports _initialize and wasmtask_handle
	for i := range 50 {
		res := h.Run(context.Background(), m, Attempt{Input: []byte("x")})
		if res.Outcome != dispatch.OutcomeOK || string(res.Output) != "x" {
			t.Fatalf("attempt %d: %s (%s), output %q", i, res.Outcome, res.Error, res.Output)
		}
	}
	if layout.Load() == nil {
		t.Fatal("wazero's call engine types are not the ones callengine.go expects: every fresh attempt makes new call engines")
	}
	// sync.Pool drops a kept engine at times (two collections in a row,
	// or at random under the race detector); most are taken again.
	if !m.freshEntry {
		t.Fatal("the module has no fresh entry (entry.go): its attempts call _initialize and wasmtask_handle apart")
	}
	if n := m.entryCalls.reused.Load(); n < 10 {
		t.Fatalf("of 49 attempts after the first, %d reused a call engine", n)
	}
}

// TestFreshEntry: a reactor's fresh attempt runs _initialize and
// wasmtask_handle in one call (entry.go), for WAT modules with and without
// globals of their own and for a Go guest, and a trap still says which of
// the two it came from.
func TestFreshEntry(t *testing.T) {
	h := newGuestTestHost(t, Config{})
	for _, tc := range []struct {
		name   string
		wasm   []byte
		input  string
		want   dispatch.Outcome
		output string
		prefix bool // the error starts with "_initialize: "
	}{
		{name: "reactor", wasm: readWasm(t, "reactor"), want: dispatch.OutcomeOK, output: le32(42)},
		{name: "no globals", wasm: readWasm(t, "inittrap"), want: dispatch.OutcomeOK, output: "ok"},
		{name: "_initialize traps", wasm: readWasm(t, "inittrap"), input: "x", want: dispatch.OutcomeTrap, prefix: true},
		{name: "wasmtask_handle traps", wasm: readWasm(t, "inittrap"), input: "xx", want: dispatch.OutcomeTrap},
		{name: "go", wasm: goEchoWasm(t), input: "go", want: dispatch.OutcomeOK, output: "GO"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mustLoad(t, h, tc.wasm, 0)
			if !m.freshEntry {
				t.Fatal("the module has no fresh entry")
			}
			for range 3 { // with call engines kept from the attempt before
				res := h.Run(context.Background(), m, Attempt{Input: []byte(tc.input)})
				if res.Outcome != tc.want || string(res.Output) != tc.output {
					t.Fatalf("%s (%s), output %q; want %s, %q", res.Outcome, res.Error, res.Output, tc.want, tc.output)
				}
				if got := strings.HasPrefix(res.Error, "_initialize: "); got != tc.prefix {
					t.Fatalf("error %q: prefix _initialize %v, want %v", res.Error, got, tc.prefix)
				}
			}
		})
	}
}

// TestCallEngineGrownStackNotKept: a call engine whose stack grew in a
// deep call is not kept (it would hold megabytes while idle), one whose
// call stayed shallow is; an engine of another compiled module is never
// handed to an instance.
func TestCallEngineGrownStackNotKept(t *testing.T) {
	if goruntime.GOARCH != "amd64" && goruntime.GOARCH != "arm64" {
		t.Skip("wazero's compiler runs on amd64 and arm64 only")
	}
	h := newTestHost(t, Config{})
	m := mustLoad(t, h, readWasm(t, "deep"), 0)
	other := mustLoad(t, h, readWasm(t, "bench"), 0)
	ctx := context.Background()
	for _, tc := range []struct {
		input string // deep recurses 10,000 frames per input byte
		keep  bool
	}{{"", true}, {"xxxxxxxxxx", false}} {
		mod, err := m.rt.rt.InstantiateModule(m.withMemory(ctx, new(*guestMemory)), m.compiled, m.cfg)
		if err != nil {
			t.Fatal(err)
		}
		var c callEngines
		c.name = handleExport
		fn := c.get(mod)
		st := &attemptState{input: []byte(tc.input), limits: DefaultLimits()}
		var stack [1]uint64
		if err := fn.CallWithStack(context.WithValue(ctx, stateKey{}, st), stack[:]); err != nil {
			t.Fatalf("input %q: %v", tc.input, err)
		}
		if got := c.keep(mod, fn); got != tc.keep {
			t.Errorf("input %q: keep %v, want %v", tc.input, got, tc.keep)
		}
		if tc.keep {
			c.put(mod, fn)
			om, err := other.rt.rt.InstantiateModule(other.withMemory(ctx, new(*guestMemory)), other.compiled, other.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if c.get(om); c.reused.Load() != 0 {
				t.Errorf("an engine of %s was handed to an instance of %s", m.Hash, other.Hash)
			}
			om.Close(ctx)
		}
		mod.Close(ctx)
	}
}

// TestKeptCallEngineStackZeroed: a call engine kept for the next fresh
// instance (callengine.go) carries nothing of the call it ran: its stack,
// where the finished call spilled its values, is all zeros.
func TestKeptCallEngineStackZeroed(t *testing.T) {
	if goruntime.GOARCH != "amd64" && goruntime.GOARCH != "arm64" {
		t.Skip("wazero's compiler (whose call engines the host keeps) runs on amd64 and arm64 only")
	}
	h := newTestHost(t, Config{})
	m := mustLoad(t, h, readWasm(t, "bench"), 0)
	if res := h.Run(context.Background(), m, Attempt{Input: []byte("secret")}); res.Outcome != dispatch.OutcomeOK {
		t.Fatalf("attempt: %s (%s)", res.Outcome, res.Error)
	}
	l := layout.Load()
	if l == nil {
		t.Fatal("wazero's call engine types are not the ones callengine.go expects")
	}
	// Run an attempt by hand to hold its call engine before and after put.
	mod, err := m.rt.rt.InstantiateModule(context.Background(), m.compiled, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatal(err)
	}
	defer mod.Close(context.Background())
	fn := m.entryCalls.get(mod)
	stack := *(*[]byte)(unsafe.Add(ptrOf(fn), l.stackOff))
	for i := range stack {
		stack[i] = 0xA5 // what a finished call could leave there
	}
	m.entryCalls.put(mod, fn)
	for i, b := range stack {
		if b != 0 {
			t.Fatalf("kept call engine's stack byte %d of %d is %#x, want 0", i, len(stack), b)
		}
	}
}
