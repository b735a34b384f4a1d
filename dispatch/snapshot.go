package dispatch

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
	"github.com/wasmtask/wasmtask/segwal"

	"github.com/wasmtask/wasmtask/dispatch/machine"
)

// Snapshot file: snap-<20-digit WAL sequence>.snap
//
//	off size
//	  0    8 magic "WTSNAP01"
//	  8    8 applied: the WAL sequence the snapshot covers
//	 16    8 payload length
//	 24    4 CRC32C of the payload
//	 28    … payload: zstd of the CBOR of snapshotBody
//
// Written to a .tmp file, fsynced, renamed, and the directory fsynced.
const (
	snapMagic      = "WTSNAP01"
	snapHeaderSize = 28
	snapPrefix     = "snap-"
	snapSuffix     = ".snap"
	maxSnapBytes   = 4 << 30
)

var snapCRC = crc32.MakeTable(crc32.Castagnoli)

type snapshotter struct {
	dir     string
	retain  int
	running atomic.Bool
}

func snapName(seq uint64) string { return fmt.Sprintf("%s%020d%s", snapPrefix, seq, snapSuffix) }

// write persists cborBytes (the state at applied) atomically and removes
// snapshots beyond retain. It returns the oldest sequence still covered by
// a kept snapshot, which bounds what the WAL may drop.
func (sn *snapshotter) write(applied uint64, cborBytes []byte) (uint64, error) {
	return sn.writeFrom(applied, func(w io.Writer) error {
		_, err := w.Write(cborBytes)
		return err
	})
}

// writeFrom is write for a state that fill writes out as CBOR: it is
// compressed on its way to the file, so no copy of the whole snapshot is
// ever held in memory.
func (sn *snapshotter) writeFrom(applied uint64, fill func(io.Writer) error) (uint64, error) {
	if err := os.MkdirAll(sn.dir, 0o750); err != nil {
		return 0, err
	}
	final := filepath.Join(sn.dir, snapName(applied))
	tmp := final + ".tmp"
	if err := writeSnapshotFile(tmp, applied, fill); err != nil {
		os.Remove(tmp)
		return 0, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return 0, err
	}
	if err := segwal.SyncDir(sn.dir); err != nil {
		return 0, err
	}
	seqs, _ := sn.list()
	for len(seqs) > sn.retain {
		os.Remove(filepath.Join(sn.dir, snapName(seqs[0])))
		seqs = seqs[1:]
	}
	if len(seqs) == 0 {
		return 0, nil
	}
	return seqs[0], nil
}

// writeSnapshotFile writes the snapshot file format at path: the header
// (its length and CRC filled in once the payload is written), then the
// zstd-compressed CBOR that fill writes; then fsyncs it.
func writeSnapshotFile(path string, applied uint64, fill func(io.Writer) error) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	var header [snapHeaderSize]byte
	if _, err := f.Write(header[:]); err != nil {
		return err
	}
	payload := &payloadWriter{w: bufio.NewWriterSize(f, 1<<20)}
	enc, err := zstd.NewWriter(payload, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(false),
		zstd.WithEncoderConcurrency(1))
	if err != nil {
		return err
	}
	if err := fill(enc); err != nil {
		enc.Close()
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	if err := payload.w.Flush(); err != nil {
		return err
	}
	if payload.n > maxSnapBytes {
		return fmt.Errorf("snapshot of %d bytes exceeds the %d byte limit", payload.n, uint64(maxSnapBytes))
	}
	copy(header[:], snapMagic)
	binary.LittleEndian.PutUint64(header[8:], applied)
	binary.LittleEndian.PutUint64(header[16:], payload.n)
	binary.LittleEndian.PutUint32(header[24:], payload.crc)
	if _, err := f.WriteAt(header[:], 0); err != nil {
		return err
	}
	return f.Sync()
}

// payloadWriter counts and checksums the payload on its way to the file.
type payloadWriter struct {
	w   *bufio.Writer
	n   uint64
	crc uint32
}

func (p *payloadWriter) Write(b []byte) (int, error) {
	p.crc = crc32.Update(p.crc, snapCRC, b)
	p.n += uint64(len(b))
	return p.w.Write(b)
}

