package segwal

import (
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// Reader iterates over records in sequence order:
//
//	r, err := log.NewReader(from)
//	defer r.Close()
//	for r.Next() {
//		use(r.Seq(), r.Record())
//	}
//	err = r.Err()
//
// It sees the records that were in the log when it was created. Any damage
// it meets is a *CorruptionError from Err.
type Reader struct {
	l     *Log
	pin   atomic.Uint64 // first sequence of the segment it reads or opens next (Log.readerPin)
	segs  []segment     // snapshot at creation
	limit uint64        // last sequence at creation
	from  uint64
	dec   *zstd.Decoder

	i      int // index of the current segment in segs
	f      *os.File
	w      window
	off    int64
	bounds []int  // record [start,end) pairs of the current frame
	data   []byte // payload of the current frame
	zbuf   []byte
	k      int    // next record of the current frame
	first  uint64 // sequence of the current frame's first record
	next   uint64 // sequence the next frame must start at

	seq uint64
	rec []byte
	err error
}

// NewReader returns a Reader positioned before record from. from 0 means
// First(). Asking for a sequence that TruncateFront removed is ErrCompacted;
// past Last()+1 is ErrOutOfRange.
func (l *Log) NewReader(from uint64) (*Reader, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	first := l.segs[0].first
	switch {
	case from == 0:
		from = first
	case from < first:
		return nil, fmt.Errorf("%w: replay from %d, the log now starts at %d", ErrCompacted, from, first)
	case from > l.last+1:
		return nil, fmt.Errorf("%w: replay from %d, the last record is %d", ErrOutOfRange, from, l.last)
	}
	r := &Reader{l: l, segs: slices.Clone(l.segs), limit: l.last, from: from, dec: l.dec}
	// Start in the newest segment whose first sequence is <= from.
	r.i = sort.Search(len(r.segs), func(i int) bool { return r.segs[i].first > from }) - 1
	r.i = max(r.i, 0)
	r.next = r.segs[r.i].first
	r.pin.Store(r.next)
	if l.readers == nil {
		l.readers = map[*Reader]struct{}{}
	}
	l.readers[r] = struct{}{}
	return r, nil
}

// readerPin returns the lowest pin of the open Readers (MaxUint64: none).
// The caller holds l.mu.
func (l *Log) readerPin() uint64 {
	pin := uint64(math.MaxUint64)
	for r := range l.readers {
		pin = min(pin, r.pin.Load())
	}
	return pin
}

// Replay calls fn for every record from sequence from (0 = First()) to the
// Last() at the time of the call, in order. rec is only valid during the
// call. An error from fn stops the replay and is returned as is.
func (l *Log) Replay(from uint64, fn func(seq uint64, rec []byte) error) error {
	r, err := l.NewReader(from)
	if err != nil {
		return err
	}
	defer r.Close()
	for r.Next() {
		if err := fn(r.Seq(), r.Record()); err != nil {
			return err
		}
	}
	return r.Err()
}

// Next advances to the next record and reports whether there is one.
func (r *Reader) Next() bool {
	for r.err == nil {
		if r.k < len(r.bounds)/2 {
			seq := r.first + uint64(r.k)
			b := r.bounds[2*r.k:]
			r.k++
			if seq < r.from {
				continue
			}
			if seq > r.limit {
				break
			}
			r.seq, r.rec = seq, r.data[b[0]:b[1]:b[1]]
			return true
		}
		if r.next > r.limit {
			break
		}
		if !r.nextFrame() {
			break
		}
	}
	r.rec = nil
	return false
}

// Seq returns the sequence of the current record.
func (r *Reader) Seq() uint64 { return r.seq }

// Record returns the current record; it is valid until the next call to Next.
func (r *Reader) Record() []byte { return r.rec }

// Err returns the error that stopped Next, if any.
func (r *Reader) Err() error { return r.err }

// Close releases the open segment file and the Reader's hold on the
// segments it had yet to read (see TruncateFront). Always Close a Reader.
func (r *Reader) Close() error {
	r.l.mu.Lock()
	delete(r.l.readers, r)
	r.l.mu.Unlock()
	if r.f != nil {
		err := r.f.Close()
		r.f = nil
		return err
	}
	return nil
}

// nextFrame loads the next frame that holds records >= from, opening the
// next segment when the current one ends.
func (r *Reader) nextFrame() bool {
	for {
		if r.f == nil {
			if r.i >= len(r.segs) {
				return false
			}
			if !r.openSegment() {
				return false
			}
		}
		if r.off >= r.w.size {
			r.f.Close()
			r.f = nil
			r.i++
			if r.i < len(r.segs) {
				r.pin.Store(r.segs[r.i].first) // the segments before may go now
			}
			continue
		}
		h, payload, err := r.w.readFrame(r.off)
		if err != nil {
			return r.fail(r.off, err)
		}
		if h.first != r.next {
			return r.fail(r.off, fmt.Errorf("%w: frame starts at sequence %d, expected %d", ErrSequenceGap, h.first, r.next))
		}
		r.off += h.size()
		r.next = h.last() + 1
		r.k, r.bounds = 0, r.bounds[:0]
		if h.last() < r.from {
			continue // before the start: skipped without decoding
		}
		r.first = h.first
		data := payload
		if h.compressed() {
			// Nothing is allocated for h.raw before the payload shows it
			// decodes to that much: a forged header (its CRC valid) costs
			// no more memory than its payload can produce. zstd bounds what
			// it allocates by its input; decodeS2 walks the block first.
			if h.flags&flagS2 != 0 {
				data, err = decodeS2(payload, r.zbuf, int(h.raw))
			} else {
				data, err = r.dec.DecodeAll(payload, r.zbuf[:0])
			}
			if err != nil {
				return r.fail(r.off-h.size(), fmt.Errorf("%w: decompress: %v", ErrBadPayload, err))
			}
			if len(data) != int(h.raw) {
				return r.fail(r.off-h.size(), fmt.Errorf("%w: decompressed to %d bytes, header says %d", ErrBadPayload, len(data), h.raw))
			}
			r.zbuf = data
		}
		r.bounds, err = splitRecords(data, h.count, r.bounds)
		if err != nil {
			return r.fail(r.off-h.size(), err)
		}
		r.data = data
		return true
	}
}

func (r *Reader) openSegment() bool {
	s := r.segs[r.i]
	f, err := os.Open(s.path)
	if err != nil {
		r.err = fmt.Errorf("segwal: replay: %w", err)
		return false
	}
	r.f = f
	// Read only what was valid when the reader was created; an append in
	// progress may be extending the file.
	r.w = window{r: f, size: s.size, buf: r.w.buf[:0]}
	if err := checkSegmentHeader(&r.w); err != nil {
		return r.fail(0, err)
	}
	r.off = segmentHeaderSize
	if s.first != r.next {
		return r.fail(0, fmt.Errorf("%w: segment starts at sequence %d, expected %d", ErrSequenceGap, s.first, r.next))
	}
	return true
}

func (r *Reader) fail(off int64, err error) bool {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = fmt.Errorf("%w: %v", ErrShortFrame, err)
	}
	if isCorruption(err) {
		err = &CorruptionError{Segment: r.segs[r.i].path, Offset: off, Err: err}
	} else {
		err = fmt.Errorf("segwal: replay %s: %w", r.segs[r.i].path, err)
	}
	r.err = err
	return false
}
