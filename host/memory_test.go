package host

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/host/extism"
)

// poisonByte fills released guest memory in every test host (newTestHost).
const poisonByte = 0xa5

// TestFreshMemoryIsZero: an instance whose memory comes from the pool sees
// only zeros, at instantiation and after each grow (into a new buffer or
// within the reserved capacity), whatever the instances before it wrote,
// fresh or warm, with released buffers poisoned or not.
func TestFreshMemoryIsZero(t *testing.T) {
	for _, poison := range []byte{0, poisonByte} {
		// reserve: instances reserve the 4 pages the module grew to
		// (memHint), so every grow stays within the buffer; grow: no hint,
		// so the grows to 2 and 3 pages move to other (dirty) buffers.
		for _, reserve := range []bool{true, false} {
			h := newTestHost(t, Config{})
			h.mem.poison = poison
			m := mustLoad(t, h, readWasm(t, "dirty"), 0)
			p, err := h.NewPool(m, InstancePolicy{Mode: InstancesReuse, MaxUses: 1}, nil)
			if err != nil {
				t.Fatal(err)
			}
			run := func(by, in string) Result {
				if !reserve {
					m.memHint.Store(0)
				}
				if by == "fresh" {
					return h.Run(context.Background(), m, Attempt{Input: []byte(in)})
				}
				return p.Run(context.Background(), Attempt{Input: []byte(in)})
			}
			for _, dirtyBy := range []string{"fresh", "reuse"} {
				for _, checkBy := range []string{"fresh", "reuse"} {
					if res := run(dirtyBy, "dirty"); res.Outcome != dispatch.OutcomeOK {
						t.Fatalf("dirty: %s (%s)", res.Outcome, res.Error)
					}
					res := run(checkBy, "scan")
					if res.Outcome != dispatch.OutcomeOK || string(res.Output) != le32(0) {
						t.Errorf("poison %#x, reserve %v, dirtied by %s, checked by %s: %s (%s), output %x; want ok and 0 non-zero bytes",
							poison, reserve, dirtyBy, checkBy, res.Outcome, res.Error, res.Output)
					}
				}
			}
			// 8 attempts: without the reserve each takes buffers of 1, 2
			// and 4 pages, from the pool but for the first attempt's.
			want := MemoryPoolStats{Reused: 7, Made: 3, Bytes: 7 * 65536, Buffers: 3} // the first attempt grew without a hint
			if !reserve {
				want = MemoryPoolStats{Reused: 3 * 7, Made: 3, Bytes: 7 * 65536, Buffers: 3}
			}
			if st := h.MemoryPool(); st != want {
				t.Errorf("poison %#x, reserve %v: pool %+v, want %+v", poison, reserve, st, want)
			}
			p.Close()
		}
	}
}

// TestNoGuestMemoryAlias: no part of a Result (output, log, error,
// children) aliases guest memory. Released memory is poisoned and reused
// (newTestHost), so a Result holding a slice of it would differ from the
// same attempt on a host without the pool; this covers every path that
// reads guest memory: the ABI's imports, WASI stdout and stderr in handler
// and command mode, a command's exit, a timeout that frees the memory on
// the guest's goroutine, Extism plugins, and warm instances discarded after
// their attempt.
func TestNoGuestMemoryAlias(t *testing.T) {
	cases := []struct {
		name   string
		wasm   func(testing.TB) []byte
		a      Attempt
		policy InstanceMode
	}{
		{name: "echo output", wasm: wat("echo"), a: Attempt{Input: []byte("aliased output?")}},
		{name: "log lines", wasm: wat("logs")},
		{name: "fail message", wasm: wat("fail"), a: Attempt{Input: []byte("1")}},
		{name: "children", wasm: wat("submit"), a: Attempt{Input: []byte(`{"handler":"child","input":"x"}`)}},
		{name: "wasi stdout and stderr", wasm: wat("wasi")},
		{name: "command stdout", wasm: wat("command"), a: Attempt{Input: []byte("to stdout")}},
		{name: "command proc_exit", wasm: wat("command"), a: Attempt{Input: []byte("!exit 3")}},
		{name: "config", wasm: wat("config"), a: Attempt{Input: []byte("greeting"), Config: map[string]string{"greeting": "hello"}}},
		{name: "timeout", wasm: wat("loop"), a: Attempt{Limits: Limits{Timeout: 20 * time.Millisecond, Grace: time.Millisecond}}},
		{name: "extism log and output", wasm: func(tb testing.TB) []byte { return readExtism(tb, "as_plugins") },
			a: Attempt{Input: []byte("Hello, Extism!"), Extism: &extism.Options{Function: "count_vowels"}}},
		{name: "reuse echo", wasm: wat("echo"), a: Attempt{Input: []byte("warm")}, policy: InstancesReuse},
		{name: "reuse children", wasm: wat("submit"), a: Attempt{Input: []byte(`{"handler":"child"}`)}, policy: InstancesReuse},
		{name: "reset wasi", wasm: wat("wasi"), policy: InstancesReset},
		{name: "go guest", wasm: goEchoWasm, a: Attempt{Input: []byte("go guest output")}},
		{name: "go guest reuse", wasm: goEchoWasm, a: Attempt{Input: []byte("go guest output")}, policy: InstancesReuse},
	}
	plain := newGuestTestHost(t, Config{MemoryPoolBytes: -1})
	pooled := newGuestTestHost(t, Config{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wasm := tc.wasm(t)
			run := func(h *Host) Result {
				m := mustLoad(t, h, wasm, 0)
				tc.a.Info = TaskInfo{TaskID: "t", RunID: "t#1", Attempt: 1, MaxAttempts: 3, Handler: "alias"}
				if tc.policy == "" {
					return h.Run(context.Background(), m, tc.a)
				}
				// MaxUses 1: the instance is closed, and its memory
				// released, before Run returns.
				p, err := h.NewPool(m, InstancePolicy{Mode: tc.policy, MaxUses: 1}, wasm)
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				return p.Run(context.Background(), tc.a)
			}
			want := run(plain)
			before := pooled.MemoryPool()
			for i := range 3 { // the first may allocate; the others reuse and poison
				got := run(pooled)
				if diff := cmp.Diff(comparable(want), comparable(got)); diff != "" {
					t.Errorf("attempt %d differs from a host without the pool (-want +got):\n%s", i+1, diff)
				}
				if bytes.Contains(got.Output, []byte{poisonByte, poisonByte, poisonByte, poisonByte}) ||
					bytes.Contains(got.Log, []byte{poisonByte, poisonByte, poisonByte, poisonByte}) {
					t.Errorf("attempt %d: poison in the result: output %q, log %q", i+1, got.Output, got.Log)
				}
			}
			if after := pooled.MemoryPool(); after.Reused == before.Reused {
				t.Errorf("no buffer was reused (pool %+v): the poison was never exercised", after)
			}
		})
	}
}

