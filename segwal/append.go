package segwal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"time"

	"github.com/klauspost/compress/s2"
)

// Append writes records as one frame at the end of the log and returns the
// sequence of the last one (the first is last-len(records)+1). Under
// SyncAlways the frame is on disk when Append returns nil. Append with no
// records writes nothing and returns Last().
//
// A failed write or fsync poisons the log: that call and every later Append
// return the error, since the file's state is unknown. Reopen to recover.
func (l *Log) Append(records ...[]byte) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	if l.err != nil {
		return 0, l.err
	}
	if len(records) == 0 {
		return l.last, nil
	}
	frame, h, err := l.encodeFrame(records)
	if err != nil {
		return 0, err
	}
	active := &l.segs[len(l.segs)-1]
	if active.size > segmentHeaderSize && active.size+int64(len(frame)) > l.opts.SegmentSize {
		soft, err := l.rotate()
		switch {
		case soft:
			// No room for the next segment's file: the frame goes into the
			// active one, past SegmentSize, if its headroom holds it.
			l.rotateShort = fmt.Errorf("segwal: rotate: %w", err)
		case err != nil:
			l.err = fmt.Errorf("segwal: rotate: %w", err)
			return 0, l.err
		default:
			l.rotateShort = nil
		}
		active = &l.segs[len(l.segs)-1]
	}
	if _, err := l.active.Write(frame); err != nil {
		werr := fmt.Errorf("segwal: write %s: %w", active.path, err)
		if isNoSpace(err) && l.undoWrite(active.size) == nil {
			// Nothing of the frame is in the log, which stays usable:
			// the same Append succeeds once space is freed.
			l.writeShort = werr
			l.noteSpace()
			return 0, werr
		}
		l.err = werr
		return 0, l.err
	}
	l.writeShort = nil
	l.noteSpace()
	active.size += int64(len(frame))
	l.last = h.last()
	if l.opts.Sync == SyncAlways {
		if err := l.sync(); err != nil {
			l.last = h.first - 1 // the frame may or may not be on disk; the log is poisoned
			return 0, l.err
		}
	}
	l.stats.Appends++
	l.stats.Records += uint64(h.count)
	l.stats.FrameBytes += uint64(len(frame))
	if h.compressed() {
		l.stats.CompressedFrames++
	}
	return l.last, nil
}

// Sync forces appended frames to disk; only needed under SyncNone.
// Unlike Commit it always fsyncs, also when this process appended nothing
// (frames a crashed process left in the page cache).
func (l *Log) Sync() error {
	_, err := l.commit(true)
	return err
}

// Commit forces the frames appended so far to disk and returns the last
// sequence that is now durable. Under SyncNone it is the group commit:
// Append does not wait for the disk, so a writer can append the next frames
// while another goroutine's Commit waits for the fsync of the previous ones
// (Appends are not blocked by it), and one fsync then covers every frame
// written before it started. Commit returns at once when nothing new was
// appended. A failed fsync poisons the log, as in Append.
func (l *Log) Commit() (uint64, error) { return l.commit(false) }

func (l *Log) commit(force bool) (uint64, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, ErrClosed
	}
	if l.err != nil {
		l.mu.Unlock()
		return 0, l.err
	}
	last := l.last
	if last <= l.synced && !force {
		l.mu.Unlock()
		return last, nil
	}
	seg := l.segs[len(l.segs)-1]
	f, path := l.active, seg.path
	l.syncing++ // rotate keeps f open until this fsync returns
	l.mu.Unlock()

	start := time.Now()
	err := f.Sync()
	took := time.Since(start)

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.syncing--; l.syncing == 0 {
		for _, old := range l.retired {
			old.Close()
		}
		l.retired = nil
	}
	if l.synced >= last && err != nil {
		// A rotation or a Close synced these frames meanwhile (f may have
		// been closed by Close, failing this fsync for nothing).
		return last, nil
	}
	if err != nil {
		if l.err == nil {
			l.err = fmt.Errorf("segwal: sync %s: %w", path, err)
		}
		return 0, l.err
	}
	l.stats.observeSync(took)
	l.synced = max(l.synced, last)
	l.writeDurable(last, seg.first, seg.size) // a no-op when a rotation recorded more meanwhile
	return last, nil
}

func (l *Log) sync() error {
	start := time.Now()
	if err := l.active.Sync(); err != nil {
		l.err = fmt.Errorf("segwal: sync %s: %w", l.segs[len(l.segs)-1].path, err)
		return l.err
	}
	l.stats.observeSync(time.Since(start))
	l.synced = l.last
	seg := l.segs[len(l.segs)-1]
	l.writeDurable(l.last, seg.first, seg.size)
	return nil
}

