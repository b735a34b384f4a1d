package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	goruntime "runtime"
	"strconv"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wasmtask/wasmtask/dispatch"

	"github.com/wasmtask/wasmtask/internal/cputime"
)

// BenchmarkAttempt measures one attempt end to end (instantiate,
// _initialize, wasmtask_handle reading a 100-byte input and writing it
// back, close) on the Host, side by side with a bare-wazero baseline doing
// the same work with the same runtime config and a minimal host module:
//
//	host            Host.Run: a fresh instance per attempt (policy fresh)
//	reuse           Pool.Run with the reuse policy: one warm instance, kept
//	                between attempts (no instantiate, no _initialize)
//	bare            wazero alone, the call under a per-attempt deadline
//	                context as Run's is (WithCloseOnContextDone watches it)
//	bare-nodeadline wazero alone under context.Background: no deadline, so
//	                no watcher goroutine per call (a guest cannot be stopped)
//	paired          host and bare (with deadline) alternating, with their
//	                ratio host/bare: robust to the load of a shared machine
//
// for the WAT guest (testdata/bench.wat) and the Go guest (testdata/goecho).
// Reproduce: go test -run='^$' -bench=Attempt -benchmem ./host/
// (fresh beside reuse: -bench='Attempt/.*/(host|reuse)$' -count=5). Fresh and
// reuse are not alternated like paired: a fresh Go attempt leaves megabytes
// of garbage whose collection would land in the reuse attempt after it.
func BenchmarkAttempt(b *testing.B) {
	input := bytes.Repeat([]byte("0123456789"), 10)
	want := bytes.ToUpper(input)
	guests := []struct {
		name string
		wasm func(testing.TB) []byte
		want []byte
	}{
		{name: "wat", wasm: func(tb testing.TB) []byte { return readWasm(tb, "bench") }, want: input},
		{name: "go", wasm: goEchoWasm, want: want},
	}
	for _, g := range guests {
		b.Run(g.name, func(b *testing.B) {
			wasm := g.wasm(b)
			b.Run("host", func(b *testing.B) {
				h := newTestHost(b, Config{})
				m := mustLoad(b, h, wasm, 0)
				a := Attempt{Input: input, Info: TaskInfo{TaskID: "t", RunID: "t#1", Attempt: 1, MaxAttempts: 3, Handler: "bench"}}
				b.ReportAllocs()
				b.ResetTimer()
				cpu := cputime.Process()
				for b.Loop() {
					res := h.Run(context.Background(), m, a)
					if res.Outcome != dispatch.OutcomeOK || !bytes.Equal(res.Output, g.want) {
						b.Fatalf("Outcome %s (%s), Output %q", res.Outcome, res.Error, res.Output)
					}
				}
				cputime.Report(b, cpu)
			})
			b.Run("reuse", func(b *testing.B) {
				h := newTestHost(b, Config{})
				p, err := h.NewPool(mustLoad(b, h, wasm, 0), InstancePolicy{Mode: InstancesReuse, MaxUses: 1 << 30}, nil)
				if err != nil {
					b.Fatal(err)
				}
				a := Attempt{Input: input, Info: TaskInfo{TaskID: "t", RunID: "t#1", Attempt: 1, MaxAttempts: 3, Handler: "bench"}}
				b.ReportAllocs()
				b.ResetTimer()
				cpu := cputime.Process()
				for b.Loop() {
					res := p.Run(context.Background(), a)
					if res.Outcome != dispatch.OutcomeOK || !bytes.Equal(res.Output, g.want) {
						b.Fatalf("Outcome %s (%s), Output %q", res.Outcome, res.Error, res.Output)
					}
				}
				cputime.Report(b, cpu)
				b.StopTimer()
				if st := p.Stats(); st.Created != 1 {
					b.Fatalf("the pool created %d instances, want 1", st.Created)
				}
			})
			// paired alternates host and bare attempts (in both orders) so
			// that both see the same machine load; it reports the mean of
			// each and their ratio, the figure to trust on a shared machine.
			b.Run("paired", func(b *testing.B) {
				h := newTestHost(b, Config{})
				m := mustLoad(b, h, wasm, 0)
				br := newBare(b, wasm)
				a := Attempt{Input: input, Info: TaskInfo{TaskID: "t", RunID: "t#1", Attempt: 1, MaxAttempts: 3, Handler: "bench"}}
				var hostT, bareT time.Duration
				n := 0
				runHost := func() {
					t0 := time.Now()
					res := h.Run(context.Background(), m, a)
					hostT += time.Since(t0)
					if res.Outcome != dispatch.OutcomeOK || !bytes.Equal(res.Output, g.want) {
						b.Fatalf("Outcome %s (%s), Output %q", res.Outcome, res.Error, res.Output)
					}
				}
				runBare := func() {
					t0 := time.Now()
					out, err := br.run(input, true)
					bareT += time.Since(t0)
					if err != nil || !bytes.Equal(out, g.want) {
						b.Fatalf("bare: %v, output %q", err, out)
					}
				}
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if n%2 == 0 {
						runHost()
						runBare()
					} else {
						runBare()
						runHost()
					}
					n++
				}
				b.ReportMetric(float64(hostT.Nanoseconds())/float64(n), "host-ns/attempt")
				b.ReportMetric(float64(bareT.Nanoseconds())/float64(n), "bare-ns/attempt")
				b.ReportMetric(float64(hostT)/float64(bareT), "host/bare")
			})
			for _, deadline := range []bool{true, false} {
				name := "bare"
				if !deadline {
					name = "bare-nodeadline"
				}
				b.Run(name, func(b *testing.B) {
					bare := newBare(b, wasm)
					b.ReportAllocs()
					b.ResetTimer()
					for b.Loop() {
						out, err := bare.run(input, deadline)
						if err != nil || !bytes.Equal(out, g.want) {
							b.Fatalf("bare: %v, output %q", err, out)
						}
					}
				})
			}
		})
	}
}