func wat(name string) func(testing.TB) []byte {
	return func(tb testing.TB) []byte { return readWasm(tb, name) }
}

// comparable is what TestNoGuestMemoryAlias compares of a Result: not its
// times, nor the parts of a message that change with them.
func comparable(r Result) Result {
	r.Started, r.Duration = time.Time{}, 0
	if r.Outcome == dispatch.OutcomeTimeout {
		r.Error = "(timeout)"
	}
	return r
}

// TestMemoryPoolBounded: the pool holds at most its budget, never a
// buffer over a quarter of it, drops buffers idle past its idle time, and
// keeps nothing after Host.Close.
func TestMemoryPoolBounded(t *testing.T) {
	const page = 65536
	p := newMemPool(8 * page)
	p.idle = 50 * time.Millisecond
	defer p.close()
	for range 10 {
		p.put(make([]byte, page))
	}
	if st := p.snapshot(); st.Bytes != 8*page || st.Buffers != 8 || st.Released != 2 {
		t.Errorf("after 10 puts of a page: %+v, want 8 pages held and 2 released", st)
	}
	p.put(make([]byte, 3*page)) // over a quarter of the budget
	if st := p.snapshot(); st.Bytes != 8*page || st.Released != 3 {
		t.Errorf("after a 3-page put: %+v, want it released", st)
	}
	p.put(make([]byte, 2*page)) // evicts the two oldest pages
	if st := p.snapshot(); st.Bytes != 8*page || st.Buffers != 7 {
		t.Errorf("after a 2-page put: %+v, want 8 pages in 7 buffers", st)
	}
	b, dirty := p.get(2 * page)
	if cap(b) != 2*page || len(b) != 0 || dirty != 2*page {
		t.Errorf("get(2 pages) = len %d cap %d dirty %d, want len 0 cap %d dirty %d", len(b), cap(b), dirty, 2*page, 2*page)
	}
	if _, dirty := p.get(4 * page); dirty != 0 {
		t.Errorf("get(4 pages) with none pooled: dirty %d, want a new, zero buffer", dirty)
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.snapshot().Buffers > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("idle buffers still held after 10s: %+v", p.snapshot())
		}
		time.Sleep(10 * time.Millisecond)
	}

	h := newTestHost(t, Config{})
	m := mustLoad(t, h, readWasm(t, "echo"), 0)
	if res := h.Run(context.Background(), m, Attempt{Input: []byte("x")}); res.Outcome != dispatch.OutcomeOK {
		t.Fatal(res.Error)
	}
	if st := h.MemoryPool(); st.Buffers != 1 || st.Bytes != page {
		t.Errorf("after one attempt: %+v, want its page held", st)
	}
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := h.MemoryPool(); st.Buffers != 0 || st.Bytes != 0 {
		t.Errorf("after Close: %+v, want nothing held", st)
	}
	h.mem.put(make([]byte, page))
	if st := h.MemoryPool(); st.Buffers != 0 {
		t.Errorf("a buffer released after Close was kept: %+v", st)
	}
}

// TestReusedBufferDirtyPastItsLength: a buffer reserved larger than its
// instance grew still carries what an earlier owner wrote past that
// length; it goes back to the pool marked dirty up to there, so the next
// instance that grows into it sees zeros (a C guest's malloc trapped on
// such garbage before).
func TestReusedBufferDirtyPastItsLength(t *testing.T) {
	const page = 65536
	p := newMemPool(64 * page)
	defer p.close()
	b := make([]byte, 4*page)
	for i := range b {
		b[i] = 0xff
	}
	p.put(b)
	small := &guestMemory{pool: p, max: 4 * page}
	small.Allocate(4*page, 4*page) // takes the dirty buffer, grows to 1 page only
	if got := small.Reallocate(page); !allZero(got) {
		t.Fatalf("the first page of a reused buffer is not zero")
	}
	small.Free()
	big := &guestMemory{pool: p, max: 4 * page}
	big.Allocate(4*page, 4*page)
	big.Reallocate(page)
	if got := big.Reallocate(4 * page); len(got) != 4*page || !allZero(got) {
		t.Errorf("4 pages grown within a buffer an earlier instance left dirty past 1 page: not all zero")
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
