package cluster

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/wasmtask/wasmtask/dispatch"
)

// fsm is raft's state machine on every node: it applies each committed
// entry through the dispatch reducer (dispatch.ApplyRecord, what recovery
// uses) to its own State, so it always holds exactly the committed state.
// On the leader the engine steps ahead on a copy of it (see doc.go).
type fsm struct {
	log *slog.Logger

	mu      sync.RWMutex
	state   *dispatch.State
	members map[string]string      // node id -> HTTP address (replicated)
	err     error                  // the first entry that failed to apply: the state is suspect
	plugins map[string]*pluginMeta // replicated plugin state (plugins.go)
	pluginQ *pluginQueue           // this node's registry carries out the plugin changes

	index atomic.Uint64 // raft index of the last entry applied
	seq   atomic.Uint64 // dispatch sequence of the last record applied
	waits waiters       // Replica's waits, woken as entries apply

	// While this node leads, its committed dispatch entries are applied on
	// a goroutine of their own (applyQueued), not raft's FSM goroutine: in
	// hashicorp/raft an entry's ApplyFuture answers only once the FSM's
	// Apply returned, so the leader's own apply of each entry (decoding
	// and reducing hundreds of events under load) was on every commit's
	// path, and entries queued behind it. See doc.go, Throughput.
	deferApply atomic.Bool
	qmu        sync.Mutex
	qcond      *sync.Cond // on qmu: the queue shrank or the applier stopped
	queue      []queuedEntry
	applying   bool // an applyQueued goroutine runs (under qmu)
}

// queuedEntry is a committed entry Apply handed to applyQueued. Its data
// is raft's (the leader's own entry, or the log store's copy), which raft
// never writes after handing it over.
type queuedEntry struct {
	index uint64
	data  []byte
}

// maxQueued bounds the entries applyQueued may lag behind raft: past it,
// Apply waits (and with it raft's commits), so that a starved applier
// does not let the queue grow.
const maxQueued = 64

func newFSM(log *slog.Logger, plugins Plugins) *fsm {
	f := &fsm{log: log, state: dispatch.NewState(), members: map[string]string{},
		plugins: map[string]*pluginMeta{}, pluginQ: newPluginQueue(log, plugins)}
	f.qcond = sync.NewCond(&f.qmu)
	return f
}

type memberEntry struct {
	ID     string `json:"id"`
	HTTP   string `json:"http,omitempty"`
	Remove bool   `json:"remove,omitempty"`
}

// Apply is called by raft, in log order, on one goroutine. On the leader
// (deferApply) it queues dispatch entries for applyQueued and returns at
// once; any other entry first waits until what is queued was applied, so
// that everything applies in log order, and applies at once (a plugin
// change's proposer reads its result from the future).
func (f *fsm) Apply(l *raft.Log) any {
	if f.deferApply.Load() && l.Type == raft.LogCommand && len(l.Data) > 0 && l.Data[0] == entryEvents {
		f.enqueue(queuedEntry{index: l.Index, data: l.Data})
		return nil
	}
	f.drain()
	if l.Type != raft.LogCommand || len(l.Data) == 0 {
		f.index.Store(l.Index)
		return nil
	}
	f.mu.Lock()
	err := f.applyEntryLocked(l.Index, l.Data)
	finals := f.takeFinalsLocked()
	f.mu.Unlock()
	f.waits.wake(finals, f.seq.Load())
	return err
}

// takeFinalsLocked returns the tasks the entries applied since the last
// call made final (f.mu held), for the caller to wake their waits once
// it unlocked.
func (f *fsm) takeFinalsLocked() []dispatch.TaskID {
	finals := f.state.JustFinal
	f.state.JustFinal = nil
	return finals
}

// applyEntryLocked applies one entry and records how far the state got.
func (f *fsm) applyEntryLocked(index uint64, data []byte) error {
	err := f.applyLocked(index, data)
	if err != nil && f.err == nil {
		f.err = fmt.Errorf("raft entry %d: %w", index, err)
		f.log.Error("cluster: an entry does not apply; this node's state is suspect (restart it to rebuild from the leader)", "index", index, "err", err)
	}
	f.seq.Store(f.state.Applied)
	f.index.Store(index)
	return err
}

func (f *fsm) enqueue(e queuedEntry) {
	f.qmu.Lock()
	defer f.qmu.Unlock()
	for len(f.queue) >= maxQueued {
		f.qcond.Wait()
	}
	f.queue = append(f.queue, e)
	if !f.applying {
		f.applying = true
		go f.applyQueued()
	}
}

// applyQueued applies the queued entries, all that queued meanwhile under
// one lock, until the queue is empty.
func (f *fsm) applyQueued() {
	var batch []queuedEntry
	for {
		f.qmu.Lock()
		clear(batch)
		batch, f.queue = f.queue, batch[:0]
		if len(batch) == 0 {
			f.applying = false
			f.qcond.Broadcast()
			f.qmu.Unlock()
			return
		}
		f.qcond.Broadcast()
		f.qmu.Unlock()
		f.mu.Lock()
		for _, e := range batch {
			f.applyEntryLocked(e.index, e.data)
		}
		finals := f.takeFinalsLocked()
		f.mu.Unlock()
		f.waits.wake(finals, f.seq.Load())
	}
}

