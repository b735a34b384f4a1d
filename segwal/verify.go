package segwal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// VerifyReport is what Verify found in a log directory.
type VerifyReport struct {
	Dir        string
	Segments   int
	First      uint64 // first sequence (0 when there are no records)
	Last       uint64 // last valid sequence
	Bytes      int64  // bytes of valid data
	TempFiles  []string
	TornTail   *Cut  // damage Open would cut (the newest segment's tail)
	Damage     error // damage Open would refuse (a *CorruptionError), if any
	DamageSize int64 // bytes after the damage, Open with Repair would remove
	// Durable is the last record the DURABLE file says was fsynced (0: none
	// recorded, as in logs of earlier builds); DurableErr says why the
	// file was ignored, if it was.
	Durable    uint64
	DurableErr error
}

// OK reports whether Open would succeed without changing anything.
func (r VerifyReport) OK() bool { return r.TornTail == nil && r.Damage == nil }

// Verify checks a log directory without changing it, as Open would: every
// segment header and frame, and the sequence across segments. It fails
// with ErrLocked while a Log has the directory open (the running server).
// Damage is reported in the VerifyReport, not as an error.
func Verify(dir string) (VerifyReport, error) {
	rep := VerifyReport{Dir: dir}
	unlock, err := lockShared(dir)
	if err != nil {
		return rep, err
	}
	defer unlock()
	segs, temps, err := listDir(dir)
	if err != nil {
		return rep, fmt.Errorf("segwal: verify %s: %w", dir, err)
	}
	rep.TempFiles, rep.Segments = temps, len(segs)
	dp, derr := readDurable(dir)
	rep.Durable, rep.DurableErr = dp.seq, derr
	if len(segs) == 0 {
		if dp.seq > 0 {
			rep.Damage = belowDurable(dir, dp, filepath.Join(dir, segmentName(dp.segFirst)), 0, 0, errors.New("no segment files"))
		}
		return rep, nil
	}
	rep.First = segs[0].first
	next := segs[0].first
	for i, s := range segs {
		if s.first != next {
			rep.Damage = &CorruptionError{Segment: s.path, Err: fmt.Errorf(
				"%w: segment starts at sequence %d, but the records before it end at %d (a segment is missing or was truncated)",
				ErrSequenceGap, s.first, next-1)}
			rep.DamageSize = sizeFrom(segs[i:], 0)
			break
		}
		end, last, dmg, err := scanSegment(s.path, next)
		if err != nil {
			return rep, err
		}
		rep.Bytes += end
		next = last + 1
		if dmg == nil {
			continue
		}
		switch {
		case i == len(segs)-1 && dmg.torn && last >= dp.seq:
			fi, _ := os.Stat(s.path)
			rep.TornTail = &Cut{Segment: s.path, Offset: end, Bytes: fi.Size() - end, Reason: dmg.CorruptionError}
		case i == len(segs)-1 && dmg.torn:
			rep.Damage = belowDurable(dir, dp, s.path, end, last, dmg.Err)
			rep.DamageSize = sizeFrom(segs[i:], end)
		default:
			rep.Damage = dmg.CorruptionError
			rep.DamageSize = sizeFrom(segs[i:], end)
		}
		break
	}
	if rep.Damage == nil && rep.TornTail == nil && next-1 < dp.seq {
		s := segs[len(segs)-1]
		fi, _ := os.Stat(s.path)
		rep.Damage = belowDurable(dir, dp, s.path, fi.Size(), next-1, nil)
	}
	rep.Last = next - 1
	if rep.Last < rep.First {
		rep.First = 0
	}
	return rep, nil
}

func sizeFrom(segs []segment, skip int64) int64 {
	var n int64
	for _, s := range segs {
		if fi, err := os.Stat(s.path); err == nil {
			n += fi.Size()
		}
	}
	return n - skip
}

// ReadDir calls fn for every valid record of the log in dir, in order,
// without opening it for writing (for offline inspection: wasmtask wal
// dump). It stops at the first damage, returning it.
func ReadDir(dir string, fn func(seq uint64, rec []byte) error) error {
	rep, err := Verify(dir)
	if err != nil {
		return err
	}
	if rep.Last == 0 || rep.First == 0 {
		return rep.Damage
	}
	segs, _, err := listDir(dir)
	if err != nil {
		return err
	}
	// Sizes: only what Verify found valid, so a torn tail is not read.
	valid := rep.Bytes
	for i := range segs {
		fi, err := os.Stat(segs[i].path)
		if err != nil {
			return err
		}
		segs[i].size = min(fi.Size(), valid)
		valid -= segs[i].size
	}
	dec, err := newDecoder()
	if err != nil {
		return err
	}
	defer dec.Close()
	r := &Reader{segs: segs, limit: rep.Last, from: rep.First, dec: dec, next: segs[0].first}
	defer r.Close()
	for r.Next() {
		if err := fn(r.Seq(), r.Record()); err != nil {
			return err
		}
	}
	if r.Err() != nil {
		return r.Err()
	}
	return rep.Damage
}
