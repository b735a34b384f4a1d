package segwal

import (
	"fmt"
	"log/slog"
	prng "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Benchmarks of the log against a raw baseline on the same disk: `make
// bench`, or
//
//	go test -run='^$' -bench=. -benchtime=2s ./segwal/
//
// BENCHDIR=/path measures another filesystem (default: the OS temp dir).
// Records are benchEvents: JSON task events of 176..295 bytes, 223 on average.

// benchDir is an empty directory on the disk under test, removed afterwards.
func benchDir(b *testing.B) string {
	base := os.Getenv("BENCHDIR")
	if base == "" {
		return b.TempDir()
	}
	dir, err := os.MkdirTemp(base, "segwal-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func benchOpen(b *testing.B, dir string, o Options) *Log {
	o.Logger = slog.New(slog.DiscardHandler)
	l, err := Open(dir, o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return l
}

// batcher hands out consecutive events from the pool, n per batch.
type batcher struct {
	events [][]byte
	next   int
	batch  [][]byte
}

func newBatcher(n int) *batcher {
	return &batcher{events: benchEvents(), batch: make([][]byte, n)}
}

func (bt *batcher) nextBatch() [][]byte {
	for i := range bt.batch {
		bt.batch[i] = bt.events[bt.next]
		bt.next = (bt.next + 1) % len(bt.events)
	}
	return bt.batch
}

func reportRate(b *testing.B, records int, bytesOnDisk uint64) {
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(bytesOnDisk)/float64(records), "disk-B/record")
}

// reportSync splits the time per op into fsync and the rest (encoding,
// copying, write(2)). The disk's fsync latency varies a lot between runs on
// shared machines; the rest is what the two variants really differ in.
func reportSync(b *testing.B, sync time.Duration) {
	b.ReportMetric(float64(sync.Microseconds())/float64(b.N), "fsync-µs/op")
	b.ReportMetric(float64((b.Elapsed()-sync).Microseconds())/float64(b.N), "other-µs/op")
}

// BenchmarkAppend: one op is one Append of n records (one frame and one
// fsync), against "raw": the same record bytes concatenated, written with
// one write(2) and one fsync per batch to a plain file, no framing or
// compression.
func BenchmarkAppend(b *testing.B) {
	for _, n := range []int{1, 64, 512} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			b.Run("segwal", func(b *testing.B) {
				l := benchOpen(b, benchDir(b), Options{}) // zstd, fsync per Append
				bt := newBatcher(n)
				for b.Loop() {
					if _, err := l.Append(bt.nextBatch()...); err != nil {
						b.Fatal(err)
					}
				}
				st := l.Stats()
				reportRate(b, b.N*n, st.FrameBytes)
				reportSync(b, st.SyncTime)
			})
			b.Run("raw", func(b *testing.B) {
				f, err := os.OpenFile(filepath.Join(benchDir(b), "raw"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				bt := newBatcher(n)
				var buf []byte
				var written uint64
				var syncTime time.Duration
				for b.Loop() {
					buf = buf[:0]
					for _, r := range bt.nextBatch() {
						buf = append(buf, r...)
					}
					if _, err := f.Write(buf); err != nil {
						b.Fatal(err)
					}
					start := time.Now()
					if err := f.Sync(); err != nil {
						b.Fatal(err)
					}
					syncTime += time.Since(start)
					written += uint64(len(buf))
				}
				reportRate(b, b.N*n, written)
				reportSync(b, syncTime)
			})
		})
	}
}

// BenchmarkCompression reports ratio = record bytes / frame bytes on disk
// (frame headers included) for frames of n events. SyncNone: it measures
// size, and records/s here is the CPU cost of encoding and writing.
func BenchmarkCompression(b *testing.B) {
	for _, n := range []int{8, 64, 512} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			l := benchOpen(b, benchDir(b), Options{Sync: SyncNone})
			bt := newBatcher(n)
			for b.Loop() {
				if _, err := l.Append(bt.nextBatch()...); err != nil {
					b.Fatal(err)
				}
			}
			st := l.Stats()
			b.ReportMetric(float64(st.RecordBytes)/float64(st.FrameBytes), "ratio")
			reportRate(b, b.N*n, st.FrameBytes)
		})
	}
}

