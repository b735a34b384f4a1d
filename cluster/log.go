package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Entry types: the first byte of a raft log entry's data.
const (
	entryEvents byte = 1 // a frame of dispatch records (one or more ticks)
	entryMember byte = 2 // a member's HTTP address (JSON memberEntry)
	entryPlugin byte = 3 // a plugin change (plugins.go)
)

// raftLog is the engine's Log in cluster mode (dispatch.Log): each frame
// the loop writes (a tick, or the ticks stepped while the committer was
// busy) is applied to raft at once as one entry (first sequence, count,
// records), without waiting: raft pipelines it behind the entries in
// flight and batches what queues up into one write. Commit waits until a
// majority has every entry applied so far, as segwal.Commit waits for an
// fsync of every frame written.
type raftLog struct {
	r     *raft.Raft
	stats *commitStats
	own   *ownFrames // the entries this node's FSM skips (nil: none)
	// earlyWindow: attempts may start before their lease is committed only
	// this soon after a commit succeeded (see EarlyStartOK).
	earlyWindow time.Duration
	lastOK      atomic.Int64 // unix ns of the last successful commit

	mu        sync.Mutex
	last      uint64 // sequence of the last record appended
	inflight  []pendingEntry
	committed uint64 // sequence the last successful Commit reached
	failed    error  // an entry failed: nothing after it may be committed
	closed    bool
}

type pendingEntry struct {
	f      raft.ApplyFuture
	last   uint64
	events uint64
	start  time.Time
}

// commitStats count the leader's commits (raft entries of dispatch frames)
// and the time from an entry's Apply to its commit, over the node's life.
type commitStats struct {
	commits, events, nanos atomic.Uint64
}

func newRaftLog(r *raft.Raft, applied uint64, stats *commitStats, earlyWindow time.Duration, own *ownFrames) *raftLog {
	l := &raftLog{r: r, last: applied, committed: applied, stats: stats, earlyWindow: earlyWindow, own: own}
	l.lastOK.Store(time.Now().UnixNano()) // the leader's Barrier just committed
	return l
}

// pipelineDepth bounds the entries in flight the loop adds to tick by
// tick (dispatch.Pipeliner); past it, ticks gather into the next entry,
// applied when the one in flight commits: group commit, as one node's
// committer waits for the fsync in flight. Raft's cost is per entry as
// much as per event (an fsync on every node, two round trips, a dozen
// goroutine wake-ups): at 32 clients one entry in flight made entries 1.4x
// larger and three nodes 7-48 % faster than two did (cluster/doc.go,
// session 12), and 1 and 256 clients within noise.
const pipelineDepth = 1

// WantsFrame reports whether the loop should apply a tick's frame now.
func (l *raftLog) WantsFrame() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.inflight) < pipelineDepth
}

// EarlyStartOK lets an attempt start once its lease is written to raft,
// before it is committed, only while this node surely still leads: within
// earlyWindow (half the heartbeat timeout) of issuing an entry that a
// majority has since acknowledged. No other node can be elected before a majority has missed
// the leader's heartbeats for a heartbeat timeout, so an attempt started
// early is one the cluster would run under this leader; if it dies at
// once, the lease may be lost and the new leader runs the attempt again,
// like any attempt in flight at a failover (at least once). A leader that
// was paused or cut off (SIGSTOP, a partition) finds its last commit too
// old and starts nothing before a new commit, which a deposed leader never
// gets.
func (l *raftLog) EarlyStartOK() bool {
	return time.Since(time.Unix(0, l.lastOK.Load())) < l.earlyWindow && l.r.State() == raft.Leader
}

func (l *raftLog) Append(records ...[]byte) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return 0, errors.New("cluster: log closed")
	case l.failed != nil:
		return 0, l.failed
	}
	size := 1 + 2*binary.MaxVarintLen64
	for _, rec := range records {
		size += binary.MaxVarintLen64 + len(rec)
	}
	first := l.last + 1
	data := make([]byte, 0, size)
	data = append(data, entryEvents)
	data = binary.AppendUvarint(data, first)
	data = binary.AppendUvarint(data, uint64(len(records)))
	for _, rec := range records {
		data = binary.AppendUvarint(data, uint64(len(rec)))
		data = append(data, rec...)
	}
	l.last += uint64(len(records))
	// No timeout: an Apply that timed out before raft took it would leave
	// a gap that later entries (taken) would follow.
	if l.own != nil {
		l.own.add(data) // before raft may hand it to the FSM
	}
	l.inflight = append(l.inflight, pendingEntry{f: l.r.Apply(data, 0), last: l.last, events: uint64(len(records)), start: time.Now()})
	return l.last, nil
}

// Commit waits for every entry applied so far.
func (l *raftLog) Commit() (uint64, error) {
	l.mu.Lock()
	last := l.last
	l.mu.Unlock()
	return l.CommitTo(last)
}

// CommitTo waits until the entries holding sequences up to seq are
// committed (dispatch.CommitterTo), leaving the later ones in flight. It
// is called by the engine's committer only, one at a time; Append may run
// meanwhile.
func (l *raftLog) CommitTo(seq uint64) (uint64, error) {
	for {
		l.mu.Lock()
		if l.failed != nil || l.committed >= seq || len(l.inflight) == 0 {
			committed, failed := l.committed, l.failed
			l.mu.Unlock()
			return committed, failed
		}
		p := l.inflight[0]
		l.mu.Unlock()
		err := p.f.Error()
		l.mu.Lock()
		l.inflight[0] = pendingEntry{}
		l.inflight = l.inflight[1:]
		if err != nil {
			l.failed = fmt.Errorf("raft: %w", err)
			l.mu.Unlock()
			continue
		}
		l.committed = p.last
		// A majority acknowledged this entry after it was issued: from
		// then on, no other leader can be elected for a heartbeat timeout.
		l.lastOK.Store(max(l.lastOK.Load(), p.start.UnixNano()))
		l.mu.Unlock()
		l.stats.commits.Add(1)
		l.stats.events.Add(p.events)
		l.stats.nanos.Add(uint64(time.Since(p.start)))
	}
}

func (l *raftLog) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	return nil
}

// frameSpan reads the first sequence and the count of records of an
// entryEvents frame (data without its type byte).
func frameSpan(data []byte) (first, count uint64, ok bool) {
	first, n := binary.Uvarint(data)
	if n <= 0 {
		return 0, 0, false
	}
	count, m := binary.Uvarint(data[n:])
	return first, count, m > 0
}

// decodeFrame calls fn for each record of an entryEvents frame (data
// without its type byte), with its sequence.
func decodeFrame(data []byte, fn func(seq uint64, rec []byte) error) error {
	first, n := binary.Uvarint(data)
	if n <= 0 {
		return errors.New("cluster: frame: bad first sequence")
	}
	data = data[n:]
	count, n := binary.Uvarint(data)
	if n <= 0 {
		return errors.New("cluster: frame: bad count")
	}
	data = data[n:]
	for i := uint64(0); i < count; i++ {
		size, n := binary.Uvarint(data)
		if n <= 0 || uint64(len(data)-n) < size {
			return fmt.Errorf("cluster: frame: record %d of %d is cut short", i+1, count)
		}
		if err := fn(first+i, data[n:n+int(size)]); err != nil {
			return err
		}
		data = data[n+int(size):]
	}
	if len(data) != 0 {
		return fmt.Errorf("cluster: frame: %d bytes after its %d records", len(data), count)
	}
	return nil
}
