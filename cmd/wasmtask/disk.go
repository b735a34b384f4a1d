package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmtask/wasmtask/dispatch"
)

// minFreeDisk turns --min-free-disk into dispatch.Config.MinFreeDisk: ""
// is the default (0: 64 MiB, at most 5% of the filesystem), "0" turns the
// threshold off (-1: ENOSPC alone), "N%" is that share of the data dir's
// filesystem, anything else a size ("512MiB", "2GB", "1048576").
func minFreeDisk(flag, dataDir string) (int64, error) {
	flag = strings.TrimSpace(flag)
	if flag == "" {
		return 0, nil
	}
	if pct, ok := strings.CutSuffix(flag, "%"); ok {
		p, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
		if err != nil || p < 0 || p >= 100 {
			return 0, fmt.Errorf("--min-free-disk %q: a percentage must be a number from 0 to below 100", flag)
		}
		_, size, err := dispatch.FreeSpace(dataDir)
		if err != nil {
			return 0, fmt.Errorf("--min-free-disk %q: %v", flag, err)
		}
		if n := int64(float64(size) * p / 100); n > 0 {
			return n, nil
		}
		return -1, nil
	}
	n, err := parseSize(flag)
	if err != nil {
		return 0, fmt.Errorf("--min-free-disk: %v", err)
	}
	if n == 0 {
		return -1, nil
	}
	return n, nil
}

// parseSize reads a byte count with an optional unit: B, KB/MB/GB/TB
// (powers of 1000) or KiB/MiB/GiB/TiB (powers of 1024), in any case.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
		{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12}, {"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1}}
	num, mult := strings.ToLower(strings.TrimSpace(s)), int64(1)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || f*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("%q is not a size (use bytes or a unit: 64MiB, 1GB, 512KiB)", s)
	}
	return int64(f * float64(mult)), nil
}

var (
	descDiskFull     = prometheus.NewDesc("wasmtask_disk_full", "1 while new submissions are refused (507) because the data dir's disk is full or below --min-free-disk.", nil, nil)
	descDiskEpisodes = prometheus.NewDesc("wasmtask_disk_full_episodes_total", "Times submissions started being refused for lack of disk space.", nil, nil)
	descDiskFree     = prometheus.NewDesc("wasmtask_data_dir_free_bytes", "Free space of the data dir's filesystem at the last check (-1: unknown).", nil, nil)
	descDiskMinFree  = prometheus.NewDesc("wasmtask_data_dir_min_free_bytes", "The --min-free-disk threshold in bytes (0: ENOSPC alone).", nil, nil)
	descStopped      = prometheus.NewDesc("wasmtask_engine_stopped", "1 once a fatal error (a failed fsync) stopped the engine: reads only until restarted.", nil, nil)
)

// diskCollector exports the engine's disk status.
type diskCollector struct{ e *dispatch.Engine }

func (c *diskCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDiskFull, descDiskEpisodes, descDiskFree, descDiskMinFree, descStopped} {
		ch <- d
	}
}

func (c *diskCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.e.DiskStatus()
	ch <- prometheus.MustNewConstMetric(descDiskFull, prometheus.GaugeValue, boolFloat(st.Full))
	ch <- prometheus.MustNewConstMetric(descDiskEpisodes, prometheus.CounterValue, float64(st.Episodes))
	ch <- prometheus.MustNewConstMetric(descDiskFree, prometheus.GaugeValue, float64(st.FreeBytes))
	ch <- prometheus.MustNewConstMetric(descDiskMinFree, prometheus.GaugeValue, float64(st.MinFree))
	ch <- prometheus.MustNewConstMetric(descStopped, prometheus.GaugeValue, boolFloat(c.e.Err() != nil))
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
