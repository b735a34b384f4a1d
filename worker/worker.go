package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/host"
	"github.com/wasmtask/wasmtask/plugins"
)

// Config configures a worker.
type Config struct {
	// Client talks to the server (its URL, token and TLS trust). Required.
	Client *api.Client
	// Name is shown on the attempts the worker runs. Default host-pid.
	Name string
	// Handlers are the plugin names to serve; none: every plugin.
	Handlers []string
	// Concurrency bounds the attempts run at once. Required (>= 1).
	Concurrency int
	// CacheDir holds the module cache (fetched modules and wazero's
	// compiled code). Required.
	CacheDir string
	// DrainTimeout bounds how long running attempts may take to finish
	// once Run's context ends; those still running are then stopped and
	// reported lost (retried elsewhere). Default 30s.
	DrainTimeout time.Duration
	// Max are the operator maxima of plugin limits on this machine
	// (zero fields: host.DefaultMaxLimits).
	Max host.Limits
	// AllowDirs are the directories under which a manifest may mount.
	AllowDirs []string
	// LeaseWait is how long a lease request waits on the server for work.
	// Default 5s.
	LeaseWait time.Duration
	Logger    *slog.Logger
}

// Worker leases attempts from a server and runs them. Make one with New,
// then Run it.
type Worker struct {
	cfg   Config
	cl    *api.Client
	log   *slog.Logger
	hello api.WorkerHello
	host  *host.Host
	reg   *plugins.Registry
	exec  *host.Executor

	mu        sync.Mutex
	running   map[string]*attempt // by lease id
	freed     chan struct{}       // signalled when a slot frees
	heartbeat time.Duration       // the server's advice
	deployed  map[string]*deploy  // by version + manifest
	// lastDeploy is the deploy of the last lease ensured: most leases
	// name the same version and manifest as the one before.
	lastDeploy *deploy

	// Results of finished attempts wait in pending for the next lease
	// request, which carries them (one round trip frees slots and fills
	// them), while the lease loop is about to send one (leaseState
	// leasePreparing). Otherwise (a lease request is out, and a long poll
	// may hold it for seconds; no slot is free; leasing ended; a server
	// that ignores results on lease requests) the sender posts them to
	// POST /v1/workers/result, woken by resultsReady.
	pending      []api.WorkerResult
	leaseState   leaseState
	noPiggyback  bool // the server answered a lease request carrying results without their fates: it predates them
	resultsReady chan struct{}
	leaseOutAt   time.Time     // when the lease request out was sent
	runs         chan *attempt // to the runners

	// Lease-ahead: while attempts run short, the worker holds ahead
	// attempts leased beyond its concurrency, queued in runs, so that a
	// runner that finished one starts the next at once rather than after
	// a round trip to the server, and lease requests carry many results
	// and leases each (see aheadFor).
	runAvg time.Duration // mean run time of its attempts (exponentially weighted)
	ahead  int
}

// leaseState is what the lease loop is doing, for the sender.
type leaseState int

const (
	leasePreparing leaseState = iota // it sends the next lease request soon, with the pending results
	leaseOut                         // a lease request is out
	leaseIdle                        // it waits for a free slot
	leaseEnded                       // it ended (drain)
)

type attempt struct {
	lease   api.Lease
	ctx     context.Context // ends at the attempt's deadline or when canceled
	cancel  context.CancelFunc
	dropped bool // the server no longer holds the lease: the attempt was stopped
	drained bool // stopped by the drain timeout: reported lost
}

type deploy struct {
	done chan struct{}
	err  error
	// What it deployed, to recognize the next lease of the same version
	// and manifest without building its key (lastDeploy).
	plugin, version string
	manifest        []byte
	pin             string // plugin@version, for the resolver (pinKey)
}

// pinKey carries an attempt's pinned handler (plugin@version) to the
// resolver, so that the guest still sees the handler as submitted.
type pinKey struct{}

