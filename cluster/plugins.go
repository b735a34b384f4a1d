package cluster

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Replicated plugins. A deploy or rollback is a raft entry (entryPlugin):
// the change and, for a deploy, the module's bytes. It is acknowledged
// once committed, so a majority holds the bytes in its log; every node
// then carries it out on its own registry (compile, store, activate),
// in log order, off raft's FSM goroutine (a compile may take seconds, and
// the FSM applies the dispatch events too). The FSM keeps what each
// plugin's active version is and which versions exist, and snapshots
// carry that with the modules' bytes, so a node that catches up from a
// snapshot gets them too.

// PluginChange is one replicated plugin change.
type PluginChange struct {
	// Op: "deploy" (validate, store and activate Module), "activate" (a
	// rollback: store Module, the bytes of an earlier version, and make it
	// active with Manifest) or "store" (keep the bytes of a version, not
	// active: from a snapshot, for later rollbacks).
	Op       string          `json:"op"`
	Name     string          `json:"name,omitempty"`
	Version  string          `json:"version"`
	Manifest json.RawMessage `json:"manifest,omitempty"`
	Source   string          `json:"source,omitempty"`
	Size     int             `json:"size,omitempty"`
	Module   []byte          `json:"-"`
}

// Plugins is this node's plugin registry as the cluster drives it.
type Plugins interface {
	// ApplyPlugin carries out a committed change on this node; called in
	// log order. Its result is what ProposePlugin returns on the node that
	// proposed the change.
	ApplyPlugin(ctx context.Context, c PluginChange) (any, error)
	// Module returns a stored module's bytes (for snapshots).
	Module(version string) ([]byte, error)
}

// pluginMeta is what the FSM keeps of a plugin (replicated, snapshotted).
type pluginMeta struct {
	Active   string          `json:"active"`
	Manifest json.RawMessage `json:"manifest,omitempty"`
	Source   string          `json:"source,omitempty"`
	Versions map[string]int  `json:"versions"` // version -> module size
}

func encodePluginEntry(c PluginChange) ([]byte, error) {
	head, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	b := append([]byte{entryPlugin}, binary.AppendUvarint(nil, uint64(len(head)))...)
	return append(append(b, head...), c.Module...), nil
}

func decodePluginEntry(data []byte) (PluginChange, error) {
	var c PluginChange
	n, k := binary.Uvarint(data)
	if k <= 0 || uint64(len(data)-k) < n {
		return c, errors.New("plugin entry cut short")
	}
	if err := json.Unmarshal(data[k:k+int(n)], &c); err != nil {
		return c, fmt.Errorf("plugin entry: %w", err)
	}
	if rest := data[k+int(n):]; len(rest) > 0 {
		c.Module = rest
	}
	return c, nil
}

// applyPluginLocked records a committed change in the FSM's plugin state
// and queues it for this node's registry.
func (f *fsm) applyPluginLocked(index uint64, data []byte) error {
	c, err := decodePluginEntry(data)
	if err != nil {
		return err
	}
	if c.Op != "store" {
		p := f.plugins[c.Name]
		if p == nil {
			p = &pluginMeta{Versions: map[string]int{}}
			f.plugins[c.Name] = p
		}
		p.Active, p.Manifest, p.Source = c.Version, c.Manifest, c.Source
		if len(c.Module) > 0 {
			p.Versions[c.Version] = len(c.Module)
		}
	}
	f.pluginQ.push(index, c)
	return nil
}

// pluginQueue hands committed changes to one goroutine that applies them
// to the registry in order and keeps the recent results for proposers.
type pluginQueue struct {
	log     *slog.Logger
	mu      sync.Mutex
	pending []queuedChange
	busy    bool
	results map[uint64]pluginResult // by raft index (0: from a snapshot, not kept)
	order   []uint64
	changed chan struct{} // closed and replaced at each change of the above
	apply   Plugins
}

type queuedChange struct {
	index uint64
	c     PluginChange
}

type pluginResult struct {
	v   any
	err error
}

func newPluginQueue(log *slog.Logger, apply Plugins) *pluginQueue {
	return &pluginQueue{log: log, apply: apply, results: map[uint64]pluginResult{}, changed: make(chan struct{})}
}

func (q *pluginQueue) signalLocked() {
	close(q.changed)
	q.changed = make(chan struct{})
}

func (q *pluginQueue) push(index uint64, c PluginChange) {
	if q.apply == nil {
		return
	}
	q.mu.Lock()
	q.pending = append(q.pending, queuedChange{index, c})
	start := !q.busy
	q.busy = true
	q.mu.Unlock()
	if start {
		go q.drain()
	}
}

// drain applies the queued changes in order until none is left.
func (q *pluginQueue) drain() {
	for {
		q.mu.Lock()
		if len(q.pending) == 0 {
			q.busy = false
			q.signalLocked()
			q.mu.Unlock()
			return
		}
		next := q.pending[0]
		q.pending = q.pending[1:]
		q.mu.Unlock()

		v, err := q.apply.ApplyPlugin(context.Background(), next.c)
		if err != nil {
			q.log.Error("cluster: a replicated plugin change failed on this node (it keeps the previous version)",
				"op", next.c.Op, "plugin", next.c.Name, "version", next.c.Version, "err", err)
		}
		q.mu.Lock()
		if next.index != 0 {
			q.results[next.index] = pluginResult{v, err}
			q.order = append(q.order, next.index)
			if len(q.order) > 256 {
				delete(q.results, q.order[0])
				q.order = q.order[1:]
			}
		}
		q.signalLocked()
		q.mu.Unlock()
	}
}

