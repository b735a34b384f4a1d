package payload

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/wasmtask/wasmtask/dispatch/machine"
	"github.com/wasmtask/wasmtask/segwal"
)

// RefPrefix starts every reference: the hash that names a payload.
const RefPrefix = "sha256:"

// Ref returns the reference of b: "sha256:" and the hex SHA-256 of b.
func Ref(b []byte) string {
	sum := sha256.Sum256(b)
	return RefPrefix + hex.EncodeToString(sum[:])
}

// ValidRef reports whether ref has the form Ref returns (the check the
// state machine applies to a spec's input_ref).
func ValidRef(ref string) bool { return machine.ValidPayloadRef(ref) }

// DamagedError is a payload file that is missing, cut short or altered.
type DamagedError struct {
	Path   string
	Ref    string
	Reason string
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("payload file %s (%s) is damaged: %s; restore it from a backup of the data dir, or resubmit the task", e.Path, e.Ref, e.Reason)
}

// Store is a content-addressed payload directory. Its methods are safe
// for concurrent use.
type Store struct {
	dir string

	mu      sync.Mutex
	pins    map[string]int      // payloads put and not yet handed to the state
	marking bool                // a sweep is under way: remember what is put or pinned
	marked  map[string]struct{} // payloads pinned when the sweep began or put since

	files, bytes atomic.Int64 // what the directory holds (for metrics)
	syncs        atomic.Int64 // fsyncs of files and directories (tests count them)

	// renames serializes the stat-then-rename of writers of the same
	// payload (striped by reference), so two concurrent Puts of the same
	// bytes count one file, not two.
	renames [16]sync.Mutex
}

// Open opens (creating it if needed) the store in dir and removes the
// temporary files a crash left behind.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("payload store: %w", err)
	}
	s := &Store{dir: dir, pins: map[string]int{}}
	err := s.walk(func(path string, ref string, size int64) {
		s.files.Add(1)
		s.bytes.Add(size)
	}, func(tmp string) { os.Remove(tmp) })
	if err != nil {
		return nil, fmt.Errorf("payload store %s: %w", dir, err)
	}
	return s, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// Path returns the file of ref.
func (s *Store) Path(ref string) string {
	h := strings.TrimPrefix(ref, RefPrefix)
	if len(h) < 2 {
		return filepath.Join(s.dir, h)
	}
	return filepath.Join(s.dir, h[:2], h)
}

// Syncs returns how many fsyncs (of files and directories) the store made.
func (s *Store) Syncs() int64 { return s.syncs.Load() }

// Usage returns the number of payload files and their bytes.
func (s *Store) Usage() (files, bytes int64) { return s.files.Load(), s.bytes.Load() }

// Put stores b durably and returns its reference, pinned (see Unpin): the
// file is written, fsynced, renamed into place and its directory fsynced
// before Put returns. A payload already stored is checked and not
// written again. Errors wrap the file system's (errors.Is(err,
// syscall.ENOSPC) on a full disk).
func (s *Store) Put(b []byte) (string, error) {
	refs, errs := s.PutMany([][]byte{b})
	return refs[0], errs[0]
}

// PutMany stores every payload of bs durably, as Put stores one, and
// returns their references (pinned), or for a payload that could not be
// stored its error (its reference is then ""). Every file is written and
// fsynced (a few at once: the file system commits concurrent fsyncs
// together), renamed into place, and each directory that got one is
// fsynced once, all before PutMany returns: a batch of n payloads costs n
// file fsyncs and one per directory touched (at most 256), not 2n in a row.
func (s *Store) PutMany(bs [][]byte) (refs []string, errs []error) {
	refs, errs = make([]string, len(bs)), make([]error, len(bs))
	staged := make([]stagedFile, len(bs))
	parallel(len(bs), func(i int) {
		ref := Ref(bs[i])
		s.Pin(ref)
		staged[i] = s.stage(ref, bs[i])
	})
	dirs := map[string][]int{} // directory -> the payloads placed in it
	for i := range staged {
		f := &staged[i]
		if f.err == nil {
			f.err = s.place(f)
		}
		if f.err == nil {
			dir := filepath.Dir(f.path)
			dirs[dir] = append(dirs[dir], i)
		}
	}
	order := make([]string, 0, len(dirs))
	for dir := range dirs {
		order = append(order, dir)
	}
	parallel(len(order), func(k int) {
		if err := s.syncDir(order[k]); err != nil {
			for _, i := range dirs[order[k]] {
				staged[i].err = fmt.Errorf("payload store: %w", err)
			}
		}
	})
	for i, f := range staged {
		if f.err != nil {
			s.Unpin(f.ref)
			errs[i] = f.err
			continue
		}
		refs[i] = f.ref
	}
	return refs, errs
}

// stagedFile is a payload written to its temporary file (or found stored
// already) and not yet renamed into place.
type stagedFile struct {
	ref, path string
	tmp       string // "" when the file is there with these bytes already
	size      int64
	err       error
}

// stage writes b to a temporary file beside its place and fsyncs it,
// unless the file of ref holds b already.
func (s *Store) stage(ref string, b []byte) stagedFile {
	f := stagedFile{ref: ref, path: s.Path(ref), size: int64(len(b))}
	if existing, err := os.ReadFile(f.path); err == nil {
		if bytes.Equal(existing, b) {
			// Written by an earlier Put, maybe one still between its rename
			// and its directory fsync: PutMany fsyncs the directory too.
			return f
		}
		// A damaged copy: replace it.
	}
	if err := os.MkdirAll(filepath.Dir(f.path), 0o750); err != nil {
		f.err = fmt.Errorf("payload store: %w", err)
		return f
	}
	var suffix [8]byte
	rand.Read(suffix[:])
	f.tmp = f.path + ".tmp-" + hex.EncodeToString(suffix[:])
	if err := s.writeSynced(f.tmp, b); err != nil {
		os.Remove(f.tmp)
		f.err = fmt.Errorf("payload store: write %s: %w", f.tmp, err)
	}
	return f
}