// New opens the worker's module cache and host.
func New(ctx context.Context, cfg Config) (*Worker, error) {
	if cfg.Client == nil {
		return nil, errors.New("worker: Config.Client is required")
	}
	if cfg.CacheDir == "" {
		return nil, errors.New("worker: Config.CacheDir is required")
	}
	if cfg.Concurrency < 1 {
		return nil, fmt.Errorf("worker: concurrency must be at least 1, got %d", cfg.Concurrency)
	}
	if cfg.Name == "" {
		hn, _ := os.Hostname()
		cfg.Name = fmt.Sprintf("%s-%d", hn, os.Getpid())
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.LeaseWait <= 0 {
		cfg.LeaseWait = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	w := &Worker{cfg: cfg, cl: cfg.Client, log: cfg.Logger,
		hello:   api.WorkerHello{Worker: hex.EncodeToString(id[:]), Name: cfg.Name, Handlers: cfg.Handlers, Concurrency: cfg.Concurrency},
		running: map[string]*attempt{}, freed: make(chan struct{}, 1), heartbeat: 2 * time.Second,
		deployed: map[string]*deploy{}, resultsReady: make(chan struct{}, 1), runs: make(chan *attempt, cfg.Concurrency+maxAhead)}
	h, err := host.New(ctx, host.Config{CacheDir: filepath.Join(cfg.CacheDir, "wazero-cache"), Max: cfg.Max, Logger: cfg.Logger,
		MaxIdleInstances: cfg.Concurrency})
	if err != nil {
		return nil, err
	}
	reg, err := plugins.Open(ctx, filepath.Join(cfg.CacheDir, "plugins"), h, plugins.Options{Max: cfg.Max, Logger: cfg.Logger, AllowDirs: cfg.AllowDirs})
	if err != nil {
		h.Close(context.Background())
		return nil, err
	}
	w.host, w.reg = h, reg
	w.exec = host.NewExecutor(h, func(ctx context.Context, handler string) (host.Plugin, error) {
		if pinned, ok := ctx.Value(pinKey{}).(string); ok {
			handler = pinned
		}
		return reg.Resolve(ctx, handler)
	})
	return w, nil
}

// Name is the worker's name.
func (w *Worker) Name() string { return w.cfg.Name }

// Run leases and runs attempts until ctx ends, then drains: it stops
// leasing (a lease request out is answered first, and what it brought
// runs), lets running attempts finish (up to Config.DrainTimeout),
// reports their results and returns. It returns an error only for what
// retrying cannot fix (a wrong token, a request the server refuses).
func (w *Worker) Run(ctx context.Context) error {
	defer w.host.Close(context.Background())
	bg, stopBackground := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	senderDone, flush := make(chan struct{}), make(chan struct{})
	go func() { defer wg.Done(); w.heartbeatLoop(bg) }()
	go func() { defer wg.Done(); defer close(senderDone); w.sendLoop(bg, flush) }()
	var runners sync.WaitGroup
	for range w.cfg.Concurrency {
		runners.Add(1)
		go func() { defer runners.Done(); w.runner() }()
	}
	w.log.Info("worker started", "name", w.cfg.Name, "server", w.cl.BaseURL, "concurrency", w.cfg.Concurrency,
		"handlers", w.hello.Handlers, "cache_dir", w.cfg.CacheDir)

	err := w.leaseLoop(ctx)
	w.setLeaseState(leaseEnded) // the sender reports every result from now on

	// Drain: no more leases; running attempts finish or are stopped.
	n := w.inFlight()
	if n > 0 {
		w.log.Info("draining: waiting for running attempts", "attempts", n, "timeout", w.cfg.DrainTimeout)
	}
	deadline := time.Now().Add(w.cfg.DrainTimeout)
	for w.inFlight() > 0 && time.Now().Before(deadline) {
		select {
		case <-w.freed:
		case <-time.After(50 * time.Millisecond):
		}
	}
	w.mu.Lock()
	for _, a := range w.running {
		a.drained = true
		a.cancel()
	}
	w.mu.Unlock()
	for w.inFlight() > 0 {
		<-w.freed
	}
	close(w.runs) // nothing is running: the runners end
	runners.Wait()
	close(flush) // the sender posts what is left, then stops
	select {
	case <-senderDone:
	case <-time.After(10 * time.Second):
		w.log.Warn("drain: could not report every result; the server retries those attempts when their leases expire")
	}
	stopBackground()
	wg.Wait()
	w.log.Info("worker stopped", "name", w.cfg.Name)
	return err
}

func (w *Worker) inFlight() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.running)
}