// result waits for the outcome of the change at index.
func (q *pluginQueue) result(ctx context.Context, index uint64) (any, error) {
	for {
		q.mu.Lock()
		r, ok := q.results[index]
		ch := q.changed
		q.mu.Unlock()
		if ok {
			return r.v, r.err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("cluster: the change was committed, but this node has not applied it yet: %w", ctx.Err())
		}
	}
}

// idle waits until every queued change was applied, or ctx ends.
func (q *pluginQueue) idle(ctx context.Context) bool {
	for {
		q.mu.Lock()
		done := !q.busy && len(q.pending) == 0
		ch := q.changed
		q.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// ProposePlugin replicates a plugin change and returns what this node's
// registry answered once it carried it out (the leader's: changes are
// proposed there). The change is committed, on a majority, before any
// node applies it.
func (n *Node) ProposePlugin(ctx context.Context, c PluginChange) (any, error) {
	if n.cfg.Plugins == nil {
		return nil, errors.New("cluster: this node has no plugin registry")
	}
	b, err := encodePluginEntry(c)
	if err != nil {
		return nil, err
	}
	timeout := 30 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	fut := n.raft.Apply(b, timeout)
	if err := fut.Error(); err != nil {
		if n.raft.State() != raft.Leader {
			return nil, fmt.Errorf("%w (%v)", ErrNotLeader, err)
		}
		return nil, fmt.Errorf("cluster: replicate the plugin change: %w", err)
	}
	if err, ok := fut.Response().(error); ok && err != nil {
		return nil, err
	}
	return n.fsm.pluginQ.result(ctx, fut.Index())
}

// pluginSnapshot is the plugin part of a snapshot: the FSM's plugin state
// and the bytes of every version it names.
type pluginSnapshot struct {
	Plugins map[string]*pluginMeta `json:"plugins"`
}

func (f *fsm) pluginMetaCopyLocked() map[string]*pluginMeta {
	out := make(map[string]*pluginMeta, len(f.plugins))
	for name, p := range f.plugins {
		c := *p
		c.Versions = maps.Clone(p.Versions)
		out[name] = &c
	}
	return out
}

// appendPluginSection writes the plugin state and the modules it names:
// uvarint length + JSON, then for each version (sorted) uvarint length +
// version, uvarint length + bytes.
func appendPluginSection(b []byte, plugins map[string]*pluginMeta, module func(string) ([]byte, error), log *slog.Logger) ([]byte, error) {
	head, err := json.Marshal(pluginSnapshot{Plugins: plugins})
	if err != nil {
		return nil, err
	}
	b = append(binary.AppendUvarint(b, uint64(len(head))), head...)
	var versions []string
	for _, p := range plugins {
		for v := range p.Versions {
			versions = append(versions, v)
		}
	}
	slices.Sort(versions)
	versions = slices.Compact(versions)
	// A version this node could not store (its deploy failed here) is left
	// out rather than failing every snapshot, which would let the log grow
	// without end; a node restored from it lacks that version (logged).
	wasms := make(map[string][]byte, len(versions))
	for _, v := range versions {
		wasm, err := module(v)
		if err != nil {
			if log != nil {
				log.Warn("cluster: snapshot without a plugin module this node does not hold", "version", v, "err", err)
			}
			continue
		}
		wasms[v] = wasm
	}
	b = binary.AppendUvarint(b, uint64(len(wasms)))
	for _, v := range versions {
		if wasm, ok := wasms[v]; ok {
			b = append(binary.AppendUvarint(b, uint64(len(v))), v...)
			b = append(binary.AppendUvarint(b, uint64(len(wasm))), wasm...)
		}
	}
	return b, nil
}

// readPluginSection reads what appendPluginSection wrote and returns the
// rest of b.
func readPluginSection(b []byte) (map[string]*pluginMeta, map[string][]byte, []byte, error) {
	bad := errors.New("cluster: snapshot: plugin section cut short")
	field := func() ([]byte, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return nil, bad
		}
		out := b[k : k+int(n)]
		b = b[k+int(n):]
		return out, nil
	}
	head, err := field()
	if err != nil {
		return nil, nil, nil, err
	}
	var ps pluginSnapshot
	if err := json.Unmarshal(head, &ps); err != nil {
		return nil, nil, nil, fmt.Errorf("cluster: snapshot: plugins: %w", err)
	}
	count, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, nil, nil, bad
	}
	b = b[k:]
	modules := map[string][]byte{}
	for range count {
		v, err := field()
		if err != nil {
			return nil, nil, nil, err
		}
		wasm, err := field()
		if err != nil {
			return nil, nil, nil, err
		}
		modules[string(v)] = wasm
	}
	if ps.Plugins == nil {
		ps.Plugins = map[string]*pluginMeta{}
	}
	return ps.Plugins, modules, b, nil
}

// restorePlugins queues what a restored snapshot holds for this node's
// registry: the bytes of every version, and each plugin's active one.
func (f *fsm) restorePlugins(plugins map[string]*pluginMeta, modules map[string][]byte) {
	names := slices.Sorted(maps.Keys(plugins))
	for _, name := range names {
		p := plugins[name]
		for _, v := range slices.Sorted(maps.Keys(p.Versions)) {
			if v != p.Active && modules[v] != nil {
				f.pluginQ.push(0, PluginChange{Op: "store", Version: v, Module: modules[v]})
			}
		}
		f.pluginQ.push(0, PluginChange{Op: "deploy", Name: name, Version: p.Active, Manifest: p.Manifest, Source: p.Source,
			Size: p.Versions[p.Active], Module: modules[p.Active]})
	}
}
