package segwal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// The durable point: the file DURABLE records the last record an fsync made
// durable, so that Open can tell a torn tail (a write the crash interrupted,
// after the last fsync: never acknowledged) from a log cut below what was
// synced (truncation or loss after the fact, which is damage).
//
//	off size
//	  0    8 magic "WTDURAB1"
//	  8    8 seq: the last record known durable
//	 16    8 the first sequence of the segment holding it (its name)
//	 24    8 the end offset of that record's frame in the segment
//	 32    4 CRC32C of bytes [0,32)
//
// It is rewritten in place (one 36-byte pwrite, no fsync of its own) after
// each fsync of the log. Written after the fsync, it never claims more than
// the disk holds; a crash can only leave it older than the truth (a weaker
// check), and a damaged or missing file disables the check (logged).
const (
	durableName  = "DURABLE"
	durableMagic = "WTDURAB1"
	durableSize  = 36
)

// ErrBelowDurable: the log ends, or a frame is damaged, before the last
// record that DURABLE says was fsynced: data was lost after it was written
// (a truncated or deleted segment), not torn by a crash.
var ErrBelowDurable = errors.New("segwal: records below the durable point are missing")

// durablePoint is the content of DURABLE; seq 0 means none is known.
type durablePoint struct {
	seq      uint64
	segFirst uint64
	end      int64
}

func (d durablePoint) encode() []byte {
	var b [durableSize]byte
	d.put(&b)
	return b[:]
}

// put encodes d into b (a buffer the Log reuses: no allocation per fsync).
func (d durablePoint) put(b *[durableSize]byte) {
	copy(b[:], durableMagic)
	binary.LittleEndian.PutUint64(b[8:], d.seq)
	binary.LittleEndian.PutUint64(b[16:], d.segFirst)
	binary.LittleEndian.PutUint64(b[24:], uint64(d.end))
	binary.LittleEndian.PutUint32(b[32:], crc32.Checksum(b[:32], castagnoli))
}

// readDurable reads dir/DURABLE. A missing file (a log written by an
// earlier build, or before its first fsync) is no durable point; a damaged
// one is reported as an error for the caller to log, and also gives none.
func readDurable(dir string) (durablePoint, error) {
	b, err := os.ReadFile(filepath.Join(dir, durableName))
	if errors.Is(err, os.ErrNotExist) {
		return durablePoint{}, nil
	}
	if err != nil {
		return durablePoint{}, err
	}
	if len(b) != durableSize || string(b[:8]) != durableMagic ||
		crc32.Checksum(b[:32], castagnoli) != binary.LittleEndian.Uint32(b[32:]) {
		return durablePoint{}, fmt.Errorf("%s: not a valid durable point (%d bytes); the truncation check is off until the next fsync rewrites it",
			filepath.Join(dir, durableName), len(b))
	}
	return durablePoint{seq: binary.LittleEndian.Uint64(b[8:]), segFirst: binary.LittleEndian.Uint64(b[16:]),
		end: int64(binary.LittleEndian.Uint64(b[24:]))}, nil
}

// belowDurable is the damage of a log whose valid records end at last
// (segment path, offset end) although DURABLE says d.seq was synced.
func belowDurable(dir string, d durablePoint, path string, end int64, last uint64, cause error) *CorruptionError {
	holder := filepath.Join(dir, segmentName(d.segFirst))
	where := fmt.Sprintf("in %s up to offset %d", holder, d.end)
	if holder != path {
		if _, err := os.Stat(holder); err != nil {
			where = fmt.Sprintf("in %s, which is missing", holder)
		}
	}
	err := fmt.Errorf("%w: the log ends at record %d (offset %d of this segment), but records up to %d were fsynced (%s, per %s): "+
		"the file was truncated or lost after it was written, which a crash cannot do", ErrBelowDurable, last, end, d.seq, where, durableName)
	if cause != nil {
		err = fmt.Errorf("%w; at that offset: %v", err, cause)
	}
	return &CorruptionError{Segment: path, Offset: end, Err: err}
}

// writeDurable records that the log is durable up to seq, which ends at
// offset end of the segment named segFirst. Called with l.mu held, after
// an fsync; it does not fsync (see above).
func (l *Log) writeDurable(seq, segFirst uint64, end int64) {
	if seq <= l.durable.seq {
		return
	}
	d := durablePoint{seq: seq, segFirst: segFirst, end: end}
	if l.durableFile == nil {
		f, err := os.OpenFile(filepath.Join(l.dir, durableName), os.O_RDWR|os.O_CREATE, 0o640)
		if err != nil {
			l.log.Warn("segwal: cannot record the durable point", "dir", l.dir, "err", err)
			return
		}
		l.durableFile = f
	}
	d.put(&l.durableBuf)
	if _, err := l.durableFile.WriteAt(l.durableBuf[:], 0); err != nil {
		l.log.Warn("segwal: cannot record the durable point", "dir", l.dir, "err", err)
		return
	}
	l.durable = d
}

// resetDurable rewrites DURABLE, durably, after a repair removed records:
// the old point would make the next Open refuse the repaired log.
func (l *Log) resetDurable() error {
	last, seg := l.last, l.segs[len(l.segs)-1]
	d := durablePoint{seq: last, segFirst: seg.first, end: seg.size}
	path := filepath.Join(l.dir, durableName)
	if err := os.WriteFile(path, d.encode(), 0o640); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return err
	}
	l.durable = d
	return nil
}
