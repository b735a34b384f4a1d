package segwal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// recover rebuilds the segment list from dir and checks every frame. It is
// the only code that changes existing segment files: it cuts a torn tail of
// the newest segment, and under Options.Repair it cuts the log back to its
// longest valid prefix. Everything it changes is logged and recorded in
// l.recovery.
func (l *Log) recover() error {
	segs, temps, err := listDir(l.dir)
	if err != nil {
		return fmt.Errorf("segwal: open %s: %w", l.dir, err)
	}
	for _, name := range temps {
		if err := os.Remove(filepath.Join(l.dir, name)); err != nil {
			return fmt.Errorf("segwal: remove leftover %s: %w", name, err)
		}
		l.recovery.TempFilesRemoved = append(l.recovery.TempFilesRemoved, name)
		l.log.Info("segwal: removed leftover temporary file", "dir", l.dir, "file", name)
	}
	dp, err := readDurable(l.dir)
	if err != nil {
		l.log.Warn("segwal: ignoring the durable point", "dir", l.dir, "err", err)
	}
	l.recovery.Durable = dp.seq
	if len(segs) == 0 && dp.seq > 0 {
		damage := belowDurable(l.dir, dp, filepath.Join(l.dir, segmentName(dp.segFirst)), 0, 0, errors.New("no segment files"))
		if !l.opts.Repair {
			return l.refuse(damage)
		}
		l.recordRemoval(Cut{Segment: damage.Segment, Reason: damage})
	}
	if len(segs) == 0 {
		seg, err := createSegment(l.dir, 1)
		if err != nil {
			return fmt.Errorf("segwal: %w", err)
		}
		l.segs = []segment{seg}
		return l.keepDurable(dp)
	}

	next := segs[0].first // the sequence the next frame must carry
	for i := range segs {
		s := &segs[i]
		isLast := i == len(segs)-1
		if s.first != next {
			damage := &CorruptionError{Segment: s.path, Err: fmt.Errorf(
				"%w: segment starts at sequence %d, but the records before it end at %d (a segment is missing or was truncated)",
				ErrSequenceGap, s.first, next-1)}
			return l.repairFrom(segs, i, 0, damage, next)
		}
		end, last, damage, err := scanSegment(s.path, next)
		if err != nil {
			return err
		}
		s.size = end
		if damage == nil {
			next = last + 1
			continue
		}
		if isLast && damage.torn && last >= dp.seq {
			if err := l.cutTornTail(s, damage.CorruptionError); err != nil {
				return err
			}
			next = last + 1
			break
		}
		why := damage.CorruptionError
		if isLast && damage.torn { // it looks torn, but lies below what was synced
			why = belowDurable(l.dir, dp, s.path, end, last, why.Err)
		}
		if err := l.repairFrom(segs, i, end, why, last+1); err != nil {
			return err
		}
		return l.keepDurable(dp)
	}
	if next-1 < dp.seq {
		s := segs[len(segs)-1]
		damage := belowDurable(l.dir, dp, s.path, s.size, next-1, nil)
		if !l.opts.Repair {
			return l.refuse(damage)
		}
		l.recordRemoval(Cut{Segment: s.path, Offset: s.size, Reason: damage}) // nothing to remove: the records are gone
	}
	l.segs = segs
	l.last = next - 1
	return l.keepDurable(dp)
}

// keepDurable takes over the durable point read from disk, rewriting it
// when a repair left the log below it.
func (l *Log) keepDurable(dp durablePoint) error {
	l.durable = dp
	if dp.seq > l.last {
		if err := l.resetDurable(); err != nil {
			return fmt.Errorf("segwal: repair: rewrite %s: %w", durableName, err)
		}
	}
	return nil
}

// refuse is Open's error for damage it will not cut without Repair.
func (l *Log) refuse(why *CorruptionError) error {
	return fmt.Errorf("%w; nothing was changed: the damage is not a torn tail, so records after it may have been acknowledged. "+
		"Inspect the log (wasmtask wal verify), then open it once with Options.Repair (wasmtask serve --repair) to keep the longest valid prefix", why)
}

// damage is a corruption found by scanSegment; torn means nothing valid
// follows it in the file, so it may be an interrupted write.
type damage struct {
	*CorruptionError
	torn bool
}