// backoff is the wait before retry n (from 0): 100ms doubling to 5s, with
// up to 20 % jitter so that workers do not come back in step.
func backoff(n int) time.Duration {
	d := min(100*time.Millisecond<<min(n, 6), 5*time.Second)
	return d + time.Duration(mrand.Float64()*0.2*float64(d))
}

// permanent reports whether a failed request will fail the same way
// again: a wrong token, or a request the server finds invalid.
func permanent(err error) bool {
	var e *api.Error
	return errors.As(err, &e) && (e.Status == 400 || e.Status == 401 || e.Status == 403 || e.Status == 404)
}

func (w *Worker) leaseLoop(ctx context.Context) error {
	failures := 0
	for ctx.Err() == nil {
		w.mu.Lock()
		free := w.mayHoldLocked() - len(w.running)
		w.mu.Unlock()
		if free <= 0 {
			w.setLeaseState(leaseIdle)
			select {
			case <-w.freed:
			case <-ctx.Done():
			}
			w.setLeaseState(leasePreparing)
			continue
		}
		w.gather(ctx)
		// Results finished meanwhile go with the request.
		w.mu.Lock()
		// Again: the lease-ahead may have shrunk meanwhile (attempts ran
		// longer), leaving no room; a request for none only reports.
		free = max(min(w.mayHoldLocked()-len(w.running), maxLeasesPerRequest), 0)
		hello := w.helloLocked()
		var results []api.WorkerResult
		if !w.noPiggyback {
			results = w.takePendingLocked()
		}
		if free == 0 && len(results) == 0 {
			w.mu.Unlock()
			continue
		}
		w.leaseState, w.leaseOutAt = leaseOut, time.Now()
		// Results beyond maxResultsPerRequest stay pending, and the sender,
		// signalled while this loop was preparing, left them to it: a long
		// poll would hold them for LeaseWait, and the engine, which counts
		// their attempts as running, might lease nothing until they come
		// (the last tasks of a burst waited 5 s that way).
		left := len(w.pending) > 0
		w.mu.Unlock()
		if left {
			w.signalResults()
		}
		res, err := w.leaseOut(ctx, api.LeaseRequest{WorkerHello: hello, Max: free, Results: results})
		w.mu.Lock()
		w.leaseState = leasePreparing
		if len(results) > 0 && (err != nil || res.Results == nil) {
			// Not known to be applied: sent again (a duplicate is applied
			// once). No fates: a server from before results rode on lease
			// requests ignored them; the sender posts them from now on.
			w.pending = append(results, w.pending...)
			if err == nil && !w.noPiggyback {
				w.noPiggyback = true
				w.log.Info("the server does not take results with lease requests (an older version): posting them apart")
			}
		}
		w.mu.Unlock()
		if w.noPiggyback {
			w.signalResults()
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if permanent(err) {
				w.log.Error("the server refuses this worker's lease requests", "server", w.cl.BaseURL, "err", err)
				return fmt.Errorf("lease from %s: %w", w.cl.BaseURL, err)
			}
			if failures == 0 {
				w.log.Warn("server unreachable or unavailable; retrying with backoff (logged once until it answers)", "server", w.cl.BaseURL, "err", err)
			}
			failures++
			select {
			case <-time.After(backoff(failures - 1)):
			case <-ctx.Done():
			}
			continue
		}
		if failures > 0 {
			w.log.Info("server answers again: leasing", "server", w.cl.BaseURL, "after_failures", failures)
			failures = 0
		}
		w.logRefused(res.Results)
		if res.HeartbeatMs > 0 {
			w.mu.Lock()
			w.heartbeat = time.Duration(res.HeartbeatMs) * time.Millisecond
			w.mu.Unlock()
		}
		for _, l := range res.Leases {
			w.start(l)
		}
	}
	return nil
}

