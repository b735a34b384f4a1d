package host

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/dispatch"
)

// poolStep is one attempt of testdata/counter.wasm through a Pool.
type poolStep struct {
	input  string // the counter guest's op (see counter.wat)
	cancel bool   // the caller's context is canceled before the attempt
	want   dispatch.Outcome
	count  int // the guest's attempt counter (ok attempts only): 1 means a fresh instance
}

// runCounter runs one attempt of the counter guest and returns its result
// and counter (0 unless the outcome is ok).
func runCounter(t *testing.T, p *Pool, input string, cancel bool, lim Limits) (Result, int) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	if cancel {
		stop()
	}
	res := p.Run(ctx, Attempt{Input: []byte(input), Limits: lim,
		Info: TaskInfo{TaskID: "t", RunID: "t#1", Attempt: 1, MaxAttempts: 1, Handler: "counter"}})
	count := 0
	if res.Outcome == dispatch.OutcomeOK {
		if len(res.Output) != 8 {
			t.Fatalf("output %q, want the two 4-byte counters", res.Output)
		}
		count = int(binary.LittleEndian.Uint32(res.Output))
		if inMemory := int(binary.LittleEndian.Uint32(res.Output[4:])); inMemory != count {
			t.Fatalf("the counter in memory is %d, the global %d: memory and globals must be kept (or restored) together", inMemory, count)
		}
	}
	return res, count
}

func newCounterPool(t *testing.T, h *Host, pages uint32, policy InstancePolicy) *Pool {
	t.Helper()
	wasm := readWasm(t, "counter")
	p, err := h.NewPool(mustLoad(t, h, wasm, pages), policy, wasm)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	return p
}

