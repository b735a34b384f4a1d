package main

import (
	rtmetrics "runtime/metrics"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmtask/wasmtask/dispatch"
)

var (
	descPayloadMem   = prometheus.NewDesc("wasmtask_payload_memory_bytes", "Payload bytes held in memory for work in progress (submissions being received, inputs of running attempts, outputs being written).", nil, nil)
	descPayloadPeak  = prometheus.NewDesc("wasmtask_payload_memory_peak_bytes", "The most payload bytes held in memory at once since the start.", nil, nil)
	descPayloadMax   = prometheus.NewDesc("wasmtask_payload_memory_limit_bytes", "The payload memory budget (--max-payload-memory).", nil, nil)
	descPayloadFiles = prometheus.NewDesc("wasmtask_payload_store_files", "Payload files in the data dir's payload store.", nil, nil)
	descPayloadDisk  = prometheus.NewDesc("wasmtask_payload_store_bytes", "Bytes of the payload files in the data dir's payload store.", nil, nil)
	descPayloadInl   = prometheus.NewDesc("wasmtask_payload_inline_bytes", "Inputs and outputs kept inline (in the WAL and in memory, up to 16 KiB each while they take less than half the budget), estimated; recounted at each snapshot.", nil, nil)
	descThrottled    = prometheus.NewDesc("wasmtask_submits_throttled_total", "Submissions refused with 429 because the payload memory budget was taken.", nil, nil)
	descHeap         = prometheus.NewDesc("wasmtask_heap_bytes", "Go heap bytes in objects, live or not yet collected (runtime/metrics /memory/classes/heap/objects:bytes).", nil, nil)
	descHeapLive     = prometheus.NewDesc("wasmtask_heap_live_bytes", "Go heap bytes live at the last collection (runtime/metrics /gc/heap/live:bytes).", nil, nil)
	descHeapGoal     = prometheus.NewDesc("wasmtask_heap_goal_bytes", "The heap size at which the next collection starts (runtime/metrics /gc/heap/goal:bytes): the heap does not grow past it before then.", nil, nil)
)

// payloadCollector reports the payload budget and store, and the heap they
// bound (read at scrape time).
type payloadCollector struct{ e *dispatch.Engine }

func (c *payloadCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPayloadMem, descPayloadPeak, descPayloadMax, descPayloadFiles, descPayloadDisk, descPayloadInl, descThrottled, descHeap, descHeapLive, descHeapGoal} {
		ch <- d
	}
}

func (c *payloadCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.e.PayloadStats()
	gauge := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	gauge(descPayloadMem, p.MemoryUsed)
	gauge(descPayloadPeak, p.MemoryPeak)
	gauge(descPayloadMax, p.MemoryMax)
	gauge(descPayloadFiles, p.StoreFiles)
	gauge(descPayloadDisk, p.StoreBytes)
	gauge(descPayloadInl, p.InlineBytes)
	ch <- prometheus.MustNewConstMetric(descThrottled, prometheus.CounterValue, float64(p.Throttled))
	samples := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/goal:bytes"}}
	rtmetrics.Read(samples)
	for i, d := range []*prometheus.Desc{descHeap, descHeapLive, descHeapGoal} {
		if samples[i].Value.Kind() == rtmetrics.KindUint64 {
			gauge(d, int64(samples[i].Value.Uint64()))
		}
	}
}