// bare runs a module on wazero alone: the Host's runtime config, WASI, and
// a host module with just input_read and output_write.
type bare struct {
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	cfg      wazero.ModuleConfig
	hasInit  bool
}

type bareState struct {
	input  []byte
	output []byte
}

type bareKey struct{}

func newBare(tb testing.TB, wasm []byte) *bare {
	tb.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(DefaultLimits().MemoryPages).
		WithCompilationCache(wazero.NewCompilationCache()))
	tb.Cleanup(func() { rt.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	_, err := rt.NewHostModuleBuilder(abiModule).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
		st := ctx.Value(bareKey{}).(*bareState)
		off, buf, limit := uint32(stack[0]), uint32(stack[1]), uint32(stack[2])
		if int(off) > len(st.input) {
			stack[0] = api.EncodeI32(-1)
			return
		}
		n := min(int(limit), len(st.input)-int(off))
		if !mod.Memory().Write(buf, st.input[off:int(off)+n]) {
			panic("input_read: out of range")
		}
		stack[0] = api.EncodeI32(int32(n))
	}), []api.ValueType{api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}).
		Export("input_read").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
		st := ctx.Value(bareKey{}).(*bareState)
		b, ok := mod.Memory().Read(uint32(stack[0]), uint32(stack[1]))
		if !ok {
			panic("output_write: out of range")
		}
		st.output = append(st.output, b...)
		stack[0] = api.EncodeI32(int32(len(b)))
	}), []api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}).
		Export("output_write").
		Instantiate(ctx)
	if err != nil {
		tb.Fatalf("bare host module: %v", err)
	}
	compiled, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		tb.Fatalf("bare compile: %v", err)
	}
	_, hasInit := compiled.ExportedFunctions()["_initialize"]
	return &bare{rt: rt, compiled: compiled, hasInit: hasInit,
		// The same instance config as the Host's, stdout and stderr aside:
		// wazero's defaults (fake clocks, seeded random) cost more.
		cfg: wazero.NewModuleConfig().WithName("").WithStartFunctions().
			WithSysWalltime().WithSysNanotime().WithRandSource(rand.Reader)}
}

