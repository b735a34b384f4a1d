package cluster

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/segwal"
)

// BenchmarkLogStore: the durable write of one group of ticks (a frame of
// records of a typical event's size) in the raft log store this package
// uses (raft-boltdb/v2: one entry, one bolt transaction and fsync) beside
// today's single-node WAL (segwal: one frame, one fsync). Raft adds the
// network round trip to the followers and their own write on top.
//
//	go test ./cluster -run '^$' -bench BenchmarkLogStore -benchtime 2s -count 3
func BenchmarkLogStore(b *testing.B) {
	for _, events := range []int{1, 64, 512} {
		records := make([][]byte, events)
		for i := range records {
			records[i] = make([]byte, 120)
			for j := range records[i] {
				records[i][j] = byte(i*7 + j)
			}
		}
		var frame []byte
		for _, r := range records {
			frame = binary.AppendUvarint(frame, uint64(len(r)))
			frame = append(frame, r...)
		}
		for _, st := range benchStores {
			b.Run(fmt.Sprintf("events=%d/store=%s", events, st.name), func(b *testing.B) {
				store, err := st.open(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				defer store.Close()
				b.SetBytes(int64(len(frame)))
				b.ResetTimer()
				for i := range b.N {
					if err := store.StoreLogs([]*raft.Log{{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: frame}}); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*events)/b.Elapsed().Seconds(), "events/s")
			})
		}
		b.Run(fmt.Sprintf("events=%d/store=segwal", events), func(b *testing.B) {
			wal, err := segwal.Open(filepath.Join(b.TempDir(), "wal"), segwal.Options{Sync: segwal.SyncNone, Preallocate: true})
			if err != nil {
				b.Fatal(err)
			}
			defer wal.Close()
			b.SetBytes(int64(len(frame)))
			b.ResetTimer()
			for range b.N {
				if _, err := wal.Append(records...); err != nil {
					b.Fatal(err)
				}
				if _, err := wal.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*events)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkSubmit: no-op tasks through the engine's Go API with fsync on,
// one node (the single-node engine on segwal) beside three in this
// process on loopback (raft, with each log store): tasks/s from the first
// submit to the last completion, and each Submit's latency (acknowledged
// once durable: fsynced, or committed by a majority). 32 submitters (the
// rate is then about 32 / the submit latency), 256 and 1024 (closer to
// what the log can carry: where three nodes come nearest one); the
// default 16 workers. cpu-us/task is the process's CPU (user + system,
// all nodes) over the run per task: rates vary 2x on a shared machine,
// CPU per task much less. A submit the leadership change of an election
// refused is retried with the new leader. For the segwal store, the
// leader's and a follower's average fsync and raft entries per write.
//
//	go test ./cluster -run '^$' -bench BenchmarkSubmit -benchtime 3000x -count 3
func BenchmarkSubmit(b *testing.B) {
	for _, submitters := range []int{32, 256, 1024} {
		b.Run(fmt.Sprintf("submitters=%d", submitters), func(b *testing.B) { benchmarkSubmit(b, submitters) })
	}
}

func benchmarkSubmit(b *testing.B, submitters int) {
	exec := dispatch.ExecutorFunc(func(ctx context.Context, job dispatch.Job) dispatch.Result {
		return dispatch.Result{Outcome: dispatch.OutcomeOK}
	})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	run := func(b *testing.B, e func() *dispatch.Engine) {
		lat := make([]time.Duration, b.N)
		ids := make([]dispatch.TaskID, b.N)
		var next atomic.Int64
		var wg sync.WaitGroup
		ctx := context.Background()
		b.ResetTimer()
		start, cpu0 := time.Now(), processCPU()
		for range submitters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= b.N {
						return
					}
					t0 := time.Now()
					res, err := submitRetrying(ctx, e, dispatch.TaskSpec{ID: dispatch.TaskID(fmt.Sprintf("t%d", i)), Handler: "noop"})
					if err != nil {
						b.Error(err)
						return
					}
					lat[i], ids[i] = time.Since(t0), res.Task
				}
			}()
		}
		wg.Wait()
		for _, id := range ids {
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				v, err := e().Wait(ctx, id) // again on the new leader if an election ended this one's engine
				if err == nil && v.State == dispatch.TaskCompleted {
					break
				}
				if err == nil && v.State != "" || time.Now().After(deadline) { // Wait answers final states only
					b.Fatalf("%s: %s %v", id, v.State, err)
				}
			}
		}
		elapsed, cpu := time.Since(start), processCPU()-cpu0
		b.StopTimer()
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/task")
		slices.Sort(lat)
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "submit-p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "submit-p99-ms")
		b.ReportMetric(0, "ns/op")
	}
	b.Run("nodes=1", func(b *testing.B) {
		e, err := dispatch.Open(dispatch.Config{Dir: b.TempDir(), Executor: exec, Workers: 16, Logger: quiet,
			WAL: segwal.Options{Sync: segwal.SyncAlways}})
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		run(b, func() *dispatch.Engine { return e })
	})
	for _, store := range []string{LogStoreBolt, LogStoreSegwal} {
		b.Run("nodes=3/store="+store, func(b *testing.B) {
			c := newTestCluster(b)
			c.workers, c.store = 16, store // workers as nodes=1
			defer c.closeAll()
			n1 := c.startThree()
			c.converged()
			// Under load an election can move the leadership mid-run (the
			// engine of a deposed n1 is nil): go on with the new leader's,
			// as a client following the cluster would.
			run(b, func() *dispatch.Engine {
				if e := n1.Engine(); e != nil {
					return e
				}
				return c.leader().Engine()
			})
			if st := n1.Status(); st.Commits > 0 {
				b.ReportMetric(1000*st.CommitSeconds/float64(st.Commits), "commit-ms")
				b.ReportMetric(float64(st.CommitEvents)/float64(st.Commits), "events/commit")
			}
			for role, id := range map[string]string{"leader": "n1", "follower": "n2"} {
				if ws, ok := c.nodes[id].store.(*walStore); ok {
					st := ws.wal.Stats()
					b.ReportMetric(float64(st.SyncTime.Microseconds())/1000/float64(st.Syncs), role+"-fsync-ms")
					b.ReportMetric(float64(st.Records)/float64(st.Appends), role+"-entries/write")
				}
			}
		})
	}
}

// submitRetrying submits spec to the engine e returns, again (the same
// id: a duplicate if the first went through) while the leadership moves:
// under heavy load an election can depose the leader mid-run, and a
// client following the cluster would retry with the new one.
func submitRetrying(ctx context.Context, e func() *dispatch.Engine, spec dispatch.TaskSpec) (dispatch.SubmitResult, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := e().Submit(ctx, spec)
		if err == nil || time.Now().After(deadline) {
			return res, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type closingLogStore interface {
	raft.LogStore
	Close() error
}

// benchStores are the raft log stores BenchmarkLogStore compares.
var benchStores = []struct {
	name string
	open func(dir string) (closingLogStore, error)
}{
	{"raft-boltdb", func(dir string) (closingLogStore, error) {
		return raftboltdb.NewBoltStore(filepath.Join(dir, "raft.db"))
	}},
	{"segwal-raft", func(dir string) (closingLogStore, error) {
		return openWalStore(dir, quietLog)
	}},
}
