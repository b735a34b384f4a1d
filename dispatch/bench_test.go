package dispatch

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/segwal"

	"github.com/wasmtask/wasmtask/dispatch/machine"
	"github.com/wasmtask/wasmtask/internal/cputime"
)

// Benchmarks of the whole engine (make bench):
//
//	BenchmarkEngineNoop/submit-wait   one caller, Submit then Wait, one task at a time
//	BenchmarkEngineNoop/submitters=N  N callers submit b.N tasks; ends when all completed
//	                                  (1024 workers; workers=default/...: DefaultWorkers;
//	                                  workers=default,durable-leases/...: Config.DurableLeases)
//	BenchmarkCoreNoop                 the loop's own share of a task: Step + event encoding
//	BenchmarkRecovery                 Open over a log of ~1M events (full replay)
//	BenchmarkSnapshot                 a snapshot of 100k tasks: the loop's part, the writer's
//	BenchmarkEventCodec               one event through the hand-written codec and the library
//
// Every task goes Submit -> WAL -> dispatch -> no-op executor -> WAL ->
// completion, with the default WAL options (zstd, fsync on every commit,
// preallocated segments), on the OS temp dir unless BENCHDIR says
// otherwise. Reported per task: tasks/s, fsyncs/task, writes/task (WAL frames
// written: each a write syscall) and walB/task (frame
// bytes written, headers included), cpu-us/task (the process's CPU time,
// which other load on the machine disturbs less than the rate), and per
// run us/fsync and tasks/tick. The rate under many submitters depends on
// the disk's fsync latency at the moment (it varies between runs on a
// shared VM): compare binaries interleaved, several runs each.

var benchQuiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func benchDir(b *testing.B) string {
	if d := os.Getenv("BENCHDIR"); d != "" {
		dir, err := os.MkdirTemp(d, "dispatch-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return b.TempDir()
}

var noopExecutor = ExecutorFunc(func(context.Context, Job) Result { return Result{Outcome: OutcomeOK} })

func BenchmarkEngineNoop(b *testing.B) {
	b.Run("submit-wait", func(b *testing.B) { benchNoop(b, 1, 0, true) })
	for _, n := range []int{1, 64, 256, 1024} {
		b.Run(fmt.Sprintf("submitters=%d", n), func(b *testing.B) { benchNoop(b, n, noopWorkers, false) })
	}
	// The default pool (DefaultWorkers: 4 per core, at least 16, as serve
	// --workers): before lease-ahead, each slot waited for a tick per
	// attempt.
	b.Run("workers=default/submitters=256", func(b *testing.B) { benchNoop(b, 256, 0, false) })
	// serve's pool on up to 4 cores (16), named as before DefaultWorkers.
	b.Run("workers=16/submitters=256", func(b *testing.B) { benchNoop(b, 256, 16, false) })
	// A small pool (Config's default was 2 x GOMAXPROCS, 4 on 2 cores):
	// lease-ahead keeps it busy between ticks.
	b.Run("workers=4/submitters=256", func(b *testing.B) { benchNoop(b, 256, 4, false) })
	// The same with every attempt waiting for its lease's fsync (the cost
	// of Config.DurableLeases).
	b.Run("workers=default,durable-leases/submitters=256", func(b *testing.B) {
		benchNoopConfig(b, 256, false, Config{DurableLeases: true})
	})
}

// noopWorkers: no-op attempts take no time, so the pool is sized for
// throughput (the executor pool of a real server is sized for its handlers).
const noopWorkers = 1024

// benchNoop submits b.N no-op tasks from submitters goroutines (each waits
// for its task to finish before the next when wait is set) to an engine
// with workers executors (0: the default), and stops the clock when every
// task is completed.
func benchNoop(b *testing.B, submitters, workers int, wait bool) {
	benchNoopConfig(b, submitters, wait, Config{Workers: workers})
}

// benchNoopConfig is benchNoop with cfg (its Dir, Executor and Logger are set here).
func benchNoopConfig(b *testing.B, submitters int, wait bool, cfg Config) {
	cfg.Dir, cfg.Executor, cfg.Logger = benchDir(b), noopExecutor, benchQuiet
	e, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	spec := TaskSpec{Handler: "noop"}
	// Warm up: the first tick, buffers, the zstd encoder.
	for range 100 {
		if _, err := e.Submit(ctx, spec); err != nil {
			b.Fatal(err)
		}
	}
	if err := waitCompleted(e, 100, 100); err != nil {
		b.Fatal(err)
	}
	w0, s0 := e.WALStats(), e.Stats()
	baseTasks := s0.Tasks

	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	for range submitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				res, err := e.Submit(ctx, spec)
				if err == nil && wait {
					_, err = e.Wait(ctx, res.Task)
				}
				if err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if p := failed.Load(); p != nil {
		b.Fatal(*p)
	}
	if err := waitCompleted(e, baseTasks+b.N, s0.RunsByState[RunCompleted]+b.N); err != nil {
		b.Fatal(err)
	}
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()

	w1 := e.WALStats()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
	b.ReportMetric(float64(w1.Syncs-w0.Syncs)/float64(b.N), "fsyncs/task")
	b.ReportMetric(float64(w1.Appends-w0.Appends)/float64(b.N), "writes/task")
	if n := w1.Syncs - w0.Syncs; n > 0 {
		b.ReportMetric(float64((w1.SyncTime-w0.SyncTime).Microseconds())/float64(n), "us/fsync")
	}
	b.ReportMetric(float64(w1.FrameBytes-w0.FrameBytes)/float64(b.N), "walB/task")
	b.ReportMetric(float64(w1.Records-w0.Records)/float64(b.N), "events/task")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/task")
	b.ReportMetric(float64(b.N)/float64(e.Stats().Ticks-s0.Ticks), "tasks/tick")
}

// cpuTime is the CPU time (user + system) the process used so far (0
// where getrusage is missing). Per task it tells the engine's cost apart
// from waiting for the disk, and from other processes competing for the
// cores.
func cpuTime() time.Duration { return cputime.Process() }

// waitCompleted waits until total tasks were submitted and completed of
// them are completed. Final tasks beyond Config.RetainCount are dropped,
// so the dropped ones (all completed: the executor never fails) count as
// completed too.
func waitCompleted(e *Engine, total, completed int) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		changed := e.changedCh()
		st := e.Stats()
		if st.RunsByState[RunCompleted]+(total-st.Tasks) >= completed {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out: %+v", st)
		}
		select {
		case <-changed:
		case <-e.done:
			return e.stoppedErr()
		case <-time.After(time.Second):
		}
	}
}

