package cluster

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wasmtask/wasmtask/segwal"
)

// walStore is raft's LogStore and StableStore on the project's segwal
// (doc.go, Log store, says why and what it measured). segwal is an
// append-only log of records numbered by its own sequence, so raft's
// operations become records replayed in order at Open:
//
//   - StoreLogs appends one record per raft entry (its index, term, type,
//     time, extensions and data) as one segwal frame: one write and one
//     fdatasync for the batch raft hands over.
//   - DeleteRange appends a record naming the range. A suffix delete (a
//     follower's conflicting tail) drops the entries at the end, so the
//     next entries take their indexes again; a prefix delete (compaction
//     after a snapshot) also lets segwal remove the segments that hold only
//     deleted entries (TruncateFront). A delete record is replayed after the
//     entries it deletes and before those written after it, so replay
//     rebuilds exactly the entries raft last saw, whatever segments
//     TruncateFront removed (it removes whole segments from the front,
//     never a record that a kept one depends on).
//   - Reads by index are served from memory: the entries between raft's
//     first and last index stay in memory (raft keeps TrailingLogs entries
//     after each snapshot, and snapshots every SnapshotThreshold entries).
//   - The stable store (current term, vote) is a small JSON file rewritten
//     atomically (temporary file, fsync, rename, directory fsync). raft
//     writes it only on elections.
//
// The store is monotonic (raft.MonotonicLogStore): indexes follow each
// other without gaps, so after installing a snapshot raft deletes every
// entry rather than leaving a gap.
type walStore struct {
	dir string
	wal *segwal.Log

	write sync.Mutex // one writer at a time: raft's loop, its snapshot goroutine

	mu      sync.RWMutex
	first   uint64 // raft index of entries[0] (0: no entries)
	entries []storedEntry

	stableMu sync.Mutex
	stable   map[string][]byte
}

type storedEntry struct {
	log raft.Log
	seq uint64 // segwal sequence of its record
}

// Record types: the first byte of a record.
const (
	recEntry  byte = 1
	recDelete byte = 2
)

const (
	walStoreLogDir = "log"
	walStoreStable = "stable.json"
)

// walStoreSegment is the store's segment size: smaller than segwal's 64
// MiB, so that compaction frees space sooner and replay holds less.
var walStoreSegment int64 = 16 << 20

// errKeyNotFound is what raft expects of a StableStore for a missing key:
// it compares the error's text with "not found".
var errKeyNotFound = errors.New("not found")

// openWalStore opens (creating) the store in dir and replays its log.
func openWalStore(dir string, logger *slog.Logger) (*walStore, error) {
	wal, err := segwal.Open(filepath.Join(dir, walStoreLogDir), segwal.Options{
		SegmentSize: walStoreSegment,
		// raft entries hold frames of encoded dispatch events; they are
		// written on the leader and on every follower, where CPU is scarcer
		// than disk bytes.
		Compression: segwal.CompressNone,
		Preallocate: true, // fdatasync: the sync does not journal a new file size
		Logger:      logger,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: raft log: %w", err)
	}
	s := &walStore{dir: dir, wal: wal, stable: map[string][]byte{}}
	if err := wal.Replay(0, s.replay); err != nil {
		wal.Close()
		return nil, fmt.Errorf("cluster: raft log %s: %w", filepath.Join(dir, walStoreLogDir), err)
	}
	b, err := os.ReadFile(filepath.Join(dir, walStoreStable))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		wal.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	default:
		if err := json.Unmarshal(b, &s.stable); err != nil {
			wal.Close()
			return nil, fmt.Errorf("cluster: %s is damaged (%v): it holds this node's raft term and vote; restore it from a backup or remove the node's raft folder and join it again", filepath.Join(dir, walStoreStable), err)
		}
	}
	return s, nil
}

