package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/host"
	"github.com/wasmtask/wasmtask/worker"
)

func workerCommand() *cli.Command {
	return &cli.Command{
		Name:  "worker",
		Usage: "run attempts for a server on this machine (a remote worker)",
		Description: "Leases attempts from --server over its HTTP API, runs them in the same sandbox as serve\n" +
			"(modules fetched by hash and cached in --cache-dir with their compiled code), heartbeats\n" +
			"while they run and reports their results. Keeps running across server restarts (reconnects\n" +
			"with backoff, logged once). SIGTERM or SIGINT drains: no new leases, running attempts get\n" +
			"--drain-timeout to finish, those still running are reported lost (retried elsewhere).\n" +
			"Needs no data directory beyond the cache; start `serve --workers 0` to run every attempt on workers.\n" +
			"Against a cluster (serve --node-id), --server may be any node: it learns the others and moves\n" +
			"to another when that one stops answering.\n" +
			"The Go collector runs at GOGC=200 unless the GOGC environment variable says otherwise.",
		Flags: clientFlags(
			&cli.IntFlag{Name: "concurrency", Value: dispatch.DefaultWorkers(), DefaultText: dispatch.DefaultWorkersText, Usage: "attempts run at once, as serve --workers (more than the cores pays off for handlers that wait; set the cores for handlers that only compute)"},
			&cli.StringFlag{Name: "handlers", Usage: "comma-separated plugin names to serve (default: every plugin)"},
			&cli.StringFlag{Name: "name", Usage: "name shown on the attempts this worker runs and by wasmtask workers (default: host-pid)"},
			&cli.StringFlag{Name: "cache-dir", Value: filepath.Join(os.TempDir(), "wasmtask-worker-cache"), DefaultText: "$TMPDIR/wasmtask-worker-cache", EnvVars: []string{"WASMTASK_WORKER_CACHE"}, Usage: "module cache: fetched modules and their compiled code, kept across restarts"},
			&cli.DurationFlag{Name: "drain-timeout", Value: 30 * time.Second, Usage: "how long running attempts may take to finish on SIGTERM"},
			&cli.DurationFlag{Name: "lease-wait", Value: 5 * time.Second, Usage: "how long a lease request waits on the server for attempts when none is ready (a long poll; 1ms-30s)"},
			&cli.UintFlag{Name: "max-memory-pages", Value: uint(host.DefaultMaxLimits().MemoryPages), Usage: "this machine's maximum of a plugin's memory (64 KiB pages)"},
			&cli.DurationFlag{Name: "max-timeout", Value: host.DefaultMaxLimits().Timeout, Usage: "this machine's maximum of an attempt's timeout"},
			&cli.GenericFlag{Name: "allow-dir", Value: &repeated{}, Usage: "host directory under which a plugin manifest may mount directories (repeatable); none: no mounts"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
			&cli.BoolFlag{Name: "log-json", Usage: "log as JSON"},
			cpuProfileFlag,
		),
		Action: runWorker,
	}
}

func runWorker(c *cli.Context) error {
	if c.NArg() != 0 {
		return fail(exitUsage, "worker takes no arguments, got %q", c.Args().Slice())
	}
	if n := c.Int("concurrency"); n < 1 || n > 4096 {
		return fail(exitUsage, "--concurrency must be between 1 and 4096, got %d", n)
	}
	if d := c.Duration("lease-wait"); d < time.Millisecond || d > 30*time.Second {
		return fail(exitUsage, "--lease-wait must be between 1ms and 30s (the server's limit), got %s", d)
	}
	var handlers []string
	for _, h := range strings.Split(c.String("handlers"), ",") {
		if h = strings.TrimSpace(h); h != "" {
			handlers = append(handlers, h)
		}
	}
	var allow []string
	for _, d := range c.Generic("allow-dir").(*repeated).values {
		abs, err := filepath.Abs(d)
		if err != nil {
			return fail(exitUsage, "--allow-dir %s: %v", d, err)
		}
		allow = append(allow, abs)
	}
	cl := clientFrom(c)
	if _, bad := cl.HTTP.Transport.(failingTransport); bad {
		_, err := cl.HTTP.Transport.RoundTrip(nil)
		return fail(exitUsage, "%v", err)
	}
	// Against a cluster, move to another node when this one cannot be
	// reached (every node forwards to the leader).
	cl.FollowCluster(c.Context)
	_, logger := newLogger(c.App.ErrWriter, c.String("log-level"), c.Bool("log-json"))
	// As serve: every attempt allocates its guest memory and the live heap
	// is small, so at GOGC=100 the collector (and the scavenger returning
	// the freed memory) took a fifth of a no-op worker's CPU.
	setGCPercent()
	stopProfile, err := startCPUProfile(c)
	if err != nil {
		return err
	}
	defer stopProfile()
	w, err := worker.New(c.Context, worker.Config{Client: cl, Name: c.String("name"), Handlers: handlers, Concurrency: c.Int("concurrency"),
		CacheDir: c.String("cache-dir"), DrainTimeout: c.Duration("drain-timeout"), LeaseWait: c.Duration("lease-wait"), AllowDirs: allow, Logger: logger,
		Max: host.Limits{MemoryPages: uint32(c.Uint("max-memory-pages")), Timeout: c.Duration("max-timeout")}})
	if err != nil {
		return fail(exitFailed, "%v", err)
	}
	if err := w.Run(c.Context); err != nil {
		return fail(exitFailed, "%v", err)
	}
	return nil
}

func workersCommand() *cli.Command {
	return &cli.Command{
		Name:  "workers",
		Usage: "list the remote workers a server knows",
		Flags: clientFlags(jsonFlag),
		Action: func(c *cli.Context) error {
			list, err := clientFrom(c).Workers(c.Context)
			if err != nil {
				return apiFail(err)
			}
			if c.Bool("json") {
				printJSON(c.App.Writer, list)
				return nil
			}
			writeWorkers(c.App.Writer, list)
			return nil
		},
	}
}

// writeWorkers is the text view of GET /v1/workers.
func writeWorkers(out io.Writer, list api.WorkerList) {
	fmt.Fprintf(out, "server: %d local workers, %d attempts queued for a worker, lease timeout %s\n",
		list.LocalWorkers, list.Queued, time.Duration(list.LeaseTimeoutMs)*time.Millisecond)
	if len(list.Workers) == 0 {
		fmt.Fprintln(out, "no remote workers (start one with: wasmtask worker --server URL)")
		return
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tSTATE\tHANDLERS\tCONCURRENCY\tIN FLIGHT\tLAST HEARTBEAT\tDONE\tFAILED\tLOST\tREJECTED")
	for _, w := range list.Workers {
		state := "connected"
		if !w.Connected {
			state = "gone"
		}
		handlers := strings.Join(w.Handlers, ",")
		if handlers == "" {
			handlers = "*"
		}
		last := w.LastHeartbeat
		if t, err := time.Parse(time.RFC3339Nano, w.LastHeartbeat); err == nil {
			last = time.Since(t).Round(100*time.Millisecond).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%d\t%d\t%d\t%d\n", w.Name, w.Address, state, handlers, w.Concurrency, w.InFlight, last,
			w.Done, w.Failed, w.Lost, w.Rejected)
	}
	tw.Flush()
}