// leaseOut sends a lease request (waiting up to LeaseWait on the server)
// and returns its answer. A request out when ctx ends (the drain) is not
// abandoned: the server may have granted its leases already, and only its
// answer names them; unread, they would be leased to nobody until they
// expire. So the worker tells the server it drains (a heartbeat with
// draining), which answers the request now, with what it took if
// anything, and the drain runs that. A server that predates draining
// answers within the wait, as a long poll with nothing to give does. One
// that does not answer the heartbeat within drainAskTimeout (hung, or cut
// off) is given up on with the request: its leases, if it granted any,
// expire and are retried.
func (w *Worker) leaseOut(ctx context.Context, req api.LeaseRequest) (api.LeaseResponse, error) {
	wait := w.cfg.LeaseWait.Milliseconds()
	req.WaitMs = &wait
	reqCtx, cancelReq := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.LeaseWait+leaseAnswerSlack)
	defer cancelReq()
	asked := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(asked)
		askCtx, cancel := context.WithTimeout(reqCtx, drainAskTimeout)
		defer cancel()
		_, err := w.cl.WorkerHeartbeat(askCtx, api.HeartbeatRequest{WorkerHello: w.helloNow(), Draining: true})
		var ae *api.Error
		if err != nil && !errors.As(err, &ae) && reqCtx.Err() == nil {
			w.log.Warn("draining: the server did not answer; abandoning the lease request out (leases it granted, if any, expire and are retried)",
				"server", w.cl.BaseURL, "err", err)
			cancelReq()
		}
	})
	res, err := w.cl.WorkerLease(reqCtx, req)
	cancelReq() // ends the heartbeat, if it is still out
	if !stop() {
		<-asked
	}
	return res, err
}

// sendHold: while the worker leases ahead, results finished while a lease
// request is out wait up to this long from its sending for the next
// lease request to carry them, rather than a request of their own.
const sendHold = 3 * time.Millisecond

// leaseAnswerSlack bounds, beyond its long-poll wait, how long a lease
// request may take (a server that stopped answering).
const leaseAnswerSlack = 10 * time.Second

// drainAskTimeout bounds the draining heartbeat that asks the server to
// answer the lease request out: a server that does not answer that in
// time is taken for gone, and the request is abandoned.
const drainAskTimeout = 2 * time.Second

// gatherWindow bounds how long the lease loop waits for running attempts
// to finish before it asks for more (gather).
const gatherWindow = 2 * time.Millisecond

// gather waits, before a lease request, until no attempt runs or
// gatherWindow passed, so that the request carries the results of the
// attempts the last lease started: short attempts then cost one request
// per batch (results in, leases out) rather than a lease request and a
// result request, and the engine, which leases only up to the workers'
// concurrency, can fill the slots those results free in the same round
// trip. Long attempts cost their next lease request at most the window.
// While the worker leases ahead it waits only until half of what it may
// hold is free, or a slot would idle: the other half runs while the
// request is out.
func (w *Worker) gather(ctx context.Context) {
	var timer *time.Timer
	for {
		w.mu.Lock()
		held, skip := len(w.running), w.noPiggyback
		ready := held == 0
		if w.ahead > 0 {
			target := w.mayHoldLocked()
			ready = held < w.cfg.Concurrency || target-held >= target/2
		}
		w.mu.Unlock()
		if ready || skip {
			break
		}
		if timer == nil {
			timer = time.NewTimer(gatherWindow)
		}
		select {
		case <-w.freed:
			continue
		case <-timer.C:
		case <-ctx.Done():
		}
		break
	}
	if timer != nil {
		timer.Stop()
	}
}

// setLeaseState records what the lease loop does; the sender takes the
// pending results when the loop will not send them soon.
func (w *Worker) setLeaseState(st leaseState) {
	w.mu.Lock()
	w.leaseState = st
	wake := st != leasePreparing && len(w.pending) > 0
	w.mu.Unlock()
	if wake {
		w.signalResults()
	}
}

// maxResultsPerRequest bounds the results one request carries.
const maxResultsPerRequest = 256

