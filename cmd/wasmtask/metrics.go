package main

import (
	"context"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/host"
	"github.com/wasmtask/wasmtask/plugins"
	"github.com/wasmtask/wasmtask/segwal"
)

// metrics are the server's Prometheus metrics (prometheus/client_golang:
// the reference implementation, well kept).
type metrics struct {
	reg         *prometheus.Registry
	attempts    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	activations *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wasmtask_attempts_total",
			Help: "Attempts by plugin, module version and outcome."}, []string{"plugin", "module", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "wasmtask_attempt_duration_seconds",
			Help: "Attempt duration by plugin.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 12)}, []string{"plugin"}),
		activations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wasmtask_plugin_activations_total",
			Help: "Plugin versions activated (deploys, hot-loads, rollbacks)."}, []string{"plugin"}),
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wasmtask_build_info",
		Help: "Always 1; the labels say which wasmtask build serves."}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(buildVersion(), runtime.Version()).Set(1)
	m.reg.MustRegister(m.attempts, m.duration, m.activations, buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// watchHost registers the warm-instance gauges read from the host at
// scrape time.
func (m *metrics) watchHost(h *host.Host) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wasmtask_idle_instances",
			Help: "Warm instances (instances policy reuse or reset) waiting for an attempt, over all plugins; at most --workers."},
			func() float64 { return float64(h.Idle().Instances) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wasmtask_idle_instance_memory_bytes",
			Help: "Linear memory held by idle warm instances."},
			func() float64 { return float64(h.Idle().MemoryBytes) }))
}

// watchEngine registers the metrics read from the engine at scrape time.
func (m *metrics) watchEngine(e *dispatch.Engine) {
	m.watchEngineOf(func() *dispatch.Engine { return e })
	m.reg.MustRegister(&payloadCollector{e: e})
}

// watchEngineOf reads the metrics from the engine get returns at scrape
// time (in cluster mode, the one this node runs while it leads; none: no
// engine metrics).
func (m *metrics) watchEngineOf(get func() *dispatch.Engine) {
	m.reg.MustRegister(&engineCollector{get: get})
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

var (
	descSubmitted = prometheus.NewDesc("wasmtask_tasks_submitted_total", "Tasks submitted (accepted and durable).", nil, nil)
	descRuns      = prometheus.NewDesc("wasmtask_runs", "Runs by state.", []string{"state"}, nil)
	descQueue     = prometheus.NewDesc("wasmtask_queue_depth", "Runs ready and waiting for a worker.", nil, nil)
	descInFlight  = prometheus.NewDesc("wasmtask_attempts_in_flight", "Attempts leased or running.", nil, nil)
	descWALBytes  = prometheus.NewDesc("wasmtask_wal_bytes_total", "Bytes written to the WAL (frames, headers included).", nil, nil)
	descWALRecs   = prometheus.NewDesc("wasmtask_wal_records_total", "Records (events) appended to the WAL.", nil, nil)
	descFsyncs    = prometheus.NewDesc("wasmtask_wal_fsyncs_total", "WAL fsyncs.", nil, nil)
	descFsyncSec  = prometheus.NewDesc("wasmtask_wal_fsync_seconds_total", "Time spent in WAL fsyncs; divide by wasmtask_wal_fsyncs_total for the mean latency.", nil, nil)
	descFsyncHist = prometheus.NewDesc("wasmtask_wal_fsync_duration_seconds", "WAL fsync latency (a histogram: quantiles with histogram_quantile).", nil, nil)
	descRecovery  = prometheus.NewDesc("wasmtask_recovery_seconds", "Time the last start spent recovering state.", nil, nil)
	descReplayed  = prometheus.NewDesc("wasmtask_recovery_events_replayed", "WAL events replayed at the last start.", nil, nil)
)

type engineCollector struct{ get func() *dispatch.Engine }

func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSubmitted, descRuns, descQueue, descInFlight, descWALBytes, descWALRecs, descFsyncs, descFsyncSec, descFsyncHist, descRecovery, descReplayed} {
		ch <- d
	}
}

