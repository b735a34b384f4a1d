package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wasmtask/wasmtask/api"
)

// noopModule is a handler that does nothing and succeeds, deployed as
// plugin "bench-noop" when bench is given no --handler:
//
//	(module
//	  (memory (export "memory") 1)
//	  (func (export "wasmtask_handle") (result i32) (i32.const 0)))
var noopModule = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01, 0x60,
	0x00, 0x01, 0x7f, 0x03, 0x02, 0x01, 0x00, 0x05, 0x03, 0x01, 0x00, 0x01,
	0x07, 0x1c, 0x02, 0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00,
	0x0f, 0x77, 0x61, 0x73, 0x6d, 0x74, 0x61, 0x73, 0x6b, 0x5f, 0x68, 0x61,
	0x6e, 0x64, 0x6c, 0x65, 0x00, 0x00, 0x0a, 0x06, 0x01, 0x04, 0x00, 0x41,
	0x00, 0x0b,
}

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure a running server through the HTTP API",
		Description: "Throughput: --tasks tasks submitted one per request by each number of --clients, then in\n" +
			"batches of --batch; the clock runs from the first submit until the engine counts them all final.\n" +
			"Latency: for each of --rates, tasks submitted at that steady rate for --duration, measured two\n" +
			"ways: \"wait\", each task submitted with a wait (POST /v1/tasks?wait=1m0s; a server without it answers\n" +
			"at once and the task is then long-polled), from the submit request to the final answer (what a\n" +
			"waiting client sees); \"finished_at\", no waits, from the submit request to the\n" +
			"task's finished_at read afterwards (the engine alone; millisecond resolution).\n" +
			"Without --handler it deploys a built-in no-op module as plugin bench-noop (--handler-wasm FILE:\n" +
			"that module as plugin bench-wasm). Other tasks on the\n" +
			"server disturb the throughput figures, which read the engine's counters.\n" +
			"Every task of a run carries the label wasmtask-bench=<run id>, so they can be told apart and\n" +
			"removed with wasmtask purge --label wasmtask-bench=<run id>; --cleanup does it at the end.",
		Flags: clientFlags(
			&cli.StringFlag{Name: "handler", Usage: "handler to run (default: deploy and use the built-in no-op)"},
			&cli.IntFlag{Name: "tasks", Value: 5000, Usage: "tasks per throughput scenario"},
			&cli.StringFlag{Name: "clients", Value: "1,32", Usage: "concurrent clients of the throughput scenarios (comma-separated)"},
			&cli.IntFlag{Name: "batch", Value: 500, Usage: "tasks per POST /v1/tasks/batch (0: skip the batch scenario)"},
			&cli.StringFlag{Name: "rates", Value: "200,1000", Usage: "offered rates of the latency scenarios, tasks/s (comma-separated; empty: skip)"},
			&cli.DurationFlag{Name: "duration", Value: 5 * time.Second, Usage: "length of each latency scenario"},
			&cli.BoolFlag{Name: "cleanup", Usage: "purge this run's tasks (final ones) from the server at the end"},
			&cli.StringFlag{Name: "instances", Value: "fresh", Usage: "instance policy of the built-in no-op or --handler-wasm (fresh, reuse or reset; see docs/manifest.md)"},
			&cli.StringFlag{Name: "handler-wasm", Usage: "deploy this module as plugin bench-wasm (policy --instances) and run it instead of the built-in no-op (BENCH_HANDLER=go scripts/bench-server.sh builds and runs a Go no-op)"},
			&cli.StringFlag{Name: "client", Value: "lean", Usage: "HTTP client of the submits and waits: lean (persistent HTTP/1.1 connections, prepared request bodies: cheap on a machine shared with the server) or go (the Go client of package api, as a Go program would use it)"},
		),
		Action: runBench,
	}
}

func parseInts(flag, s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fail(exitUsage, "--%s: want positive integers separated by commas, got %q", flag, s)
		}
		out = append(out, n)
	}
	return out, nil
}