// encodeFrame builds the frame for records in a reused buffer. The header
// is reserved in front of the payload so that nothing is copied twice.
func (l *Log) encodeFrame(records [][]byte) ([]byte, frameHeader, error) {
	rawLen := 0
	for _, r := range records {
		rawLen += uvarintLen(uint64(len(r))) + len(r)
	}
	if rawLen > MaxFrameBytes || len(records) > MaxFrameBytes {
		return nil, frameHeader{}, fmt.Errorf("%w: %d records of %d bytes in one Append, the limit is %d bytes", ErrFrameTooLarge, len(records), rawLen, MaxFrameBytes)
	}
	buf := l.buf[:0]
	if cap(buf) < frameHeaderSize+rawLen {
		buf = make([]byte, 0, frameHeaderSize+rawLen)
	}
	buf = buf[:frameHeaderSize]
	var recordBytes int
	for _, r := range records {
		buf = binary.AppendUvarint(buf, uint64(len(r)))
		buf = append(buf, r...)
		recordBytes += len(r)
	}
	if cap(buf) <= 4<<20 {
		l.buf = buf // keep buffers of ordinary size for the next call
	}
	l.stats.RecordBytes += uint64(recordBytes)

	h := frameHeader{count: uint32(len(records)), first: l.last + 1, raw: uint32(rawLen), stored: uint32(rawLen)}
	frame := buf
	if l.enc != nil && rawLen >= compressMinBytes {
		zb := l.zbuf
		if cap(zb) < frameHeaderSize+rawLen {
			zb = make([]byte, 0, frameHeaderSize+rawLen)
		}
		var z []byte
		flag := uint8(flagZstd)
		if rawLen >= s2MinBytes || rawLen < zstdMinBytes {
			need := frameHeaderSize + s2.MaxEncodedLen(rawLen)
			if cap(zb) < need {
				zb = make([]byte, 0, need)
			}
			enc := s2.Encode(zb[frameHeaderSize:need], buf[frameHeaderSize:]) // a prefix of zb[frameHeaderSize:]
			z, flag = zb[:frameHeaderSize+len(enc)], flagS2
		} else {
			z = l.enc.EncodeAll(buf[frameHeaderSize:], zb[:frameHeaderSize])
		}
		if stored := len(z) - frameHeaderSize; stored <= rawLen-rawLen/8 {
			h.flags |= flag
			h.stored = uint32(stored)
			frame = z
		}
		if cap(z) <= 4<<20 {
			l.zbuf = z
		}
	}
	putFrameHeader(frame, h)
	crc := crc32.Update(0, castagnoli, frame[:24])
	h.crc = crc32.Update(crc, castagnoli, frame[frameHeaderSize:])
	binary.LittleEndian.PutUint32(frame[24:], h.crc)
	return frame, h, nil
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// rotate seals the active segment and starts a new one named after the next
// sequence. The new segment's file is made first (as a temporary file,
// renamed into place once the old one is sealed): when that fails for lack
// of space, soft is true and nothing changed, the active segment stays.
func (l *Log) rotate() (soft bool, err error) {
	tmp, err := l.opts.prepare(l.dir, l.last+1)
	if err != nil {
		return isNoSpace(err), err
	}
	seg, err := l.switchTo(tmp)
	if err != nil {
		os.Remove(tmp)
		return false, err
	}
	f, err := l.opts.openFile(seg.path)
	if err != nil {
		return false, err
	}
	l.segs = append(l.segs, seg)
	l.active = f
	l.stats.Rotations++
	return false, nil
}

// switchTo seals and closes the active segment and renames the prepared
// segment tmp into place.
func (l *Log) switchTo(tmp string) (segment, error) {
	if s, ok := l.active.(interface{ seal() error }); ok {
		// Cut the preallocated zeros before the next segment exists; seal
		// fsyncs, which makes the frames durable too.
		if err := s.seal(); err != nil {
			return segment{}, err
		}
		l.synced = l.last
	} else if l.opts.Sync == SyncNone {
		if err := l.active.Sync(); err != nil {
			return segment{}, err
		}
		l.synced = l.last
	}
	if old := l.segs[len(l.segs)-1]; l.synced == l.last {
		l.writeDurable(l.last, old.first, old.size)
	}
	if l.syncing > 0 {
		l.retired = append(l.retired, l.active) // a Commit is in its fsync: close it after
	} else if err := l.active.Close(); err != nil {
		return segment{}, err
	}
	l.active = nil
	return installSegment(l.dir, tmp, l.last+1)
}

// undoWrite cuts what a failed write of the active segment left beyond
// size, so that the next write starts there.
func (l *Log) undoWrite(size int64) error {
	switch f := l.active.(type) {
	case interface{ undoWrite(int64) error }:
		return f.undoWrite(size)
	case interface{ Truncate(int64) error }:
		return f.Truncate(size)
	}
	return errors.New("segwal: cannot cut a partial write")
}

// NoSpace reports why the log is short of space: the last Append could
// not be written (nothing of it is in the log; retry once space is freed),
// or it was written into the headroom of preallocated space because more
// could not be allocated, or into the active segment past SegmentSize
// because the next segment could not be created. nil when none of these
// holds. A writer that sees it should stop taking new work until Reserve
// succeeds. The error wraps the ENOSPC.
// It does not wait for an Append in progress.
func (l *Log) NoSpace() error {
	if p := l.spaceErr.Load(); p != nil {
		return *p
	}
	return nil
}

// noteSpace publishes noSpace for NoSpace; called with l.mu held after
// every change of what it reports.
func (l *Log) noteSpace() {
	if err := l.noSpace(); err != nil {
		l.spaceErr.Store(&err)
	} else if l.spaceErr.Load() != nil {
		l.spaceErr.Store(nil)
	}
}

func (l *Log) noSpace() error {
	if l.writeShort != nil {
		return l.writeShort
	}
	if l.rotateShort != nil {
		return l.rotateShort
	}
	if s, ok := l.active.(interface{ spaceShort() error }); ok {
		return s.spaceShort()
	}
	return nil
}

// Reserve tries to restore what NoSpace reports missing: the preallocated
// headroom of the active segment and, when the last rotation failed for
// lack of space, the next segment. It returns nil once nothing is missing
// (NoSpace is nil, apart from a failed Append, which only its retry
// clears), the ENOSPC while space is still short, or the error that
// poisoned the log.
func (l *Log) Reserve() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.noteSpace()
	if l.closed {
		return ErrClosed
	}
	if l.err != nil {
		return l.err
	}
	if r, ok := l.active.(interface{ reserve() error }); ok {
		if err := r.reserve(); err != nil {
			if isNoSpace(err) {
				return fmt.Errorf("segwal: %w", err)
			}
			l.err = fmt.Errorf("segwal: %w", err)
			return l.err
		}
	}
	if l.rotateShort != nil {
		soft, err := l.rotate()
		if soft {
			l.rotateShort = fmt.Errorf("segwal: rotate: %w", err)
			return l.rotateShort
		}
		if err != nil {
			l.err = fmt.Errorf("segwal: rotate: %w", err)
			return l.err
		}
		l.rotateShort = nil
	}
	return nil
}