// scanSegment checks the segment at path, whose first frame must carry
// sequence next. It returns the end of the valid data, the last sequence in
// it (next-1 if none) and the first damage found.
func scanSegment(path string, next uint64) (end int64, last uint64, dmg *damage, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("segwal: open segment: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, nil, fmt.Errorf("segwal: open segment: %w", err)
	}
	w := &window{r: f, size: fi.Size()}
	last = next - 1
	if err := checkSegmentHeader(w); err != nil {
		if !isCorruption(err) {
			return 0, last, nil, fmt.Errorf("segwal: read %s: %w", path, err)
		}
		return 0, last, &damage{CorruptionError: &CorruptionError{Segment: path, Offset: 0, Err: err}}, nil
	}
	off := int64(segmentHeaderSize)
	for {
		h, _, err := w.readFrame(off)
		if err == io.EOF {
			return off, last, nil, nil
		}
		if err == nil && h.first != last+1 {
			err = fmt.Errorf("%w: frame starts at sequence %d, expected %d", ErrSequenceGap, h.first, last+1)
			return off, last, &damage{CorruptionError: &CorruptionError{Segment: path, Offset: off, Err: err}}, nil
		}
		if err != nil {
			if !isCorruption(err) {
				return 0, last, nil, fmt.Errorf("segwal: read %s: %w", path, err)
			}
			d := &damage{CorruptionError: &CorruptionError{Segment: path, Offset: off, Err: err}}
			if valid := w.nextValidFrame(off + 1); valid >= 0 {
				d.Err = fmt.Errorf("%w (a valid frame follows at offset %d, so this is not a torn write)", err, valid)
			} else {
				d.torn = true
			}
			return off, last, d, nil
		}
		last = h.last()
		off += h.size()
	}
}

func isCorruption(err error) bool {
	for _, s := range []error{ErrShortFrame, ErrBadHeader, ErrChecksum, ErrBadPayload, ErrSequenceGap, ErrBadSegmentHeader, ErrBelowDurable} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// cutTornTail truncates the newest segment back to its last whole frame.
func (l *Log) cutTornTail(s *segment, why *CorruptionError) error {
	zeros := allZeros(s.path, s.size)
	removed, err := truncateFile(s.path, s.size)
	if err != nil {
		return fmt.Errorf("segwal: cut torn tail of %s: %w", s.path, err)
	}
	l.recovery.TornTail = &Cut{Segment: s.path, Offset: s.size, Bytes: removed, Reason: why, ZeroFilled: zeros}
	if zeros {
		l.log.Info("segwal: cut the zero-filled tail of the newest segment (preallocated space, or a write that never reached the disk)",
			"segment", s.path, "offset", s.size, "bytes", removed)
		return nil
	}
	l.log.Warn("segwal: cut torn tail of the newest segment (an interrupted write after the last fsync; its records were never acknowledged)",
		"segment", s.path, "offset", s.size, "bytes", removed, "reason", why.Err, "durable_seq", l.recovery.Durable)
	return nil
}

// repairFrom handles damage in segs[i] at offset end. Without Repair it
// fails naming the file and offset. With Repair it keeps segs[:i] and the
// valid part of segs[i] (end bytes; the file is deleted when nothing valid
// is left) and deletes every later segment.
func (l *Log) repairFrom(segs []segment, i int, end int64, why *CorruptionError, next uint64) error {
	if !l.opts.Repair {
		return l.refuse(why)
	}
	keep := segs[:i]
	for j := i; j < len(segs); j++ {
		s := segs[j]
		if j == i && end > segmentHeaderSize {
			removed, err := truncateFile(s.path, end)
			if err != nil {
				return fmt.Errorf("segwal: repair %s: %w", s.path, err)
			}
			s.size = end
			keep = append(keep, s)
			l.recordRemoval(Cut{Segment: s.path, Offset: end, Bytes: removed, Reason: why})
			continue
		}
		fi, err := os.Stat(s.path)
		if err != nil {
			return fmt.Errorf("segwal: repair: %w", err)
		}
		if err := os.Remove(s.path); err != nil {
			return fmt.Errorf("segwal: repair: %w", err)
		}
		c := Cut{Segment: s.path, Bytes: fi.Size(), Deleted: true}
		if j == i {
			c.Reason = why
		}
		l.recordRemoval(c)
	}
	if err := SyncDir(l.dir); err != nil {
		return fmt.Errorf("segwal: repair: sync dir: %w", err)
	}
	if len(keep) == 0 {
		seg, err := createSegment(l.dir, next)
		if err != nil {
			return fmt.Errorf("segwal: repair: %w", err)
		}
		keep = append(keep, seg)
	}
	l.segs = keep
	l.last = next - 1
	return nil
}

func (l *Log) recordRemoval(c Cut) {
	l.recovery.Removed = append(l.recovery.Removed, c)
	args := []any{"segment", c.Segment, "offset", c.Offset, "bytes", c.Bytes, "deleted", c.Deleted}
	if c.Reason != nil {
		args = append(args, "reason", c.Reason)
	}
	l.log.Warn("segwal: repair removed data after the longest valid prefix", args...)
}

// truncateFile cuts path to size bytes, syncs it and returns how many bytes
// were removed.
// allZeros reports whether the file at path holds only zero bytes from off on.
func allZeros(path string, off int64) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := f.ReadAt(buf, off)
		for _, b := range buf[:n] {
			if b != 0 {
				return false
			}
		}
		off += int64(n)
		if err != nil {
			return errors.Is(err, io.EOF)
		}
	}
}

func truncateFile(path string, size int64) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if err := f.Truncate(size); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	return fi.Size() - size, nil
}