// TestPoolReuse: a reuse pool keeps an instance (and its counter) across
// ok and failed attempts, and discards it after any other outcome, after
// MaxUses attempts, or once its memory grew past MaxMemoryPages, so the
// next attempt sees fresh state.
func TestPoolReuse(t *testing.T) {
	ok, failed := dispatch.OutcomeOK, dispatch.OutcomeFailed
	reuse := InstancePolicy{Mode: InstancesReuse}
	tests := []struct {
		name        string
		policy      InstancePolicy
		pages       uint32 // memory limit the module is loaded with; 0: default
		timeout     time.Duration
		steps       []poolStep
		wantCreated int
	}{
		{name: "ok attempts share one instance", policy: reuse,
			steps:       []poolStep{{want: ok, count: 1}, {want: ok, count: 2}, {want: ok, count: 3}},
			wantCreated: 1},
		{name: "a failed attempt keeps the instance", policy: reuse,
			steps:       []poolStep{{want: ok, count: 1}, {input: "f", want: failed}, {want: ok, count: 3}},
			wantCreated: 1},
		{name: "a trap discards the instance", policy: reuse,
			steps:       []poolStep{{want: ok, count: 1}, {want: ok, count: 2}, {input: "t", want: dispatch.OutcomeTrap}, {want: ok, count: 1}},
			wantCreated: 2},
		{name: "a timeout discards the instance", policy: reuse, timeout: 200 * time.Millisecond,
			steps:       []poolStep{{want: ok, count: 1}, {input: "l", want: dispatch.OutcomeTimeout}, {want: ok, count: 1}, {want: ok, count: 2}},
			wantCreated: 2},
		{name: "oom discards the instance", policy: reuse, pages: 8,
			steps:       []poolStep{{want: ok, count: 1}, {input: "g", want: dispatch.OutcomeOOM}, {want: ok, count: 1}},
			wantCreated: 2},
		{name: "a cancel discards the instance", policy: reuse, timeout: time.Second,
			steps:       []poolStep{{want: ok, count: 1}, {input: "l", cancel: true, want: dispatch.OutcomeCancelled}, {want: ok, count: 1}},
			wantCreated: 2},
		{name: "max_uses", policy: InstancePolicy{Mode: InstancesReuse, MaxUses: 3},
			steps: []poolStep{{want: ok, count: 1}, {want: ok, count: 2}, {want: ok, count: 3},
				{want: ok, count: 1}, {want: ok, count: 2}, {want: ok, count: 3}, {want: ok, count: 1}},
			wantCreated: 3},
		{name: "memory grown past max_memory_pages", policy: InstancePolicy{Mode: InstancesReuse, MaxMemoryPages: 4},
			steps:       []poolStep{{want: ok, count: 1}, {input: "m", want: ok, count: 2}, {want: ok, count: 1}},
			wantCreated: 2},
		{name: "fresh runs every attempt in a new instance", policy: InstancePolicy{Mode: InstancesFresh},
			steps:       []poolStep{{want: ok, count: 1}, {want: ok, count: 1}, {input: "f", want: failed}, {want: ok, count: 1}},
			wantCreated: 0}, // fresh attempts do not go through the pool's instances
		{name: "reset restores globals and memory before every attempt", policy: InstancePolicy{Mode: InstancesReset},
			steps: []poolStep{{want: ok, count: 1}, {want: ok, count: 1}, {input: "f", want: failed}, {want: ok, count: 1},
				{input: "m", want: ok, count: 1}, {want: ok, count: 1}},
			wantCreated: 1},
		{name: "reset: a trap discards the instance", policy: InstancePolicy{Mode: InstancesReset},
			steps:       []poolStep{{want: ok, count: 1}, {input: "t", want: dispatch.OutcomeTrap}, {want: ok, count: 1}},
			wantCreated: 2},
		{name: "reset: max_uses", policy: InstancePolicy{Mode: InstancesReset, MaxUses: 2},
			steps:       []poolStep{{want: ok, count: 1}, {want: ok, count: 1}, {want: ok, count: 1}},
			wantCreated: 2},
		{name: "the default policy is fresh", policy: InstancePolicy{},
			steps:       []poolStep{{want: ok, count: 1}, {want: ok, count: 1}},
			wantCreated: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newTestHost(t, Config{})
			p := newCounterPool(t, h, tc.pages, tc.policy)
			for i, s := range tc.steps {
				res, count := runCounter(t, p, s.input, s.cancel, Limits{Timeout: tc.timeout, MemoryPages: tc.pages})
				if res.Outcome != s.want || count != s.count {
					t.Fatalf("step %d (%q): outcome %s (%s), counter %d; want %s, counter %d",
						i, s.input, res.Outcome, res.Error, count, s.want, s.count)
				}
			}
			if got := p.Stats().Created; got != tc.wantCreated {
				t.Errorf("Stats().Created = %d, want %d", got, tc.wantCreated)
			}
		})
	}
}

// TestPoolAttemptState: what belongs to an attempt stays with it in a
// reused instance: WASI stdout goes to the log of the attempt that wrote
// it, once, and the output holds only that attempt's bytes.
func TestPoolAttemptState(t *testing.T) {
	h := newTestHost(t, Config{})
	p := newCounterPool(t, h, 0, InstancePolicy{Mode: InstancesReuse})
	for i := 1; i <= 3; i++ {
		res, count := runCounter(t, p, "p", false, Limits{})
		if res.Outcome != dispatch.OutcomeOK || count != i {
			t.Fatalf("attempt %d: outcome %s (%s), counter %d", i, res.Outcome, res.Error, count)
		}
		if string(res.Log) != "hi\n" {
			t.Errorf("attempt %d: log %q, want exactly this attempt's %q", i, res.Log, "hi\n")
		}
	}
	res, _ := runCounter(t, p, "", false, Limits{})
	if len(res.Log) != 0 {
		t.Errorf("an attempt that printed nothing has log %q", res.Log)
	}
}

