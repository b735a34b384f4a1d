package host

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/internal/testguests"
)

var goGuests sync.Map // testdata dir -> *goGuestBuild

type goGuestBuild struct {
	once sync.Once
	wasm []byte
	err  error
}

// goGuestWasm builds testdata/<dir> for wasip1 (c-shared) once per test
// binary and returns the module bytes (built as sdk and examples build
// theirs: the same bytes from any checkout, for the shared compile cache;
// see newGuestTestHost).
func goGuestWasm(t testing.TB, dir string) []byte {
	t.Helper()
	v, _ := goGuests.LoadOrStore(dir, &goGuestBuild{})
	g := v.(*goGuestBuild)
	g.once.Do(func() {
		tmp, err := os.MkdirTemp("", "wasmtask-goguest-")
		if err != nil {
			g.err = err
			return
		}
		defer os.RemoveAll(tmp)
		out := filepath.Join(tmp, dir+".wasm")
		cmd := testguests.GoBuild("", "./testdata/"+dir, out)
		if b, err := cmd.CombinedOutput(); err != nil {
			g.err = &buildError{cmd: strings.Join(cmd.Args, " "), out: string(b), err: err}
			return
		}
		g.wasm, g.err = os.ReadFile(out)
	})
	if g.err != nil {
		t.Fatalf("build the Go guest %s: %v", dir, g.err)
	}
	return g.wasm
}

// runGoCounter runs one attempt of the gocounter guest and returns its
// result and counter (0 unless ok).
func runGoCounter(t *testing.T, p *Pool, input string) (Result, int) {
	t.Helper()
	res := p.Run(context.Background(), Attempt{Input: []byte(input),
		Info: TaskInfo{TaskID: "t", RunID: "t#1", Attempt: 1, MaxAttempts: 1, Handler: "gocounter"}})
	count := 0
	if res.Outcome == dispatch.OutcomeOK {
		n, err := strconv.Atoi(string(res.Output))
		if err != nil {
			t.Fatalf("output %q, want the counter", res.Output)
		}
		count = n
	}
	return res, count
}

// TestPoolGoGuest: a Go SDK reactor (//go:wasmexport) works in reuse mode:
// its runtime stays up between calls, package state persists, a panic is a
// failed attempt that keeps the instance, os.Exit discards it; and its heap
// does not grow across attempts that each allocate and drop 256 KiB (the
// SDK yields with runtime.Gosched before returning, so the runtime's
// background work runs): 300 attempts in one instance stay below the
// 8 MiB (max_memory_pages 128), past which the instance would be discarded.
//
// The reset policy gives the same guest fresh state for every attempt (its
// counter is 1 each time, after a panic too) while its instance, and the
// runtime started by _initialize, is kept. Both share one Host: a Go guest
// takes tens of seconds to compile under -race.
func TestPoolGoGuest(t *testing.T) {
	h := newGuestTestHost(t, Config{})
	wasm := goGuestWasm(t, "gocounter")
	m := mustLoad(t, h, wasm, 0)
	t.Run("reuse", func(t *testing.T) { testGoGuestReuse(t, h, m) })
	t.Run("reset", func(t *testing.T) { testGoGuestReset(t, h, m, wasm) })
}

func testGoGuestReuse(t *testing.T, h *Host, m *Module) {
	p, err := h.NewPool(m, InstancePolicy{Mode: InstancesReuse, MaxMemoryPages: 128}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	steps := []struct {
		input string
		want  dispatch.Outcome
		count int
		log   string
	}{
		{want: dispatch.OutcomeOK, count: 1},
		{input: "print", want: dispatch.OutcomeOK, count: 2, log: "attempt 2\n"},
		{input: "panic", want: dispatch.OutcomeFailed},
		{want: dispatch.OutcomeOK, count: 4},
		{input: "exit", want: dispatch.OutcomeFailed},
		{want: dispatch.OutcomeOK, count: 1},
	}
	for i, s := range steps {
		res, count := runGoCounter(t, p, s.input)
		if res.Outcome != s.want || count != s.count || string(res.Log) != s.log {
			t.Fatalf("step %d (%q): outcome %s (%s), counter %d, log %q; want %s, %d, %q",
				i, s.input, res.Outcome, res.Error, count, res.Log, s.want, s.count, s.log)
		}
	}
	if st := p.Stats(); st.Created != 2 {
		t.Errorf("Stats().Created = %d, want 2 (os.Exit discards the first instance)", st.Created)
	}

	var first int64
	for i := 2; i <= 300; i++ {
		res, count := runGoCounter(t, p, "")
		if count != i {
			t.Fatalf("attempt %d: outcome %s (%s), counter %d: the instance was not kept", i, res.Outcome, res.Error, count)
		}
		if i == 10 {
			first = h.Idle().MemoryBytes
		}
	}
	last := h.Idle().MemoryBytes
	t.Logf("Go guest memory after 10 attempts: %d KiB, after 300: %d KiB", first>>10, last>>10)
	if limit := int64(p.Policy().MaxMemoryPages) * 65536; last > limit {
		t.Errorf("memory after 300 attempts: %d bytes, above the threshold %d", last, limit)
	}
}

func testGoGuestReset(t *testing.T, h *Host, m *Module, wasm []byte) {
	p, err := h.NewPool(m, InstancePolicy{Mode: InstancesReset}, wasm)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i, input := range []string{"", "print", "panic", "", "", "print"} {
		res, count := runGoCounter(t, p, input)
		switch {
		case input == "panic" && res.Outcome != dispatch.OutcomeFailed:
			t.Fatalf("step %d: outcome %s (%s), want failed", i, res.Outcome, res.Error)
		case input != "panic" && count != 1:
			t.Fatalf("step %d (%q): outcome %s (%s), counter %d; want ok, 1", i, input, res.Outcome, res.Error, count)
		case input == "print" && string(res.Log) != "attempt 1\n":
			t.Errorf("step %d: log %q", i, res.Log)
		}
	}
	if st := p.Stats(); st.Created != 1 {
		t.Errorf("Stats().Created = %d, want 1", st.Created)
	}
}
