package segwal

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Compression selects how frames are stored.
type Compression uint8

const (
	// CompressZstd compresses a frame with zstd when that saves at least an
	// eighth of its bytes; small frames stay raw. The default.
	CompressZstd Compression = iota
	// CompressNone stores every frame raw.
	CompressNone
)

// SyncPolicy selects when appended frames are forced to disk.
type SyncPolicy uint8

const (
	// SyncAlways fsyncs after every Append: when Append returns nil, its
	// records survive a crash or power loss. The default.
	SyncAlways SyncPolicy = iota
	// SyncNone never fsyncs on Append (only on rotation, Sync and Close).
	// For benchmarks and tests only: an acknowledged record can be lost.
	SyncNone
)

// Options configure a Log. The zero value is the production default.
type Options struct {
	// SegmentSize is the size in bytes at which the log starts a new segment
	// file. A frame never crosses segments; a frame larger than SegmentSize
	// gets a segment of its own. Default 64 MiB.
	SegmentSize int64
	// Compression of frames. Default CompressZstd.
	Compression Compression
	// CompressionLevel is the zstd level (1 fastest ... 4 best, as in
	// zstd.EncoderLevel). Default 1: it reaches ~5x on task events at a few
	// hundred ns per record.
	CompressionLevel int
	// Sync policy. Default SyncAlways.
	Sync SyncPolicy
	// Preallocate fills the active segment with zeros a few MiB ahead of
	// the writes and syncs with fdatasync, so that a sync does not also
	// journal a new file size: lower fsync latency for a group-committing
	// writer. Rotation and Close cut the zeros off; after a crash Open cuts
	// them as a torn tail (Recovery().TornTail, with ZeroFilled). Default off.
	Preallocate bool
	// Repair lets Open keep the longest valid prefix of a log that is
	// damaged before its tail, instead of failing. What it removes is in
	// Recovery().Removed and in the log output.
	Repair bool
	// Logger receives recovery reports (torn tail cut, repairs, temporary
	// files removed). Default slog.Default().
	Logger *slog.Logger

	// openFile opens the active segment for appends; tests inject faults.
	openFile func(path string) (appendFile, error)
	// prepare makes the next segment's file (prepareSegment); tests make
	// it fail for lack of space.
	prepare func(dir string, first uint64) (string, error)
}

const (
	defaultSegmentSize = 64 << 20
	// compressMinBytes: below this a frame is not worth a zstd call (a few
	// small records compress to about their own size).
	compressMinBytes = 512
)

// faultHook wraps the opener of segments in binaries built with the
// wasmtask_faults tag (faultinject.go), for end-to-end tests of a failing
// fsync; nil in every other build.
var faultHook func(open func(path string) (appendFile, error)) func(path string) (appendFile, error)

// appendFile is what the log needs of the active segment.
type appendFile interface {
	io.Writer
	Sync() error
	Close() error
}

func openAppend(path string) (appendFile, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
}

// Cut describes bytes that Open removed from the log.
type Cut struct {
	Segment string // segment file path
	Offset  int64  // the segment now ends here (0 when the file was deleted)
	Bytes   int64  // bytes removed
	Deleted bool   // the whole file was removed
	Reason  error  // the damage found at Offset (a *CorruptionError), if any
	// ZeroFilled: the bytes cut were all zeros (preallocated space left by
	// a crash, or a write whose data never reached the disk).
	ZeroFilled bool
}

// Recovery reports what Open found and changed.
type Recovery struct {
	// TornTail is set when the newest segment ended in a partial or damaged
	// frame (a write interrupted by a crash) and Open cut it off. Records in
	// that frame were never acknowledged under SyncAlways.
	TornTail *Cut
	// Removed lists what Options.Repair removed to keep the longest valid
	// prefix, oldest first.
	Removed []Cut
	// TempFilesRemoved lists leftovers of interrupted segment creation.
	TempFilesRemoved []string
	// Durable is the last record that the DURABLE file says was fsynced
	// (0: none recorded). A torn tail is cut only above it; the log ending
	// below it is damage (ErrBelowDurable).
	Durable uint64
	// Segments and Records found, and the time Open took.
	Segments int
	Records  uint64
	Duration time.Duration
}