// TestPoolConcurrent: attempts running at the same time never share an
// instance (the guest traps when it finds its busy flag set), every
// attempt is counted once, and the pool creates no more instances than
// attempts ever ran at once. Run it with -race.
func TestPoolConcurrent(t *testing.T) {
	const workers, perWorker = 8, 40
	h := newTestHost(t, Config{MaxIdleInstances: workers})
	p := newCounterPool(t, h, 0, InstancePolicy{Mode: InstancesReuse})
	counts := make(chan int, workers*perWorker)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				res, count := runCounter(t, p, "s", false, Limits{})
				if res.Outcome != dispatch.OutcomeOK {
					t.Errorf("outcome %s (%s)", res.Outcome, res.Error)
					return
				}
				counts <- count
			}
		}()
	}
	wg.Wait()
	close(counts)
	seen := map[int]int{}
	total := 0
	for c := range counts {
		seen[c]++
		total++
	}
	st := p.Stats()
	if total != workers*perWorker {
		t.Fatalf("%d attempts ok, want %d", total, workers*perWorker)
	}
	if st.Created < 1 || st.Created > workers {
		t.Errorf("Stats().Created = %d, want 1..%d (at most one instance per attempt running at once)", st.Created, workers)
	}
	// Every instance counts 1, 2, 3, ... : there are as many 1s as
	// instances, and never more n+1s than ns.
	if seen[1] != st.Created {
		t.Errorf("%d attempts saw a fresh instance, the pool created %d", seen[1], st.Created)
	}
	for c, n := range seen {
		if c > 1 && n > seen[c-1] {
			t.Errorf("counter %d seen %d times, %d seen only %d times: an instance ran two attempts as one", c, n, c-1, seen[c-1])
		}
	}
	if st.Reused != total-st.Created {
		t.Errorf("Stats().Reused = %d, want %d", st.Reused, total-st.Created)
	}
}

// TestPoolIdleBounded: the Host holds no more idle instances than
// MaxIdleInstances across all pools, closing the one idle the longest to
// make room; Idle reports their count and memory.
func TestPoolIdleBounded(t *testing.T) {
	h := newTestHost(t, Config{MaxIdleInstances: 2})
	reuse := InstancePolicy{Mode: InstancesReuse}
	pools := []*Pool{newCounterPool(t, h, 0, reuse), newCounterPool(t, h, 0, reuse), newCounterPool(t, h, 0, reuse)}
	for i, p := range pools {
		if res, count := runCounter(t, p, "", false, Limits{}); count != 1 {
			t.Fatalf("pool %d: outcome %s (%s), counter %d", i, res.Outcome, res.Error, count)
		}
	}
	if got, want := h.Idle(), (IdleStats{Instances: 2, MemoryBytes: 2 * 65536}); got != want {
		t.Errorf("Idle() = %+v, want %+v", got, want)
	}
	if st := pools[0].Stats(); st.Idle != 0 || st.Discarded != 1 {
		t.Errorf("pool 0 (idle the longest): Stats() = %+v, want Idle 0, Discarded 1", st)
	}
	// Pools 2 and 1 kept theirs; pool 0 starts over, and its new instance
	// makes room by closing pool 2's, now idle the longest.
	for _, step := range []struct{ pool, want int }{{2, 2}, {1, 2}, {0, 1}, {1, 3}, {2, 1}} {
		if _, count := runCounter(t, pools[step.pool], "", false, Limits{}); count != step.want {
			t.Errorf("pool %d: counter %d, want %d", step.pool, count, step.want)
		}
	}
	if got := h.Idle().Instances; got != 2 {
		t.Errorf("Idle().Instances = %d, want 2", got)
	}
}