// s2MinBytes: frames with at least this many payload bytes are compressed
// with S2 instead of zstd. zstd's fastest level costs about 1 µs per
// 200-byte record here, as much as the fsync of a 512-record frame, while
// S2 is several times faster at a lower ratio (segwal benchmarks).
// Frames of up to ~64 task events (the common group commit) keep zstd's
// ratio of about 4x.
const s2MinBytes = 32 << 10

// zstdMinBytes: frames with fewer payload bytes are compressed with S2 as
// well. A zstd call has a fixed cost of several microseconds (its tables),
// 20-30 times S2's on frames of a few task events, for a few bytes less
// (2 tasks' events, 874 bytes: zstd 259, S2 284; 4 tasks: 328 and 442),
// and small frames are what an engine with few workers writes on every
// tick.
const zstdMinBytes = 4 << 10

// decodeS2 decompresses an S2 block of raw bytes, into buf when it is
// large enough. It checks the block's length varint and walks its
// operations (s2Walk) before it allocates: what it allocates is what the
// block really decodes to, never only what a header claims.
func decodeS2(src, buf []byte, raw int) ([]byte, error) {
	n, err := s2.DecodedLen(src)
	if err != nil {
		return nil, err
	}
	if n != raw {
		return nil, fmt.Errorf("s2 block decodes to %d bytes, header says %d", n, raw)
	}
	_, hdr := binary.Uvarint(src)
	if walked, err := s2Walk(src[hdr:], raw); err != nil {
		return nil, err
	} else if walked != raw {
		return nil, fmt.Errorf("s2 block's operations decode to %d bytes, header says %d", walked, raw)
	}
	if cap(buf) < raw {
		buf = make([]byte, raw)
	}
	return s2.Decode(buf[:raw], src)
}