// SyncBuckets are the upper bounds of Stats.SyncHist: 50µs to about 3.3s,
// each four times the one before, which spans a RAM disk to a stalled one.
var SyncBuckets = [...]time.Duration{50 * time.Microsecond, 200 * time.Microsecond, 800 * time.Microsecond,
	3200 * time.Microsecond, 12800 * time.Microsecond, 51200 * time.Microsecond, 204800 * time.Microsecond,
	819200 * time.Microsecond, 3276800 * time.Microsecond}

// observeSync records one fsync that took d.
func (s *Stats) observeSync(d time.Duration) {
	s.Syncs++
	s.SyncTime += d
	i := 0
	for i < len(SyncBuckets) && d > SyncBuckets[i] {
		i++
	}
	s.SyncHist[i]++
}

// Stats are counters since Open; cmd/wasmtask exports them as metrics.
type Stats struct {
	Appends          uint64
	Records          uint64
	RecordBytes      uint64 // record bytes handed to Append
	FrameBytes       uint64 // bytes written to segment files, headers included
	CompressedFrames uint64
	Syncs            uint64
	SyncTime         time.Duration
	// SyncHist counts fsyncs by latency: SyncHist[i] those that took at
	// most SyncBuckets[i] (and more than the bucket before), the last one
	// those slower than every bound. Not cumulative.
	SyncHist  [len(SyncBuckets) + 1]uint64
	Rotations uint64
	Segments  int
}

// Log is a segmented write-ahead log of opaque records numbered from 1.
// Its methods are safe for concurrent use; Append calls are serialized.
type Log struct {
	dir  string
	opts Options
	log  *slog.Logger
	enc  *zstd.Encoder
	dec  *zstd.Decoder

	mu      sync.Mutex
	lock    *os.File
	segs    []segment // oldest first; the last one is active
	active  appendFile
	last    uint64
	synced  uint64               // frames up to here are on disk
	syncing int                  // Commits in their fsync, outside mu
	retired []appendFile         // sealed segments kept open for them
	readers map[*Reader]struct{} // open Readers: TruncateFront keeps the segments they still read
	err     error                // sticky: a failed write or sync poisons the log
	// Lack of space, which does not poison the log (NoSpace): the last
	// Append's write failed, or the last rotation could not create the
	// next segment.
	writeShort, rotateShort error
	spaceErr                atomic.Pointer[error] // what NoSpace returns
	closed                  bool
	buf                     []byte // raw frame under construction
	zbuf                    []byte // compressed frame under construction
	stats                   Stats
	recovery                Recovery

	durable     durablePoint // what DURABLE says (written after each fsync)
	durableFile *os.File
	durableBuf  [durableSize]byte
}

// Open opens (creating if needed) the log in dir, locks the directory,
// removes temporary files of an interrupted rotation and checks every frame
// of every segment. A torn tail of the newest segment is cut off and
// reported in Recovery; any other damage makes Open fail with a
// *CorruptionError unless opts.Repair is set.
func Open(dir string, opts Options) (*Log, error) {
	start := time.Now()
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("segwal: open %s: %w", dir, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	l := &Log{dir: dir, opts: opts, log: opts.Logger, lock: lock}
	if err := l.init(); err != nil {
		l.closeQuietly()
		return nil, err
	}
	l.synced = l.last // what a previous process wrote: the page cache holds it whatever happened to that process
	l.recovery.Segments = len(l.segs)
	l.recovery.Records = l.last - l.segs[0].first + 1
	l.recovery.Duration = time.Since(start)
	return l, nil
}

func (o *Options) normalize() error {
	if o.SegmentSize < 0 {
		return fmt.Errorf("segwal: Options.SegmentSize must be positive, got %d", o.SegmentSize)
	}
	if o.SegmentSize == 0 {
		o.SegmentSize = defaultSegmentSize
	}
	if o.Compression > CompressNone {
		return fmt.Errorf("segwal: unknown Options.Compression %d", o.Compression)
	}
	if o.CompressionLevel < 0 || o.CompressionLevel > 4 {
		return fmt.Errorf("segwal: Options.CompressionLevel must be between 1 and 4, got %d", o.CompressionLevel)
	}
	if o.CompressionLevel == 0 {
		o.CompressionLevel = 1
	}
	if o.Sync > SyncNone {
		return fmt.Errorf("segwal: unknown Options.Sync %d", o.Sync)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.prepare == nil {
		o.prepare = prepareSegment
	}
	if o.openFile == nil {
		o.openFile = openAppend
		if o.Preallocate {
			o.openFile = openPrealloc
		}
		if faultHook != nil {
			o.openFile = faultHook(o.openFile)
		}
	}
	return nil
}

func (l *Log) init() error {
	var err error
	l.dec, err = newDecoder()
	if err != nil {
		return err
	}
	if l.opts.Compression == CompressZstd {
		l.enc, err = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.EncoderLevel(l.opts.CompressionLevel)),
			zstd.WithEncoderCRC(false), // the frame's CRC32C covers the bytes
			zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(1<<20), // keeps encoder memory small
			zstd.WithLowerEncoderMem(true))
		if err != nil {
			return fmt.Errorf("segwal: zstd encoder: %w", err)
		}
	}
	if err := l.recover(); err != nil {
		return err
	}
	active := &l.segs[len(l.segs)-1]
	l.active, err = l.opts.openFile(active.path)
	if err != nil {
		return fmt.Errorf("segwal: open segment %s: %w", active.path, err)
	}
	return nil
}

