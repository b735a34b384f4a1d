package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Entry types: the first byte of a raft log entry's data.
const (
	entryEvents byte = 1 // a frame of dispatch records (one or more ticks)
	entryMember byte = 2 // a member's HTTP address (JSON memberEntry)
)

// raftLog is the engine's Log in cluster mode (dispatch.Log): the records
// the loop writes are buffered, and Commit applies them as one raft entry
// (a frame: first sequence, count, records) and waits until a majority
// has it, as segwal.Commit waits for an fsync. Like the WAL's, its frames
// group every tick stepped while the previous commit was in flight.
type raftLog struct {
	r       *raft.Raft
	timeout time.Duration

	mu        sync.Mutex
	frame     []byte // header room + records of the next entry
	count     uint64 // records in frame
	last      uint64 // sequence of the last record appended
	committed uint64 // sequence the last successful Commit reached
	closed    bool
}

const frameHeaderRoom = 1 + 2*binary.MaxVarintLen64

func newRaftLog(r *raft.Raft, applied uint64) *raftLog {
	return &raftLog{r: r, timeout: 10 * time.Second, last: applied, committed: applied,
		frame: make([]byte, frameHeaderRoom, 64<<10)}
}

func (l *raftLog) Append(records ...[]byte) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, errors.New("cluster: log closed")
	}
	for _, rec := range records {
		l.frame = binary.AppendUvarint(l.frame, uint64(len(rec)))
		l.frame = append(l.frame, rec...)
	}
	l.count += uint64(len(records))
	l.last += uint64(len(records))
	return l.last, nil
}

// Commit applies what was appended as one raft entry and waits for the
// majority. It is called by the engine's committer only, one at a time.
func (l *raftLog) Commit() (uint64, error) {
	l.mu.Lock()
	if l.count == 0 {
		c := l.committed
		l.mu.Unlock()
		return c, nil
	}
	body, count, last := l.frame[frameHeaderRoom:], l.count, l.last
	first := last - count + 1
	l.frame, l.count = make([]byte, frameHeaderRoom, max(64<<10, cap(l.frame))), 0
	l.mu.Unlock()

	var head [frameHeaderRoom]byte
	h := append(head[:0], entryEvents)
	h = binary.AppendUvarint(h, first)
	h = binary.AppendUvarint(h, count)
	data := make([]byte, 0, len(h)+len(body))
	data = append(append(data, h...), body...)
	if err := l.r.Apply(data, l.timeout).Error(); err != nil {
		return 0, fmt.Errorf("raft: %w", err)
	}
	l.mu.Lock()
	l.committed = last
	l.mu.Unlock()
	return last, nil
}

func (l *raftLog) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	return nil
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
