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
//   - Reads by index are served from memory: every entry's index, term and
//     segwal sequence stay in memory, and the data of the newest ones up
//     to walStoreMemory bytes (raft reads back the tail it replicates). An
//     older entry's data is read back from segwal (a lagging follower's
//     catch-up), through a Reader kept where the last read stopped, since
//     such reads go forward one entry after another.
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
	// StoreLogs' records, kept for the next write (under write): segwal
	// copies them into its frame, and a buffer per write was a tenth of a
	// three-node cluster's allocations.
	scratch     []byte
	scratchRecs [][]byte

	mu      sync.RWMutex
	first   uint64 // raft index of entries[0] (0: no entries)
	entries []storedEntry
	onDisk  int   // entries[:onDisk] hold no data in memory (read back)
	inMem   int64 // bytes of data and extensions held in memory

	readMu    sync.Mutex
	readers   []*backReader // at most maxBackReaders, kept between reads
	readsBack uint64        // entries read back from segwal (under readMu)

	stableMu sync.Mutex
	stable   map[string][]byte
}

type storedEntry struct {
	log raft.Log // without Data and Extensions once on disk only
	seq uint64   // segwal sequence of its record
}

func (e *storedEntry) size() int64 { return int64(len(e.log.Data) + len(e.log.Extensions)) }

// backReader reads old entries back in order: next is the sequence its
// next record has.
type backReader struct {
	r    *segwal.Reader
	next uint64
}

// maxBackReaders: one per follower catching up at a time, in a 3-node
// cluster.
const maxBackReaders = 2

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

// walStoreMemory bounds the entry data held in memory. raft keeps up to
// TrailingLogs + SnapshotThreshold (18k) entries, each a frame of up to
// hundreds of events under load: hundreds of MB if all were held.
var walStoreMemory int64 = 64 << 20

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
		s.inMem += s.entries[len(s.entries)-1].size()
		s.evictLocked()
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

// evictLocked drops the data of the oldest entries that hold it until the
// rest fit in walStoreMemory (the newest entry always stays).
func (s *walStore) evictLocked() {
	for s.inMem > walStoreMemory && s.onDisk < len(s.entries)-1 {
		e := &s.entries[s.onDisk]
		s.inMem -= e.size()
		e.log.Data, e.log.Extensions = nil, nil
		s.onDisk++
	}
}

// forget subtracts the entries' data held in memory (they are dropped).
func (s *walStore) forget(from, to int) {
	for i := max(from, s.onDisk); i < to; i++ {
		s.inMem -= s.entries[i].size()
	}
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
		s.first, s.entries, s.onDisk, s.inMem = 0, nil, 0, 0
	case lo <= s.first:
		n := int(hi - s.first + 1)
		s.forget(0, n)
		// Copy the rest: the backing array would otherwise keep every
		// compacted entry reachable.
		s.entries = slices.Clone(s.entries[n:])
		s.first = hi + 1
		s.onDisk = max(s.onDisk-n, 0)
	default:
		// A suffix (hi >= last). A middle part is not something raft
		// does; the log stays consistent by cutting the suffix from lo
		// (raft reads such a hole as missing entries anyway).
		n := int(lo - s.first)
		s.forget(n, len(s.entries))
		clear(s.entries[n:])
		s.entries = s.entries[:n]
		s.onDisk = min(s.onDisk, n)
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
	if len(s.entries) == 0 || index < s.first || index > s.lastLocked() {
		s.mu.RUnlock()
		return raft.ErrLogNotFound
	}
	i := int(index - s.first)
	e, onDisk := s.entries[i], i < s.onDisk
	s.mu.RUnlock()
	if !onDisk {
		*l = e.log
		return nil
	}
	err := s.readBack(e.seq, l)
	if err == nil && (l.Index != index || l.Term != e.log.Term) {
		err = fmt.Errorf("cluster: raft log: record %d holds entry %d of term %d, expected %d of term %d", e.seq, l.Index, l.Term, index, e.log.Term)
	}
	if err != nil {
		// Compacted meanwhile (its segment removed)?
		s.mu.RLock()
		gone := len(s.entries) == 0 || index < s.first
		s.mu.RUnlock()
		if gone {
			return raft.ErrLogNotFound
		}
		return err
	}
	return nil
}

// readBack reads the entry stored in record seq from segwal.
func (s *walStore) readBack(seq uint64, l *raft.Log) error {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	// A reader that stopped at or before seq goes on from there; else the
	// least useful one is replaced.
	var br *backReader
	for _, r := range s.readers {
		if r.next <= seq && (br == nil || r.next > br.next) {
			br = r
		}
	}
	for attempt := 0; ; attempt++ {
		if br == nil {
			r, err := s.wal.NewReader(seq)
			if err != nil {
				return fmt.Errorf("cluster: raft log: read back record %d: %w", seq, err)
			}
			br = &backReader{r: r, next: seq}
			if len(s.readers) == maxBackReaders {
				s.readers[0].r.Close()
				s.readers = s.readers[1:]
			}
			s.readers = append(s.readers, br)
		}
		for br.next <= seq && br.r.Next() {
			br.next = br.r.Seq() + 1
			if br.r.Seq() == seq {
				rec := br.r.Record()
				if len(rec) == 0 || rec[0] != recEntry {
					return fmt.Errorf("cluster: raft log: record %d is not an entry", seq)
				}
				s.readsBack++
				err := decodeEntry(rec[1:], l)
				if len(rec) > 1<<20 {
					// A large entry (a plugin's module): the reader's buffer
					// holds its frame; do not keep that between reads.
					s.dropReader(br)
				}
				return err
			}
		}
		// The reader ended (it sees the records that existed when it was
		// made) or failed: drop it, and try once with a new one.
		err := br.r.Err()
		s.dropReader(br)
		if attempt > 0 || err != nil {
			if err == nil {
				err = fmt.Errorf("record %d not found", seq)
			}
			return fmt.Errorf("cluster: raft log: read back: %w", err)
		}
		br = nil
	}
}

func (s *walStore) dropReader(br *backReader) {
	br.r.Close()
	s.readers = slices.DeleteFunc(s.readers, func(r *backReader) bool { return r == br })
}

// closeReaders closes the kept readers (they hold segments TruncateFront
// would remove). The caller holds readMu.
func (s *walStore) closeReaders() {
	for _, r := range s.readers {
		r.r.Close()
	}
	s.readers = nil
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
	buf := slices.Grow(s.scratch[:0], size)
	records := slices.Grow(s.scratchRecs[:0], len(logs))[:len(logs)]
	for i, l := range logs {
		start := len(buf)
		buf = appendEntry(buf, l)
		records[i] = buf[start:len(buf):len(buf)]
	}
	last, err := s.wal.Append(records...)
	clear(records)
	if cap(buf) <= maxScratch {
		s.scratch, s.scratchRecs = buf[:0], records[:0]
	}
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
		s.inMem += s.entries[len(s.entries)-1].size()
	}
	s.evictLocked()
	return nil
}

// maxScratch bounds the buffer StoreLogs keeps between writes.
const maxScratch = 4 << 20

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
	// before, and delete records that only concern them. Readers kept for
	// reads back would hold their segments.
	s.readMu.Lock()
	s.closeReaders()
	err := s.wal.TruncateFront(keepFrom)
	s.readMu.Unlock()
	if err != nil {
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

func (s *walStore) Close() error {
	s.readMu.Lock()
	s.closeReaders()
	s.readMu.Unlock()
	return s.wal.Close()
}