// maxLeasesPerRequest is the most attempts a lease request may ask for
// (the server's bound).
const maxLeasesPerRequest = 4096

// Lease-ahead bounds: the attempts held beyond the concurrency are about
// aheadWork of work at the mean run time (so an attempt waits on the
// worker about that long before it starts), and at most maxAhead. None
// once attempts take aheadWork or longer: a slot's next attempt then
// waits for a round trip, which is small beside its run.
const (
	aheadWork = 2 * time.Millisecond
	maxAhead  = 256
)

// aheadFor is how many attempts to hold beyond concurrency at mean run
// time avg (0: not known yet).
func aheadFor(concurrency int, avg time.Duration) int {
	if avg <= 0 {
		return 0
	}
	return int(min(int64(concurrency)*int64(aheadWork)/int64(avg), maxAhead))
}

// observeRunLocked folds an attempt's run time into the mean and sets
// how far the worker leases ahead.
func (w *Worker) observeRunLocked(d time.Duration) {
	d = max(d, time.Microsecond)
	if w.runAvg == 0 {
		w.runAvg = d
	} else {
		w.runAvg += (d - w.runAvg) / 16
	}
	w.ahead = steadyAhead(w.ahead, aheadFor(w.cfg.Concurrency, w.runAvg))
}

// steadyAhead is the lease-ahead to announce, at cur now, when aheadFor
// says want: a power of two, changed only when want left [cur*3/4,
// cur*2). The hello carries it, and each change is a new capacity for the
// server's engine, which ends or starts runners to match: announced as
// computed, it changed with almost every run time folded in (no-op
// attempts near the cap). Under load (3.8) a profile showed the server
// spending ~8 % of its samples starting runners again; on a quiet machine
// the ahead sits at its cap and the rate is the same either way.
func steadyAhead(cur, want int) int {
	if cur > 0 && want >= cur*3/4 && want < cur*2 {
		return cur
	}
	if want <= 0 {
		return 0
	}
	return 1 << (bits.Len(uint(want)) - 1) // the largest power of two <= want
}

// mayHoldLocked is how many attempts the worker may hold leased: its
// concurrency and those leased ahead of it.
func (w *Worker) mayHoldLocked() int { return w.cfg.Concurrency + w.ahead }

// helloLocked is the worker's hello with how far it leases ahead now.
func (w *Worker) helloLocked() api.WorkerHello {
	h := w.hello
	h.Ahead = w.ahead
	return h
}

func (w *Worker) helloNow() api.WorkerHello {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.helloLocked()
}

// takePendingLocked takes the results waiting to be reported (up to
// maxResultsPerRequest), oldest first.
func (w *Worker) takePendingLocked() []api.WorkerResult {
	n := min(len(w.pending), maxResultsPerRequest)
	if n == 0 {
		return nil
	}
	out := slices.Clone(w.pending[:n])
	w.pending = slices.Delete(w.pending, 0, n)
	return out
}

func (w *Worker) signalResults() {
	select {
	case w.resultsReady <- struct{}{}:
	default:
	}
}

// start runs one leased attempt on its own goroutine.
func (w *Worker) start(l api.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(l.RemainingMs)*time.Millisecond)
	a := &attempt{lease: l, ctx: ctx, cancel: cancel}
	w.mu.Lock()
	w.running[l.Lease] = a
	w.mu.Unlock()
	w.runs <- a // buffered for Concurrency+maxAhead: never more are held
}

// runner runs the attempts start hands it until runs closes. Concurrency
// runners live as long as Run: a goroutine per attempt grew its stack for
// the guest call again every time.
func (w *Worker) runner() {
	for a := range w.runs {
		w.run(a)
	}
}