// BenchmarkReplay: one op is a Replay of a whole log of 1,000,000 events
// written in 64-record frames (built once, outside the timer). The files
// are in the page cache, so this is the CPU cost of reading, checking and
// decompressing. open-ms is the time Open took to check the log.
func BenchmarkReplay(b *testing.B) {
	const total, perFrame = 1_000_000, 64
	dir := benchDir(b)
	w := benchOpen(b, dir, Options{Sync: SyncNone})
	bt := newBatcher(perFrame)
	for w.Last() < total {
		if _, err := w.Append(bt.nextBatch()[:min(perFrame, total-int(w.Last()))]...); err != nil {
			b.Fatal(err)
		}
	}
	recordBytes := w.Stats().RecordBytes
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	l := benchOpen(b, dir, Options{})
	openTime := l.Recovery().Duration

	b.SetBytes(int64(recordBytes))
	for b.Loop() {
		var n, size int
		err := l.Replay(0, func(seq uint64, rec []byte) error {
			n++
			size += len(rec)
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if n != total || uint64(size) != recordBytes {
			b.Fatalf("replayed %d records of %d bytes, want %d of %d", n, size, total, recordBytes)
		}
	}
	b.ReportMetric(float64(b.N*total)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(openTime.Microseconds())/1000, "open-ms")
}

// benchEvents is a pool of 65,536 JSON task events (~220 bytes each) from a
// simulated task queue: tasks with ULID ids are enqueued by tenants,
// started by workers, heartbeat, succeed, or fail and retry with backoff
// until they die, interleaved as a few hundred tasks are in flight at once.
// The stream is deterministic (fixed seed).
var benchEvents = sync.OnceValue(func() [][]byte {
	g := newEventGen(1)
	events := make([][]byte, 1<<16)
	for i := range events {
		events[i] = g.next()
	}
	return events
})

type simTask struct {
	id       string
	handler  string
	queue    string
	tenant   string
	trace    string
	attempt  int
	state    int // 0 queued, 1 running
	runAt    int64
	started  int64
	worker   string
	maxTries int
}

type eventGen struct {
	rng      *prng.Rand
	now      int64 // Unix ms
	inFlight []*simTask
	buf      []byte
}

func newEventGen(seed uint64) *eventGen {
	return &eventGen{rng: prng.New(prng.NewPCG(seed, 0x7a5c)), now: 1_718_035_200_000}
}

var (
	simHandlers = []string{
		"email.send", "email.send", "email.send", "webhook.deliver", "webhook.deliver",
		"image.resize", "thumbnail.render", "pdf.render", "report.generate", "billing.charge",
		"billing.invoice", "search.index", "search.index", "user.sync", "export.csv",
		"sms.send", "cache.warm", "audit.archive",
	}
	simQueues  = []string{"default", "default", "default", "critical", "bulk", "bulk"}
	simSources = []string{"api", "api", "cron", "webhook", "backfill"}
	simRegions = []string{"eu-west-1", "eu-west-1", "us-east-1", "ap-southeast-2"}
	simErrors  = []string{
		"context deadline exceeded after 30000ms",
		"upstream returned HTTP 503 Service Unavailable",
		"dial tcp 10.12.4.31:443: connect: connection refused",
		"smtp: 451 4.7.1 try again later",
		"wasm trap: out of bounds memory access",
		"handler panicked: index out of range [3] with length 3",
		"rate limited by provider, retry-after 12s",
	}
)

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

func (g *eventGen) ulid() string {
	var b [26]byte
	t := uint64(g.now)
	for i := 9; i >= 0; i-- {
		b[i] = crockford[t&31]
		t >>= 5
	}
	r1, r2 := g.rng.Uint64(), g.rng.Uint64()
	for i := 10; i < 26; i++ {
		b[i] = crockford[r1&31]
		r1 = r1>>5 | r2<<59
		r2 >>= 5
	}
	return string(b[:])
}

func (g *eventGen) hex(n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[g.rng.IntN(16)]
	}
	return string(b)
}

func (g *eventGen) next() []byte {
	g.now += int64(g.rng.IntN(4))
	if len(g.inFlight) < 64 || (len(g.inFlight) < 512 && g.rng.IntN(3) == 0) {
		return g.enqueue()
	}
	i := g.rng.IntN(len(g.inFlight))
	t := g.inFlight[i]
	if t.state == 0 {
		return g.start(t)
	}
	switch k := g.rng.IntN(20); {
	case k < 6:
		return g.heartbeat(t)
	case k < 19:
		g.remove(i)
		return g.succeed(t)
	default:
		return g.fail(i, t)
	}
}

func (g *eventGen) remove(i int) {
	last := len(g.inFlight) - 1
	g.inFlight[i] = g.inFlight[last]
	g.inFlight = g.inFlight[:last]
}

// Small JSON writers; keys and values never need escaping here.
func (g *eventGen) begin(ev string, t *simTask) {
	g.buf = append(g.buf[:0], `{"ts":`...)
	g.buf = strconv.AppendInt(g.buf, g.now, 10)
	g.str("ev", ev)
	g.str("task", t.id)
	g.str("handler", t.handler)
}

func (g *eventGen) str(k, v string) {
	g.buf = append(g.buf, ',', '"')
	g.buf = append(g.buf, k...)
	g.buf = append(g.buf, `":"`...)
	g.buf = append(g.buf, v...)
	g.buf = append(g.buf, '"')
}

func (g *eventGen) num(k string, v int64) {
	g.buf = append(g.buf, ',', '"')
	g.buf = append(g.buf, k...)
	g.buf = append(g.buf, `":`...)
	g.buf = strconv.AppendInt(g.buf, v, 10)
}

func (g *eventGen) end() []byte {
	g.buf = append(g.buf, '}')
	return append([]byte(nil), g.buf...)
}

func (g *eventGen) enqueue() []byte {
	t := &simTask{
		id:       g.ulid(),
		handler:  simHandlers[g.rng.IntN(len(simHandlers))],
		queue:    simQueues[g.rng.IntN(len(simQueues))],
		tenant:   fmt.Sprintf("tn_%04d", int(200*g.rng.Float64()*g.rng.Float64())), // a few big tenants
		trace:    g.hex(16),
		runAt:    g.now,
		maxTries: 3 + g.rng.IntN(3),
	}
	if g.rng.IntN(4) == 0 {
		t.runAt += int64(g.rng.IntN(60_000)) // scheduled for later
	}
	g.inFlight = append(g.inFlight, t)
	g.begin("task.enqueued", t)
	g.str("queue", t.queue)
	g.num("prio", int64(g.rng.IntN(3)))
	g.str("state", "queued")
	g.num("run_at", t.runAt)
	g.str("tenant", t.tenant)
	g.str("trace", t.trace)
	g.num("payload_bytes", int64(64+g.rng.IntN(8000)))
	g.buf = append(g.buf, `,"labels":{`...)
	g.buf = append(g.buf, `"src":"`...)
	g.buf = append(g.buf, simSources[g.rng.IntN(len(simSources))]...)
	g.buf = append(g.buf, `","region":"`...)
	g.buf = append(g.buf, simRegions[g.rng.IntN(len(simRegions))]...)
	g.buf = append(g.buf, `"}`...)
	return g.end()
}

func (g *eventGen) start(t *simTask) []byte {
	t.state, t.attempt, t.started = 1, t.attempt+1, g.now
	t.worker = fmt.Sprintf("wrk-%02d-%d", g.rng.IntN(24), g.rng.IntN(8))
	g.begin("task.started", t)
	g.num("attempt", int64(t.attempt))
	g.str("state", "running")
	g.str("worker", t.worker)
	g.num("lease_ms", 30_000)
	g.num("wait_ms", max(0, g.now-t.runAt))
	return g.end()
}

func (g *eventGen) heartbeat(t *simTask) []byte {
	g.begin("task.heartbeat", t)
	g.num("attempt", int64(t.attempt))
	g.str("worker", t.worker)
	g.num("progress", int64(g.rng.IntN(100)))
	g.num("lease_until", g.now+30_000)
	g.num("mem_kb", int64(2048+g.rng.IntN(60_000)))
	return g.end()
}

func (g *eventGen) succeed(t *simTask) []byte {
	g.begin("task.succeeded", t)
	g.num("attempt", int64(t.attempt))
	g.str("state", "succeeded")
	g.str("worker", t.worker)
	g.num("duration_ms", g.now-t.started+int64(g.rng.IntN(2000)))
	g.num("result_bytes", int64(g.rng.IntN(4096)))
	g.str("trace", t.trace)
	return g.end()
}

func (g *eventGen) fail(i int, t *simTask) []byte {
	g.begin("task.failed", t)
	g.num("attempt", int64(t.attempt))
	g.str("worker", t.worker)
	g.num("duration_ms", g.now-t.started+int64(g.rng.IntN(30_000)))
	g.str("error", simErrors[g.rng.IntN(len(simErrors))])
	if t.attempt >= t.maxTries {
		g.remove(i)
		g.str("state", "dead")
	} else {
		backoff := int64(1000) << t.attempt
		backoff += int64(g.rng.IntN(int(backoff / 2))) // jitter
		t.state, t.runAt = 0, g.now+backoff
		g.str("state", "retrying")
		g.num("backoff_ms", backoff)
		g.num("next_run_at", t.runAt)
	}
	return g.end()
}
