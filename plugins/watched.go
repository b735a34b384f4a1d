package plugins

import (
	"fmt"
	"strings"
	"time"
)

// WatchedFile is what the registry last loaded from a plugin's file in the
// watched folder (whether or not it changed the active version). It is kept
// in registry.json so that, after a restart, a file that did not change
// since it was last loaded does not take over from a later deploy or
// rollback.
type WatchedFile struct {
	File     string    `json:"file"`
	Version  string    `json:"version"`
	Manifest *Manifest `json:"manifest,omitempty"`
	LoadedAt time.Time `json:"loaded_at"`
}

// same reports whether w and o record the same load (the time aside).
func (w *WatchedFile) same(o *WatchedFile) bool {
	return w != nil && o != nil && w.File == o.File && w.Version == o.Version && manifestEqual(w.Manifest, o.Manifest)
}

// watchVerdict is what to do with a module found in the watched folder.
type watchVerdict int

const (
	// watchDeploy: deploy the file (a no-op when it is already active).
	watchDeploy watchVerdict = iota
	// watchCurrent: the file is the active version and was loaded as such;
	// nothing to do (a touch, a rewrite with the same bytes).
	watchCurrent
	// watchUnchanged: the file is what was last loaded from it, and another
	// version was activated since (deploy or rollback): that one stays.
	watchUnchanged
	// watchConflict: the file changed since it was last loaded, but the
	// active version was activated after the file was last written. The
	// later of the two (the active version) stays, and the conflict is
	// reported until one side changes.
	watchConflict
)

// judgeWatched decides what a module file found in the watched folder
// (path file, content hash version, manifest m, last written at modTime) does to
// plugin name. The rule: the last change wins. A file that did not change
// since it was last loaded is not a change; a file that did is one, dated
// by its modification time.
func (r *Registry) judgeWatched(name, file, version string, m *Manifest, modTime time.Time) (watchVerdict, Activation) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	rec := r.state.Plugins[name]
	if rec == nil || rec.Active == "" || r.active[name] == nil {
		return watchDeploy, Activation{}
	}
	act := rec.find(rec.Active)
	if act == nil {
		return watchDeploy, Activation{}
	}
	base := rec.lastWatched()
	if act.Version == version && manifestEqual(act.Manifest, m) {
		if base.same(&WatchedFile{File: file, Version: version, Manifest: m}) {
			return watchCurrent, *act
		}
		return watchDeploy, *act // a no-op deploy that records the load
	}
	if base != nil && base.Version == version && manifestEqual(base.Manifest, m) {
		return watchUnchanged, *act
	}
	if base != nil && !act.ActivatedAt.After(base.LoadedAt) {
		return watchDeploy, *act // nothing was activated since the last load
	}
	if modTime.After(act.ActivatedAt) {
		return watchDeploy, *act // the file was written after the activation
	}
	return watchConflict, *act
}

// lastWatched is what was last loaded from the plugin's watched file. A
// registry.json written before the watched record existed has it only in
// the history, as the last activation whose source is the watch.
func (p *pluginRecord) lastWatched() *WatchedFile {
	if p.Watched != nil {
		return p.Watched
	}
	for i := len(p.History) - 1; i >= 0; i-- {
		if a := p.History[i]; strings.HasPrefix(a.Source, "watch:") {
			return &WatchedFile{File: strings.TrimPrefix(a.Source, "watch:"), Version: a.Version, Manifest: a.Manifest, LoadedAt: a.ActivatedAt}
		}
	}
	return nil
}

// conflictMessage says what disagrees and how to settle it.
func conflictMessage(file, version string, modTime time.Time, act Activation) string {
	return fmt.Sprintf("watched file %s holds %s (written %s), but %s was activated later (%s, via %s) and stays active; "+
		"to use the file, touch it or deploy it; to keep the active version, remove the file or copy the active version into it",
		file, version, modTime.UTC().Format(time.RFC3339), act.Version, act.ActivatedAt.UTC().Format(time.RFC3339), act.Source)
}