// TestPoolIdleReleased: idle instances are closed after their pool's
// idle timeout (the next attempt starts fresh), by Close (a drained pool
// runs what still reaches it in fresh instances), and by the Host's Close.
func TestPoolIdleReleased(t *testing.T) {
	reuse := InstancePolicy{Mode: InstancesReuse, IdleTimeout: time.Hour}
	t.Run("sweep past the idle timeout", func(t *testing.T) {
		h := newTestHost(t, Config{})
		short := newCounterPool(t, h, 0, reuse)
		long := newCounterPool(t, h, 0, InstancePolicy{Mode: InstancesReuse, IdleTimeout: 3 * time.Hour})
		runCounter(t, short, "", false, Limits{})
		runCounter(t, long, "", false, Limits{})
		h.idle.sweep(time.Now().Add(2 * time.Hour))
		if got, want := h.Idle(), (IdleStats{Instances: 1, MemoryBytes: 65536}); got != want {
			t.Errorf("after 2h: Idle() = %+v, want %+v (the 3h pool's instance)", got, want)
		}
		if st := short.Stats(); st.IdleClosed != 1 || st.Idle != 0 {
			t.Errorf("1h pool: Stats() = %+v, want IdleClosed 1", st)
		}
		if _, count := runCounter(t, short, "", false, Limits{}); count != 1 {
			t.Errorf("after the idle close: counter %d, want 1 (fresh)", count)
		}
		if _, count := runCounter(t, long, "", false, Limits{}); count != 2 {
			t.Errorf("3h pool: counter %d, want 2 (kept)", count)
		}
	})
	t.Run("timer", func(t *testing.T) {
		h := newTestHost(t, Config{})
		p := newCounterPool(t, h, 0, InstancePolicy{Mode: InstancesReuse, IdleTimeout: 20 * time.Millisecond})
		runCounter(t, p, "", false, Limits{})
		waitFor(t, 5*time.Second, func() bool { return h.Idle().Instances == 0 })
		if st := p.Stats(); st.IdleClosed != 1 {
			t.Errorf("Stats() = %+v, want IdleClosed 1", st)
		}
		if _, count := runCounter(t, p, "", false, Limits{}); count != 1 {
			t.Errorf("after the idle timeout: counter %d, want 1", count)
		}
	})
	t.Run("pool close", func(t *testing.T) { testPoolClose(t, reuse) })
	t.Run("reset pool close", func(t *testing.T) { testPoolClose(t, InstancePolicy{Mode: InstancesReset}) })
	t.Run("host close", func(t *testing.T) {
		h, err := New(context.Background(), Config{})
		if err != nil {
			t.Fatal(err)
		}
		p := newCounterPool(t, h, 0, reuse)
		runCounter(t, p, "", false, Limits{})
		if err := h.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := h.Idle(); got != (IdleStats{}) {
			t.Errorf("after Host.Close: Idle() = %+v", got)
		}
	})
	t.Run("no idle instances at all", func(t *testing.T) {
		h := newTestHost(t, Config{MaxIdleInstances: -1})
		p := newCounterPool(t, h, 0, reuse)
		for range 2 {
			if _, count := runCounter(t, p, "", false, Limits{}); count != 1 {
				t.Errorf("MaxIdleInstances -1: counter %d, want 1", count)
			}
		}
	})
}

// testPoolClose: a closed pool closes its idle instances and runs what
// still reaches it in fresh instances (a reset pool too, whose compiled
// variant is closed with it).
func testPoolClose(t *testing.T, policy InstancePolicy) {
	h := newTestHost(t, Config{})
	p := newCounterPool(t, h, 0, policy)
	runCounter(t, p, "", false, Limits{})
	p.Close()
	if got := h.Idle(); got != (IdleStats{}) {
		t.Errorf("after Close: Idle() = %+v, want none", got)
	}
	for i := range 2 {
		if res, count := runCounter(t, p, "", false, Limits{}); count != 1 {
			t.Errorf("attempt %d after Close: outcome %s (%s), counter %d, want a fresh instance", i, res.Outcome, res.Error, count)
		}
	}
	if got := h.Idle().Instances; got != 0 {
		t.Errorf("a closed pool keeps %d idle instances", got)
	}
}

