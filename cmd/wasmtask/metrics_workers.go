package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmtask/wasmtask/api"
)

// Per remote worker metrics, read from the broker at scrape time. Labels:
// the worker's name and its instance id (names may repeat).
var (
	workerLabels         = []string{"worker", "id"}
	descWorkersConnected = prometheus.NewDesc("wasmtask_workers_connected", "Remote workers connected (heard from within the lease timeout).", nil, nil)
	descWorkerQueued     = prometheus.NewDesc("wasmtask_worker_queue_depth", "Attempts leased by the engine and waiting for a worker (local or remote) to take them.", nil, nil)
	descWorkerLeases     = prometheus.NewDesc("wasmtask_worker_leases_total", "Attempts leased to a remote worker.", workerLabels, nil)
	descWorkerResults    = prometheus.NewDesc("wasmtask_worker_results_total", "Results a remote worker reported, by result (ok, failed: any other outcome).", append(workerLabels, "result"), nil)
	descWorkerLost       = prometheus.NewDesc("wasmtask_worker_lost_total", "A remote worker's leases that expired (no heartbeat within the lease timeout): attempts closed lost.", workerLabels, nil)
	descWorkerRejected   = prometheus.NewDesc("wasmtask_worker_rejected_total", "A remote worker's results refused with 409 (late or superseded leases).", workerLabels, nil)
	descWorkerInFlight   = prometheus.NewDesc("wasmtask_worker_in_flight", "Attempts a remote worker holds leases for.", workerLabels, nil)
	descWorkerLeaseWait  = prometheus.NewDesc("wasmtask_worker_lease_wait_seconds", "From the engine's lease to a remote worker taking the attempt (a histogram).", workerLabels, nil)
)

type workerCollector struct{ b *api.Broker }

func (m *metrics) watchWorkers(b *api.Broker) { m.reg.MustRegister(&workerCollector{b: b}) }

func (c *workerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWorkersConnected, descWorkerQueued, descWorkerLeases, descWorkerResults, descWorkerLost, descWorkerRejected, descWorkerInFlight, descWorkerLeaseWait} {
		ch <- d
	}
}

func (c *workerCollector) Collect(ch chan<- prometheus.Metric) {
	connected := 0
	for _, w := range c.b.Workers() {
		if w.Connected {
			connected++
		}
		l := []string{w.Name, w.ID}
		ch <- prometheus.MustNewConstMetric(descWorkerLeases, prometheus.CounterValue, float64(w.Leases), l...)
		ch <- prometheus.MustNewConstMetric(descWorkerResults, prometheus.CounterValue, float64(w.Done), w.Name, w.ID, "ok")
		ch <- prometheus.MustNewConstMetric(descWorkerResults, prometheus.CounterValue, float64(w.Failed), w.Name, w.ID, "failed")
		ch <- prometheus.MustNewConstMetric(descWorkerLost, prometheus.CounterValue, float64(w.Lost), l...)
		ch <- prometheus.MustNewConstMetric(descWorkerRejected, prometheus.CounterValue, float64(w.Rejected), l...)
		ch <- prometheus.MustNewConstMetric(descWorkerInFlight, prometheus.GaugeValue, float64(w.InFlight), l...)
		buckets, n, sum := w.LeaseWaitBuckets()
		ch <- prometheus.MustNewConstHistogram(descWorkerLeaseWait, n, sum, buckets, l...)
	}
	ch <- prometheus.MustNewConstMetric(descWorkersConnected, prometheus.GaugeValue, float64(connected))
	ch <- prometheus.MustNewConstMetric(descWorkerQueued, prometheus.GaugeValue, float64(c.b.Queued()))
}