func newDecoder() (*zstd.Decoder, error) {
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderMaxMemory(MaxFrameBytes),
		zstd.WithDecoderConcurrency(0))
	if err != nil {
		return nil, fmt.Errorf("segwal: zstd decoder: %w", err)
	}
	return d, nil
}

// Dir returns the directory of the log.
func (l *Log) Dir() string { return l.dir }

// First returns the sequence of the oldest record kept. The log holds
// First()..Last(); it is empty when Last() < First().
func (l *Log) First() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.segs[0].first
}

// Last returns the sequence of the newest record, 0 when none was written.
func (l *Log) Last() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// Recovery reports what Open found and changed.
func (l *Log) Recovery() Recovery {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.recovery
}

// Stats returns counters since Open.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	s.Segments = len(l.segs)
	return s
}

// TruncateFront removes whole segments whose records all have sequences
// below seq; a segment holding seq or later, and the active segment, stay.
// Call it once a snapshot covers everything before seq. A segment that an
// open Reader has yet to read stays too; a later call removes it.
func (l *Log) TruncateFront(seq uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	// A segment goes once the next one starts at or before seq, and no
	// open Reader still has to read it: a Reader reads the segment that
	// starts at its pin and those after it.
	pin := l.readerPin()
	n := 0
	for n < len(l.segs)-1 && l.segs[n+1].first <= seq && l.segs[n+1].first <= pin {
		n++
	}
	if n == 0 {
		return nil
	}
	// Oldest first, so a crash in between leaves a log without a hole.
	for i := 0; i < n; i++ {
		if err := os.Remove(l.segs[i].path); err != nil && !errors.Is(err, os.ErrNotExist) {
			l.segs = l.segs[i:]
			return fmt.Errorf("segwal: truncate front: %w", err)
		}
	}
	l.segs = slices.Clone(l.segs[n:])
	if err := SyncDir(l.dir); err != nil {
		return fmt.Errorf("segwal: truncate front: sync dir: %w", err)
	}
	return nil
}

// Close syncs and closes the active segment and releases the directory lock.
// Close is idempotent.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	var err error
	if l.active != nil && l.err == nil && l.opts.Sync == SyncNone {
		if err = l.active.Sync(); err == nil {
			l.synced = l.last
			seg := l.segs[len(l.segs)-1]
			l.writeDurable(l.last, seg.first, seg.size)
		}
	}
	l.closeQuietly()
	return err
}

func (l *Log) closeQuietly() {
	l.closed = true
	if l.active != nil {
		l.active.Close()
		l.active = nil
	}
	for _, f := range l.retired {
		f.Close()
	}
	l.retired = nil
	if l.durableFile != nil {
		l.durableFile.Close()
		l.durableFile = nil
	}
	if l.enc != nil {
		l.enc.Close()
	}
	// l.dec is not closed: a Reader created before Close may still be
	// decoding with it (zstd.Decoder.Close is not safe concurrently with
	// DecodeAll), and it holds no goroutine, only memory for the GC.
	if l.lock != nil {
		l.lock.Close() // releases the flock
		l.lock = nil
	}
}