// size returns the size of the snapshot file for seq (0 if there is none).
func (sn *snapshotter) size(seq uint64) int64 {
	fi, err := os.Stat(filepath.Join(sn.dir, snapName(seq)))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// list returns snapshot sequences, oldest first, and removes leftover .tmp files.
func (sn *snapshotter) list() ([]uint64, error) {
	entries, err := os.ReadDir(sn.dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var seqs []uint64
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") {
			os.Remove(filepath.Join(sn.dir, name))
			continue
		}
		digits, ok := strings.CutPrefix(name, snapPrefix)
		if !ok {
			continue
		}
		digits, ok = strings.CutSuffix(digits, snapSuffix)
		if !ok {
			continue
		}
		if seq, err := strconv.ParseUint(digits, 10, 64); err == nil {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	return seqs, nil
}

// loadNewest returns the newest snapshot that is intact and that the WAL
// can continue (its sequence is at least walFirst-1), or nil. Damaged
// snapshots are reported, not fatal: recovery falls back to an older one
// or to the WAL alone.
func (sn *snapshotter) loadNewest(walFirst uint64) (*State, []error) {
	seqs, err := sn.list()
	if err != nil {
		return nil, []error{err}
	}
	var errs []error
	for i := len(seqs) - 1; i >= 0; i-- {
		path := filepath.Join(sn.dir, snapName(seqs[i]))
		s, err := readSnapshot(path, seqs[i])
		if err == nil && s.Applied+1 < walFirst {
			err = fmt.Errorf("covers up to %d but the WAL starts at %d", s.Applied, walFirst)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("snapshot %s: %w", path, err))
			continue
		}
		return s, errs
	}
	return nil, errs
}

func readSnapshot(path string, seq uint64) (*State, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < snapHeaderSize || string(b[:8]) != snapMagic {
		return nil, errors.New("not a snapshot file (bad magic or short header)")
	}
	applied := binary.LittleEndian.Uint64(b[8:])
	n := binary.LittleEndian.Uint64(b[16:])
	if applied != seq || n != uint64(len(b)-snapHeaderSize) || n > maxSnapBytes {
		return nil, fmt.Errorf("header says sequence %d and %d payload bytes, file name says %d and holds %d", applied, n, seq, len(b)-snapHeaderSize)
	}
	if got, want := crc32.Checksum(b[snapHeaderSize:], snapCRC), binary.LittleEndian.Uint32(b[24:]); got != want {
		return nil, fmt.Errorf("checksum mismatch: stored %08x, computed %08x", want, got)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxSnapBytes))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	raw, err := dec.DecodeAll(b[snapHeaderSize:], nil)
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	s, err := machine.DecodeState(raw)
	if err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if s.Applied != seq {
		return nil, fmt.Errorf("body covers %d, header %d", s.Applied, seq)
	}
	return s, nil
}

// snapshotDue reports whether enough was written since the last snapshot:
// Config.SnapshotEvery events and SnapshotStateRatio events per task and
// run, or SnapshotEveryBytes record bytes and SnapshotStateRatio times the
// last snapshot's size. Either bounds what the next recovery replays; the
// ratio bounds the cost of snapshots per event (a snapshot costs in
// proportion to the state).
func (e *Engine) snapshotDue() bool {
	if e.cfg.SnapshotEvery <= 0 {
		return false
	}
	e.countFailedSnapshot()
	if e.sinceSnapshot < e.snapRetryFloor {
		return false
	}
	r := e.cfg.SnapshotStateRatio
	byEvents := e.sinceSnapshot >= e.cfg.SnapshotEvery &&
		(r <= 0 || float64(e.sinceSnapshot) >= r*float64(len(e.state.Tasks)+len(e.state.Runs)))
	byBytes := e.cfg.SnapshotEveryBytes > 0 && e.sinceSnapshotBytes >= e.cfg.SnapshotEveryBytes &&
		(r <= 0 || float64(e.sinceSnapshotBytes) >= r*float64(e.lastSnapshotBytes.Load()))
	return byEvents || byBytes
}