// place renames a staged file into place and counts it.
func (s *Store) place(f *stagedFile) error {
	if f.tmp == "" {
		return nil
	}
	stripe := &s.renames[f.ref[len(f.ref)-1]%uint8(len(s.renames))]
	stripe.Lock()
	_, statErr := os.Stat(f.path)
	err := os.Rename(f.tmp, f.path)
	stripe.Unlock()
	if err != nil {
		os.Remove(f.tmp)
		return fmt.Errorf("payload store: %w", err)
	}
	if statErr != nil {
		s.files.Add(1)
		s.bytes.Add(f.size)
	}
	return nil
}

// parallel calls fn(0..n-1), at most putConcurrency at once.
func parallel(n int, fn func(i int)) {
	if n == 1 {
		fn(0)
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, putConcurrency)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}

// putConcurrency is how many files PutMany writes and fsyncs at once.
const putConcurrency = 8

// syncDir fsyncs dir, counted in syncs.
func (s *Store) syncDir(dir string) error {
	s.syncs.Add(1)
	return segwal.SyncDir(dir)
}

func (s *Store) writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	s.syncs.Add(1)
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Get reads the payload ref of size bytes and checks it. A file missing,
// of another size or with other bytes is a *DamagedError.
func (s *Store) Get(ref string, size int64) ([]byte, error) {
	path := s.Path(ref)
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &DamagedError{Path: path, Ref: ref, Reason: "the file is missing"}
		}
		return nil, fmt.Errorf("payload store: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("payload store: %w", err)
	}
	if fi.Size() != size {
		return nil, &DamagedError{Path: path, Ref: ref, Reason: fmt.Sprintf("it holds %d bytes, the payload has %d (torn or truncated)", fi.Size(), size)}
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("payload store: read %s: %w", path, err)
	}
	if got := Ref(b); got != ref {
		return nil, &DamagedError{Path: path, Ref: ref, Reason: "its bytes do not match their hash (" + got + ")"}
	}
	return b, nil
}

// Check reports, without reading it, whether the file of ref exists with
// size bytes (a *DamagedError if not). Recovery checks every payload the
// state names this way.
func (s *Store) Check(ref string, size int64) error {
	path := s.Path(ref)
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &DamagedError{Path: path, Ref: ref, Reason: "the file is missing"}
	case err != nil:
		return fmt.Errorf("payload store: %w", err)
	case fi.Size() != size:
		return &DamagedError{Path: path, Ref: ref, Reason: fmt.Sprintf("it holds %d bytes, the payload has %d (torn or truncated)", fi.Size(), size)}
	}
	return nil
}

// Pin keeps ref from being swept until Unpin. Put pins what it stores.
func (s *Store) Pin(ref string) {
	s.mu.Lock()
	s.pins[ref]++
	if s.marking {
		s.marked[ref] = struct{}{}
	}
	s.mu.Unlock()
}

// Unpin undoes one Pin (or Put), once the state names the payload or it
// is no longer needed.
func (s *Store) Unpin(ref string) {
	s.mu.Lock()
	if s.pins[ref]--; s.pins[ref] <= 0 {
		delete(s.pins, ref)
	}
	s.mu.Unlock()
}

// BeginSweep starts a sweep: call it when the state whose payloads will be
// kept is captured. From now until Sweep or EndSweep, what is pinned or
// put is kept as well.
func (s *Store) BeginSweep() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.marking = true
	s.marked = make(map[string]struct{}, len(s.pins))
	for ref := range s.pins {
		s.marked[ref] = struct{}{}
	}
}

// EndSweep abandons a sweep begun by BeginSweep (the snapshot failed).
func (s *Store) EndSweep() {
	s.mu.Lock()
	s.marking, s.marked = false, nil
	s.mu.Unlock()
}

// Sweep removes every payload that live does not name and that was not
// pinned or put since BeginSweep, and ends the sweep. It returns the files
// and bytes removed.
func (s *Store) Sweep(live func(ref string) bool) (files int, freed int64, err error) {
	defer s.EndSweep()
	err = s.walk(func(path, ref string, size int64) {
		if live(ref) {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.marked[ref]; ok || s.pins[ref] > 0 {
			return
		}
		if os.Remove(path) == nil {
			files++
			freed += size
			s.files.Add(-1)
			s.bytes.Add(-size)
		}
	}, func(string) {})
	return files, freed, err
}

// walk calls file for every payload file and tmp for every temporary file.
func (s *Store) walk(file func(path, ref string, size int64), tmp func(path string)) error {
	subs, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	for _, sub := range subs {
		if !sub.IsDir() || len(sub.Name()) != 2 {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(s.dir, sub.Name()))
		if err != nil {
			return err
		}
		for _, e := range entries {
			path := filepath.Join(s.dir, sub.Name(), e.Name())
			if strings.Contains(e.Name(), ".tmp-") {
				tmp(path)
				continue
			}
			ref := RefPrefix + e.Name()
			if !ValidRef(ref) {
				continue
			}
			info, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			file(path, ref, info.Size())
		}
	}
	return nil
}