func (w *Worker) run(a *attempt) {
	defer a.cancel()
	t0 := time.Now()
	res := w.execute(a.ctx, a.lease)
	w.mu.Lock()
	w.observeRunLocked(time.Since(t0))
	dropped, drained := a.dropped, a.drained
	w.mu.Unlock()
	if drained && !dropped {
		res.Outcome, res.Retryable = string(dispatch.OutcomeLost), true
		res.Error = fmt.Sprintf("worker %s stopped (drain timeout %s) before the attempt finished", w.cfg.Name, w.cfg.DrainTimeout)
	}
	// Sent even when the lease was lost: the server fences it off (409)
	// and counts it, which is what an operator looks for. Pending as it
	// leaves running, so Run's drain (none running) finds it to post.
	w.mu.Lock()
	w.pending = append(w.pending, res)
	delete(w.running, a.lease.Lease)
	w.mu.Unlock()
	select {
	case w.freed <- struct{}{}:
	default:
	}
	w.signalResults()
}

// execute runs a lease's attempt through the host, as serve would.
func (w *Worker) execute(ctx context.Context, l api.Lease) api.WorkerResult {
	started := time.Now()
	out := api.WorkerResult{Lease: l.Lease}
	pin, err := w.ensure(ctx, l)
	if err != nil {
		out.Outcome, out.Retryable = string(dispatch.OutcomeFailed), true
		out.Error = fmt.Sprintf("worker %s cannot load %s@%s: %v", w.cfg.Name, l.Plugin, l.Version, err)
		out.StartedAt, out.FinishedAt = started, time.Now()
		return out
	}
	job := dispatch.Job{Task: dispatch.TaskID(l.Task), Run: dispatch.RunID(l.Run), Handler: l.Handler, Input: l.Input,
		Attempt: l.Attempt, MaxAttempts: l.MaxAttempts, DeadlineMs: started.UnixMilli() + l.RemainingMs, TimeoutMs: l.TimeoutMs,
		Worker: w.cfg.Name, Labels: l.Labels, Parent: dispatch.TaskID(l.Parent)}
	res := w.exec.Execute(context.WithValue(ctx, pinKey{}, pin), job)
	if res.StartedAt.IsZero() || res.FinishedAt.IsZero() {
		res.StartedAt, res.FinishedAt = started, time.Now()
	}
	if ctx.Err() == context.DeadlineExceeded && res.Outcome != dispatch.OutcomeOK && res.Outcome != dispatch.OutcomeTimeout {
		res.Outcome, res.Error = dispatch.OutcomeTimeout, fmt.Sprintf("attempt timed out (%s)", res.Error)
	}
	out.Outcome, out.Retryable, out.Error, out.Output, out.Log, out.Module = string(res.Outcome), res.Retryable, res.Error, res.Output, res.Log, res.Module
	out.StartedAt, out.FinishedAt = res.StartedAt, res.FinishedAt
	for _, c := range res.Children {
		out.Children = append(out.Children, json.RawMessage(c))
	}
	return out
}

