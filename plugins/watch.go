package plugins

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/wasmtask/wasmtask/host"
)

// Watch deploys NAME.wasm files from dir (with NAME.json as manifest when
// present) at start and whenever one is created or changed, once the file
// has been quiet for debounce (default 300ms), so a half-copied module is
// never deployed. A bad module is logged and recorded as the plugin's
// LastError; the running version stays. Watch returns once dir is
// watched; the watch runs until ctx ends, and its goroutine ends only after
// the deploys in progress have finished. Deploys of one name run one at a
// time, so the newest content of a file is the one that stays active;
// different names deploy in parallel.
//
// The last change wins, across restarts too: a file whose content and
// manifest are what was last loaded from it does not replace a version
// deployed or rolled back to since (so a restart does not revert a
// deploy). A file that changed since it was last loaded is deployed when
// it was written after the active version was activated; when it is older
// (a genuine conflict), the active version stays and the conflict is
// logged and shown as the plugin's Conflict until either side changes.
func (r *Registry) Watch(ctx context.Context, dir string, debounce time.Duration) error {
	if debounce <= 0 {
		debounce = 300 * time.Millisecond
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("plugins: watch %s: %w", dir, err)
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return fmt.Errorf("plugins: watch %s: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		w.Close()
		return fmt.Errorf("plugins: watch %s: %w", dir, err)
	}
	var mu sync.Mutex
	// Deploys of one name run one at a time, so the newest content of its
	// file is the one that stays active; different names deploy at once,
	// so a large module does not hold up the others.
	deploying := map[string]*sync.Mutex{}
	timers := map[string]*time.Timer{}
	var wg sync.WaitGroup // timers whose callback has not returned
	schedule := func(name string, after time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if t, ok := timers[name]; ok && t.Stop() {
			wg.Done() // its callback will not run; its "loading" mark passes on
		} else {
			r.setLoading(name, +1) // listed as loading until its deploy is done
		}
		wg.Add(1)
		timers[name] = time.AfterFunc(after, func() {
			defer wg.Done()
			defer r.setLoading(name, -1)
			mu.Lock()
			lock := deploying[name]
			if lock == nil {
				lock = &sync.Mutex{}
				deploying[name] = lock
			}
			mu.Unlock()
			lock.Lock()
			defer lock.Unlock()
			if ctx.Err() == nil {
				r.deployFile(ctx, dir, name)
			}
		})
	}
	for _, e := range entries {
		if name, ok := moduleName(e.Name()); ok {
			schedule(name, 0)
		}
	}
	go func() {
		defer w.Close()
		defer func() {
			mu.Lock()
			for name, t := range timers {
				if t.Stop() {
					wg.Done()
					r.setLoading(name, -1)
				}
			}
			mu.Unlock()
			wg.Wait() // a deploy in progress finishes before the watch ends
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				// Chmod too: touching a file is how a user says "this one" (see
				// judgeWatched); a file that changed nothing costs a hash.
				if ev.Op&(fsnotify.Create|fsnotify.Write|fsnotify.Rename|fsnotify.Chmod) == 0 {
					continue
				}
				base := filepath.Base(ev.Name)
				if name, ok := moduleName(base); ok {
					schedule(name, debounce)
				} else if name, ok := strings.CutSuffix(base, ".json"); ok && namePattern.MatchString(name) {
					schedule(name, debounce) // a changed manifest redeploys its module
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				r.log.Error("plugins: watch error", "dir", dir, "err", err)
			}
		}
	}()
	return nil
}

func moduleName(file string) (string, bool) {
	name, ok := strings.CutSuffix(file, ".wasm")
	return name, ok && namePattern.MatchString(name)
}

// deployFile deploys dir/name.wasm once its size and mtime are stable.
// Files are read through an os.Root (folder.go): a symbolic link leading
// outside dir is refused, and the plugin's LastError says so.
func (r *Registry) deployFile(ctx context.Context, dir, name string) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		r.log.Error("plugins: open plugin folder", "dir", dir, "err", err)
		return
	}
	defer root.Close()
	file := name + ".wasm"
	path := filepath.Join(dir, file)
	refuse := func(file string, err error) {
		err = r.failed(name, &ValidationError{Plugin: name, Field: file, Reason: err.Error()})
		r.log.Error("plugins: refused file; the active version stays", "plugin", name, "file", filepath.Join(dir, file), "err", err)
	}
	wasm, before, err := readFolderFile(root, file, int64(r.opts.MaxModuleBytes))
	if errors.Is(err, fs.ErrNotExist) {
		return // removed meanwhile
	}
	if err != nil {
		refuse(file, err)
		return
	}
	if after, err := root.Stat(file); err != nil || after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) || int64(len(wasm)) != after.Size() {
		return // still being written: the next event reschedules
	}
	var m *Manifest
	if b, _, err := readFolderFile(root, name+".json", maxManifestBytes); err == nil {
		if m, err = ParseManifest(b); err != nil {
			err = fmt.Errorf("%s.json: %w", name, err)
			r.failed(name, err)
			r.log.Error("plugins: bad manifest; the active version stays", "plugin", name, "err", err)
			return
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		refuse(name+".json", err)
		return
	}
	version := host.Hash(wasm)
	switch verdict, act := r.judgeWatched(name, path, version, m, before.ModTime()); verdict {
	case watchCurrent:
		r.mu.Lock()
		delete(r.lastErr, name)
		delete(r.conflict, name)
		r.mu.Unlock()
		return
	case watchUnchanged:
		r.log.Info("plugins: watched file unchanged since it was last loaded; the later activation stays",
			"plugin", name, "file", path, "file_version", version, "active", act.Version, "activated_at", act.ActivatedAt, "source", act.Source)
		return
	case watchConflict:
		msg := conflictMessage(path, version, before.ModTime(), act)
		r.mu.Lock()
		r.conflict[name] = msg
		r.mu.Unlock()
		r.log.Warn("plugins: conflict: "+msg, "plugin", name)
		return
	}
	watched := &WatchedFile{File: path, Version: version, Manifest: m}
	if _, err := r.deploy(ctx, name, wasm, m, "watch:"+path, watched); err != nil {
		r.log.Error("plugins: rejected module; the active version stays", "plugin", name, "file", path, "err", err)
	}
}
