package e2e

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/internal/cputime"
)

// BenchmarkRemoteWorkers: no-op WAT tasks through the server's own
// workers ("local", serve --workers 16) and through 1 and 2 remote
// workers (serve --workers 0 + wasmtask worker at its default
// concurrency, then --concurrency 16 and 64), all on
// this machine. The default is dispatch.DefaultWorkers(), 16 up to 4
// cores, so there "remote-1" and "remote-1-default" are the same run
// twice: a difference between them is the machine's noise. Warm-up tasks run first, until every remote worker has
// run one (fetched and compiled the module, which the local case does at
// the deploy). The engine is then paused while the b.N tasks are
// submitted and resumed for the measure, so tasks/s is execution alone
// (lease, run, result, commit). lease-start-p50/p99-ms: from the engine's lease to the
// attempt's start where it ran (the task view's leased_at and started_at,
// millisecond resolution). server-cpu-us/task and worker-cpu-us/task: the
// CPU time (user + system, Linux only) the server and the workers used
// per task, from the resume to the last task final. With
// WASMTASK_E2E_BASE_BIN=path (a wasmtask built from an earlier commit),
// each case runs first as "NAME-base" with that binary (server and
// workers), for a before/after in one run. With
// WASMTASK_E2E_CPUPROFILE=DIR, the server and each worker of a case write
// a Go CPU profile (--cpuprofile) of their whole run, submits included,
// to DIR/NAME-serve.prof and DIR/NAME-wI.prof, stopped by SIGTERM at the
// end of the case (go tool pprof -top BIN FILE).
//
//	go test ./e2e -run '^$' -bench 'RemoteWorkers|LeaseRoundTrip' -benchtime 5000x -count 3
func BenchmarkRemoteWorkers(b *testing.B) {
	base := os.Getenv("WASMTASK_E2E_BASE_BIN")
	profDir := os.Getenv("WASMTASK_E2E_CPUPROFILE")
	type benchCase struct {
		name    string
		workers int    // remote; 0: local
		bin     string // server and workers; "": this tree's
		conc    string // each remote worker's --concurrency
	}
	var cases []benchCase
	for _, tc := range []benchCase{{"local", 0, "", ""}, {"remote-1-default", 1, "", "default"}, {"remote-2-default", 2, "", "default"},
		{"remote-1", 1, "", "16"}, {"remote-2", 2, "", "16"}, {"remote-1-c64", 1, "", "64"}, {"remote-2-c64", 2, "", "64"}} {
		if base != "" { // the same case on the earlier binary first, for a before/after in one run
			cases = append(cases, benchCase{tc.name + "-base", tc.workers, base, tc.conc})
		}
		cases = append(cases, tc)
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			opts := serverOpts{workers: 16, bin: tc.bin}
			if tc.workers > 0 {
				opts = serverOpts{scheduleOnly: true, bin: tc.bin}
			}
			profile := func(who string) []string {
				if profDir == "" {
					return nil
				}
				return []string{"--cpuprofile", filepath.Join(profDir, fmt.Sprintf("%s-%s.prof", tc.name, who))}
			}
			opts.extra = profile("serve")
			s := startServer(b, opts)
			s.deploy("noop", module(b, "noop"))
			var names []string
			var wps []*workerProc
			for i := range tc.workers {
				name := fmt.Sprintf("w%d", i+1)
				wps = append(wps, startWorkerBin(b, s, cmp.Or(tc.bin, binPath), name, append([]string{"--concurrency", tc.conc}, profile(name)...)...))
				names = append(names, name)
			}
			waitConnected(b, s, names...)
			ctx := context.Background()
			// Warm-up, outside the measure: every worker has run the
			// module (a remote worker fetches and compiles it at its
			// first lease, which the local case did at the deploy).
			warm := 0
			for round := 0; ; round++ {
				specs := make([]api.TaskSpec, 100)
				for i := range specs {
					specs[i] = api.TaskSpec{Handler: "noop", Labels: map[string]string{"bench": "warm-up"}}
				}
				submitBatches(b, s, specs)
				warm += len(specs)
				waitAllFinal(b, s, warm, time.Minute)
				if allWorked(b, s, names) {
					break
				}
				if round == 20 {
					b.Fatalf("after %d warm-up tasks not every worker of %v ran one", warm, names)
				}
			}
			if warm+b.N > retainedTasks {
				// waitAllFinal would wait its 5 minutes for tasks the server dropped.
				b.Fatalf("%d warm-up + %d tasks: the server keeps at most %d final tasks (the engine's RetainCount default), so the end could not be seen; use -benchtime %dx or less",
					warm, b.N, retainedTasks, retainedTasks-warm)
			}
			if _, err := s.client.EnginePause(ctx); err != nil {
				b.Fatal(err)
			}
			specs := make([]api.TaskSpec, b.N)
			for i := range specs {
				specs[i] = api.TaskSpec{Handler: "noop"}
			}
			submitBatches(b, s, specs)
			cpuOf := func() (server, workers time.Duration) {
				server = cputime.Of(s.cmd.Process.Pid)
				for _, w := range wps {
					workers += cputime.Of(w.cmd.Process.Pid)
				}
				return server, workers
			}
			cpuServer, cpuWorkers := cpuOf()
			b.ResetTimer()
			start := time.Now()
			if _, err := s.client.EngineResume(ctx); err != nil {
				b.Fatal(err)
			}
			waitAllFinal(b, s, warm+b.N, 5*time.Minute)
			elapsed := time.Since(start)
			b.StopTimer()
			endServer, endWorkers := cpuOf()
			var lat []time.Duration
			for _, v := range allTasks(b, s) {
				if v.Labels["bench"] == "warm-up" {
					continue
				}
				a := v.Runs[0].Attempts[0]
				leased, err1 := time.Parse(time.RFC3339Nano, a.LeasedAt)
				started, err2 := time.Parse(time.RFC3339Nano, a.StartedAt)
				if v.State != "completed" || err1 != nil || err2 != nil {
					b.Fatalf("task %s: %s %+v", v.ID, v.State, a)
				}
				lat = append(lat, started.Sub(leased))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
			if endServer > 0 {
				// CPU per task of each side: what a shared machine inflates far
				// less than wall time.
				b.ReportMetric(float64((endServer-cpuServer).Microseconds())/float64(b.N), "server-cpu-us/task")
				b.ReportMetric(float64((endWorkers-cpuWorkers).Microseconds())/float64(b.N), "worker-cpu-us/task")
			}
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "lease-start-p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "lease-start-p99-ms")
			if profDir != "" { // the profiles are written as the processes stop
				for _, w := range wps {
					w.signal(syscall.SIGTERM)
					select {
					case <-w.exited:
					case <-time.After(time.Minute):
						b.Errorf("worker %s did not exit within a minute of SIGTERM", w.name)
					}
				}
				s.stop(time.Minute)
			}
		})
	}
}