// drain waits until every queued entry is applied: the state then holds
// every entry raft handed to Apply.
func (f *fsm) drain() {
	f.qmu.Lock()
	for f.applying {
		f.qcond.Wait()
	}
	f.qmu.Unlock()
}

// setLeading turns the leader's deferred apply on or off; off, the
// entries still queued apply before any later one.
func (f *fsm) setLeading(on bool) { f.deferApply.Store(on) }

func (f *fsm) applyLocked(index uint64, data []byte) error {
	switch data[0] {
	case entryEvents:
		if first, n := binary.Uvarint(data[1:]); n > 0 && first > f.state.Applied+1 {
			// An entry of a leader's engine whose earlier entry failed
			// (leadership lost): that engine stopped without releasing
			// it, and every node skips it alike.
			f.log.Warn("cluster: skipped an entry that does not follow the state (its leader's engine had stopped)", "first", first, "applied", f.state.Applied)
			return nil
		}
		return decodeFrame(data[1:], func(seq uint64, rec []byte) error {
			_, err := dispatch.ApplyRecord(f.state, seq, rec)
			return err
		})
	case entryMember:
		var m memberEntry
		if err := json.Unmarshal(data[1:], &m); err != nil {
			return fmt.Errorf("member entry: %w", err)
		}
		if m.Remove {
			delete(f.members, m.ID)
		} else {
			f.members[m.ID] = m.HTTP
		}
		return nil
	case entryPlugin:
		return f.applyPluginLocked(index, data[1:])
	}
	return fmt.Errorf("unknown entry type %d", data[0])
}

// copyState returns a deep copy of the committed state, for a new leader's
// engine.
func (f *fsm) copyState() (*dispatch.State, error) {
	f.drain()
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.err != nil {
		return nil, f.err
	}
	return dispatch.CopyState(f.state)
}

func (f *fsm) member(id string) string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.members[id]
}

func (f *fsm) memberMap() map[string]string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return maps.Clone(f.members)
}

// read runs fn with the committed state under the read lock.
func (f *fsm) read(fn func(s *dispatch.State)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.state)
}

// Snapshot file: "WTRAFT02", uvarint length + JSON of the members, the
// plugin section (plugins.go: the plugins' state and their modules), then
// the dispatch snapshot encoding of the state (dispatch.EncodeState).
// "WTRAFT01" (before plugins were replicated) has no plugin section.
const (
	snapMagic   = "WTRAFT02"
	snapMagicV1 = "WTRAFT01"
)

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.drain() // the snapshot holds every entry raft applied
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.err != nil {
		return nil, f.err
	}
	state, err := dispatch.EncodeState(f.state)
	if err != nil {
		return nil, err
	}
	members, err := json.Marshal(f.members)
	if err != nil {
		return nil, err
	}
	b := append([]byte(snapMagic), binary.AppendUvarint(nil, uint64(len(members)))...)
	snap := &fsmSnapshot{head: append(b, members...), plugins: f.pluginMetaCopyLocked(), state: state, log: f.log}
	if f.pluginQ.apply != nil {
		snap.module = f.pluginQ.apply.Module
	}
	return snap, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.drain()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	rest, v2 := bytes.CutPrefix(b, []byte(snapMagic))
	if !v2 {
		var ok bool
		if rest, ok = bytes.CutPrefix(b, []byte(snapMagicV1)); !ok {
			return errors.New("cluster: snapshot: not a wasmtask raft snapshot")
		}
	}
	n, k := binary.Uvarint(rest)
	if k <= 0 || uint64(len(rest)-k) < n {
		return errors.New("cluster: snapshot: members cut short")
	}
	members := map[string]string{}
	if err := json.Unmarshal(rest[k:k+int(n)], &members); err != nil {
		return fmt.Errorf("cluster: snapshot: members: %w", err)
	}
	rest = rest[k+int(n):]
	plugins, modules := map[string]*pluginMeta{}, map[string][]byte{}
	if v2 {
		if plugins, modules, rest, err = readPluginSection(rest); err != nil {
			return err
		}
	}
	state, err := dispatch.DecodeState(rest)
	if err != nil {
		return fmt.Errorf("cluster: snapshot: %w", err)
	}
	f.mu.Lock()
	f.state, f.members, f.err, f.plugins = state, members, nil, plugins
	f.seq.Store(state.Applied)
	f.restorePlugins(plugins, modules)
	f.mu.Unlock()
	f.waits.wakeAll()
	return nil
}

// fsmSnapshot is captured under the FSM's lock; Persist, which raft runs
// beside later applies, reads the modules' bytes (immutable, by hash).
type fsmSnapshot struct {
	head    []byte // magic and members
	plugins map[string]*pluginMeta
	module  func(version string) ([]byte, error)
	state   []byte
	log     *slog.Logger
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	module := s.module
	if module == nil {
		module = func(v string) ([]byte, error) { return nil, fmt.Errorf("no plugin registry on this node") }
	}
	b, err := appendPluginSection(s.head, s.plugins, module, s.log)
	if err == nil {
		_, err = sink.Write(append(b, s.state...))
	}
	if err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (*fsmSnapshot) Release() {}
