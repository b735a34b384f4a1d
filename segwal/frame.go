package segwal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

// On-disk layout; FORMAT.md is the prose version of these constants.
const (
	segmentMagic      = "WTSEGWAL"
	segmentVersion    = 1
	segmentHeaderSize = 16 // magic(8) version(4) crc32c(4)

	frameHeaderSize = 28
	frameTypeBatch  = 1 // the only frame type; 0 is never valid

	flagZstd = 1 << 0
	// flagS2: payload is S2-compressed (klauspost/compress/s2), used for
	// large frames, where zstd's CPU time before the fsync would cost more
	// than its better ratio saves. Bit 1 stays unused.
	flagS2 = 1 << 2

	knownFlags = flagZstd | flagS2

	// MaxFrameBytes bounds the decoded payload of one frame, so every length
	// read from disk is checked before anything is allocated. One Append may
	// carry at most this many bytes of records (plus their length prefixes).
	MaxFrameBytes = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameHeader is the decoded fixed part of a frame:
//
//	off size field
//	  0    1 type       1 = batch of records; 0 is invalid
//	  1    1 flags      bit 0: payload is zstd-compressed; other bits 0
//	  2    2 reserved   0
//	  4    4 count      records in the frame, >= 1
//	  8    8 first      sequence number of the first record
//	 16    4 stored     payload bytes on disk
//	 20    4 raw        payload bytes once decompressed (== stored when raw)
//	 24    4 crc        CRC32C of bytes [0,24) then the stored payload
type frameHeader struct {
	flags  uint8
	count  uint32
	first  uint64
	stored uint32
	raw    uint32
	crc    uint32
}

func (h frameHeader) size() int64      { return frameHeaderSize + int64(h.stored) }
func (h frameHeader) last() uint64     { return h.first + uint64(h.count) - 1 }
func (h frameHeader) compressed() bool { return h.flags&(flagZstd|flagS2) != 0 }

// putFrameHeader writes h into b[:frameHeaderSize] without the CRC.
func putFrameHeader(b []byte, h frameHeader) {
	b[0] = frameTypeBatch
	b[1] = h.flags
	b[2], b[3] = 0, 0
	binary.LittleEndian.PutUint32(b[4:], h.count)
	binary.LittleEndian.PutUint64(b[8:], h.first)
	binary.LittleEndian.PutUint32(b[16:], h.stored)
	binary.LittleEndian.PutUint32(b[20:], h.raw)
}

// parseFrameHeader decodes and range-checks a header. room is the number of
// bytes in the file from the header's start, so that no length is trusted
// before it is known to fit.
func parseFrameHeader(b []byte, room int64) (frameHeader, error) {
	if room < frameHeaderSize {
		return frameHeader{}, fmt.Errorf("%w: %d bytes left, a frame header needs %d", ErrShortFrame, room, frameHeaderSize)
	}
	h := frameHeader{
		flags:  b[1],
		count:  binary.LittleEndian.Uint32(b[4:]),
		first:  binary.LittleEndian.Uint64(b[8:]),
		stored: binary.LittleEndian.Uint32(b[16:]),
		raw:    binary.LittleEndian.Uint32(b[20:]),
		crc:    binary.LittleEndian.Uint32(b[24:]),
	}
	switch {
	case b[0] != frameTypeBatch:
		return h, fmt.Errorf("%w: frame type %d", ErrBadHeader, b[0])
	case h.flags&^knownFlags != 0 || h.flags == knownFlags:
		return h, fmt.Errorf("%w: unknown flags %#x", ErrBadHeader, h.flags)
	case b[2] != 0 || b[3] != 0:
		return h, fmt.Errorf("%w: reserved bytes %#x %#x", ErrBadHeader, b[2], b[3])
	case h.count == 0:
		return h, fmt.Errorf("%w: record count 0", ErrBadHeader)
	case h.first == 0 || h.first+uint64(h.count) < h.first:
		return h, fmt.Errorf("%w: first sequence %d with %d records", ErrBadHeader, h.first, h.count)
	case h.raw > MaxFrameBytes:
		return h, fmt.Errorf("%w: payload of %d bytes exceeds the %d byte limit", ErrBadHeader, h.raw, MaxFrameBytes)
	case h.count > h.raw:
		return h, fmt.Errorf("%w: %d records cannot fit in %d payload bytes", ErrBadHeader, h.count, h.raw)
	case !h.compressed() && h.stored != h.raw:
		return h, fmt.Errorf("%w: raw frame with stored length %d != length %d", ErrBadHeader, h.stored, h.raw)
	case h.compressed() && (h.stored == 0 || h.stored >= h.raw):
		return h, fmt.Errorf("%w: compressed length %d for %d raw bytes", ErrBadHeader, h.stored, h.raw)
	}
	if h.size() > room {
		return h, fmt.Errorf("%w: frame of %d bytes, %d bytes left in the file", ErrShortFrame, h.size(), room)
	}
	return h, nil
}

// window is a read buffer over a file (or any io.ReaderAt of known size)
// that serves byte ranges with few syscalls. A slice it returns is valid
// until the next call.
type window struct {
	r    io.ReaderAt
	size int64
	buf  []byte
	off  int64 // file offset of buf[0]
}

const windowChunk = 1 << 20

// bytes returns the file's bytes [off, off+n). Callers check that the range
// lies inside the file, so the buffer never grows past the file's size.
func (w *window) bytes(off int64, n int) ([]byte, error) {
	if off >= w.off && off+int64(n) <= w.off+int64(len(w.buf)) {
		s := off - w.off
		return w.buf[s : s+int64(n)], nil
	}
	want := int64(max(n, windowChunk))
	want = min(want, w.size-off)
	if want < int64(n) {
		return nil, io.ErrUnexpectedEOF
	}
	if int64(cap(w.buf)) < want {
		w.buf = make([]byte, want)
	}
	w.buf = w.buf[:want]
	if _, err := w.r.ReadAt(w.buf, off); err != nil && !(err == io.EOF && want == w.size-off) {
		w.buf = w.buf[:0]
		return nil, err
	}
	w.off = off
	return w.buf[:n], nil
}

// readFrame reads and checks the frame at off: header ranges and CRC. It
// returns io.EOF when off is the end of the file. The payload slice is valid
// until the next call on w.
func (w *window) readFrame(off int64) (frameHeader, []byte, error) {
	room := w.size - off
	if room == 0 {
		return frameHeader{}, nil, io.EOF
	}
	hb, err := w.bytes(off, int(min(room, frameHeaderSize)))
	if err != nil {
		return frameHeader{}, nil, err
	}
	h, err := parseFrameHeader(hb, room)
	if err != nil {
		return h, nil, err
	}
	crc := crc32.Update(0, castagnoli, hb[:24])
	payload, err := w.bytes(off+frameHeaderSize, int(h.stored))
	if err != nil {
		return h, nil, err
	}
	if got := crc32.Update(crc, castagnoli, payload); got != h.crc {
		return h, nil, fmt.Errorf("%w: stored %08x, computed %08x", ErrChecksum, h.crc, got)
	}
	return h, payload, nil
}

// nextValidFrame reports the offset of the first frame at or after start
// that passes every check, or -1. Open uses it to tell a torn tail (nothing
// valid after the damage) from damage in the middle of the log.
func (w *window) nextValidFrame(start int64) int64 {
	for off := start; off+frameHeaderSize <= w.size; off++ {
		b, err := w.bytes(off, frameHeaderSize)
		if err != nil {
			return -1
		}
		if b[0] != frameTypeBatch || b[1]&^knownFlags != 0 || b[2] != 0 || b[3] != 0 {
			continue // cheap rejection before the CRC
		}
		if _, _, err := w.readFrame(off); err == nil {
			return off
		}
	}
	return -1
}

// splitRecords checks that payload holds exactly count length-prefixed
// records and appends their [start,end) offsets to ends (pairs). A frame is
// checked whole before any record of it is handed out.
func splitRecords(payload []byte, count uint32, bounds []int) ([]int, error) {
	pos := 0
	for i := uint32(0); i < count; i++ {
		n, w := binary.Uvarint(payload[pos:])
		if w <= 0 {
			return bounds, fmt.Errorf("%w: record %d: bad length prefix", ErrBadPayload, i)
		}
		pos += w
		if n > uint64(len(payload)-pos) {
			return bounds, fmt.Errorf("%w: record %d: length %d past the payload end", ErrBadPayload, i, n)
		}
		bounds = append(bounds, pos, pos+int(n))
		pos += int(n)
	}
	if pos != len(payload) {
		return bounds, fmt.Errorf("%w: %d bytes left after %d records", ErrBadPayload, len(payload)-pos, count)
	}
	return bounds, nil
}