func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.get()
	if e == nil {
		return
	}
	st := e.Stats()
	ch <- prometheus.MustNewConstMetric(descSubmitted, prometheus.CounterValue, float64(st.Submitted))
	for _, s := range []dispatch.RunState{dispatch.RunScheduled, dispatch.RunReady, dispatch.RunLeased, dispatch.RunRunning,
		dispatch.RunRetryWait, dispatch.RunCompleted, dispatch.RunFailed, dispatch.RunCanceled} {
		ch <- prometheus.MustNewConstMetric(descRuns, prometheus.GaugeValue, float64(st.RunsByState[s]), string(s))
	}
	ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(st.RunsByState[dispatch.RunReady]))
	ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(st.InFlight))
	w := e.WALStats()
	ch <- prometheus.MustNewConstMetric(descWALBytes, prometheus.CounterValue, float64(w.FrameBytes))
	ch <- prometheus.MustNewConstMetric(descWALRecs, prometheus.CounterValue, float64(w.Records))
	ch <- prometheus.MustNewConstMetric(descFsyncs, prometheus.CounterValue, float64(w.Syncs))
	ch <- prometheus.MustNewConstMetric(descFsyncSec, prometheus.CounterValue, w.SyncTime.Seconds())
	ch <- fsyncHistogram(w)
	rec := e.Recovery()
	ch <- prometheus.MustNewConstMetric(descRecovery, prometheus.GaugeValue, rec.Duration.Seconds())
	ch <- prometheus.MustNewConstMetric(descReplayed, prometheus.GaugeValue, float64(rec.EventsReplayed))
}

// observedExecutor records attempt metrics and per-plugin counts around
// the host's executor.
type observedExecutor struct {
	next dispatch.Executor
	m    *metrics
	reg  *plugins.Registry
}

func (o *observedExecutor) Execute(ctx context.Context, job dispatch.Job) dispatch.Result {
	start := time.Now()
	res := o.next.Execute(ctx, job)
	o.observe(job.Handler, start, res)
	return res
}

// Async: the executor it wraps takes attempts asynchronously.
func (o *observedExecutor) Async() bool {
	ax, ok := o.next.(dispatch.AsyncExecutor)
	return ok && ax.Async()
}

// ExecuteAsync hands the attempt on when the executor it wraps takes it
// so (the broker of serve --workers 0), observing its result as Execute does.
func (o *observedExecutor) ExecuteAsync(ctx context.Context, job dispatch.Job, done func(dispatch.Result)) bool {
	ax, ok := o.next.(dispatch.AsyncExecutor)
	if !ok {
		return false
	}
	start, handler := time.Now(), job.Handler
	return ax.ExecuteAsync(ctx, job, func(res dispatch.Result) {
		o.observe(handler, start, res)
		done(res)
	})
}

func (o *observedExecutor) observe(handler string, start time.Time, res dispatch.Result) {
	name, _, _ := strings.Cut(handler, "@")
	o.m.attempts.WithLabelValues(name, res.Module, string(res.Outcome)).Inc()
	o.m.duration.WithLabelValues(name).Observe(time.Since(start).Seconds())
	o.reg.RecordAttempt(handler, res.Module, res.Outcome)
}

// fsyncHistogram turns the WAL's fsync latency counts into a Prometheus
// histogram (cumulative buckets; the last count is above every bound).
func fsyncHistogram(w segwal.Stats) prometheus.Metric {
	buckets := make(map[float64]uint64, len(segwal.SyncBuckets))
	var cum uint64
	for i, bound := range segwal.SyncBuckets {
		cum += w.SyncHist[i]
		buckets[bound.Seconds()] = cum
	}
	return prometheus.MustNewConstHistogram(descFsyncHist, w.Syncs, w.SyncTime.Seconds(), buckets)
}
