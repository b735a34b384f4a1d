package examples_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/host"
	"github.com/wasmtask/wasmtask/internal/testguests"
	"github.com/wasmtask/wasmtask/segwal"
)

// The Go coordinator example through the real host: dispatch cannot import
// host, so this end-to-end workflow test lives beside the examples.

var guests struct {
	once sync.Once
	wasm map[string][]byte
	err  error
}

// goGuests builds examples/go/{coordinator,uppercase} once per test binary.
// -trimpath: the module's bytes, hence its hash and its compiled code in
// the cache, do not depend on the checkout's path (every worktree or fresh
// clone compiled them anew), and uppercase is the module the sdk package's
// conformance test compiles (the same flags, the same cache folder).
func goGuests(t *testing.T) map[string][]byte {
	t.Helper()
	guests.once.Do(func() {
		dir := t.TempDir()
		guests.wasm = map[string][]byte{}
		for _, name := range []string{"coordinator", "uppercase"} {
			out := filepath.Join(dir, name+".wasm")
			cmd := testguests.GoBuild("", "./go/"+name, out)
			if b, err := cmd.CombinedOutput(); err != nil {
				guests.err = fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, b)
				return
			}
			if guests.wasm[name], guests.err = os.ReadFile(out); guests.err != nil {
				return
			}
		}
	})
	if guests.err != nil {
		t.Fatalf("build the Go guests: %v", guests.err)
	}
	return guests.wasm
}

// event is an attempt starting or finishing, in the order the executor saw.
type event struct {
	task   dispatch.TaskID
	finish bool
}

// orderRecorder wraps an executor and records the start and finish of
// every attempt in one sequence.
type orderRecorder struct {
	next   dispatch.Executor
	mu     sync.Mutex
	events []event
}

func (o *orderRecorder) Execute(ctx context.Context, j dispatch.Job) dispatch.Result {
	o.record(event{task: j.Task})
	res := o.next.Execute(ctx, j)
	o.record(event{task: j.Task, finish: true})
	return res
}

func (o *orderRecorder) record(e event) {
	o.mu.Lock()
	o.events = append(o.events, e)
	o.mu.Unlock()
}

func TestWorkflowCoordinatorFanOutFanIn(t *testing.T) {
	const items = 100
	t0 := time.Now()
	wasm := goGuests(t)
	quiet := slog.New(slog.DiscardHandler)
	// Compiled code is kept in the user's cache folder, shared with sdk's
	// conformance test: a Go guest takes a minute or more to compile under
	// -race on a busy 2-core machine, and milliseconds to load from the
	// cache. The compiles are bounded by the test binary's -timeout alone
	// (cold, under load, they took longer than the workflow's own bound).
	h, err := host.New(t.Context(), host.Config{Logger: quiet, CacheDir: testguests.CacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	plugins := map[string]host.Plugin{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(wasm))
	for name, b := range wasm { // at once: each compile uses one core
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := h.Load(t.Context(), b, 0)
			if err != nil {
				errs <- fmt.Errorf("load %s: %w", name, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			// The coordinator stages items children plus the fan-in.
			plugins[name] = host.Plugin{Module: m, Limits: host.DefaultLimits().WithChildren(items + 1)}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("guests built and loaded in %s", time.Since(t0))
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	rec := &orderRecorder{next: host.NewExecutor(h, func(_ context.Context, handler string) (host.Plugin, error) {
		p, ok := plugins[handler]
		if !ok {
			return host.Plugin{}, fmt.Errorf("no plugin %q", handler)
		}
		return p, nil
	})}
	e, err := dispatch.Open(dispatch.Config{Dir: t.TempDir(), Executor: rec, Workers: 8, Logger: quiet,
		WAL: segwal.Options{Sync: segwal.SyncNone}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()

	input := fmt.Sprintf(`{"items": %d}`, items)
	if _, err := e.Submit(ctx, dispatch.TaskSpec{ID: "coord", Handler: "coordinator", Input: []byte(input)}); err != nil {
		t.Fatal(err)
	}
	coord, err := e.Wait(ctx, "coord")
	if err != nil {
		t.Fatalf("Wait: %v (%+v)", err, coord)
	}
	t.Logf("workflow final after %s", time.Since(t0))
	if coord.State != dispatch.TaskCompleted {
		t.Fatalf("coordinator %s: %+v", coord.State, coord.Runs)
	}
	var out struct {
		Children int    `json:"children"`
		FanIn    string `json:"fanin"`
	}
	if err := json.Unmarshal(coord.Output, &out); err != nil || out.Children != items {
		t.Fatalf("coordinator output %q: %v", coord.Output, err)
	}
	fanin := dispatch.TaskID(out.FanIn)
	if len(coord.Children) != items+1 || coord.Children[items] != fanin {
		t.Fatalf("coordinator has %d children (last %v), want %d then the fan-in %s", len(coord.Children), coord.Children[len(coord.Children)-1:], items+1, fanin)
	}
	children := coord.Children[:items]

	// Every child completed with its output; the fan-in waited for all.
	var lastFinish int64
	for i, id := range children {
		v, ok := e.Task(id)
		if !ok || v.State != dispatch.TaskCompleted || v.Parent != "coord" {
			t.Fatalf("child %s: %+v", id, v)
		}
		if want := fmt.Sprintf("ITEM %d", i+1); string(v.Output) != want {
			t.Errorf("child %s output %q, want %q", id, v.Output, want)
		}
		a := v.Runs[0].Attempts
		lastFinish = max(lastFinish, a[len(a)-1].FinishedAt)
	}
	fv, ok := e.Task(fanin)
	if !ok || fv.State != dispatch.TaskCompleted || len(fv.After) != items {
		t.Fatalf("fan-in %s: %+v", fanin, fv)
	}
	if len(fv.Runs[0].Attempts) != 1 {
		t.Errorf("fan-in ran %d attempts", len(fv.Runs[0].Attempts))
	}
	if a := fv.Runs[0].Attempts[0]; a.LeasedAt < lastFinish {
		t.Errorf("fan-in leased at %d, before the last child finished at %d", a.LeasedAt, lastFinish)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	finished := map[dispatch.TaskID]bool{}
	for _, ev := range rec.events {
		switch {
		case ev.finish:
			finished[ev.task] = true
		case ev.task == fanin:
			for _, id := range children {
				if !finished[id] {
					t.Fatalf("the fan-in started before child %s finished", id)
				}
			}
		}
	}
	if !finished[fanin] {
		t.Errorf("the fan-in never ran")
	}
}