// recoveryTasks no-op tasks make ~1M events: submitted, run created,
// lease acquired, attempt started, attempt finished.
const recoveryTasks = 200_000

// buildRecoveryLog writes a log of recoveryTasks completed no-op tasks in
// dir, without fsync and without snapshots, and returns its event count.
func buildRecoveryLog(dir string) (uint64, error) {
	e, err := Open(recoveryConfig(dir, segwal.SyncNone))
	if err != nil {
		return 0, err
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= recoveryTasks {
				if _, err := e.Submit(ctx, TaskSpec{Handler: "noop", Input: []byte("input")}); err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	err = waitCompleted(e, recoveryTasks, recoveryTasks)
	events := e.WALStats().Records
	if cerr := e.Close(); err == nil {
		err = cerr
	}
	return events, err
}

func recoveryConfig(dir string, sync segwal.SyncPolicy) Config {
	return Config{Dir: dir, Executor: noopExecutor, Logger: benchQuiet, SnapshotEvery: -1,
		RetainCount: 1 << 30, WAL: segwal.Options{Sync: sync}}
}

// BenchmarkRecovery times Open over a log of ~1M events with no snapshot:
// segwal checks every frame, then every event is decoded and applied.
func BenchmarkRecovery(b *testing.B) {
	dir := benchDir(b) // the parent runs once: the log is built once
	events, err := buildRecoveryLog(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Run(fmt.Sprintf("events=%d", events), func(b *testing.B) {
		b.ReportAllocs()
		var total, cpu time.Duration
		for range b.N {
			start, cpu0 := time.Now(), cpuTime()
			e, err := Open(recoveryConfig(dir, segwal.SyncAlways))
			elapsed := time.Since(start)
			cpu += cpuTime() - cpu0
			if err != nil {
				b.Fatal(err)
			}
			total += elapsed
			b.StopTimer()
			replayed := e.Recovery().EventsReplayed
			if err := e.Close(); err != nil {
				b.Fatal(err)
			}
			if written := e.WALStats().Records; replayed != events || written != 0 {
				b.Fatalf("replayed %d events, the log holds %d; %d written on reopen", replayed, events, written)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(events)*float64(b.N)/total.Seconds(), "events/s")
		b.ReportMetric(total.Seconds()/float64(b.N), "s/open")
		b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/open")
	})
}

// snapshotBenchState is the state a server keeps by default: RetainCount
// (100,000) completed no-op tasks, built through apply.
func snapshotBenchState(b *testing.B, n int) *State {
	s := NewState()
	at := int64(1_700_000_000_000)
	for i := range n {
		id := TaskID(fmt.Sprintf("01HF8X2J9K7Q3V5W6Y%08d", i))
		spec := TaskSpec{ID: id, Handler: "noop"}
		if err := spec.Normalize(); err != nil {
			b.Fatal(err)
		}
		run := machine.MakeRunID(id, 1)
		for _, e := range []Event{
			{Type: EvTaskSubmitted, At: at, Task: id, Spec: &spec},
			{Type: EvRunCreated, At: at, Task: id, Run: run, Index: 1, To: RunReady, DueAt: at},
			{Type: EvLeaseAcquired, At: at, Task: id, Run: run, From: RunReady, Attempt: 1, Worker: "pid1/w3", LeaseExp: at + 35_000},
			{Type: EvAttemptStarted, At: at, Task: id, Run: run, Attempt: 1},
			{Type: EvAttemptFinished, At: at, Task: id, Run: run, From: RunRunning, To: RunCompleted, Attempt: 1, Outcome: OutcomeOK},
		} {
			if err := machine.Apply(s, &e); err != nil {
				b.Fatal(err)
			}
		}
	}
	return s
}

// BenchmarkSnapshot: what a snapshot of 100k retained tasks costs the
// loop (capture) and the goroutine that writes it (encode; the library's
// reflection-based encoding of the same body for comparison).
func BenchmarkSnapshot(b *testing.B) {
	s := snapshotBenchState(b, 100_000)
	b.Run("capture", func(b *testing.B) {
		for range b.N {
			machine.CaptureState(s)
		}
	})
	b.Run("encode", func(b *testing.B) {
		var n int
		for range b.N {
			out, err := machine.CaptureState(s).Encode()
			if err != nil {
				b.Fatal(err)
			}
			n = len(out)
		}
		b.ReportMetric(float64(n), "bytes")
	})
	b.Run("encode-library", func(b *testing.B) {
		for range b.N {
			if _, err := machine.EncodeStateLibrary(s); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCoreNoop is the loop's own share of a no-op task, the part no
// second core can take over: Core.Step for its submission, its start
// report and its result (ticks of 256 tasks, as under load), plus encoding
// its events for the WAL. No I/O, no goroutines: it tells changes to the
// core apart from the noise of the whole-engine benchmark.
func BenchmarkCoreNoop(b *testing.B) {
	const perTick = 256
	s := NewState()
	c := machine.NewCore(s, machine.CoreConfig{Workers: perTick, Node: "bench", LeaseGrace: 5000, RetainMs: 24 * 3600 * 1000,
		RetainCount: 100_000, Rand: func() float64 { return 0.5 }}, ulidEntropy())
	now := int64(1_700_000_000_000)
	var buf []byte
	step := func(inputs []any) Batch {
		batch, err := c.Step(now, inputs)
		if err != nil {
			b.Fatal(err)
		}
		buf = buf[:0]
		for i := range batch.Events {
			if buf, err = machine.AppendEvent(buf, &batch.Events[i]); err != nil {
				b.Fatal(err)
			}
		}
		c.Recycle(batch.Events)
		return batch
	}
	step(nil) // closes no lost attempts; later Steps skip that
	submits := make([]any, perTick)
	reports := make([]any, 0, 2*perTick)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += perTick {
		for i := range submits {
			submits[i] = machine.SubmitInput{Spec: TaskSpec{Handler: "noop", MaxAttempts: 1, Policy: RunPolicy{Kind: PolicyOnce}}, Normalized: true}
		}
		batch := step(submits)
		reports = reports[:0]
		for _, j := range batch.Starts {
			reports = append(reports, machine.StartedInput{Run: j.Run, Attempt: j.Attempt})
		}
		for _, j := range batch.Starts {
			reports = append(reports, machine.ResultInput{Run: j.Run, Attempt: j.Attempt, Res: Result{Outcome: OutcomeOK}})
		}
		step(reports)
		now++
	}
}