func (br *bare) run(input []byte, deadline bool) ([]byte, error) {
	ctx := context.Background()
	if deadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	st := &bareState{input: input}
	ctx = context.WithValue(ctx, bareKey{}, st)
	mod, err := br.rt.InstantiateModule(ctx, br.compiled, br.cfg)
	if err != nil {
		return nil, err
	}
	defer mod.Close(context.Background())
	if br.hasInit {
		if _, err := mod.ExportedFunction("_initialize").Call(ctx); err != nil {
			return nil, err
		}
	}
	if _, err := mod.ExportedFunction(handleExport).Call(ctx); err != nil {
		return nil, err
	}
	return st.output, nil
}

// BenchmarkResetCost measures the reset policy (reuse with memory and
// mutable globals restored to their state right after _initialize before
// each attempt) for the Go guest, against fresh and reuse in the same run:
//
//	fresh           Host.Run: instantiate, _initialize, call, close
//	restore-memory  copying the post-_initialize memory snapshot back into a
//	                live instance (api.Memory.Write), and nothing else: a
//	                lower bound of reset (which restores the mutable
//	                globals too)
//	reset           Pool.Run with the reset policy: memory and mutable
//	                globals restored before every attempt
//	reuse           Pool.Run with the reuse policy
//
// Reproduce: go test -run='^$' -bench=ResetCost -count=5 ./host/
func BenchmarkResetCost(b *testing.B) {
	wasm := goEchoWasm(b)
	input := []byte("hello")
	a := Attempt{Input: input, Info: TaskInfo{TaskID: "t", RunID: "t#1", Attempt: 1, MaxAttempts: 3, Handler: "bench"}}
	b.Run("fresh", func(b *testing.B) {
		h := newTestHost(b, Config{})
		m := mustLoad(b, h, wasm, 0)
		cpu := cputime.Process()
		for b.Loop() {
			if res := h.Run(context.Background(), m, a); res.Outcome != dispatch.OutcomeOK {
				b.Fatal(res.Error)
			}
		}
		cputime.Report(b, cpu)
	})
	b.Run("restore-memory", func(b *testing.B) {
		h := newTestHost(b, Config{})
		m := mustLoad(b, h, wasm, 0)
		ctx := context.Background()
		mod, err := m.rt.rt.InstantiateModule(ctx, m.compiled, m.cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer mod.Close(ctx)
		if _, err := mod.ExportedFunction("_initialize").Call(ctx); err != nil {
			b.Fatal(err)
		}
		mem := mod.Memory()
		live, _ := mem.Read(0, mem.Size())
		snapshot := bytes.Clone(live)
		b.SetBytes(int64(len(snapshot)))
		for b.Loop() {
			if !mem.Write(0, snapshot) {
				b.Fatal("write")
			}
		}
		b.ReportMetric(float64(len(snapshot))/(1<<20), "MiB-snapshot")
	})
	for _, mode := range []InstanceMode{InstancesReset, InstancesReuse} {
		b.Run(string(mode), func(b *testing.B) {
			h := newTestHost(b, Config{})
			p, err := h.NewPool(mustLoad(b, h, wasm, 0), InstancePolicy{Mode: mode, MaxUses: 1 << 30}, wasm)
			if err != nil {
				b.Fatal(err)
			}
			cpu := cputime.Process()
			for b.Loop() {
				if res := p.Run(context.Background(), a); res.Outcome != dispatch.OutcomeOK {
					b.Fatal(res.Error)
				}
			}
			cputime.Report(b, cpu)
		})
	}
}

// BenchmarkAttemptParallel runs attempts from 8 x GOMAXPROCS goroutines at
// once, as serve's workers do, through the Executor (handler resolution,
// limits, result conversion) in a fresh instance each (fresh) or in a pool
// of warm instances (reuse):
//
//	go test -run='^$' -bench=AttemptParallel -benchtime=2s ./host/
func BenchmarkAttemptParallel(b *testing.B) {
	guests := []struct {
		name string
		wasm func(testing.TB) []byte
	}{
		{name: "wat", wasm: func(tb testing.TB) []byte { return readWasm(tb, "bench") }},
		{name: "go", wasm: goEchoWasm},
		{name: "gosdk", wasm: func(tb testing.TB) []byte { return goGuestWasm(tb, "gonoop") }},
	}
	for _, g := range guests {
		for _, mode := range []InstanceMode{InstancesFresh, InstancesReuse} {
			b.Run(g.name+"/"+string(mode), func(b *testing.B) {
				wasm := g.wasm(b)
				h := newTestHost(b, Config{MaxIdleInstances: 8 * goruntime.GOMAXPROCS(0)})
				m := mustLoad(b, h, wasm, 0)
				p, err := h.NewPool(m, InstancePolicy{Mode: mode, MaxUses: benchMaxUses}, nil)
				if err != nil {
					b.Fatal(err)
				}
				x := NewExecutor(h, func(context.Context, string) (Plugin, error) {
					return Plugin{Module: m, Limits: DefaultLimits(), Pool: p}, nil
				})
				job := dispatch.Job{Task: "t", Run: "t#1", Attempt: 1, MaxAttempts: 3, Handler: "bench",
					Input: []byte("hello"), Labels: map[string]string{"wasmtask-bench": "x"}}
				b.SetParallelism(8)
				b.ReportAllocs()
				b.ResetTimer()
				cpu := cputime.Process()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if res := x.Execute(context.Background(), job); res.Outcome != dispatch.OutcomeOK {
							b.Errorf("Outcome %s (%s)", res.Outcome, res.Error)
							return
						}
					}
				})
				cputime.Report(b, cpu)
				b.StopTimer()
				st := p.Stats()
				b.ReportMetric(float64(st.Created), "instances")
			})
		}
	}
}

