package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/host"
)

// ErrNotFound: no plugin (or version) by that name.
var ErrNotFound = errors.New("plugins: not found")

// ValidationError says why a deploy was rejected, naming the plugin and
// the field (name, module, manifest...).
type ValidationError struct {
	Plugin string
	Field  string
	Reason string
}

func (e *ValidationError) Error() string {
	if e.Plugin == "" {
		return e.Field + ": " + e.Reason
	}
	return fmt.Sprintf("plugin %q: %s: %s", e.Plugin, e.Field, e.Reason)
}

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_\-]{0,62}$`)

// Options configure a Registry.
type Options struct {
	// MaxModuleBytes rejects larger modules. Default 64 MiB.
	MaxModuleBytes int
	// Limits are the operator maxima; a manifest's limits are clamped to them.
	Max host.Limits
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// AllowDirs are the host directories under which a manifest may mount
	// (serve --allow-dir). None: a manifest with mounts is rejected.
	AllowDirs []string
	// MaxScratchBytes caps a manifest's scratch_bytes. Default 1 GiB.
	MaxScratchBytes int64
	// OnActivate is called after a version becomes active (metrics).
	OnActivate func(name, version, source string)
}

// Registry maps plugin names to an active module version, with history and
// rollback. Modules are stored content-addressed under its directory; the
// name -> version pointers live in registry.json, replaced atomically.
type Registry struct {
	dir   string
	host  *host.Host
	opts  Options
	store store
	log   *slog.Logger

	mu       sync.RWMutex
	state    registryFile
	active   map[string]*loaded // name -> active version, loaded
	pinned   map[string]*loaded // "name@version" -> loaded
	lastErr  map[string]string  // name -> last failed deploy
	conflict map[string]string  // name -> a watched file the active version overrides (watched.go)
	loading  map[string]int     // name -> deploys compiling or waiting to
	counts   map[string]map[string]map[dispatch.Outcome]int
	verified map[string]bool // stored versions whose hash Check verified
}

type loaded struct {
	version  string
	module   *host.Module
	limits   host.Limits
	config   map[string]string
	command  host.Command
	manifest *Manifest
	pool     *host.Pool // reuse or reset policy: the version's warm instances; nil for fresh
	extism   *host.ExtismOptions
}

type registryFile struct {
	Plugins map[string]*pluginRecord `json:"plugins"`
}

type pluginRecord struct {
	Active  string       `json:"active"`
	History []Activation `json:"history"`
	// Watched is what was last loaded from the plugin's file in the watched
	// folder; nil when it was never watched (or before this field existed).
	Watched *WatchedFile `json:"watched,omitempty"`
}

// Activation is one entry of a plugin's history.
type Activation struct {
	Version     string    `json:"version"`
	ActivatedAt time.Time `json:"activated_at"`
	Source      string    `json:"source"` // http, watch:<file>, rollback, cli
	Manifest    *Manifest `json:"manifest,omitempty"`
	Size        int       `json:"size"`
}

// Open loads the registry in dir and compiles every active module.
func Open(ctx context.Context, dir string, h *host.Host, opts Options) (*Registry, error) {
	if opts.MaxModuleBytes <= 0 {
		opts.MaxModuleBytes = 64 << 20
	}
	if opts.MaxScratchBytes <= 0 {
		opts.MaxScratchBytes = 1 << 30
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("plugins: %w", err)
	}
	r := &Registry{dir: dir, host: h, opts: opts, store: store{dir: dir}, log: opts.Logger,
		active: map[string]*loaded{}, pinned: map[string]*loaded{}, lastErr: map[string]string{}, conflict: map[string]string{}, loading: map[string]int{},
		counts: map[string]map[string]map[dispatch.Outcome]int{}, verified: map[string]bool{},
		state: registryFile{Plugins: map[string]*pluginRecord{}}}
	b, err := os.ReadFile(r.statePath())
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("plugins: %w", err)
	default:
		if err := json.Unmarshal(b, &r.state); err != nil {
			return nil, fmt.Errorf("plugins: %s is damaged: %v (move it away to start with an empty registry)", r.statePath(), err)
		}
		if r.state.Plugins == nil {
			r.state.Plugins = map[string]*pluginRecord{}
		}
	}
	// All at once: the host bounds the large compiles and lets the small
	// ones through, so one big module does not hold up the others.
	var wg sync.WaitGroup
	var mu sync.Mutex
	for name, rec := range r.state.Plugins {
		act := rec.find(rec.Active)
		if act == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := r.load(ctx, name, act.Version, act.Manifest)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				r.lastErr[name] = err.Error()
				r.log.Error("plugins: cannot load active version", "plugin", name, "version", act.Version, "err", err)
				return
			}
			r.active[name] = l
		}()
	}
	wg.Wait()
	r.pruneCache()
	return r, nil
}

// pruneCache drops the host's compiled code of modules that no version of
// any plugin references any more (rejected deploys, older layouts).
func (r *Registry) pruneCache() {
	r.mu.RLock()
	keep := map[string]bool{}
	for _, rec := range r.state.Plugins {
		for _, a := range rec.History {
			keep[a.Version] = true
		}
	}
	r.mu.RUnlock()
	removed, err := r.host.PruneCache(func(hash string) bool { return keep[hash] })
	if err != nil {
		r.log.Warn("plugins: prune the compile cache", "err", err)
	}
	if len(removed) > 0 {
		r.log.Info("plugins: pruned the compile cache of modules no version uses", "entries", len(removed))
	}
}

func (r *Registry) statePath() string { return filepath.Join(r.dir, "registry.json") }

func (p *pluginRecord) find(version string) *Activation {
	for i := len(p.History) - 1; i >= 0; i-- {
		if p.History[i].Version == version {
			return &p.History[i]
		}
	}
	return nil
}

// load compiles a stored version with its manifest's limits.
func (r *Registry) load(ctx context.Context, name, version string, m *Manifest) (*loaded, error) {
	wasm, err := r.store.get(version)
	if err != nil {
		return nil, err
	}
	return r.compile(ctx, name, wasm, m)
}

func (r *Registry) compile(ctx context.Context, name string, wasm []byte, m *Manifest) (*loaded, error) {
	lim, err := m.HostLimits()
	if err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) && ve.Plugin == "" {
			ve.Plugin = name
		}
		return nil, err
	}
	lim = lim.Clamp(r.opts.Max)
	cmd, err := r.grants(name, m)
	if err != nil {
		return nil, err
	}
	mod, err := r.host.LoadLimits(ctx, wasm, lim)
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return nil, fmt.Errorf("plugins: %s: %w", name, err) // a full disk, not a bad module (the API answers 507)
	}
	if err != nil {
		return nil, &ValidationError{Plugin: name, Field: "module", Reason: err.Error()}
	}
	if cmd.Input == host.InputFile && mod.Mode != host.ModeCommand {
		return nil, &ValidationError{Plugin: name, Field: "manifest.input", Reason: "\"file\" is for WASI commands (_start); this module is a handler (wasmtask_handle) and reads its input with input_read"}
	}
	var config map[string]string
	if m != nil {
		config = m.Config
	}
	ext, err := extismFor(name, m, mod)
	if err != nil {
		return nil, err
	}
	l := &loaded{version: mod.Hash, module: mod, limits: lim, config: config, command: cmd, manifest: m, extism: ext}
	if policy, err := m.InstancePolicy(); err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) && ve.Plugin == "" {
			ve.Plugin = name
		}
		return nil, err
	} else if policy.Mode != host.InstancesFresh {
		if l.pool, err = r.host.NewPool(mod, policy, wasm); err != nil {
			return nil, &ValidationError{Plugin: name, Field: "manifest.instances.policy", Reason: err.Error()}
		}
	}
	return l, nil
}

// grants returns the manifest's WASI grants, its mounts checked against
// the operator's allowed directories (and resolved, so attempts mount
// what was checked).
func (r *Registry) grants(name string, m *Manifest) (host.Command, error) {
	cmd, err := m.Command()
	if err == nil && cmd.ScratchBytes > r.opts.MaxScratchBytes {
		err = &ValidationError{Field: "manifest.scratch_bytes", Reason: fmt.Sprintf("%d is above the operator maximum of %d bytes (serve --max-scratch-bytes)", cmd.ScratchBytes, r.opts.MaxScratchBytes)}
	}
	if err == nil {
		cmd.Mounts = slices.Clone(cmd.Mounts)
		if err = host.ValidateMounts(cmd.Mounts, append([]string{}, r.opts.AllowDirs...)); err != nil {
			var ge *host.GrantError
			if errors.As(err, &ge) {
				err = &ValidationError{Field: "manifest." + ge.Field, Reason: ge.Reason}
			}
		}
	}
	var ve *ValidationError
	if errors.As(err, &ve) && ve.Plugin == "" {
		ve.Plugin = name
	}
	return cmd, err
}

// DeployResult reports a deploy.
type DeployResult struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Previous string `json:"previous,omitempty"`
	// Changed is false when this version and manifest were already active.
	Changed bool `json:"changed"`
}

// Deploy validates wasm (size, compile, imports and exports, memory
// minimum, a trial instantiation), stores it and makes it the active
// version of name. On any error the active version stays. Queued tasks
// pick the new version at dispatch; running attempts keep theirs.
func (r *Registry) Deploy(ctx context.Context, name string, wasm []byte, m *Manifest, source string) (DeployResult, error) {
	return r.deploy(ctx, name, wasm, m, source, nil)
}

// deploy is Deploy; watched, when not nil, is recorded as the plugin's
// last load from the watched folder in the same registry.json write.
func (r *Registry) deploy(ctx context.Context, name string, wasm []byte, m *Manifest, source string, watched *WatchedFile) (DeployResult, error) {
	l, err := r.validate(ctx, name, wasm, m)
	if err != nil {
		return DeployResult{}, err
	}
	if err := r.store.put(l.version, wasm); err != nil {
		return DeployResult{}, fmt.Errorf("plugins: store %s: %w", name, err)
	}
	return r.activate(name, l, len(wasm), source, watched)
}

// validate is what a deploy checks before it stores and activates: the
// name, the size, the compile with the manifest, a trial instantiation.
func (r *Registry) validate(ctx context.Context, name string, wasm []byte, m *Manifest) (*loaded, error) {
	if !namePattern.MatchString(name) {
		return nil, &ValidationError{Plugin: name, Field: "name", Reason: "must be 1-63 lower-case letters, digits, '_' or '-', starting with a letter or digit"}
	}
	if len(wasm) == 0 {
		return nil, r.failed(name, &ValidationError{Plugin: name, Field: "module", Reason: "is empty"})
	}
	if len(wasm) > r.opts.MaxModuleBytes {
		return nil, r.failed(name, &ValidationError{Plugin: name, Field: "module",
			Reason: fmt.Sprintf("is %d bytes, the limit is %d", len(wasm), r.opts.MaxModuleBytes)})
	}
	r.setLoading(name, +1)
	l, err := r.compile(ctx, name, wasm, m)
	r.setLoading(name, -1)
	if err != nil {
		r.pruneCache() // a rejected module leaves no compiled code behind
		return nil, r.failed(name, err)
	}
	if err := r.host.Trial(ctx, l.module, 5*time.Second); err != nil {
		return nil, r.failed(name, &ValidationError{Plugin: name, Field: "module", Reason: err.Error()})
	}
	return l, nil
}

func (r *Registry) setLoading(name string, d int) {
	r.mu.Lock()
	if r.loading[name] += d; r.loading[name] <= 0 {
		delete(r.loading, name)
	}
	r.mu.Unlock()
}

func (r *Registry) failed(name string, err error) error {
	r.mu.Lock()
	r.lastErr[name] = err.Error()
	r.mu.Unlock()
	return err
}

func (r *Registry) activate(name string, l *loaded, size int, source string, watched *WatchedFile) (DeployResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.state.Plugins[name]
	if rec == nil {
		rec = &pluginRecord{}
		r.state.Plugins[name] = rec
	}
	now := time.Now().UTC()
	if watched != nil {
		watched.LoadedAt = now
	}
	res := DeployResult{Name: name, Version: l.version, Previous: rec.Active}
	if cur := r.active[name]; cur != nil && cur.version == l.version && manifestEqual(cur.manifest, l.manifest) {
		delete(r.lastErr, name)
		if watched != nil {
			delete(r.conflict, name)
		}
		if watched != nil && !rec.Watched.same(watched) {
			prev := rec.Watched
			rec.Watched = watched
			if err := r.persist(); err != nil {
				rec.Watched = prev
				return DeployResult{}, fmt.Errorf("plugins: save registry: %w", err)
			}
		}
		return res, nil
	}
	prev := *rec
	rec.History = append(slices.Clone(rec.History), Activation{Version: l.version, ActivatedAt: now, Source: source, Manifest: l.manifest, Size: size})
	rec.Active = l.version
	if watched != nil {
		rec.Watched = watched
	}
	if err := r.persist(); err != nil {
		*rec = prev
		return DeployResult{}, fmt.Errorf("plugins: save registry: %w", err)
	}
	if cur := r.active[name]; cur != nil && cur.pool != nil {
		cur.pool.Close() // a hot swap drains the old version's warm instances
	}
	r.active[name] = l
	delete(r.lastErr, name)
	delete(r.conflict, name)
	res.Changed = true
	r.log.Info("plugins: activated", "plugin", name, "version", l.version, "previous", res.Previous, "source", source)
	if r.opts.OnActivate != nil {
		r.opts.OnActivate(name, l.version, source)
	}
	return res, nil
}

func manifestEqual(a, b *Manifest) bool {
	if a == nil || b == nil {
		return a == b
	}
	// As JSON: a manifest read back from registry.json has nil where the
	// deployed one had an empty map or list.
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}

func (r *Registry) persist() error {
	b, err := json.MarshalIndent(&r.state, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(r.statePath(), b)
}

// Rollback re-activates version (or, when empty, the version active before
// the current one) of name.
func (r *Registry) Rollback(ctx context.Context, name, version string) (DeployResult, error) {
	target, err := r.RollbackTarget(name, version)
	if err != nil {
		return DeployResult{}, err
	}
	l, err := r.load(ctx, name, target.Version, target.Manifest)
	if err != nil {
		return DeployResult{}, err
	}
	return r.activate(name, l, target.Size, "rollback", nil)
}

// RollbackTarget is the activation Rollback(name, version) would make
// active again.
func (r *Registry) RollbackTarget(name, version string) (Activation, error) {
	r.mu.RLock()
	rec := r.state.Plugins[name]
	var target *Activation
	if rec != nil {
		if version != "" {
			if a := rec.find(version); a != nil {
				c := *a
				target = &c
			}
		} else if n := len(rec.History); n > 0 {
			// The newest activation that differs from the current one in
			// its module or its manifest: a manifest change of the same
			// bytes is rolled back too.
			cur := rec.History[n-1]
			for i := n - 2; i >= 0; i-- {
				if h := rec.History[i]; h.Version != cur.Version || !manifestEqual(h.Manifest, cur.Manifest) {
					c := h
					target = &c
					break
				}
			}
		}
	}
	r.mu.RUnlock()
	switch {
	case rec == nil:
		return Activation{}, fmt.Errorf("%w: no plugin named %q", ErrNotFound, name)
	case target == nil && version != "":
		return Activation{}, fmt.Errorf("%w: plugin %q never had version %s", ErrNotFound, name, version)
	case target == nil && len(rec.History) > 1:
		return Activation{}, &ValidationError{Plugin: name, Field: "version", Reason: "no earlier version or manifest to roll back to (every activation was this one)"}
	case target == nil:
		return Activation{}, &ValidationError{Plugin: name, Field: "version", Reason: "no earlier version to roll back to"}
	}
	return *target, nil
}

// Resolve returns the plugin for a handler: "name" (the active version) or
// "name@sha256:<hex>" (a version from the plugin's history). It implements
// host.Resolver.
func (r *Registry) Resolve(ctx context.Context, handler string) (host.Plugin, error) {
	name, version, pinned := strings.Cut(handler, "@")
	r.mu.RLock()
	var l *loaded
	if pinned {
		l = r.pinned[handler]
		if l == nil && r.active[name] != nil && r.active[name].version == version {
			l = r.active[name]
		}
	} else {
		l = r.active[name]
	}
	var act *Activation
	if l == nil && pinned {
		if rec := r.state.Plugins[name]; rec != nil {
			if a := rec.find(version); a != nil {
				c := *a
				act = &c
			}
		}
	}
	r.mu.RUnlock()
	if l == nil && act != nil {
		var err error
		if l, err = r.load(ctx, name, act.Version, act.Manifest); err != nil {
			return host.Plugin{}, err
		}
		r.mu.Lock()
		r.pinned[handler] = l
		r.mu.Unlock()
	}
	if l == nil {
		if pinned {
			return host.Plugin{}, fmt.Errorf("%w: plugin %q has no version %s", ErrNotFound, name, version)
		}
		return host.Plugin{}, fmt.Errorf("%w: no plugin named %q is deployed", ErrNotFound, name)
	}
	return host.Plugin{Module: l.module, Limits: l.limits, Config: l.config, Command: l.command, Pool: l.pool, Extism: l.extism}, nil
}

// Check reports whether handler names a deployed plugin (and version).
func (r *Registry) Check(handler string) error {
	name, version, pinned := strings.Cut(handler, "@")
	// Everything the checks read is copied under the lock (activate
	// changes the record); the store is read without it.
	r.mu.RLock()
	var activeVersion, lastErr string
	known := false
	if rec := r.state.Plugins[name]; rec != nil {
		activeVersion, lastErr = rec.Active, r.lastErr[name]
		known = !pinned || rec.find(version) != nil
	}
	active, loadedPin := r.active[name], r.pinned[handler]
	verified := r.verified[version]
	r.mu.RUnlock()
	switch {
	case activeVersion == "":
		return fmt.Errorf("%w: no plugin named %q is deployed", ErrNotFound, name)
	case !known:
		return fmt.Errorf("%w: plugin %q has no version %s", ErrNotFound, name, version)
	case !pinned && active == nil:
		// Its stored module could not be loaded (damaged or missing):
		// every attempt would fail, so refuse the task now.
		return fmt.Errorf("%w: plugin %q: its active version %s could not be loaded (%s); redeploy it", ErrNotFound, name, activeVersion, lastErr)
	case !pinned || loadedPin != nil || active != nil && active.version == version || verified:
		return nil
	}
	// A pinned version not loaded yet: its stored module must be intact.
	// Checked once (reading and hashing the module), then remembered.
	if _, err := r.store.get(version); err != nil {
		return fmt.Errorf("%w: plugin %q version %s: %v", ErrNotFound, name, version, err)
	}
	r.mu.Lock()
	r.verified[version] = true
	r.mu.Unlock()
	return nil
}

// RecordAttempt counts an attempt's outcome per plugin version.
func (r *Registry) RecordAttempt(handler, version string, outcome dispatch.Outcome) {
	name, _, _ := strings.Cut(handler, "@")
	r.mu.Lock()
	defer r.mu.Unlock()
	byVersion := r.counts[name]
	if byVersion == nil {
		byVersion = map[string]map[dispatch.Outcome]int{}
		r.counts[name] = byVersion
	}
	if byVersion[version] == nil {
		byVersion[version] = map[dispatch.Outcome]int{}
	}
	byVersion[version][outcome]++
}

// Info describes a plugin.
type Info struct {
	Name   string `json:"name"`
	Active string `json:"active"`
	// State is "active" (a version is loaded and takes tasks), "loading"
	// (the first version is being compiled), or "failed": no version is
	// loaded, LastError says why (a plugin that never activated, or whose
	// active version could not be loaded at start).
	State string `json:"state"`
	// Loading: a deploy of this plugin is being compiled now.
	Loading   bool         `json:"loading,omitempty"`
	Mode      host.Mode    `json:"mode,omitempty"`
	Imports   []string     `json:"imports,omitempty"`
	History   []Activation `json:"history"`
	LastError string       `json:"last_error,omitempty"`
	// Conflict says that the plugin's file in the watched folder changed
	// since it was last loaded but is older than the active version, which
	// stays active; empty when they agree (or one side is the later change).
	Conflict string                              `json:"conflict,omitempty"`
	Watched  *WatchedFile                        `json:"watched,omitempty"`  // the last load from the watched folder
	Attempts map[string]map[dispatch.Outcome]int `json:"attempts,omitempty"` // version -> outcome -> count
}

// Get describes one plugin.
func (r *Registry) Get(name string) (Info, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	rec, ok := r.state.Plugins[name]
	_, failed := r.lastErr[name]
	if !ok && !failed && r.loading[name] == 0 {
		return Info{}, fmt.Errorf("%w: no plugin named %q", ErrNotFound, name)
	}
	return r.info(name, rec), nil
}

// info describes a plugin; rec is nil for one that never activated.
func (r *Registry) info(name string, rec *pluginRecord) Info {
	in := Info{Name: name, LastError: r.lastErr[name], Conflict: r.conflict[name], Loading: r.loading[name] > 0, History: []Activation{}}
	if rec != nil {
		in.Active, in.History, in.Watched = rec.Active, slices.Clone(rec.History), rec.Watched
	}
	switch l := r.active[name]; {
	case l != nil:
		in.State, in.Mode, in.Imports = "active", l.module.Mode, l.module.Imports
	case in.Loading:
		in.State = "loading"
	default:
		in.State = "failed"
	}
	if c := r.counts[name]; c != nil {
		in.Attempts = map[string]map[dispatch.Outcome]int{}
		for v, m := range c {
			in.Attempts[v] = maps.Clone(m)
		}
	}
	return in
}

// List describes every plugin, by name.
func (r *Registry) List() []Info {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []Info
	for name, rec := range r.state.Plugins {
		out = append(out, r.info(name, rec))
	}
	// Plugins that never activated: a rejected first deploy, or one still
	// compiling.
	for name := range r.lastErr {
		if r.state.Plugins[name] == nil {
			out = append(out, r.info(name, nil))
		}
	}
	for name := range r.loading {
		if r.state.Plugins[name] == nil && r.lastErr[name] == "" {
			out = append(out, r.info(name, nil))
		}
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return out
}