func runBench(c *cli.Context) error {
	if c.NArg() != 0 {
		return fail(exitUsage, "bench takes no arguments, got %q", c.Args().Slice())
	}
	clients, err := parseInts("clients", c.String("clients"))
	if err != nil {
		return err
	}
	rates, err := parseInts("rates", c.String("rates"))
	if err != nil {
		return err
	}
	if c.Int("tasks") < 1 {
		return fail(exitUsage, "--tasks must be at least 1")
	}
	cl := clientFrom(c)
	// Many requests in flight: keep their connections for reuse.
	cl.HTTP = &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute}}
	if ca := c.String("ca"); ca != "" {
		if err := cl.TrustCA(ca); err != nil {
			return fail(exitUsage, "--ca: %v", err)
		}
	}
	defer cl.HTTP.CloseIdleConnections()
	b := &bench{ctx: c.Context, cl: cl, out: c.App.Writer, handler: c.String("handler"),
		run: time.Now().UTC().Format("20060102T150405.000Z")}
	switch c.String("client") {
	case "lean":
		if b.lean, err = newBenchHTTP(cl); err != nil {
			return fail(exitUsage, "--server: %v", err)
		}
		defer b.lean.close()
	case "go":
	default:
		return fail(exitUsage, "--client: want lean or go, got %q", c.String("client"))
	}
	defer b.finish(c.Bool("cleanup"))
	if file := c.String("handler-wasm"); file != "" && b.handler != "" {
		return fail(exitUsage, "--handler and --handler-wasm exclude each other: --handler runs a deployed plugin, --handler-wasm deploys one")
	}
	if b.handler == "" {
		policy, note := c.String("instances"), ""
		var manifest []byte
		switch policy {
		case "fresh":
		case "reuse", "reset":
			manifest, note = []byte(`{"instances": "`+policy+`"}`), ", instances "+policy
		default:
			return fail(exitUsage, "--instances: want fresh, reuse or reset, got %q", policy)
		}
		name, module, what := "bench-noop", noopModule, "built-in no-op"
		if file := c.String("handler-wasm"); file != "" {
			if module, err = os.ReadFile(file); err != nil {
				return fail(exitUsage, "--handler-wasm: %v", err)
			}
			name, what = "bench-wasm", file
		}
		res, err := cl.PluginDeploy(c.Context, name, module, manifest)
		if err != nil {
			return apiFail(err)
		}
		b.handler = name
		fmt.Fprintf(b.out, "handler %s %s (%s%s)\n", name, res.Version, what, note)
	} else if c.IsSet("instances") {
		return fail(exitUsage, "--instances applies to the built-in no-op and --handler-wasm; deploy --handler's plugin with the policy in its manifest")
	}
	if _, err := cl.EngineStatus(c.Context); err != nil {
		return apiFail(err)
	}
	fmt.Fprintf(b.out, "server %s\n\n", cl.BaseURL)

	tw := tabwriter.NewWriter(b.out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\ttasks\tseconds\tsubmitted/s\tcompleted/s\t")
	// Rows are printed when a table is done; progress goes to stderr.
	progress := func(format string, args ...any) { fmt.Fprintf(c.App.ErrWriter, "bench: "+format+"\n", args...) }
	for _, n := range clients {
		progress("%d tasks, one per request, from %d clients", c.Int("tasks"), n)
		r, err := b.throughput(c.Int("tasks"), n, 1)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "POST /v1/tasks, %d clients\t%d\t%.2f\t%.0f\t%.0f\t\n", n, r.tasks, r.total.Seconds(), r.submitRate(), r.completeRate())
	}
	if size := c.Int("batch"); size > 0 {
		progress("%d tasks in batches of %d", c.Int("tasks"), size)
		r, err := b.throughput(c.Int("tasks"), 1, size)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "POST /v1/tasks/batch of %d, 1 client\t%d\t%.2f\t%.0f\t%.0f\t\n", size, r.tasks, r.total.Seconds(), r.submitRate(), r.completeRate())
	}
	tw.Flush()
	if len(rates) > 0 {
		fmt.Fprintln(b.out)
		tw = tabwriter.NewWriter(b.out, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "offered rate\tmeasured by\tachieved/s\ttasks\terrors\tp50 ms\tp90 ms\tp99 ms\tmax ms\t")
		for _, rate := range rates {
			for _, wait := range []bool{false, true} {
				mode := "finished_at"
				if wait {
					mode = "wait"
				}
				progress("%d tasks/s for %v, latency by %s", rate, c.Duration("duration"), mode)
				r, err := b.latency(rate, c.Duration("duration"), wait)
				if err != nil {
					return err
				}
				fmt.Fprintf(tw, "%d/s\t%s\t%.0f\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t\n", rate, mode, r.achieved, len(r.lat), r.errors,
					ms(r.pct(0.50)), ms(r.pct(0.90)), ms(r.pct(0.99)), ms(r.pct(1)))
			}
		}
		tw.Flush()
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

type bench struct {
	ctx     context.Context
	cl      *api.Client
	out     io.Writer
	handler string
	run     string // the value of every task's benchLabel
	tasks   atomic.Int64
	lean    *benchHTTP // nil: submits and waits through cl

	specOnce sync.Once
	specJSON []byte // the JSON of spec(), for the lean client
}

// benchLabel marks the tasks of a bench run.
const benchLabel = "wasmtask-bench"

// spec is a task of this run.
func (b *bench) spec() api.TaskSpec {
	b.tasks.Add(1)
	return api.TaskSpec{Handler: b.handler, Labels: map[string]string{benchLabel: b.run}}
}

// finish purges the run's tasks (with cleanup) or says how to.
func (b *bench) finish(cleanup bool) {
	label := benchLabel + "=" + b.run
	if b.tasks.Load() == 0 {
		return
	}
	if !cleanup {
		fmt.Fprintf(b.out, "\nthis run's tasks carry the label %s; remove them with: wasmtask purge --label %s\n", label, label)
		return
	}
	// The run's context may be canceled (Ctrl-C): the purge gets its own.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := b.cl.TaskPurge(ctx, api.PurgeRequest{Labels: map[string]string{benchLabel: b.run}})
	if err != nil {
		fmt.Fprintf(b.out, "\ncleanup: purge of the tasks labelled %s failed: %v\n", label, err)
		return
	}
	fmt.Fprintf(b.out, "\ncleanup: %d tasks labelled %s purged", res.Purged, label)
	if b.handler == "bench-noop" || b.handler == "bench-wasm" {
		fmt.Fprintf(b.out, " (the %s plugin stays: plugins cannot be removed)", b.handler)
	}
	fmt.Fprintln(b.out)
}

type throughputResult struct {
	tasks  int
	submit time.Duration // first submit to last acknowledgment
	total  time.Duration // first submit to all final
}

func (r throughputResult) submitRate() float64   { return float64(r.tasks) / r.submit.Seconds() }
func (r throughputResult) completeRate() float64 { return float64(r.tasks) / r.total.Seconds() }

// countRuns reads the engine's runs, final and open (runCount).
func (b *bench) countRuns() (runCount, error) {
	st, err := b.cl.EngineStatus(b.ctx)
	if err != nil {
		return runCount{}, apiFail(err)
	}
	var c runCount
	for state, k := range st.Runs {
		if isFinal(state) {
			c.final += k
		} else {
			c.open += k
		}
	}
	return c, nil
}

// runCount is the engine's runs as GET /v1/engine counts them: final ones
// and the others. The engine keeps a bounded number of final tasks (100k
// by default) and drops the oldest past that, so once a scenario passes
// the bound the final count stops growing; the open count still falls
// back to where it was when every submitted task has ended.
type runCount struct{ final, open int }

// doneSince reports whether n tasks submitted after base are all final.
func (c runCount) doneSince(base runCount, n int) bool {
	return c.final >= base.final+n || c.open <= base.open
}

// throughput submits n tasks from clients goroutines, size tasks per
// request (1: POST /v1/tasks, more: the batch endpoint), and waits until
// the engine counts n more final runs.
func (b *bench) throughput(n, clients, size int) (throughputResult, error) {
	base, err := b.countRuns()
	if err != nil {
		return throughputResult{}, err
	}
	reqs := make(chan int, n/size+1)
	for left := n; left > 0; left -= size {
		reqs <- min(size, left)
	}
	close(reqs)
	start := time.Now()
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range reqs {
				if firstErr.Load() != nil {
					return
				}
				if err := b.submit(k); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return throughputResult{}, apiFail(*p)
	}
	r := throughputResult{tasks: n, submit: time.Since(start)}
	for {
		now, err := b.countRuns()
		if err != nil {
			return r, err
		}
		if now.doneSince(base, n) {
			break
		}
		select {
		case <-b.ctx.Done():
			return r, b.ctx.Err()
		case <-time.After(pollPause(now.final-base.final, n, time.Since(start))):
		}
	}
	r.total = time.Since(start)
	return r, nil
}

// pollPause is how long the throughput scenario waits before it reads the
// engine's counters again, done of n tasks final after elapsed: half the
// time the rest takes at the rate so far, between 1 and 20 ms. A fixed
// 2 ms pause asked 500 times a second while a batch ran, costing the
// machine it measures CPU; the end is still seen within half of what is
// left (and within 1 ms of it near the end).
func pollPause(done, n int, elapsed time.Duration) time.Duration {
	const least, most = time.Millisecond, 20 * time.Millisecond
	if done <= 0 {
		return least * 2
	}
	left := time.Duration(float64(elapsed) * float64(n-done) / float64(done))
	return min(max(left/2, least), most)
}

func (b *bench) submit(k int) error {
	if b.lean != nil {
		return b.submitLean(k)
	}
	if k == 1 {
		_, err := b.cl.Submit(b.ctx, b.spec())
		return err
	}
	specs := make([]api.TaskSpec, k)
	for i := range specs {
		specs[i] = b.spec()
	}
	res, err := b.cl.SubmitBatch(b.ctx, specs)
	if err != nil {
		return err
	}
	for _, r := range res {
		if r.Error != nil {
			return r.Error
		}
	}
	return nil
}

type latencyResult struct {
	lat      []time.Duration // sorted
	errors   int
	achieved float64 // submits started per second
}

func (r latencyResult) pct(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[int(q*float64(len(r.lat)-1))]
}

// latency offers rate tasks/s for d, open loop: each task is submitted at
// its scheduled time whatever the previous ones are doing. With wait, each
// is then long-polled and its latency runs from the submit request to the
// wait's answer; without, it runs from the submit request to the task's
// finished_at, read once all are final.
func (b *bench) latency(rate int, d time.Duration, wait bool) (latencyResult, error) {
	n := int(float64(rate) * d.Seconds())
	interval := time.Second / time.Duration(rate)
	base, err := b.countRuns()
	if err != nil {
		return latencyResult{}, err
	}
	var (
		mu        sync.Mutex
		res       latencyResult
		wg        sync.WaitGroup
		errMsg    error
		submitted = map[string]time.Time{} // without wait: id -> submit time
	)
	start := time.Now()
	for i := range n {
		if pause := time.Until(start.Add(time.Duration(i) * interval)); pause > 0 {
			time.Sleep(pause) // pacing the offered load
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			id, err := b.submitAndWait(wait)
			el := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				res.errors++
				if errMsg == nil {
					errMsg = err
				}
			case wait:
				res.lat = append(res.lat, el)
			default:
				submitted[id] = t0
			}
		}()
	}
	res.achieved = float64(n) / time.Since(start).Seconds()
	wg.Wait()
	if errMsg != nil && api.IsUnreachable(errMsg) {
		return res, apiFail(errMsg)
	}
	if errMsg != nil {
		fmt.Fprintf(b.out, "rate %d/s: %d errors, the first: %v\n", rate, res.errors, errMsg)
	}
	if !wait {
		if err := b.finishedAt(base, submitted, &res); err != nil {
			return res, err
		}
	}
	slices.Sort(res.lat)
	return res, nil
}

