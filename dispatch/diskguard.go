package dispatch

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMinFreeDisk is Config.MinFreeDisk's default: 64 MiB, at most 5%
// of the filesystem's size (so a small filesystem is not full from the
// start).
const DefaultMinFreeDisk = 64 << 20

// DiskStatus is the engine's view of its data dir's disk (Engine.DiskStatus).
type DiskStatus struct {
	// Full: new submissions are refused (ErrDiskFull) because free space
	// is below MinFree or a write failed for lack of space. Err says which.
	Full bool
	Err  *DiskFullError
	// Stalled: the loop holds events it could not write at all (not even
	// into the WAL's preallocated headroom) and retries every check; reads
	// meanwhile answer from memory.
	Stalled   bool
	FreeBytes int64 // at the last check; -1 before the first or when statfs fails
	MinFree   int64 // the threshold (0: off, ENOSPC alone)
	// Episodes counts the times the engine started refusing submissions.
	Episodes uint64
}

// diskGuard watches the data dir's free space and turns a full disk into a
// degraded mode: new submissions are refused with a *DiskFullError, what
// was accepted goes on (its events land in the WAL's preallocated
// headroom), and submissions are accepted again once space is back. It
// logs one line when an episode starts and one when it ends.
type diskGuard struct {
	dir      string
	min      int64 // refuse below this (0: off)
	resumeAt int64 // accept again from this (min plus 1/16, against flapping)
	every    time.Duration
	log      *slog.Logger
	free     func(dir string) (avail, size int64, err error)

	full      atomic.Pointer[DiskFullError]
	stalled   atomic.Bool
	freeBytes atomic.Int64
	episodes  atomic.Uint64

	mu        sync.Mutex // serializes enter and leave, so each logs once
	since     time.Time  // when the episode started
	statfsErr bool       // a failing statfs was logged
}

func newDiskGuard(dir string, min int64, every time.Duration, log *slog.Logger, free func(string) (int64, int64, error)) *diskGuard {
	g := &diskGuard{dir: dir, min: max(min, 0), every: every, log: log, free: free}
	g.resumeAt = g.min + g.min/16
	g.freeBytes.Store(-1)
	return g
}

// refused is the error new work gets while the disk is full, or nil.
func (g *diskGuard) refused() error {
	if f := g.full.Load(); f != nil {
		return f
	}
	return nil
}

// measure reads the free space (and remembers it), -1 when statfs fails.
func (g *diskGuard) measure() int64 {
	avail, _, err := g.free(g.dir)
	if err != nil {
		g.mu.Lock()
		if !g.statfsErr {
			g.statfsErr = true
			g.log.Warn("dispatch: cannot read the data dir's free space; the disk is watched through write errors alone", "dir", g.dir, "err", err)
		}
		g.mu.Unlock()
		g.freeBytes.Store(-1)
		return -1
	}
	g.freeBytes.Store(avail)
	return avail
}

// enter starts (or continues) an episode; cause is the ENOSPC that did,
// nil for the threshold.
func (g *diskGuard) enter(cause error) {
	free := g.measure()
	g.mu.Lock()
	defer g.mu.Unlock()
	prev := g.full.Load()
	if prev != nil && cause == nil {
		cause = prev.Cause // the episode's cause stays until it ends
	}
	g.full.Store(&DiskFullError{Dir: g.dir, FreeBytes: free, MinFree: g.min, Cause: cause})
	if prev == nil {
		g.episodes.Add(1)
		g.since = time.Now()
		args := []any{"dir", g.dir, "free", FormatBytes(max(free, 0)), "min_free", FormatBytes(g.min)}
		if cause != nil {
			args = append(args, "err", cause)
		}
		g.log.Warn("dispatch: disk full: refusing new submissions (reads and running attempts go on) until space is freed", args...)
	}
}

// leave ends the episode.
func (g *diskGuard) leave(free int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.full.Load() == nil {
		return
	}
	g.full.Store(nil)
	freeText := "unknown"
	if free >= 0 {
		freeText = FormatBytes(free)
	}
	g.log.Info("dispatch: disk space is back: accepting submissions again", "dir", g.dir, "free", freeText,
		"refused_for", time.Since(g.since).Round(time.Millisecond))
}

// enospcResumeBytes: an episode that a write's ENOSPC started ends only
// once this much is free (whatever the threshold, which may be off): room
// for the WAL to grow by a preallocation chunk, not a few bytes that the
// next write fills again.
const enospcResumeBytes = 4 << 20

// check is one look at the disk: below the threshold an episode starts;
// in one, it ends once free space reaches resumeAt (enospcResumeBytes at
// least, when an ENOSPC started it) and the WAL's headroom
// could be restored (reserve), unless the loop is stalled on a frame it
// could not write (its own retry ends that).
func (g *diskGuard) check(reserve func() error) {
	free := g.measure()
	if free >= 0 && free < g.min {
		g.enter(nil)
		return
	}
	resumeAt := g.resumeAt
	if f := g.full.Load(); f != nil && f.Cause != nil {
		resumeAt = max(resumeAt, enospcResumeBytes)
	}
	if g.full.Load() == nil || g.stalled.Load() || (free >= 0 && free < resumeAt) {
		if g.full.Load() != nil {
			g.enter(nil) // refresh the free space the error names
		}
		return
	}
	if err := reserve(); err != nil {
		if IsNoSpace(err) {
			g.enter(err)
		}
		return
	}
	g.leave(free)
}

// watch runs check every g.every until done closes.
func (g *diskGuard) watch(reserve func() error, done <-chan struct{}) {
	t := time.NewTicker(g.every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			g.check(reserve)
		case <-done:
			return
		}
	}
}

func (g *diskGuard) status() DiskStatus {
	f := g.full.Load()
	return DiskStatus{Full: f != nil, Err: f, Stalled: g.stalled.Load(), FreeBytes: g.freeBytes.Load(), MinFree: g.min,
		Episodes: g.episodes.Load()}
}

// diskFullFrom is for the other stores of the data dir (the payload
// store): an ENOSPC from their writes starts a disk-full episode, as one
// from the WAL does, and becomes the *DiskFullError the API answers with
// 507; any other error is returned as it is.
func (e *Engine) diskFullFrom(err error) error {
	if err == nil || !IsNoSpace(err) {
		return err
	}
	e.disk.enter(err)
	if f := e.disk.full.Load(); f != nil {
		return f
	}
	return NewDiskFullError(e.cfg.Dir, err)
}
