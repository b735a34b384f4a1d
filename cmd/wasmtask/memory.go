package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// byteSize is a flag of bytes with an optional unit: 512MiB, 1.5GB, 64k.
type byteSize struct {
	n   int64
	set bool
}

func (b *byteSize) Set(s string) error {
	n, err := parseSize(s) // disk.go
	if err != nil {
		return err
	}
	b.n, b.set = n, true
	return nil
}

func (b *byteSize) String() string {
	if b == nil || !b.set {
		return ""
	}
	return formatBytes(b.n)
}

// formatBytes prints n in the largest binary unit that divides it.
func formatBytes(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.name)
		}
	}
	return strconv.FormatInt(n, 10)
}

// Default of serve --max-payload-memory: a fraction of the memory the
// process may use (the cgroup's limit, else the machine's), within bounds:
// the payloads of work in progress should never crowd out the state, the
// WebAssembly instances and the page cache.
const (
	payloadMemoryShare = 8 // 1/8
	minPayloadMemory   = 64 << 20
	maxPayloadMemory   = 4 << 30
)

const payloadMemoryDefaultText = "1/8 of the memory limit (cgroup, else physical memory), between 64MiB and 4GiB"

// defaultPayloadMemory returns the default budget and the memory it
// derived it from ("" when none could be read: then 256 MiB).
func defaultPayloadMemory() (int64, string) {
	limit, source := memoryLimit()
	if limit <= 0 {
		return 256 << 20, "unknown memory size"
	}
	return min(max(limit/payloadMemoryShare, minPayloadMemory), maxPayloadMemory), source
}

// memoryLimit returns the memory this process may use: its cgroup's limit
// (v2, then v1) when lower than physical memory, else physical memory.
func memoryLimit() (int64, string) {
	phys := physicalMemory()
	limit, source := phys, "physical memory "+formatBytes(phys)
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || v <= 0 { // "max": no limit
			continue
		}
		if phys <= 0 || v < phys {
			limit, source = v, "cgroup limit "+formatBytes(v)+" ("+f+")"
		}
		break
	}
	return limit, source
}

// physicalMemory reads MemTotal from /proc/meminfo (0 when unknown).
func physicalMemory() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
