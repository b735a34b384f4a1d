package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/dispatch"
)

// Bounds the soak asserts. The RSS bound is a regression guard for a small
// server (4 workers, tens of thousands of small retained tasks), not a
// tuned figure; the recovery bound is what an operator would call stuck.
const (
	soakMaxRSS      = 512 << 20 // bytes, sampled just before every kill and at the end
	soakMaxRecovery = 10 * time.Second
	soakClients     = 4
)

// TestSoak is TestCrashRecovery at length (make soak): WASMTASK_SOAK_CYCLES
// times, clients submit single tasks and batches while the server runs a
// mix of handlers, and the server is killed with SIGKILL after a random
// 20-300ms, then restarted on the same data directory. After a last clean
// start every acknowledged task must be final, with the attempts the
// contract allows (dispatch/doc.go, docs/task-spec.md): at most
// max_attempts attempts that end with a verdict, lost attempts not counted
// but at most dispatch.MaxLostAttempts (5) per run, the 5th failing the run
// with an error naming the limit; one run, at most one ok attempt and only
// as the last. Recovery time and RSS stay under the bounds above.
func TestSoak(t *testing.T) {
	env := os.Getenv("WASMTASK_SOAK_CYCLES")
	if env == "" {
		t.Skip("set WASMTASK_SOAK_CYCLES=N to run N kill -9 cycles (make soak)")
	}
	cycles, err := strconv.Atoi(env)
	if err != nil || cycles < 1 {
		t.Fatalf("WASMTASK_SOAK_CYCLES=%q: want a positive number of cycles", env)
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("WASMTASK_SOAK_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("%d cycles, seed %d (WASMTASK_SOAK_SEED to repeat)", cycles, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	began := time.Now()

	s := startServer(t, serverOpts{})
	ctx := context.Background()
	s.deploy("flaky", module(t, "flaky"))

	var (
		mu      sync.Mutex
		acked   = map[string]crashTask{}
		unacked = map[string]bool{}
	)
	var startups, recoveries []time.Duration
	var maxRSS int64
	for cycle := range cycles {
		if cycle > 0 {
			t0 := time.Now()
			s.start()
			startups = append(startups, time.Since(t0))
			st, err := s.client.EngineStatus(ctx)
			if err != nil {
				t.Fatalf("cycle %d: engine status after restart: %v", cycle, err)
			}
			recoveries = append(recoveries, time.Duration(st.Recovery.Seconds*float64(time.Second)))
		}
		cctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for c := range soakClients {
			wg.Add(1)
			go func(rng *rand.Rand) {
				defer wg.Done()
				soakClient(cctx, s.client, rng, fmt.Sprintf("k%d-%d", cycle, c), &mu, acked, unacked)
			}(rand.New(rand.NewPCG(rng.Uint64(), uint64(c))))
		}
		time.Sleep(time.Duration(20+rng.IntN(281)) * time.Millisecond)
		if rss := processRSS(t, s.cmd.Process.Pid); rss > maxRSS {
			maxRSS = rss
		}
		s.kill()
		cancel()
		wg.Wait()
		if cycle%50 == 0 || cycle == cycles-1 {
			mu.Lock()
			t.Logf("cycle %d: %d tasks acknowledged, max RSS %d MiB", cycle, len(acked), maxRSS>>20)
			mu.Unlock()
		}
	}

	// The last, clean run: everything acknowledged must finish.
	s.start()
	s.waitRunsFinal(10 * time.Minute)
	st, err := s.client.EngineStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rss := processRSS(t, s.cmd.Process.Pid); rss > maxRSS {
		maxRSS = rss
	}

	views := s.allTasks()
	completedRuns := 0
	for _, v := range views {
		for _, r := range v.Runs {
			if r.State == "completed" {
				completedRuns++
			}
		}
	}
	if completedRuns != st.Runs["completed"] {
		t.Errorf("the task views show %d completed runs, the engine counts %d", completedRuns, st.Runs["completed"])
	}

	var lostTasks, overCap, lostAttempts int
	outcomes, states := map[string]int{}, map[string]int{}
	for id, want := range acked {
		v, ok := views[id]
		if !ok {
			lostTasks++
			t.Errorf("acknowledged task %s is gone", id)
			continue
		}
		states[v.State]++
		if problem := checkSoakTask(v, want); problem != "" {
			t.Errorf("task %s (%q): %s: %+v", id, want.input, problem, v.Runs)
			if strings.Contains(problem, "over") {
				overCap++
			}
		}
		for _, a := range attempts(v) {
			outcomes[a.Outcome]++
			if a.Outcome == "lost" {
				lostAttempts++
			}
		}
	}
	kept := 0
	for id := range unacked {
		if _, ok := views[id]; ok {
			kept++
		}
	}
	// Each kill cuts at most the attempts leased: one per worker, and those
	// leased ahead of the workers while attempts are short (as TestCrashRecovery).
	if most := cycles * dispatch.MaxLeased(s.opts.workers); lostAttempts > most {
		t.Errorf("%d lost attempts; at most %d expected (%d kills, %d workers, %d leased each at most)", lostAttempts, most, cycles, s.opts.workers, dispatch.MaxLeased(s.opts.workers))
	}

	walBytes, snapBytes, otherBytes := dataDirSizes(t, s.opts.dataDir)
	slices.Sort(startups)
	slices.Sort(recoveries)
	t.Logf("SOAK: %d kill -9 cycles in %v; %d tasks acknowledged, %d lost, %d over their attempt cap; "+
		"%d unacknowledged submissions (%d kept); states %v; attempt outcomes %v",
		cycles, time.Since(began).Round(time.Second), len(acked), lostTasks, overCap, len(unacked), kept, states, outcomes)
	t.Logf("SOAK: recovery (engine) median %v max %v; restart to listening median %v max %v; "+
		"last recovery %d events in %.3fs; max RSS %d MiB; data dir: WAL %d KiB, snapshots %d KiB, other %d KiB",
		median(recoveries), last(recoveries), median(startups), last(startups),
		st.Recovery.EventsReplayed, st.Recovery.Seconds, maxRSS>>20, walBytes>>10, snapBytes>>10, otherBytes>>10)
	if max := last(recoveries); max > soakMaxRecovery {
		t.Errorf("a recovery took %v; want at most %v", max, soakMaxRecovery)
	}
	if maxRSS > soakMaxRSS {
		t.Errorf("the server's RSS reached %d MiB; want at most %d MiB", maxRSS>>20, soakMaxRSS>>20)
	}
}

// soakClient submits until ctx ends or the server is gone: a single task
// or a batch of up to 10, every 10-40ms. Ids are recorded as acknowledged
// only on 200/201; a submission whose answer never came is unacked.
func soakClient(ctx context.Context, c *api.Client, rng *rand.Rand, prefix string, mu *sync.Mutex, acked map[string]crashTask, unacked map[string]bool) {
	for n := 0; ctx.Err() == nil; n++ {
		size := 1
		if rng.IntN(2) == 0 {
			size = 2 + rng.IntN(9)
		}
		specs := make([]api.TaskSpec, size)
		known := make([]crashTask, size)
		for i := range specs {
			specs[i], known[i] = soakSpec(rng, fmt.Sprintf("%s-%d-%d", prefix, n, i))
		}
		var statuses []int
		if size == 1 {
			if _, err := c.Submit(ctx, specs[0]); err == nil {
				statuses = []int{201}
			}
		} else if res, err := c.SubmitBatch(ctx, specs); err == nil {
			for _, r := range res {
				statuses = append(statuses, r.Status)
			}
		}
		mu.Lock()
		for i, sp := range specs {
			if i < len(statuses) && (statuses[i] == 200 || statuses[i] == 201) {
				acked[sp.ID] = known[i]
			} else {
				unacked[sp.ID] = true
			}
		}
		mu.Unlock()
		if len(statuses) == 0 {
			return // the server is gone
		}
		time.Sleep(time.Duration(10+rng.IntN(31)) * time.Millisecond)
	}
}

// soakSpec draws a task for the flaky handler (testdata/flaky.wat).
func soakSpec(rng *rand.Rand, id string) (api.TaskSpec, crashTask) {
	var ct crashTask
	switch k := rng.IntN(100); {
	case k < 50: // succeeds at once
		ct = crashTask{input: "x " + id, max: 1}
	case k < 65: // spins a few ms
		ct = crashTask{input: "s " + id, max: 2}
	case k < 85: // fails retryably once, then succeeds
		ct = crashTask{input: "r2 " + id, max: 3}
	case k < 95: // fails retryably on every attempt
		ct = crashTask{input: "r9 " + id, max: 3}
	default: // hangs until its 300ms timeout (or a kill) on attempt 1
		ct = crashTask{input: "h " + id, max: 3}
	}
	sp := api.TaskSpec{ID: id, Handler: "flaky", Input: &ct.input, MaxAttempts: ct.max,
		Backoff: &api.Backoff{Kind: "fixed", Base: "20ms"}}
	if ct.input[0] == 'h' {
		// Only the hanging handler gets a short timeout: on a loaded
		// machine the time between lease and start counts against it,
		// and a short timeout then stops even instant handlers.
		sp.Timeout = "300ms"
	}
	return sp, ct
}

// checkSoakTask returns what is wrong with a final task's view, or "".
func checkSoakTask(v api.TaskView, want crashTask) string {
	if len(v.Runs) != 1 {
		return fmt.Sprintf("%d runs, want 1", len(v.Runs))
	}
	a := v.Runs[0].Attempts
	used, lost, oks := 0, 0, 0
	for i, at := range a {
		if at.Number != i+1 || at.Outcome == "" {
			return fmt.Sprintf("attempt %d is numbered %d with outcome %q", i+1, at.Number, at.Outcome)
		}
		switch at.Outcome {
		case "lost":
			lost++
		case "ok":
			oks++
		default:
			used++
		}
	}
	used += oks
	switch {
	case used > want.max:
		return fmt.Sprintf("%d attempts with a verdict, over max_attempts %d", used, want.max)
	case lost > 5:
		return fmt.Sprintf("%d lost attempts, over the limit of 5", lost)
	case len(a) == 0:
		return "no attempt"
	case oks > 1:
		return fmt.Sprintf("completed %d times", oks)
	}
	last := a[len(a)-1]
	switch v.State {
	case "completed":
		if last.Outcome != "ok" || v.Output == nil || *v.Output != want.input {
			return fmt.Sprintf("completed with last outcome %q, output %v", last.Outcome, v.Output)
		}
		if strings.HasPrefix(want.input, "r9") {
			return "completed but its handler always fails"
		}
	case "failed":
		switch {
		case last.Outcome == "lost" && lost == 5 && strings.Contains(last.Error, "lost attempts"):
			// the contract's limit of lost attempts, named in the error
		case strings.HasPrefix(want.input, "r9") && used == want.max:
		case strings.HasPrefix(want.input, "h") && used == want.max && onlyTimeouts(a):
			// every try of the hanging handler was cut by its timeout
			// (on a loaded machine, later tries too): within the contract
		default:
			return fmt.Sprintf("failed after %d attempts with a verdict, %d lost", used, lost)
		}
	default:
		return "not final: " + v.State
	}
	return ""
}

func onlyTimeouts(a []api.AttemptView) bool {
	for _, at := range a {
		if at.Outcome != "timeout" && at.Outcome != "lost" {
			return false
		}
	}
	return true
}

// processRSS reads VmRSS of a live process, in bytes.
func processRSS(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Logf("RSS of %d: %v", pid, err)
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// dataDirSizes sums the data directory's files: WAL segments, snapshots
// and the rest (plugin store).
func dataDirSizes(t *testing.T, dir string) (wal, snap, other int64) {
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		switch rel, _ := filepath.Rel(dir, path); {
		case strings.HasSuffix(path, ".snap"):
			snap += info.Size()
		case strings.Contains(rel, "wal"):
			wal += info.Size()
		default:
			other += info.Size()
		}
		return nil
	})
	return wal, snap, other
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[len(d)/2]
}

func last(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[len(d)-1]
}