// retainedTasks is the engine's default RetainCount (dispatch.Config):
// final tasks beyond it are dropped, and BenchmarkRemoteWorkers counts
// final tasks to see the end.
const retainedTasks = 100_000

// allWorked reports whether each remote worker named ran an attempt.
func allWorked(b *testing.B, s *server, names []string) bool {
	list, err := s.client.Workers(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	done := map[string]bool{}
	for _, w := range list.Workers {
		done[w.Name] = w.Done > 0
	}
	for _, n := range names {
		if !done[n] {
			return false
		}
	}
	return true
}

// BenchmarkWorkerLeaseRoundTrip: one POST /v1/workers/lease (max 1, no
// wait) answered with an attempt, timed from the client, with the result
// posted after each (untimed) so the engine leases the next: the lease
// round trip a worker pays when work is ready.
//
//	go test ./e2e -run '^$' -bench LeaseRoundTrip -benchtime 2000x
func BenchmarkWorkerLeaseRoundTrip(b *testing.B) {
	s := startServer(b, serverOpts{scheduleOnly: true})
	s.deploy("noop", module(b, "noop"))
	specs := make([]api.TaskSpec, b.N)
	for i := range specs {
		specs[i] = api.TaskSpec{Handler: "noop"}
	}
	submitBatches(b, s, specs)
	ctx := context.Background()
	hello := api.WorkerHello{Worker: "bench-rtt", Name: "bench", Concurrency: 16}
	noWait := int64(0)
	rtt := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for len(rtt) < b.N {
		t0 := time.Now()
		res, err := s.client.WorkerLease(ctx, api.LeaseRequest{WorkerHello: hello, Max: 1, WaitMs: &noWait})
		d := time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Leases) == 0 {
			continue // the engine has not leased the next one yet
		}
		rtt = append(rtt, d)
		now := time.Now()
		if _, err := s.client.WorkerResults(ctx, api.ResultRequest{WorkerHello: hello, Results: []api.WorkerResult{
			{Lease: res.Leases[0].Lease, Outcome: "ok", StartedAt: now, FinishedAt: now}}}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	slices.Sort(rtt)
	b.ReportMetric(float64(rtt[len(rtt)/2].Microseconds())/1000, "lease-rtt-p50-ms")
	b.ReportMetric(float64(rtt[len(rtt)*99/100].Microseconds())/1000, "lease-rtt-p99-ms")
}
