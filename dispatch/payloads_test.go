package dispatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmtask/wasmtask/dispatch/payload"
)

// upper is an executor that outputs its input upper-cased.
func upper(_ context.Context, j Job) Result {
	return Result{Outcome: OutcomeOK, Output: bytes.ToUpper(j.Input)}
}

func payloadFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(filepath.Join(dir, "payloads"), func(_ string, d os.DirEntry, _ error) error {
		if d != nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// TestPayloadsSpill: inputs and outputs over the inline limit live in the
// payload store, not in the state or the WAL record; the executor gets the
// input, views get both, across a restart; inputs within the limit stay
// inline.
func TestPayloadsSpill(t *testing.T) {
	r := newEngineRig(t, func(c *Config) { c.InlinePayloadBytes = 16 })
	r.ex.set(upper)
	big, small := strings.Repeat("big input ", 100), "small"
	r.submit(TaskSpec{ID: "big", Input: []byte(big)})
	r.submit(TaskSpec{ID: "small", Input: []byte(small)})
	for _, id := range []TaskID{"big", "small"} {
		r.wait(id)
	}
	check := func(when string) {
		t.Helper()
		r.e.mu.RLock()
		spec, att := r.e.state.Tasks["big"].Spec, r.e.state.Runs["big#1"].Attempts[0]
		smallSpec := r.e.state.Tasks["small"].Spec
		r.e.mu.RUnlock()
		if spec.Input != nil || spec.InputRef != payload.Ref([]byte(big)) || spec.InputSize != int64(len(big)) {
			t.Fatalf("%s: the state holds the big input inline (%d bytes) or names it wrongly (%q, %d)", when, len(spec.Input), spec.InputRef, spec.InputSize)
		}
		if att.Output != nil || att.OutputRef == "" || att.OutputSize != int64(len(big)) {
			t.Fatalf("%s: the state holds the big output inline (%d bytes, ref %q)", when, len(att.Output), att.OutputRef)
		}
		if string(smallSpec.Input) != small || smallSpec.InputRef != "" {
			t.Fatalf("%s: the small input is not inline: %+v", when, smallSpec)
		}
		v := r.view("big")
		if string(v.Spec.Input) != big || string(v.Output) != strings.ToUpper(big) || string(v.Runs[0].Attempts[0].Output) != strings.ToUpper(big) || v.PayloadError != "" {
			t.Fatalf("%s: view has input %d bytes, output %d bytes (%q), want %d each", when, len(v.Spec.Input), len(v.Output), v.PayloadError, len(big))
		}
		if v, _ := r.e.TaskWithoutInput("big"); v.Spec.Input != nil || string(v.Output) != strings.ToUpper(big) {
			t.Fatalf("%s: TaskWithoutInput read the input (%d bytes) or not the output (%d bytes)", when, len(v.Spec.Input), len(v.Output))
		}
		if l := r.e.List(ListFilter{}); len(l) != 2 || string(l[1].Output) != strings.ToUpper(big) && string(l[0].Output) != strings.ToUpper(big) {
			t.Fatalf("%s: List does not read the big output back", when)
		}
	}
	check("live")
	if got := string(r.ex.calls()[0].Input); got != big && string(r.ex.calls()[1].Input) != big {
		t.Fatal("the executor did not get the big input")
	}
	if n := payloadFiles(t, r.cfg.Dir); n != 2 {
		t.Fatalf("%d payload files, want 2 (the big input and output)", n)
	}
	r.reopen()
	check("after a restart")

	// The same spec again is a duplicate, not a conflict.
	res := r.submit(TaskSpec{ID: "big", Input: []byte(big)})
	if !res.Duplicate {
		t.Fatalf("resubmitting the same big spec: %+v, want a duplicate", res)
	}
	if _, err := r.e.Submit(r.ctx(), TaskSpec{ID: "big", Handler: "h", Input: []byte(big + "!")}); !errors.Is(err, ErrConflict) {
		t.Fatalf("another input under the same id: %v, want ErrConflict", err)
	}
}

// TestPayloadsInlineLogStillLoads: a log whose inputs were written inline
// (an older server, or InlinePayloadBytes < 0) replays under the spilling
// default: views and attempts see the bytes, a resubmission of the same
// spec (now spilled) is a duplicate.
func TestPayloadsInlineLogStillLoads(t *testing.T) {
	r := newEngineRig(t, func(c *Config) { c.InlinePayloadBytes = -1 })
	r.ex.set(upper)
	big := strings.Repeat("x", 64<<10)
	r.submit(TaskSpec{ID: "old", Input: []byte(big)})
	r.wait("old")
	if n := payloadFiles(t, r.cfg.Dir); n != 0 {
		t.Fatalf("%d payload files with every payload inline, want 0", n)
	}
	r.close()
	r.cfg.InlinePayloadBytes = 0 // the default: 1 KiB
	r.open()
	if v := r.view("old"); string(v.Spec.Input) != big || string(v.Output) != strings.ToUpper(big) {
		t.Fatalf("inline payloads after the switch: input %d bytes, output %d", len(v.Spec.Input), len(v.Output))
	}
	if res := r.submit(TaskSpec{ID: "old", Input: []byte(big)}); !res.Duplicate {
		t.Fatalf("the same spec, spilled this time: %+v, want a duplicate of the inline one", res)
	}
}

// TestPayloadsSweep: after a snapshot, payload files of tasks deleted
// (or dropped by retention) are removed; those still named are kept, and
// so are files of submissions in flight.
func TestPayloadsSweep(t *testing.T) {
	r := newEngineRig(t, func(c *Config) { c.InlinePayloadBytes = 16 })
	r.ex.set(upper)
	for _, id := range []TaskID{"keep", "drop"} {
		r.submit(TaskSpec{ID: id, Input: []byte(strings.Repeat(string(id), 100))})
		r.wait(id)
	}
	if n := payloadFiles(t, r.cfg.Dir); n != 4 {
		t.Fatalf("%d payload files, want 4", n)
	}
	// A payload put and pinned, as a submission on its way to the loop.
	inFlight, err := r.e.payloads.Put([]byte("in flight, not yet applied"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.e.Delete(r.ctx(), "drop"); err != nil {
		t.Fatal(err)
	}
	if err := r.e.Snapshot(r.ctx()); err != nil {
		t.Fatal(err)
	}
	if n := payloadFiles(t, r.cfg.Dir); n != 3 {
		t.Fatalf("%d payload files after the snapshot, want 3 (keep's input and output, the one in flight)", n)
	}
	if v := r.view("keep"); string(v.Output) != strings.ToUpper(strings.Repeat("keep", 100)) {
		t.Fatal("a kept task lost its output")
	}
	r.e.payloads.Unpin(inFlight)
	r.reopen()
	if err := r.e.Snapshot(r.ctx()); err != nil {
		t.Fatal(err)
	}
	if n := payloadFiles(t, r.cfg.Dir); n != 2 {
		t.Fatalf("%d payload files after the next snapshot, want 2", n)
	}
	if st := r.e.PayloadStats(); st.StoreFiles != 2 {
		t.Fatalf("stats count %d files, want 2", st.StoreFiles)
	}
}

// TestPayloadBudgetHeldByAttempts: inputs of running attempts hold payload
// memory, so submissions are refused (a *BusyError) while they run and
// admitted again once they end; every accepted task completes.
func TestPayloadBudgetHeldByAttempts(t *testing.T) {
	const mib = 1 << 20
	g := newGate(t, false)
	r := newEngineRig(t, func(c *Config) { c.MaxPayloadMemory = 2*mib + mib/2 })
	r.ex.set(g.execute)
	for _, id := range []TaskID{"a", "b"} {
		r.submit(TaskSpec{ID: id, Input: bytes.Repeat([]byte(id), mib)})
	}
	for range 2 {
		if j := g.next(t); len(j.Input) != mib {
			t.Fatalf("the executor got %d input bytes, want %d", len(j.Input), mib)
		}
	}
	if used := r.e.PayloadStats().MemoryUsed; used != 2*mib {
		t.Fatalf("%d bytes of payload memory held by two running attempts, want %d", used, 2*mib)
	}
	_, err := r.e.AdmitPayload(mib)
	var busy *BusyError
	if !errors.As(err, &busy) || busy.Used != 2*mib || busy.Need != mib || !strings.Contains(err.Error(), "--max-payload-memory") {
		t.Fatalf("AdmitPayload while attempts hold the budget: %v, want a BusyError", err)
	}
	g.open()
	for _, id := range []TaskID{"a", "b"} {
		if v := r.wait(id); v.State != TaskCompleted {
			t.Fatalf("%s: %s", id, v.State)
		}
	}
	release, err := r.e.AdmitPayload(mib)
	if err != nil {
		t.Fatalf("AdmitPayload once the attempts ended: %v", err)
	}
	release()
	if st := r.e.PayloadStats(); st.MemoryUsed != 0 || st.Throttled != 1 || st.MemoryPeak < 2*mib {
		t.Fatalf("stats %+v, want nothing held, 1 refusal, a peak of at least 2 MiB", st)
	}
}

// TestPayloadDamagedInput: an input file cut short fails its attempt for
// good, naming the file; recovery named it first.
func TestPayloadDamagedInput(t *testing.T) {
	g := newGate(t, false)
	r := newEngineRig(t, nil)
	r.ex.set(g.execute)
	r.e.Pause(r.ctx())
	in := []byte(strings.Repeat("z", 64<<10))
	r.submit(TaskSpec{ID: "torn", Input: in, MaxAttempts: 3})
	r.close()
	path := filepath.Join(r.cfg.Dir, "payloads", payload.Ref(in)[7:9], payload.Ref(in)[7:])
	if err := os.Truncate(path, 10); err != nil {
		t.Fatal(err)
	}
	r.open()
	if errs := r.e.Recovery().PayloadErrors; len(errs) != 1 || !strings.Contains(errs[0].Error(), path) {
		t.Fatalf("recovery payload errors %v, want one naming %s", errs, path)
	}
	r.e.Resume(r.ctx())
	v := r.wait("torn")
	if v.State != TaskFailed || len(v.Runs[0].Attempts) != 1 {
		t.Fatalf("torn input: %s after %d attempts, want failed after 1", v.State, len(v.Runs[0].Attempts))
	}
	if msg := v.Runs[0].Attempts[0].Error; !strings.Contains(msg, path) || !strings.Contains(msg, "torn or truncated") {
		t.Fatalf("error %q, want it to name %s", msg, path)
	}
	if len(r.ex.calls()) != 0 {
		t.Fatal("the executor ran with a damaged input")
	}
}

// TestPayloadsInlineRoom: payloads up to InlinePayloadBytes stay inline
// while the inline payloads held take less than half the budget; past it
// only small ones (SmallPayloadBytes) do. A snapshot recounts what is held.
func TestPayloadsInlineRoom(t *testing.T) {
	r := newEngineRig(t, func(c *Config) { c.MaxPayloadMemory = 64 << 10 })
	spilled := func(id TaskID) bool {
		r.e.mu.RLock()
		defer r.e.mu.RUnlock()
		return r.e.state.Tasks[id].Spec.InputRef != ""
	}
	for i, want := range []bool{false, false, false, false, true, true} { // 10 KiB each; half the budget is 32 KiB
		id := TaskID(fmt.Sprintf("t%d", i))
		r.submit(TaskSpec{ID: id, Input: bytes.Repeat([]byte{byte('a' + i)}, 10<<10)})
		if got := spilled(id); got != want {
			t.Fatalf("%s (held before: %d KiB of inline payloads): spilled %v, want %v", id, (int64(i)*10<<10)>>10, got, want)
		}
	}
	r.submit(TaskSpec{ID: "small", Input: bytes.Repeat([]byte("s"), SmallPayloadBytes)})
	if spilled("small") {
		t.Fatal("a small input was spilled")
	}
	for i := range 4 {
		if _, err := r.e.Delete(r.ctx(), TaskID(fmt.Sprintf("t%d", i))); err != nil && !errors.Is(err, ErrNotFinal) {
			t.Fatal(err)
		}
	}
	r.idle()
	for i := range 4 {
		r.e.Delete(r.ctx(), TaskID(fmt.Sprintf("t%d", i)))
	}
	if err := r.e.Snapshot(r.ctx()); err != nil {
		t.Fatal(err)
	}
	if held := r.e.inlineHeld.Load(); held != SmallPayloadBytes+int64(len("out:small#1"))+int64(2*len("out:t4#1")) {
		t.Fatalf("after the snapshot %d inline bytes are counted, want those of the tasks left", held)
	}
	r.submit(TaskSpec{ID: "again", Input: bytes.Repeat([]byte("g"), 10<<10)})
	if spilled("again") {
		t.Fatal("with room again, a 10 KiB input was spilled")
	}
}

// TestPayloadsSpillBatch: a batch's large inputs are stored together: every
// file exists, readable, before SubmitMany returns, with one fsync per file
// and one per payload directory (fewer than the two per input of storing
// them one by one); a small input stays inline; the tasks run with their
// inputs, across a restart.
func TestPayloadsSpillBatch(t *testing.T) {
	r := newEngineRig(t, func(c *Config) { c.InlinePayloadBytes = 1 << 10 })
	head := func(in []byte) []byte { return bytes.ToUpper(in[:min(len(in), 16)]) } // an output that stays inline
	r.ex.set(func(_ context.Context, j Job) Result { return Result{Outcome: OutcomeOK, Output: head(j.Input)} })
	if err := r.e.Pause(r.ctx()); err != nil { // no output is stored meanwhile
		t.Fatal(err)
	}
	const n = 256 // spread over most of the 256 directories, some twice or more
	specs := make([]TaskSpec, n+1)
	dirs := map[string]bool{}
	for i := range n {
		in := bytes.Repeat([]byte(fmt.Sprintf("input %d ", i)), 400)
		specs[i] = TaskSpec{ID: TaskID(fmt.Sprintf("b%d", i)), Handler: "h", Input: in}
		dirs[filepath.Dir(r.e.payloads.Path(payload.Ref(in)))] = true
	}
	specs[n] = TaskSpec{ID: "small", Handler: "h", Input: []byte("small")}
	syncs := r.e.payloads.Syncs()
	_, errs, err := r.e.SubmitMany(r.ctx(), specs)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("spec %d: %v", i, err)
		}
	}
	if got, want := r.e.payloads.Syncs()-syncs, int64(n+len(dirs)); got != want {
		t.Errorf("%d fsyncs for %d inputs in %d directories, want %d (not %d)", got, n, len(dirs), want, 2*n)
	}
	for i := range n {
		in := specs[i].Input
		if b, err := r.e.payloads.Get(payload.Ref(in), int64(len(in))); err != nil || !bytes.Equal(b, in) {
			t.Fatalf("input %d in the store: %v", i, err)
		}
	}
	if err := r.e.Resume(r.ctx()); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		for i := range n + 1 {
			v := r.wait(specs[i].ID)
			if v.State != TaskCompleted || !bytes.Equal(v.Output, head(specs[i].Input)) {
				t.Fatalf("%s: task %s %s, output %d bytes", when, specs[i].ID, v.State, len(v.Output))
			}
		}
		r.e.mu.RLock()
		big, small := r.e.state.Tasks["b0"].Spec, r.e.state.Tasks["small"].Spec
		r.e.mu.RUnlock()
		if big.Input != nil || big.InputRef == "" || string(small.Input) != "small" || small.InputRef != "" {
			t.Fatalf("%s: the big input is inline (%d bytes, ref %q) or the small one is not (%+v)", when, len(big.Input), big.InputRef, small)
		}
	}
	check("live")
	r.reopen()
	check("after a restart")
}

// TestPayloadsClientRefKeepsOthersPins: a submission naming a payload by
// input_ref (stored by the client earlier, not put by this submission)
// must not release a pin it never took: here the pin of a concurrent Put
// of the same bytes whose submission has not reached the loop yet. Once
// the referring task is deleted, a sweep must still keep that file.
func TestPayloadsClientRefKeepsOthersPins(t *testing.T) {
	for _, via := range []string{"Submit", "SubmitMany"} {
		t.Run(via, func(t *testing.T) {
			r := newEngineRig(t, func(c *Config) { c.InlinePayloadBytes = 16 })
			r.ex.set(upper)
			input := []byte(strings.Repeat("shared input ", 100))
			// The concurrent submission: its input put (and pinned), its
			// spec not yet in the state.
			ref, err := r.e.payloads.Put(input)
			if err != nil {
				t.Fatal(err)
			}
			spec := TaskSpec{ID: "by-ref", Handler: "h", InputRef: ref, InputSize: int64(len(input))}
			switch via {
			case "Submit":
				if _, err := r.e.Submit(r.ctx(), spec); err != nil {
					t.Fatal(err)
				}
			case "SubmitMany":
				_, errs, err := r.e.SubmitMany(r.ctx(), []TaskSpec{spec})
				if err == nil {
					err = errs[0]
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if v := r.wait("by-ref"); string(v.Output) != strings.ToUpper(string(input)) {
				t.Fatalf("the task by reference output %d bytes, want its input upper-cased (%d)", len(v.Output), len(input))
			}
			if _, err := r.e.Delete(r.ctx(), "by-ref"); err != nil {
				t.Fatal(err)
			}
			if err := r.e.Snapshot(r.ctx()); err != nil {
				t.Fatal(err)
			}
			if err := r.e.payloads.Check(ref, int64(len(input))); err != nil {
				t.Fatalf("the sweep removed a payload the concurrent submission still pins: %v", err)
			}
			r.e.payloads.Unpin(ref) // the concurrent submission reached the state
		})
	}
}
