package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/host"
	"github.com/wasmtask/wasmtask/plugins"
	"github.com/wasmtask/wasmtask/segwal"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the engine and the HTTP API",
		Description: "Recovers the data directory (snapshot + WAL), loads the deployed plugins, watches --plugins\n" +
			"for NAME.wasm (+ NAME.json manifest) files, and serves the API. SIGTERM or SIGINT drains:\n" +
			"no new attempts start, running ones get --drain-timeout to finish, then the server stops.\n" +
			"The Go collector runs at GOGC=200 unless the GOGC environment variable says otherwise.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "data-dir", Value: "wasmtask-data", EnvVars: []string{"WASMTASK_DATA_DIR"}, Usage: "data directory (WAL, snapshots, plugin store)"},
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:7070", EnvVars: []string{"WASMTASK_ADDR"}, Usage: "listen address (port 0 picks a free port)"},
			&cli.StringFlag{Name: "plugins", Usage: "directory of NAME.wasm modules to load and watch"},
			&cli.IntFlag{Name: "workers", Value: dispatch.DefaultWorkers(), DefaultText: dispatch.DefaultWorkersText, Usage: "attempts this process runs at once (more than the cores pays off for handlers that wait); 0: schedule only, every attempt runs on a remote worker (wasmtask worker)"},
			&cli.DurationFlag{Name: "worker-lease-timeout", Value: 10 * time.Second, Usage: "a remote worker's lease not renewed by a heartbeat for this long is lost: the attempt is retried elsewhere (workers heartbeat 4 times per timeout)"},
			&cli.BoolFlag{Name: "durable-leases", Usage: "start each attempt only once its lease (and its task's submission) is fsynced, so that even a power loss never runs an attempt twice nor for a task never acknowledged, at the cost of one fsync wait per attempt (by default an attempt starts once its lease and a new task's submission are written: a crash of the process is covered, one of the machine in that window may run it again)"},
			&cli.StringFlag{Name: "token", EnvVars: []string{"WASMTASK_TOKEN"}, Usage: "require this bearer token on every route but /healthz"},
			&cli.StringFlag{Name: "worker-token", EnvVars: []string{"WASMTASK_WORKER_TOKEN"}, Usage: "a second token, for wasmtask worker processes: it may only lease, heartbeat, report results and fetch modules (other routes answer it 403); needs --token"},
			&cli.DurationFlag{Name: "drain-timeout", Value: 30 * time.Second, Usage: "how long running attempts may take to finish on shutdown"},
			&cli.UintFlag{Name: "max-memory-pages", Value: uint(host.DefaultMaxLimits().MemoryPages), Usage: "operator maximum of a plugin's memory (64 KiB pages)"},
			&cli.UintFlag{Name: "max-table-elements", Value: uint(host.DefaultMaxLimits().TableElements), Usage: "operator maximum of a plugin's table elements (all tables together, 8 bytes each)"},
			&cli.DurationFlag{Name: "max-timeout", Value: host.DefaultMaxLimits().Timeout, Usage: "operator maximum of an attempt's timeout"},
			&cli.GenericFlag{Name: "allow-dir", Value: &repeated{}, Usage: "host directory under which a plugin manifest may mount directories (repeatable); none: no mounts"},
			&cli.Int64Flag{Name: "max-scratch-bytes", Value: 1 << 30, Usage: "operator maximum of a manifest's scratch_bytes (a plugin's writable /tmp)"},
			&cli.GenericFlag{Name: "max-payload-memory", Value: &byteSize{}, DefaultText: payloadMemoryDefaultText, Usage: "bytes of task inputs and outputs held in memory for work in progress (submissions being received, inputs of running attempts, outputs being written), e.g. 512MiB; past it submissions get 429 with Retry-After. Payloads over 16 KiB (over 1 KiB once inline ones take half of it) live in the data dir's payload store and are read when needed"},
			&cli.BoolFlag{Name: "repair", Usage: "if the WAL is damaged before its tail, keep its longest valid prefix and delete what follows (logged); check first with wasmtask wal verify"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
			&cli.BoolFlag{Name: "log-json", Usage: "log as JSON"},
			&cli.StringFlag{Name: "min-free-disk", DefaultText: "64MiB, at most 5% of the filesystem", Usage: "below this much free space on the data dir's filesystem, new submissions get 507 (reads and running attempts go on) until space is freed: a size (512MiB, 2GB) or a share of the filesystem (2%); 0: only when a write fails with ENOSPC"},
			&cli.DurationFlag{Name: "disk-check-interval", Value: 250 * time.Millisecond, Usage: "how often the data dir's free space is read"},
			&cli.BoolFlag{Name: "fast-submit", Value: true, Usage: "answer POST /v1/tasks on plain HTTP/1.1 connections with a lean reader and writer of its own instead of net/http (a quarter less CPU per single submission; every other request, and any connection over TLS, is net/http's); --fast-submit=false: net/http for all"},
			&cli.DurationFlag{Name: "history-interval", Value: 10 * time.Second, Usage: "how often the dashboard's counters are sampled (an hour of samples is kept)"},
			cpuProfileFlag,
		}, append(networkFlags(), clusterFlags()...)...),
		Action: runServe,
	}
}