// ensure deploys the lease's module version (with its manifest) in the
// local registry once: from the cache, or fetched from the server and
// checked against its hash.
// It returns plugin@version, what the attempt resolves to.
func (w *Worker) ensure(ctx context.Context, l api.Lease) (string, error) {
	m := l.ManifestJSON() // as received: no encoding per attempt
	if m == nil && l.Manifest != nil {
		m, _ = json.Marshal(l.Manifest)
	}
	w.mu.Lock()
	d := w.lastDeploy
	if d == nil || d.plugin != l.Plugin || d.version != l.Version || string(d.manifest) != string(m) {
		key := l.Plugin + "@" + l.Version + string(m)
		if d = w.deployed[key]; d == nil {
			d = &deploy{done: make(chan struct{}), plugin: l.Plugin, version: l.Version, manifest: m, pin: l.Plugin + "@" + l.Version}
			w.deployed[key] = d
			w.mu.Unlock()
			d.err = w.deploy(ctx, l)
			w.mu.Lock()
			if d.err != nil {
				delete(w.deployed, key) // try again with the next lease
			} else {
				w.lastDeploy = d
			}
			w.mu.Unlock()
			close(d.done)
			return d.pin, d.err
		}
	}
	w.mu.Unlock()
	select {
	case <-d.done:
		return d.pin, d.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (w *Worker) deploy(ctx context.Context, l api.Lease) error {
	wasm, err := w.reg.Module(l.Version)
	source := "cache"
	if err != nil {
		source = "server"
		if wasm, err = w.cl.Module(ctx, l.Version); err != nil {
			return fmt.Errorf("fetch the module: %w", err)
		}
	}
	if _, err := w.reg.Deploy(ctx, l.Plugin, wasm, l.Manifest, "remote"); err != nil {
		return err
	}
	w.log.Info("module ready", "plugin", l.Plugin, "version", l.Version, "from", source, "bytes", len(wasm))
	return nil
}

// heartbeatLoop renews the leases of running attempts (and keeps the
// worker listed while it runs long attempts); it stops attempts the server
// canceled or no longer holds.
func (w *Worker) heartbeatLoop(ctx context.Context) {
	for {
		w.mu.Lock()
		every := w.heartbeat
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		w.mu.Lock()
		ids := make([]string, 0, len(w.running))
		for id := range w.running {
			ids = append(ids, id)
		}
		w.mu.Unlock()
		res, err := w.cl.WorkerHeartbeat(ctx, api.HeartbeatRequest{WorkerHello: w.helloNow(), Leases: ids})
		var ae *api.Error
		switch {
		case errors.As(err, &ae) && ae.Status == 409:
			w.stop(ids, true)
		case err != nil:
			continue // the lease loop reports an unreachable server
		default:
			w.stop(res.Lost, true)
			w.stop(res.Cancel, false)
		}
	}
}

// stop cancels the attempts of ids; lost: the server no longer holds their
// leases (their results would be refused).
func (w *Worker) stop(ids []string, lost bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range ids {
		if a := w.running[id]; a != nil {
			if lost && !a.dropped {
				w.log.Warn("lease lost (expired on the server): stopping the attempt", "task", a.lease.Task, "attempt", a.lease.Attempt, "lease", id)
			}
			a.dropped = a.dropped || lost
			a.cancel()
		}
	}
}

// sendLoop posts the results no lease request will carry soon (one is out,
// or leasing ended), as many at once as finished meanwhile, retrying while
// the server is unreachable. Once flush closes it posts what is left and
// returns. A result the server refuses (409: the lease expired or was
// superseded) is logged and dropped.
func (w *Worker) sendLoop(ctx context.Context, flush <-chan struct{}) {
	for {
		final := false
		select {
		case <-w.resultsReady:
		case <-flush:
			final = true
		}
		for {
			w.mu.Lock()
			var batch []api.WorkerResult
			// While the worker leases ahead, a lease request out is
			// answered within a round trip (leases wait for it on the
			// server): its successor carries the results, unless it is
			// out for longer (a long poll).
			var hold time.Duration
			if w.leaseState == leaseOut && w.ahead > 0 && !w.noPiggyback && !final {
				hold = sendHold - time.Since(w.leaseOutAt)
			}
			if hold <= 0 && (w.leaseState != leasePreparing || w.noPiggyback) {
				batch = w.takePendingLocked()
			}
			w.mu.Unlock()
			if hold > 0 {
				select {
				case <-time.After(hold):
					continue
				case <-flush:
					final = true
					continue
				}
			}
			if len(batch) == 0 {
				break
			}
			w.post(ctx, batch)
		}
		if final {
			return
		}
	}
}

// logRefused logs the results the server refused (409: another attempt
// owns the run now).
func (w *Worker) logRefused(statuses []api.ResultStatus) {
	for _, st := range statuses {
		if st.Status == "conflict" {
			w.log.Info("result refused by the server (409): another attempt owns the run now", "lease", st.Lease, "reason", st.Error)
		}
	}
}

func (w *Worker) post(ctx context.Context, batch []api.WorkerResult) {
	for try := 0; ; try++ {
		out, err := w.cl.WorkerResults(ctx, api.ResultRequest{WorkerHello: w.helloNow(), Results: batch})
		var ae *api.Error
		if err == nil || errors.As(err, &ae) && ae.Status == 409 {
			w.logRefused(out.Results)
			return
		}
		if permanent(err) || ctx.Err() != nil {
			w.log.Error("results not reported", "results", len(batch), "err", err)
			return
		}
		select {
		case <-time.After(backoff(try)):
		case <-ctx.Done():
			return
		}
	}
}
