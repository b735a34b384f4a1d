package cluster

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

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
		b.Run(fmt.Sprintf("events=%d/store=raft-boltdb", events), func(b *testing.B) {
			store, err := raftboltdb.NewBoltStore(filepath.Join(b.TempDir(), "raft.db"))
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