// replay applies one record of the log to the entries in memory.
func (s *walStore) replay(seq uint64, rec []byte) error {
	if len(rec) == 0 {
		return fmt.Errorf("record %d is empty", seq)
	}
	switch rec[0] {
	case recEntry:
		var l raft.Log
		if err := decodeEntry(rec[1:], &l); err != nil {
			return fmt.Errorf("record %d: %w", seq, err)
		}
		if len(s.entries) > 0 && l.Index != s.lastLocked()+1 {
			return fmt.Errorf("record %d: raft entry %d does not follow entry %d", seq, l.Index, s.lastLocked())
		}
		if len(s.entries) == 0 {
			s.first = l.Index
		}
		s.entries = append(s.entries, storedEntry{log: l, seq: seq})
	case recDelete:
		lo, n := binary.Uvarint(rec[1:])
		hi, k := binary.Uvarint(rec[1+max(n, 0):])
		if n <= 0 || k <= 0 {
			return fmt.Errorf("record %d: bad delete range", seq)
		}
		s.deleteLocked(lo, hi)
	default:
		return fmt.Errorf("record %d: unknown type %d", seq, rec[0])
	}
	return nil
}

// appendEntry encodes l after its type byte.
func appendEntry(b []byte, l *raft.Log) []byte {
	b = append(b, recEntry)
	b = binary.AppendUvarint(b, l.Index)
	b = binary.AppendUvarint(b, l.Term)
	b = append(b, byte(l.Type))
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	b = binary.AppendVarint(b, at)
	b = binary.AppendUvarint(b, uint64(len(l.Extensions)))
	b = append(b, l.Extensions...)
	return append(b, l.Data...)
}

func decodeEntry(b []byte, l *raft.Log) error {
	var n int
	var at int64
	var ext uint64
	if l.Index, n = binary.Uvarint(b); n <= 0 {
		return errors.New("bad index")
	}
	b = b[n:]
	if l.Term, n = binary.Uvarint(b); n <= 0 {
		return errors.New("bad term")
	}
	b = b[n:]
	if len(b) == 0 {
		return errors.New("cut short")
	}
	l.Type, b = raft.LogType(b[0]), b[1:]
	if at, n = binary.Varint(b); n <= 0 {
		return errors.New("bad time")
	}
	b = b[n:]
	if at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	if ext, n = binary.Uvarint(b); n <= 0 || uint64(len(b)-n) < ext {
		return errors.New("bad extensions")
	}
	b = b[n:]
	if ext > 0 {
		l.Extensions = slices.Clone(b[:ext])
	}
	if rest := b[ext:]; len(rest) > 0 {
		l.Data = slices.Clone(rest) // the record is only valid during replay
	}
	return nil
}

func (s *walStore) lastLocked() uint64 {
	if len(s.entries) == 0 {
		return 0
	}
	return s.first + uint64(len(s.entries)) - 1
}

// deleteLocked drops the entries in [lo, hi] from memory. raft deletes a
// prefix (compaction), a suffix (a conflicting tail) or everything (after
// installing a snapshot), never a middle part.
func (s *walStore) deleteLocked(lo, hi uint64) {
	last := s.lastLocked()
	if len(s.entries) == 0 || hi < s.first || lo > last {
		return
	}
	switch {
	case lo <= s.first && hi >= last:
		s.first, s.entries = 0, nil
	case lo <= s.first:
		// Copy the rest: the backing array would otherwise keep every
		// compacted entry reachable.
		s.entries = slices.Clone(s.entries[hi-s.first+1:])
		s.first = hi + 1
	case hi >= last:
		clear(s.entries[lo-s.first:])
		s.entries = s.entries[:lo-s.first]
	default:
		// Not something raft does; keep the log consistent by cutting the
		// suffix from lo (raft reads such a hole as missing entries anyway).
		clear(s.entries[lo-s.first:])
		s.entries = s.entries[:lo-s.first]
	}
}

// FirstIndex returns the first index written, 0 for none.
func (s *walStore) FirstIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.first, nil
}

// LastIndex returns the last index written, 0 for none.
func (s *walStore) LastIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.lastLocked(), nil
}

// GetLog gets the entry at index (raft.ErrLogNotFound when there is none).
func (s *walStore) GetLog(index uint64, l *raft.Log) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.entries) == 0 || index < s.first || index > s.lastLocked() {
		return raft.ErrLogNotFound
	}
	*l = s.entries[index-s.first].log
	return nil
}

