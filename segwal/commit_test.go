package segwal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// powerFS hands out segment files that remember, per path, how many bytes
// an fsync made durable: the size before the fsync started (bytes written
// during it may or may not be covered). Unlike faultFS it does not hold a
// lock across the fsync, so Writes and Syncs overlap as they do for real.
type powerFS struct {
	mu      sync.Mutex
	durable map[string]int64
}

func (fs *powerFS) open(path string) (appendFile, error) {
	f, size, err := openForAppend(path)
	if err != nil {
		return nil, err
	}
	fs.mark(path, size) // created whole (tmp, fsync, rename) or reopened
	return &powerFile{fs: fs, f: f, path: path}, nil
}

func (fs *powerFS) mark(path string, size int64) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.durable == nil {
		fs.durable = map[string]int64{}
	}
	fs.durable[path] = max(fs.durable[path], size)
}

// powerLoss cuts every segment to what an fsync made durable.
func (fs *powerFS) powerLoss(t *testing.T, dir string) {
	t.Helper()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	paths, err := filepath.Glob(filepath.Join(dir, "*"+segmentSuffix))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		size, ok := fs.durable[p]
		if !ok {
			t.Fatalf("segment %s was never opened for appends", p)
		}
		if err := os.Truncate(p, size); err != nil {
			t.Fatal(err)
		}
	}
}

type powerFile struct {
	fs   *powerFS
	f    *os.File
	path string
}

func (pf *powerFile) Write(p []byte) (int, error) { return pf.f.Write(p) }
func (pf *powerFile) Close() error                { return pf.f.Close() }

func (pf *powerFile) Sync() error {
	fi, err := pf.f.Stat()
	if err != nil {
		return err
	}
	if err := pf.f.Sync(); err != nil {
		return err
	}
	pf.fs.mark(pf.path, fi.Size())
	return nil
}

// TestCommitOverlapsAppends runs the group commit the dispatch engine uses:
// one goroutine appends under SyncNone while another commits, through
// segment rotations. Every Commit result is a sequence already appended,
// never lower than the previous one; after a simulated power loss (each
// segment cut to what its fsyncs covered) every record up to the highest
// committed sequence is there.
func TestCommitOverlapsAppends(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"raw", Options{Compression: CompressNone, SegmentSize: 8 << 10}},
		{"zstd", Options{SegmentSize: 4 << 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			fs := &powerFS{}
			o := tc.opts
			o.Sync = SyncNone
			o.openFile = fs.open
			l := mustOpen(t, dir, o)
			in := batches(newRand(3), 400, 4, 100, halfBytes)

			var appended sync.Map // seq of each frame's last record -> true, once Append returned
			done := make(chan struct{})
			var committed uint64
			var commitErr error
			var commits int
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-done:
						return
					default:
					}
					seq, err := l.Commit()
					if err != nil {
						commitErr = err
						return
					}
					if seq < committed {
						commitErr = fmt.Errorf("Commit returned %d after %d", seq, committed)
						return
					}
					if _, ok := appended.Load(seq); seq != 0 && !ok {
						commitErr = fmt.Errorf("Commit returned %d, not the end of an Append that returned", seq)
						return
					}
					committed = seq
					commits++
				}
			}()
			var want []record
			for _, b := range in {
				// Store before Append so that the committer never sees a
				// sequence this map does not hold yet.
				next := l.Last() + uint64(len(b))
				appended.Store(next, true)
				last, err := l.Append(b...)
				if err != nil {
					t.Fatal(err)
				}
				if last != next {
					t.Fatalf("Append returned %d, want %d", last, next)
				}
				want = append(want, recordsFrom(last-uint64(len(b))+1, b)...)
			}
			close(done)
			wg.Wait()
			if commitErr != nil {
				t.Fatal(commitErr)
			}
			if commits == 0 || committed == 0 {
				t.Fatalf("the committer made %d commits up to %d", commits, committed)
			}
			if s := l.Stats(); s.Rotations < 3 {
				t.Fatalf("only %d rotations: the test must rotate under Commit", s.Rotations)
			}
			l.closeQuietly() // a crash: no final fsync
			fs.powerLoss(t, dir)

			l2 := mustOpen(t, dir, Options{Compression: o.Compression, SegmentSize: o.SegmentSize})
			defer l2.Close()
			if l2.Last() < committed {
				t.Fatalf("after power loss Last() = %d, below the committed %d", l2.Last(), committed)
			}
			checkReplay(t, l2, 1, want[:l2.Last()])
		})
	}
}

// TestCommitFailurePoisons: a failed fsync in Commit poisons the log as a
// failed Append does, and a Commit with nothing new does not fsync.
func TestCommitFailurePoisons(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fs := &faultFS{faultPlan: faultPlan{failSyncAt: 2}}
	l := mustOpen(t, dir, Options{Sync: SyncNone, openFile: fs.open})
	defer l.Close()
	if _, err := l.Append([]byte("a")); err != nil {
		t.Fatal(err)
	}
	if seq, err := l.Commit(); err != nil || seq != 1 {
		t.Fatalf("Commit() = %d, %v; want 1, nil", seq, err)
	}
	if seq, err := l.Commit(); err != nil || seq != 1 || l.Stats().Syncs != 1 {
		t.Fatalf("Commit() with nothing new = %d, %v after %d fsyncs; want 1, nil after 1", seq, err, l.Stats().Syncs)
	}
	if _, err := l.Append([]byte("b")); err != nil {
		t.Fatal(err)
	}
	_, err := l.Commit()
	if !errors.Is(err, errInjected) {
		t.Fatalf("Commit() = %v, want the injected fsync error", err)
	}
	if _, err2 := l.Append([]byte("c")); err2 != err {
		t.Fatalf("Append after the failed Commit: %v, want %v", err2, err)
	}
	if _, err2 := l.Commit(); err2 != err {
		t.Fatalf("Commit after the failed Commit: %v, want %v", err2, err)
	}
}