// TestNewPoolErrors: a reuse policy needs a handler-mode module, a reset
// policy the module's own bytes; unknown modes are rejected.
func TestNewPoolErrors(t *testing.T) {
	h := newTestHost(t, Config{})
	tests := []struct {
		name, module string
		policy       InstancePolicy
		bytesOf      string // the module whose bytes NewPool gets: "" the same, "-" none
		want         string
	}{
		{name: "reset without the module's bytes", module: "counter", policy: InstancePolicy{Mode: InstancesReset}, bytesOf: "-",
			want: `instance policy "reset": NewPool needs the module's bytes`},
		{name: "reset with another module's bytes", module: "counter", policy: InstancePolicy{Mode: InstancesReset}, bytesOf: "echo",
			want: `instance policy "reset": the bytes given to NewPool are not those of module sha256:`},
		{name: "reuse of a command module", module: "command", policy: InstancePolicy{Mode: InstancesReuse},
			want: `instance policy "reuse" needs a handler-mode module (exporting wasmtask_handle)`},
		{name: "reset of a command module", module: "command", policy: InstancePolicy{Mode: InstancesReset},
			want: `instance policy "reset" needs a handler-mode module`},
		{name: "unknown mode", module: "counter", policy: InstancePolicy{Mode: "warm"},
			want: `host: instance policy "warm", want "fresh", "reuse" or "reset"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wasm := readWasm(t, tc.module)
			given := wasm
			switch tc.bytesOf {
			case "-":
				given = nil
			case "":
			default:
				given = readWasm(t, tc.bytesOf)
			}
			_, err := h.NewPool(mustLoad(t, h, wasm, 0), tc.policy, given)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewPool: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestPoolPolicyDefaults: zero fields get the documented defaults.
func TestPoolPolicyDefaults(t *testing.T) {
	h := newTestHost(t, Config{})
	p := newCounterPool(t, h, 64, InstancePolicy{Mode: InstancesReuse})
	want := InstancePolicy{Mode: InstancesReuse, MaxUses: 1000, MaxMemoryPages: 48, IdleTimeout: time.Minute}
	if got := p.Policy(); got != want {
		t.Errorf("Policy() = %+v, want %+v", got, want)
	}
	p = newCounterPool(t, h, 64, InstancePolicy{Mode: InstancesReuse, MaxMemoryPages: 1000})
	if got := p.Policy().MaxMemoryPages; got != 64 {
		t.Errorf("MaxMemoryPages above the memory limit: %d, want the limit 64", got)
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPoolScratchFull: in a reused instance the scratch directory lives as
// long as the instance, and the line saying it is full goes to the log of
// the attempt whose write was refused: not to the attempt that made the
// instance, not to the next one. Concurrent attempts in separate instances
// each get only their own line. Run it with -race.
func TestPoolScratchFull(t *testing.T) {
	const full = "scratch /tmp is full: a write of 3000 bytes was refused (limit 4096 bytes"
	cmd := Command{ScratchBytes: 4096}
	newPool := func(t *testing.T, h *Host) *Pool {
		p, err := h.NewPool(mustLoad(t, h, readWasm(t, "scratchfill"), 0), InstancePolicy{Mode: InstancesReuse}, nil)
		if err != nil {
			t.Fatalf("NewPool: %v", err)
		}
		return p
	}
	run := func(p *Pool, n int, id string) Result {
		return p.Run(context.Background(), Attempt{Input: []byte(strings.Repeat("x", n)), Command: cmd,
			Info: TaskInfo{TaskID: id, RunID: id + "#1", Attempt: 1, MaxAttempts: 1, Handler: "scratchfill"}})
	}
	t.Run("sequential", func(t *testing.T) {
		h := newTestHost(t, Config{})
		p := newPool(t, h)
		steps := []struct {
			bytes   int
			outcome dispatch.Outcome
			full    bool
		}{
			{3000, dispatch.OutcomeOK, false},    // makes the instance: 3000 of 4096
			{3000, dispatch.OutcomeFailed, true}, // 6000: refused
			{500, dispatch.OutcomeOK, false},     // 3500: fits
			{1000, dispatch.OutcomeFailed, true}, // 4500: refused
		}
		for i, s := range steps {
			res := run(p, s.bytes, "t")
			if res.Outcome != s.outcome {
				t.Fatalf("attempt %d: outcome %s (%s), want %s\nlog:\n%s", i+1, res.Outcome, res.Error, s.outcome, res.Log)
			}
			line := "scratch /tmp is full: a write of " + strconv.Itoa(s.bytes) + " bytes was refused (limit 4096 bytes"
			if got := strings.Contains(string(res.Log), line); got != s.full {
				t.Errorf("attempt %d: log has the scratch-full line: %v, want %v\nlog:\n%s", i+1, got, s.full, res.Log)
			}
			if n := strings.Count(string(res.Log), "is full"); n > 1 {
				t.Errorf("attempt %d: %d scratch-full lines, want at most 1:\n%s", i+1, n, res.Log)
			}
		}
		if st := p.Stats(); st.Created != 1 {
			t.Errorf("Stats().Created = %d, want 1: every attempt ran in the same instance", st.Created)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		const workers, perWorker = 4, 6
		h := newTestHost(t, Config{MaxIdleInstances: workers})
		p := newPool(t, h)
		var wg sync.WaitGroup
		var refused atomic.Int32
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWorker {
					res := run(p, 3000, fmt.Sprintf("w%d-%d", w, i))
					hasLine := strings.Contains(string(res.Log), full)
					switch {
					case res.Outcome == dispatch.OutcomeOK && !hasLine && string(res.Output) == "ok":
					case res.Outcome == dispatch.OutcomeFailed && hasLine &&
						strings.Count(string(res.Log), "is full") == 1:
						refused.Add(1)
					default:
						t.Errorf("outcome %s, output %q, log with its own scratch-full line: %v\nlog:\n%s", res.Outcome, res.Output, hasLine, res.Log)
					}
				}
			}()
		}
		wg.Wait()
		// Every instance takes one 3000-byte write; all later ones are refused.
		if st := p.Stats(); int(refused.Load()) != workers*perWorker-st.Created {
			t.Errorf("%d attempts refused, want %d (attempts %d - instances %d)", refused.Load(), workers*perWorker-st.Created, workers*perWorker, st.Created)
		}
	})
}

// TestPoolWaitsForBusyInstance: an attempt that finds no idle instance
// while the pool runs as many as there are cores waits for one to come
// back when attempts are short beside making an instance (it gets the
// instance the running attempt returns: no second one is made), and makes
// its own at once when attempts are long.
func TestPoolWaitsForBusyInstance(t *testing.T) {
	defer func(n int) { waitAtLive = n }(waitAtLive)
	waitAtLive = 1
	for _, tc := range []struct {
		name        string
		runCost     time.Duration
		wantCreated int
	}{
		{name: "short attempts wait", runCost: time.Microsecond, wantCreated: 1},
		{name: "long attempts do not", runCost: time.Minute, wantCreated: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHost(t, Config{})
			p, err := h.NewPool(mustLoad(t, h, readWasm(t, "heartbeat"), 0), InstancePolicy{Mode: InstancesReuse}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			inA, release := make(chan struct{}), make(chan struct{})
			doneA := make(chan Result, 1)
			go func() {
				doneA <- p.Run(context.Background(), Attempt{Input: []byte("x"), Heartbeat: func() {
					close(inA)
					<-release
				}})
			}()
			<-inA // A holds the only instance
			h.idle.mu.Lock()
			p.makeCost, p.runCost = time.Minute, tc.runCost
			h.idle.mu.Unlock()
			doneB := make(chan Result, 1)
			go func() { doneB <- p.Run(context.Background(), Attempt{Input: []byte("x")}) }()
			if tc.wantCreated == 1 {
				waitFor(t, 10*time.Second, func() bool {
					h.idle.mu.Lock()
					defer h.idle.mu.Unlock()
					return len(p.waiters) == 1
				})
			} else if res := <-doneB; res.Outcome != dispatch.OutcomeOK {
				t.Fatalf("B: %s (%s)", res.Outcome, res.Error)
			}
			close(release)
			for name, done := range map[string]chan Result{"A": doneA, "B": doneB} {
				if tc.wantCreated == 2 && name == "B" {
					continue
				}
				if res := <-done; res.Outcome != dispatch.OutcomeOK {
					t.Fatalf("%s: %s (%s)", name, res.Outcome, res.Error)
				}
			}
			st := p.Stats()
			if st.Created != tc.wantCreated {
				t.Errorf("created %d instances, want %d (%+v)", st.Created, tc.wantCreated, st)
			}
			h.idle.mu.Lock()
			live := p.live
			h.idle.mu.Unlock()
			if live != 0 || st.Idle != tc.wantCreated {
				t.Errorf("live %d, idle %d after both attempts; want 0 and %d", live, st.Idle, tc.wantCreated)
			}
		})
	}
}