func runServe(c *cli.Context) error {
	if c.NArg() != 0 {
		return fail(exitUsage, "serve takes no arguments, got %q", c.Args().Slice())
	}
	if err := checkAddr(c); err != nil {
		return err
	}
	hl, logger := newLogger(c.App.ErrWriter, c.String("log-level"), c.Bool("log-json"))
	setGCPercent()
	stopProfile, err := startCPUProfile(c)
	if err != nil {
		return err
	}
	defer stopProfile()
	dataDir := c.String("data-dir")
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return fail(exitFailed, "data dir: %v", err)
	}
	if c.Duration("history-interval") <= 0 {
		return fail(exitUsage, "--history-interval must be positive, got %v", c.Duration("history-interval"))
	}
	if c.Int("workers") < 0 {
		return fail(exitUsage, "--workers must be 0 (schedule only: remote workers run every attempt) or more, got %d", c.Int("workers"))
	}
	if d := c.Duration("worker-lease-timeout"); d < 100*time.Millisecond {
		return fail(exitUsage, "--worker-lease-timeout must be at least 100ms, got %v", d)
	}
	if wt := c.String("worker-token"); wt != "" && (c.String("token") == "" || wt == c.String("token")) {
		return fail(exitUsage, "--worker-token needs --token (the admin token), and must differ from it: without --token every route is open")
	}
	if c.String("worker-token") != "" && clusterMode(c) {
		return fail(exitUsage, "--worker-token is not supported with --cluster yet: workers of a cluster use --token")
	}
	payloadMemory, payloadMemorySource := defaultPayloadMemory()
	if b := c.Generic("max-payload-memory").(*byteSize); b.set {
		if b.n < 1<<20 {
			return fail(exitUsage, "--max-payload-memory must be at least 1MiB, got %s", formatBytes(b.n))
		}
		payloadMemory, payloadMemorySource = b.n, "--max-payload-memory"
	}
	minFree, err := minFreeDisk(c.String("min-free-disk"), dataDir)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	if c.Duration("disk-check-interval") <= 0 {
		return fail(exitUsage, "--disk-check-interval must be positive, got %v", c.Duration("disk-check-interval"))
	}
	ctx := c.Context
	if n := c.Uint("max-table-elements"); n < 1 || n > 1<<27 {
		return fail(exitUsage, "--max-table-elements must be between 1 and 134217728, got %d", n)
	}
	maxLimits := host.Limits{MemoryPages: uint32(c.Uint("max-memory-pages")), Timeout: c.Duration("max-timeout"),
		TableElements: uint32(c.Uint("max-table-elements"))}
	h, err := host.New(ctx, host.Config{CacheDir: filepath.Join(dataDir, "wazero-cache"), Max: maxLimits, Logger: logger,
		MaxIdleInstances: max(c.Int("workers"), 1)}) // warm instances beyond the workers would never run
	if err != nil {
		return fail(exitFailed, "%v", err)
	}
	defer h.Close(context.Background())

	m := newMetrics()
	m.watchHost(h)
	var allow []string
	for _, d := range c.Generic("allow-dir").(*repeated).values {
		abs, err := filepath.Abs(d)
		if err != nil {
			return fail(exitUsage, "--allow-dir %s: %v", d, err)
		}
		if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
			return fail(exitUsage, "--allow-dir %s: not an existing directory", d)
		}
		allow = append(allow, abs)
	}
	var broker *api.Broker // set below; a deploy may change where a plugin may run
	reg, err := plugins.Open(ctx, filepath.Join(dataDir, "plugins"), h, plugins.Options{Max: maxLimits, Logger: logger,
		AllowDirs: allow, MaxScratchBytes: c.Int64("max-scratch-bytes"),
		OnActivate: func(name, _, _ string) {
			m.activations.WithLabelValues(name).Inc()
			if broker != nil {
				broker.Refresh()
			}
		}})
	if err != nil {
		return fail(exitFailed, "%v", err)
	}
	// The broker runs attempts on this process's workers and hands the
	// others to remote ones (wasmtask worker); the metrics see both.
	broker = api.NewBroker(api.BrokerConfig{Local: host.NewExecutor(h, reg.Resolve), LocalWorkers: c.Int("workers"), Plugins: reg,
		LeaseTimeout: c.Duration("worker-lease-timeout"), Logger: logger})
	defer broker.Close()
	m.watchWorkers(broker)
	exec := &observedExecutor{next: broker, m: m, reg: reg}
	if clusterMode(c) {
		return serveCluster(c, hl, logger, dataDir, reg, broker, exec, m)
	}
	engine, err := dispatch.Open(dispatch.Config{Dir: filepath.Join(dataDir, "engine"), Executor: exec, Runnable: broker.Runnable,
		Workers: max(c.Int("workers"), 1), Logger: logger, ValidateHandler: reg.Check, DurableLeases: c.Bool("durable-leases"),
		WAL: segwal.Options{Repair: c.Bool("repair")}, MaxPayloadMemory: payloadMemory,
		MinFreeDisk: minFree, DiskCheckEvery: c.Duration("disk-check-interval")})
	var damage *segwal.CorruptionError
	if errors.As(err, &damage) {
		return fail(exitFailed, "%v\nCheck the WAL with:\n  %s wal verify --data-dir %s\nTo keep its longest valid prefix and drop what follows the damage, start the server once with:\n  %s",
			err, shellQuote(os.Args[0]), shellQuote(dataDir), repairCommand(dataDir))
	}
	if err != nil {
		return fail(exitFailed, "%v", err)
	}
	if removed := engine.Recovery().WAL.Removed; len(removed) > 0 {
		hl.Warn("repair: the WAL was cut back to its longest valid prefix", "cuts", len(removed))
	}
	m.watchEngine(engine)
	m.reg.MustRegister(&diskCollector{e: engine})
	broker.Attach(engine)
	rec := engine.Recovery()
	args := []any{"events_replayed", rec.EventsReplayed, "bytes_replayed", rec.BytesReplayed, "snapshot_seq", rec.SnapshotSeq,
		"duration", rec.Duration.Round(time.Microsecond), "tasks", engine.Stats().Tasks}
	if t := rec.WAL.TornTail; t != nil {
		args = append(args, "torn_tail_cut_bytes", t.Bytes, "torn_tail_segment", t.Segment)
	}
	hl.Info("recovered", args...)

	if dir := c.String("plugins"); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			engine.Close()
			return fail(exitFailed, "--plugins: %v", err)
		}
		if err := reg.Watch(ctx, dir, 0); err != nil {
			engine.Close()
			return fail(exitFailed, "%v", err)
		}
		hl.Info("watching plugins", "dir", dir)
	}

	srv := api.New(api.Config{Engine: engine, Plugins: reg, Broker: broker, Token: c.String("token"), WorkerToken: c.String("worker-token"), Metrics: m.handler(), Logger: logger, Version: buildVersion(),
		DiskUsage: func() api.DiskUsage { return diskUsage(dataDir) }})
	historyCtx, stopHistory := context.WithCancel(ctx)
	defer stopHistory()
	go srv.SampleHistory(historyCtx, c.Duration("history-interval"))
	ln, warnings, err := listen(c)
	if err != nil {
		engine.Close()
		return err
	}
	for _, w := range warnings {
		hl.Warn(w)
	}
	hs := ln.httpServer(c, srv)
	srv.SetReady(true)
	hl.Info("listening", "addr", ln.url(), "data_dir", dataDir, "workers", c.Int("workers"),
		"max_payload_memory", formatBytes(payloadMemory), "max_payload_memory_from", payloadMemorySource)
	fast, serveErr := ln.serveFast(c, hs, srv.NewFastListener)

	select {
	case <-ctx.Done():
		hl.Info("shutting down: draining", "timeout", c.Duration("drain-timeout"))
	case err := <-serveErr:
		engine.Close()
		return fail(exitFailed, "http server: %v", err)
	case <-engine.Done():
		// A failed fsync stopped the engine: nothing unsynced was
		// acknowledged. Keep answering reads (and /readyz false, naming
		// the error) rather than refuse every client; a restart recovers.
		hl.Error("the engine stopped: serving reads only, writes get 503 and /readyz is false until the server is restarted", "err", engine.Err())
		select {
		case <-ctx.Done():
			hl.Info("shutting down")
		case err := <-serveErr:
			engine.Close()
			return fail(exitFailed, "http server: %v", err)
		}
	}
	srv.SetReady(false)
	srv.StopWaits()
	broker.StopLeasing() // remote attempts in flight may still report during the drain
	left, _ := engine.Drain(c.Duration("drain-timeout"))
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		hl.Warn("http shutdown", "err", err)
	}
	if fast != nil {
		fast.Wait(shutdownCtx) // the submissions it answers: as Shutdown does for net/http's
	}
	if left > 0 {
		hl.Warn("drain timeout: attempts still running are closed as lost and retried at the next start", "attempts", left)
	}
	if err := engine.Close(); err != nil {
		return fail(exitFailed, "close engine: %v", err)
	}
	hl.Info("stopped")
	return nil
}

// serveGCPercent is the GC target of serve unless GOGC says otherwise. The
// engine allocates per task (events, views, HTTP bodies) and holds a small
// live heap, so at Go's default of 100 the collector took ~15 % of the
// loop's CPU; 200 halves the collections for a peak heap of 3x the live one.
// GOMEMLIMIT, if set, still bounds the heap.
const serveGCPercent = 200

func setGCPercent() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(serveGCPercent)
	}
}