// countFailedSnapshot adds back the counts a failed snapshot took, so that
// the cadence counts from the last snapshot written, and defers the retry
// by a tenth of the interval. Called in the loop.
func (e *Engine) countFailedSnapshot() {
	if e.snapFailed.Swap(false) {
		e.sinceSnapshot += e.snapTakenEvents
		e.sinceSnapshotBytes += e.snapTakenBytes
		e.snapRetryFloor = e.sinceSnapshot + max(e.cfg.SnapshotEvery/10, 1)
	}
}

// snapshot copies the state in the loop, and encodes and persists it on
// another goroutine; then the WAL drops segments the oldest kept snapshot covers.
// One snapshot at a time; a tick that finds one running skips.
func (e *Engine) snapshot() chan error {
	if e.wal == nil {
		done := make(chan error, 1)
		done <- errors.New("dispatch: the engine runs on a replicated log (cluster mode), whose owner writes the snapshots")
		return done
	}
	if !e.snapshots.running.CompareAndSwap(false, true) {
		return nil
	}
	e.countFailedSnapshot()
	e.payloads.BeginSweep() // what is put or pinned from now on is kept
	capture := machine.CaptureState(e.state)
	addedAtCapture := e.inlineAdded.Load()
	applied := e.state.Applied
	e.snapTakenEvents, e.snapTakenBytes = e.sinceSnapshot, e.sinceSnapshotBytes
	e.sinceSnapshot, e.sinceSnapshotBytes, e.snapRetryFloor = 0, 0, 0
	done, finished := make(chan error, 1), make(chan struct{})
	e.snapFinished = finished
	e.workers.Add(1)
	go func() {
		defer e.workers.Done()
		defer close(finished)
		defer e.snapshots.running.Store(false)
		// The capture may hold a tick whose fsync is in flight; a snapshot
		// must never get ahead of the WAL it continues.
		if e.waitDurable(applied); e.durable.Load() < applied {
			e.snapFailed.Store(true)
			e.payloads.EndSweep()
			done <- fmt.Errorf("dispatch: snapshot %d: %w: its events never became durable", applied, ErrStopped)
			return
		}
		oldest, err := e.snapshots.writeFrom(applied, capture.EncodeTo)
		if err != nil {
			e.snapFailed.Store(true) // the loop counts from the last snapshot written
			e.log.Error("dispatch: snapshot write failed", "seq", applied, "err", err)
			if IsNoSpace(err) {
				e.disk.enter(err)
			}
			e.payloads.EndSweep()
			done <- fmt.Errorf("dispatch: snapshot %d: %w", applied, err)
			return
		}
		e.lastSnapshotBytes.Store(e.snapshots.size(applied))
		// TruncateFront only removes sealed segments, which the loop no
		// longer writes, so it is safe beside the loop's appends.
		if err := e.wal.TruncateFront(oldest + 1); err != nil && !errors.Is(err, segwal.ErrClosed) {
			e.log.Error("dispatch: WAL truncate after snapshot failed", "err", err)
		}
		e.sweepPayloads(capture)
		e.inlineHeld.Store(capture.InlineBytes() + e.inlineAdded.Load() - addedAtCapture)
		done <- nil
	}()
	return done
}

// snapshotNow serves Engine.Snapshot in the loop: it waits for a snapshot
// being written (an explicit request may block the loop that long), then
// writes one of the current state and answers once it is on disk.
func (e *Engine) snapshotNow(replies []chan error) {
	if e.snapshots.running.Load() && e.snapFinished != nil {
		<-e.snapFinished
	}
	done := e.snapshot()
	go func() {
		var err error
		if done == nil {
			err = errors.New("dispatch: a snapshot is already being written")
		} else {
			err = <-done
		}
		for _, r := range replies {
			r <- err
		}
	}()
}

// Snapshot writes a snapshot of the current state now (for a backup, or
// before a planned restart) and returns once it is on disk.
func (e *Engine) Snapshot(ctx context.Context) error {
	ch := make(chan error, 1)
	if err := e.send(ctx, snapshotInput{reply: ch}); err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-e.done:
		return e.stoppedErr()
	case <-ctx.Done():
		return ctx.Err()
	}
}

type snapshotInput struct{ reply chan error }
