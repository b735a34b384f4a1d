package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/dispatch"
)

// crashTask is what the test knows of a submitted task.
type crashTask struct {
	input string
	max   int // max_attempts
}

// TestCrashRecovery submits thousands of tasks in batches, kills the
// server with SIGKILL while they run, restarts it on the same data
// directory, and repeats; then every acknowledged task (201 or 200) must
// reach a final state with its attempts within max_attempts. Attempts cut
// by a kill are recorded as "lost" and do not count against max_attempts,
// so only tasks whose handler always fails end failed.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 cycles with thousands of tasks: skipped with -short")
	}
	const (
		cycles    = 4
		batchSize = 250
	)
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	t.Logf("seed %d", seed)
	s := startServer(t, serverOpts{})
	ctx := context.Background()
	s.deploy("flaky", module(t, "flaky"))

	var (
		mu      sync.Mutex
		acked   = map[string]crashTask{}
		unacked = map[string]bool{} // in flight when the server died
	)
	newSpec := func(rng *rand.Rand, id string) (api.TaskSpec, crashTask) {
		sp := api.TaskSpec{ID: id, Handler: "flaky", Backoff: &api.Backoff{Kind: "fixed", Base: "20ms"}}
		var ct crashTask
		switch k := rng.IntN(100); {
		case k < 55: // succeeds at once; a single attempt
			ct = crashTask{input: "x " + id, max: 1}
		case k < 70: // spins a few ms
			ct = crashTask{input: "s " + id, max: 2}
		case k < 88: // fails retryably once, then succeeds
			ct = crashTask{input: "r2 " + id, max: 3}
		default: // fails retryably on every attempt
			ct = crashTask{input: "r9 " + id, max: 3}
		}
		sp.Input = &ct.input
		sp.MaxAttempts = ct.max
		return sp, ct
	}

	for cycle := range cycles {
		if cycle > 0 {
			s.start()
		}
		// Submit a random number of tasks in large batches, then keep
		// submitting small batches at a steady pace while the engine
		// works; kill it after it has completed a random number of runs,
		// with attempts running and, likely, a batch in flight.
		target, work := 700+rng.IntN(400), 200+rng.IntN(600)
		if raceEnabled { // a race-enabled server is several times slower
			target, work = 500+rng.IntN(300), 100+rng.IntN(300)
		}
		reached := make(chan struct{})
		subRng := rand.New(rand.NewPCG(rng.Uint64(), 2))
		done := make(chan struct{})
		base, err := s.client.EngineStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer close(done)
			n := 0
			signal := reached
			pace := time.NewTicker(40 * time.Millisecond)
			defer pace.Stop()
			for b := 0; ; b++ {
				size := batchSize
				if n >= target {
					size = 10
					<-pace.C
				}
				specs := make([]api.TaskSpec, size)
				known := make([]crashTask, size)
				for i := range specs {
					specs[i], known[i] = newSpec(subRng, fmt.Sprintf("c%d-%d-%d", cycle, b, i))
				}
				res, err := s.client.SubmitBatch(ctx, specs)
				mu.Lock()
				if err != nil {
					for _, sp := range specs {
						unacked[sp.ID] = true
					}
					mu.Unlock()
					return // the server is gone
				}
				for i, r := range res {
					switch r.Status {
					case 200, 201:
						acked[specs[i].ID] = known[i]
						n++
					default:
						t.Errorf("batch: %s: %d %+v", specs[i].ID, r.Status, r.Error)
					}
				}
				mu.Unlock()
				if n >= target && signal != nil {
					close(signal)
					signal = nil
				}
			}
		}()
		select {
		case <-reached:
		case <-done:
			t.Fatalf("cycle %d: the submitter stopped before the kill", cycle)
		}
		waitFor(t, 60*time.Second, "the engine to complete runs", func() bool {
			st, err := s.client.EngineStatus(ctx)
			return err == nil && st.Runs["completed"]+st.Runs["failed"] >= base.Runs["completed"]+base.Runs["failed"]+work
		})
		st, _ := s.client.EngineStatus(ctx)
		s.kill()
		<-done
		mu.Lock()
		t.Logf("cycle %d: killed with %d attempts in flight, %d runs ready, %d final; %d tasks acknowledged so far",
			cycle, st.InFlight, st.Runs["ready"], st.Runs["completed"]+st.Runs["failed"], len(acked))
		mu.Unlock()
	}

	s.start()
	rec, err := s.client.EngineStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("last recovery: %d events replayed in %.3fs, %d tasks", rec.Recovery.EventsReplayed, rec.Recovery.Seconds, rec.Tasks)
	s.waitRunsFinal(3 * time.Minute)
	views := s.allTasks()

	outcomes := map[string]int{}
	states := map[string]int{}
	for id, want := range acked {
		v, ok := views[id]
		if !ok {
			t.Errorf("acknowledged task %s is gone", id)
			continue
		}
		states[v.State]++
		a := attempts(v)
		for i, at := range a {
			outcomes[at.Outcome]++
			if at.Number != i+1 || at.Outcome == "" {
				t.Errorf("task %s: attempt %d is %+v", id, i+1, at)
			}
			if at.Outcome == "ok" && i != len(a)-1 {
				t.Errorf("task %s: attempt %d succeeded but was followed by another", id, i+1)
			}
		}
		used, lost := 0, 0 // lost attempts do not count against max_attempts
		for _, at := range a {
			if at.Outcome == "lost" {
				lost++
			} else {
				used++
			}
		}
		if len(v.Runs) != 1 || len(a) == 0 || used > want.max || lost > cycles {
			t.Errorf("task %s (%q): %d runs, %d attempts (%d lost); want 1 run, 1..%d attempts not lost, at most one lost per kill", id, want.input, len(v.Runs), len(a), lost, want.max)
			continue
		}
		last := a[len(a)-1]
		switch v.State {
		case "completed":
			if last.Outcome != "ok" || v.Output == nil || *v.Output != want.input {
				t.Errorf("task %s completed with last attempt %+v and output %v, want ok and %q", id, last, v.Output, want.input)
			}
			if want.input[:2] == "r9" {
				t.Errorf("task %s completed but its handler always fails", id)
			}
		case "failed":
			// Only a handler that always fails uses up its attempts: an
			// attempt cut short by a kill does not count (README).
			if want.input[:2] != "r9" || used != want.max {
				t.Errorf("task %s (%q) failed after %d attempts not lost of %d: %+v", id, want.input, used, want.max, a)
			}
		default:
			t.Errorf("task %s is %s, not final", id, v.State)
		}
	}
	present := 0
	for id := range unacked {
		if _, ok := views[id]; ok {
			present++
		}
	}
	t.Logf("%d acknowledged tasks: states %v; attempt outcomes %v; %d of %d unacknowledged submissions were kept",
		len(acked), states, outcomes, present, len(unacked))
	// Each kill cuts at most the attempts leased: one per worker, and
	// those leased ahead of the workers while attempts are short.
	if lost, most := outcomes["lost"], cycles*dispatch.MaxLeased(s.opts.workers); lost == 0 || lost > most {
		t.Errorf("%d attempts lost; want 1..%d (%d kills, %d workers, %d leased each at most)", lost, most, cycles, s.opts.workers, dispatch.MaxLeased(s.opts.workers))
	}
	if len(acked) < 3000 {
		t.Errorf("only %d tasks acknowledged; want several thousand", len(acked))
	}
}

// waitRunsFinal waits until no run of s is scheduled, ready, leased,
// running or waiting for a retry.
func (s *server) waitRunsFinal(timeout time.Duration) {
	s.t.Helper()
	waitFor(s.t, timeout, "every run to be final", func() bool {
		st, err := s.client.EngineStatus(context.Background())
		if err != nil {
			return false
		}
		for _, state := range []string{"scheduled", "ready", "leased", "running", "retry_wait"} {
			if st.Runs[state] > 0 {
				return false
			}
		}
		return true
	})
}

// allTasks returns every task of s, read through the paginated list; a
// task listed twice fails the test.
func (s *server) allTasks() map[string]api.TaskView {
	s.t.Helper()
	views := map[string]api.TaskView{}
	cursor := ""
	for {
		l, err := s.client.TaskList(context.Background(), &api.TaskListParams{Limit: 1000, Cursor: cursor})
		if err != nil {
			s.t.Fatal(err)
		}
		for _, v := range l.Tasks {
			if _, dup := views[v.ID]; dup {
				s.t.Errorf("task %s listed twice", v.ID)
			}
			views[v.ID] = v
		}
		if cursor = l.NextCursor; cursor == "" {
			return views
		}
	}
}