func (s *walStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs writes the entries as one segwal frame (one fsync). They must
// follow the last entry (or start anywhere in an empty store).
func (s *walStore) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	s.write.Lock()
	defer s.write.Unlock()
	s.mu.RLock()
	next, empty := s.lastLocked()+1, len(s.entries) == 0
	s.mu.RUnlock()
	if empty {
		next = logs[0].Index
	}
	size := 0
	for i, l := range logs {
		if l.Index != next+uint64(i) {
			return fmt.Errorf("cluster: raft log: entry %d written where entry %d belongs (indexes must follow each other)", l.Index, next+uint64(i))
		}
		size += 1 + 4*binary.MaxVarintLen64 + 1 + len(l.Extensions) + len(l.Data)
	}
	buf := make([]byte, 0, size)
	records := make([][]byte, len(logs))
	for i, l := range logs {
		start := len(buf)
		buf = appendEntry(buf, l)
		records[i] = buf[start:len(buf):len(buf)]
	}
	last, err := s.wal.Append(records...)
	if err != nil {
		return fmt.Errorf("cluster: raft log: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.entries) == 0 {
		s.first = logs[0].Index
	}
	seq := last - uint64(len(logs)) + 1
	for i, l := range logs {
		s.entries = append(s.entries, storedEntry{log: *l, seq: seq + uint64(i)})
	}
	return nil
}

// DeleteRange deletes the entries in [lo, hi], durably: a delete record,
// then, for a prefix, the segments that hold only deleted records.
func (s *walStore) DeleteRange(lo, hi uint64) error {
	if lo > hi {
		return nil
	}
	s.write.Lock()
	defer s.write.Unlock()
	rec := binary.AppendUvarint([]byte{recDelete}, lo)
	rec = binary.AppendUvarint(rec, hi)
	if _, err := s.wal.Append(rec); err != nil {
		return fmt.Errorf("cluster: raft log: %w", err)
	}
	s.mu.Lock()
	s.deleteLocked(lo, hi)
	keepFrom := s.wal.Last() // the delete record itself
	if len(s.entries) > 0 {
		keepFrom = s.entries[0].seq
	}
	s.mu.Unlock()
	// Records before the first kept entry's are entries deleted now or
	// before, and delete records that only concern them.
	if err := s.wal.TruncateFront(keepFrom); err != nil {
		return fmt.Errorf("cluster: raft log: %w", err)
	}
	return nil
}

// IsMonotonic: indexes follow each other without gaps (raft.MonotonicLogStore).
func (s *walStore) IsMonotonic() bool { return true }

// Set writes a stable value: the whole file is rewritten atomically.
func (s *walStore) Set(key []byte, val []byte) error {
	s.stableMu.Lock()
	defer s.stableMu.Unlock()
	next := maps.Clone(s.stable)
	if next == nil {
		next = map[string][]byte{}
	}
	next[string(key)] = slices.Clone(val)
	b, err := json.Marshal(next)
	if err != nil {
		return err
	}
	path := filepath.Join(s.dir, walStoreStable)
	tmp := path + ".tmp"
	if err := writeSynced(tmp, b); err != nil {
		return fmt.Errorf("cluster: raft stable store: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("cluster: raft stable store: %w", err)
	}
	if err := segwal.SyncDir(s.dir); err != nil {
		return fmt.Errorf("cluster: raft stable store: %w", err)
	}
	s.stable = next
	return nil
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Get returns a stable value ("not found" error for a missing key, as raft expects).
func (s *walStore) Get(key []byte) ([]byte, error) {
	s.stableMu.Lock()
	defer s.stableMu.Unlock()
	v, ok := s.stable[string(key)]
	if !ok {
		return nil, errKeyNotFound
	}
	return slices.Clone(v), nil
}

func (s *walStore) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

func (s *walStore) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("cluster: raft stable store: %s holds %d bytes, not a uint64", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func (s *walStore) Close() error { return s.wal.Close() }
