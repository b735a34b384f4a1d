package segwal

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// preallocChunk is how far ahead of the writes a preallocated segment is
// filled with zeros.
const preallocChunk = 4 << 20

// preallocReserve is the headroom kept in zeros beyond the data: a frame
// that does not leave this much triggers the next chunk. When that fill
// fails for lack of space the frame still goes into the headroom (the
// write cannot fail there: its blocks are allocated), and the log reports
// NoSpace, so its writer can stop taking new work while what is running
// still finishes.
const preallocReserve = 1 << 20

var preallocZeros = make([]byte, preallocChunk)

// preallocFile is the active segment under Options.Preallocate. Writes go
// into space already filled with zeros and synced, so an fdatasync only
// has data to flush: on ext4, a sync that must also journal the file's new
// size took 1.5-2.5x as long (300-500 µs against 170-195 µs for 10-40 KB
// frames on this project's machines), and under the dispatch engine's load
// that latency, not the CPU, bounds the rate.
//
// The zeros beyond the data are never part of the log: seal cuts them off
// (on rotation and Close), and after a crash Open cuts them like a torn
// tail (type 0 is never a frame), reporting it in Recovery().TornTail.
type preallocFile struct {
	f      *os.File
	pos    int64 // end of the data: the next frame goes here
	filled int64 // zeros reach up to here
	sealed bool
	short  error // the last fill failed for lack of space (nil once one succeeds)
	// writeAt is f.WriteAt; tests stand in a disk that fills up.
	writeAt func(b []byte, off int64) (int, error)
}

func openPrealloc(path string) (appendFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &preallocFile{f: f, pos: fi.Size(), filled: fi.Size(), writeAt: f.WriteAt}, nil
}

// Write writes b at the end of the data. When the zeros ahead cannot be
// allocated, b still goes in: into the headroom, or past it when the disk
// has room for b alone (spaceShort tells the log either way). A write
// that fails leaves pos where it was, so the next one overwrites whatever
// part of b got out (and a crash leaves it beyond the last frame, a torn
// tail): the log is unchanged, undoWrite has nothing to do.
func (p *preallocFile) Write(b []byte) (int, error) {
	if err := p.fill(p.pos + int64(len(b)) + preallocReserve); err != nil && !isNoSpace(err) {
		return 0, err
	}
	n, err := p.writeAt(b, p.pos)
	if err != nil {
		return 0, err
	}
	p.pos += int64(n)
	p.filled = max(p.filled, p.pos)
	return n, nil
}

// fill writes zeros up to at least upTo, a chunk at a time (one write of
// zeros every few MiB; the next sync flushes them with the frame and the
// size change, once per chunk). It records a failure for lack of space in
// short, and clears short when it reaches upTo.
func (p *preallocFile) fill(upTo int64) error {
	for p.filled < upTo {
		if _, err := p.writeAt(preallocZeros, p.filled); err != nil {
			err = fmt.Errorf("preallocate: %w", err)
			if isNoSpace(err) {
				p.short = err
			}
			return err
		}
		p.filled += preallocChunk
	}
	p.short = nil
	return nil
}

// reserve restores the headroom after a fill that failed for lack of space.
func (p *preallocFile) reserve() error { return p.fill(p.pos + preallocReserve) }

// spaceShort is the last fill's failure for lack of space, nil when the
// headroom is whole.
func (p *preallocFile) spaceShort() error { return p.short }

func (p *preallocFile) undoWrite(int64) error { return nil }

// Sync makes the data written so far durable: fdatasync on Linux,
// F_FULLFSYNC on macOS, fsync elsewhere (datasync_*.go).
func (p *preallocFile) Sync() error { return datasync(p.f) }

// seal cuts the zeros off and makes that durable: a sealed segment must
// end at its last frame (zeros there would be damage in an older segment).
func (p *preallocFile) seal() error {
	if p.sealed {
		return nil
	}
	if err := p.f.Truncate(p.pos); err != nil {
		return err
	}
	if err := p.f.Sync(); err != nil {
		return err
	}
	p.sealed, p.filled = true, p.pos
	return nil
}

func (p *preallocFile) Close() error {
	err := p.seal()
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// isNoSpace reports a write that failed for lack of space (ENOSPC, or a
// quota's EDQUOT): nothing about the file is in doubt, and the same write
// succeeds once space is freed.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