var benchMaxUses, _ = strconv.Atoi(os.Getenv("BENCH_MAX_USES"))

// BenchmarkFreshParts splits a fresh attempt (BenchmarkAttempt's host)
// into what wazero costs and what the guest's _initialize costs:
//
//	instantiate  InstantiateModule and Close, as Run makes and closes an
//	             instance (memory from the pool, the module's config),
//	             no call
//	initialize   the same with _initialize called (kept call engine, as Run)
//
// so that attempt - initialize is wasmtask_handle and the host's attempt
// state, initialize - instantiate the guest's _initialize (a Go guest's
// runtime start). Reproduce:
// go test -run='^$' -bench='FreshParts|Attempt/(wat|go)/host$' -benchmem ./host/
func BenchmarkFreshParts(b *testing.B) {
	for _, g := range []struct {
		name string
		wasm func(testing.TB) []byte
	}{
		{name: "wat", wasm: func(tb testing.TB) []byte { return readWasm(tb, "bench") }},
		{name: "go", wasm: goEchoWasm},
	} {
		for _, init := range []bool{false, true} {
			name := g.name + "/instantiate"
			if init {
				name = g.name + "/initialize"
			}
			b.Run(name, func(b *testing.B) {
				h := newTestHost(b, Config{})
				m := mustLoad(b, h, g.wasm(b), 0)
				ctx := context.Background()
				var stack [1]uint64
				b.ReportAllocs()
				cpu := cputime.Process()
				for b.Loop() {
					var mem *guestMemory
					mod, err := m.rt.rt.InstantiateModule(m.withMemory(ctx, &mem), m.compiled, m.cfg)
					if err != nil {
						b.Fatal(err)
					}
					if init {
						fn := m.initCalls.get(mod)
						if err := fn.CallWithStack(ctx, stack[:]); err != nil {
							b.Fatal(err)
						}
						m.initCalls.put(mod, fn)
					}
					mod.Close(ctx)
				}
				cputime.Report(b, cpu)
			})
		}
	}
}