// finishedAt waits until the submitted tasks are final (counted against
// base, the engine's runs before them), then reads their finished_at
// (newest first, through the list).
func (b *bench) finishedAt(base runCount, submitted map[string]time.Time, res *latencyResult) error {
	for {
		now, err := b.countRuns()
		if err != nil {
			return err
		}
		if now.doneSince(base, len(submitted)) {
			break
		}
		select {
		case <-b.ctx.Done():
			return b.ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	left := len(submitted)
	cursor := ""
	for left > 0 {
		page, err := b.cl.TaskList(b.ctx, &api.TaskListParams{Handler: b.handler, Limit: 1000, Cursor: cursor})
		if err != nil {
			return apiFail(err)
		}
		for _, v := range page.Tasks {
			t0, ok := submitted[v.ID]
			if !ok {
				continue
			}
			left--
			fin, err := time.Parse(time.RFC3339Nano, v.FinishedAt)
			if err != nil || v.State != "completed" {
				res.errors++
				continue
			}
			res.lat = append(res.lat, max(0, fin.Sub(t0)))
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	res.errors += left // not found
	return nil
}

func (b *bench) submitAndWait(wait bool) (string, error) {
	if b.lean != nil {
		return b.submitAndWaitLean(wait)
	}
	var res *api.SubmitResult
	var err error
	if wait {
		res, err = b.cl.SubmitWait(b.ctx, b.spec(), time.Minute)
	} else {
		res, err = b.cl.Submit(b.ctx, b.spec())
	}
	if err != nil {
		return "", err
	}
	v := res.Task
	for wait && !isFinal(v.State) {
		if v, err = b.cl.TaskWait(b.ctx, v.ID, time.Minute); err != nil {
			return v.ID, err
		}
	}
	if wait && v.State != "completed" {
		return v.ID, errors.New("task " + v.ID + " " + v.State)
	}
	return v.ID, nil
}
