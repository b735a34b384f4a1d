package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wasmtask/wasmtask/dispatch"
)

// fsm is raft's state machine on every node: it applies each committed
// entry through the dispatch reducer (dispatch.ApplyRecord, what recovery
// uses) to its own State, so it always holds exactly the committed state.
//
// On the leader the engine steps ahead of the commit on a state of its
// own, and the FSM skips the entries that engine produced (own): it only
// advances its applied index and sequence, and its State falls behind
// (stale). It catches up from this node's raft log when the committed
// state is needed (a read, a new engine, an entry it must apply itself,
// leadership lost), and raft's snapshots on the leader come from the
// engine's committed state. See doc.go, "Applying once on the leader".
type fsm struct {
	log  *slog.Logger
	logs raft.LogStore // this node's log: a stale state catches up from it

	mu      sync.RWMutex
	state   *dispatch.State                               // nil while baseSnap holds it
	members map[string]string                             // node id -> HTTP address (replicated)
	err     error                                         // the first entry that failed to apply: the state is suspect
	plugins map[string]*pluginMeta                        // replicated plugin state (plugins.go)
	pluginQ *pluginQueue                                  // this node's registry carries out the plugin changes
	engine  func(context.Context) ([]byte, uint64, error) // the leader's engine's committed state (Engine.CommittedState), nil on a follower

	// stateIndex: state holds every dispatch entry up to this raft index
	// (0 after a snapshot was restored: from the log's first entry on, the
	// state's sequence tells what it holds). baseSnap, when set, is the
	// committed state at stateIndex in its snapshot encoding (taken from
	// the engine for raft's snapshot), which replaces state on catching up.
	stateIndex uint64
	baseSnap   []byte

	index     atomic.Uint64 // raft index of the last entry applied (or skipped)
	seq       atomic.Uint64 // dispatch sequence of the last record applied (or skipped)
	skippedTo atomic.Uint64 // raft index of the last entry skipped: the state is stale while above stateIndex
	waits     waiters       // Replica's waits, woken as entries apply
	own       ownFrames     // the entries this node's engine handed to raft while it leads
}

// ownFrames are the entries (their data, as handed to raft.Apply) the
// leader's engine produced and its FSM has not seen yet, in log order.
// hashicorp/raft hands the leader's FSM the very Log it was given (the
// same Data), so an entry is this engine's exactly when it is the front's
// bytes: a new leader's entry, or one read back from the store, never is.
type ownFrames struct {
	mu     sync.Mutex
	frames [][]byte
}

func (o *ownFrames) add(data []byte) {
	o.mu.Lock()
	o.frames = append(o.frames, data)
	o.mu.Unlock()
}

// take reports whether data is the next own entry, and forgets it.
func (o *ownFrames) take(data []byte) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.frames) == 0 || len(data) == 0 || len(o.frames[0]) != len(data) || &o.frames[0][0] != &data[0] {
		return false
	}
	o.frames[0] = nil
	o.frames = o.frames[1:]
	return true
}

func (o *ownFrames) reset() {
	o.mu.Lock()
	o.frames = nil
	o.mu.Unlock()
}

func newFSM(log *slog.Logger, plugins Plugins, logs raft.LogStore) *fsm {
	return &fsm{log: log, logs: logs, state: dispatch.NewState(), members: map[string]string{},
		plugins: map[string]*pluginMeta{}, pluginQ: newPluginQueue(log, plugins)}
}

type memberEntry struct {
	ID     string `json:"id"`
	HTTP   string `json:"http,omitempty"`
	Remove bool   `json:"remove,omitempty"`
}

// Apply is called by raft, in log order, on one goroutine. An entry of
// this node's own engine is skipped (its events are in the engine's
// state already), without taking the state's lock: the leader's commits
// never wait for a read or a catch-up.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand || len(l.Data) == 0 {
		f.index.Store(l.Index)
		return nil
	}
	if l.Data[0] == entryEvents && f.own.take(l.Data) && f.skip(l) {
		return nil
	}
	f.mu.Lock()
	var err error
	if l.Data[0] == entryEvents {
		err = f.freshLocked() // the skipped entries first
	}
	if err == nil {
		err = f.applyEntryLocked(l.Index, l.Data)
	} else {
		f.index.Store(l.Index)
	}
	finals := f.takeFinalsLocked()
	f.mu.Unlock()
	f.waits.wake(finals, f.seq.Load())
	return err
}

// skip records an own entry as applied without applying it, if it follows
// the sequence applied so far (otherwise it is applied as any other).
func (f *fsm) skip(l *raft.Log) bool {
	first, count, ok := frameSpan(l.Data[1:])
	if !ok || count == 0 || first != f.seq.Load()+1 {
		return false
	}
	f.seq.Store(first + count - 1)
	f.skippedTo.Store(l.Index)
	f.index.Store(l.Index)
	// The sequence waits wake as on any entry; a task's wait (a read
	// started before this node led) looks again, catching up first.
	f.waits.wakeSkipped(f.seq.Load())
	return true
}

// staleLocked reports whether the state lacks skipped entries (f.mu held).
func (f *fsm) staleLocked() bool {
	return f.baseSnap != nil || f.skippedTo.Load() > f.stateIndex
}

// stale reports whether the state lacks skipped entries.
func (f *fsm) stale() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.staleLocked()
}

// freshLocked brings a stale state up to the last entry applied (f.mu
// held for writing): from baseSnap if set, then the skipped entries read
// back from this node's log, where the leader wrote them before they
// were committed. Raft never compacts them first: a snapshot while the
// state is stale sets baseSnap (Persist).
func (f *fsm) freshLocked() error {
	if !f.staleLocked() {
		return nil
	}
	err := f.catchUpLocked()
	if err != nil && f.err == nil {
		f.err = fmt.Errorf("cluster: catch up from the log: %w", err)
		f.log.Error("cluster: the committed state cannot catch up from this node's log; its state is suspect (restart it to rebuild from the leader)", "err", err)
	}
	return err
}

func (f *fsm) catchUpLocked() error {
	if f.baseSnap != nil {
		state, err := dispatch.DecodeState(f.baseSnap)
		if err != nil {
			f.state = dispatch.NewState() // suspect (f.err), but never nil
			return fmt.Errorf("the engine's state: %w", err)
		}
		f.state, f.baseSnap = state, nil
		defer f.waits.wakeAll() // the state was replaced
	}
	target := f.index.Load()
	from := f.stateIndex + 1
	if first, err := f.logs.FirstIndex(); err != nil {
		return err
	} else if first > from {
		from = first // after a restored snapshot (stateIndex 0): its sequence skips what it holds
	}
	var l raft.Log
	for i := from; i <= target; i++ {
		if err := f.logs.GetLog(i, &l); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		if l.Type == raft.LogCommand && len(l.Data) > 0 && l.Data[0] == entryEvents {
			if err := f.applyEventsLocked(l.Data[1:]); err != nil {
				return fmt.Errorf("entry %d: %w", i, err)
			}
		}
	}
	f.stateIndex = target
	f.waits.wake(f.takeFinalsLocked(), f.seq.Load())
	return nil
}

// takeFinalsLocked returns the tasks the entries applied since the last
// call made final (f.mu held), for the caller to wake their waits once
// it unlocked.
func (f *fsm) takeFinalsLocked() []dispatch.TaskID {
	if f.state == nil {
		return nil
	}
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
	if data[0] == entryEvents {
		f.seq.Store(f.state.Applied)
		f.stateIndex = index
	}
	f.index.Store(index)
	return err
}

// lead makes the FSM skip the entries of this node's engine (their data
// handed to raft through own) and take raft's snapshots from committed,
// the engine's committed state; follow ends it: the entries of that
// engine still to come apply as any other.
func (f *fsm) lead(committed func(context.Context) ([]byte, uint64, error)) {
	f.mu.Lock()
	f.engine = committed
	f.mu.Unlock()
}

func (f *fsm) follow() {
	f.own.reset()
	f.mu.Lock()
	f.engine = nil
	f.mu.Unlock()
}

func (f *fsm) applyLocked(index uint64, data []byte) error {
	switch data[0] {
	case entryEvents:
		return f.applyEventsLocked(data[1:])
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

// applyEventsLocked applies a frame of dispatch records (data without its
// type byte). Records the state holds already are passed over.
func (f *fsm) applyEventsLocked(data []byte) error {
	first, count, ok := frameSpan(data)
	switch {
	case ok && first > f.state.Applied+1:
		// An entry of a leader's engine whose earlier entry failed
		// (leadership lost): that engine stopped without releasing
		// it, and every node skips it alike.
		f.log.Warn("cluster: skipped an entry that does not follow the state (its leader's engine had stopped)", "first", first, "applied", f.state.Applied)
		return nil
	case ok && first+count <= f.state.Applied+1:
		return nil // held already (a state from a snapshot newer than its index)
	}
	return decodeFrame(data, func(seq uint64, rec []byte) error {
		_, err := dispatch.ApplyRecord(f.state, seq, rec)
		return err
	})
}

// copyState returns a deep copy of the committed state, for a new leader's
// engine.
func (f *fsm) copyState() (*dispatch.State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.freshLocked()
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

// read runs fn with the committed state under the read lock (a stale
// one catches up first, under the write lock).
func (f *fsm) read(fn func(s *dispatch.State)) {
	f.mu.RLock()
	if !f.staleLocked() {
		defer f.mu.RUnlock()
		fn(f.state)
		return
	}
	f.mu.RUnlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.freshLocked()
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
	f.mu.Lock() // Snapshot runs on raft's FSM goroutine: no entry applies meanwhile
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	members, err := json.Marshal(f.members)
	if err != nil {
		return nil, err
	}
	b := append([]byte(snapMagic), binary.AppendUvarint(nil, uint64(len(members)))...)
	snap := &fsmSnapshot{head: append(b, members...), plugins: f.pluginMetaCopyLocked(), log: f.log}
	if f.pluginQ.apply != nil {
		snap.module = f.pluginQ.apply.Module
	}
	if f.staleLocked() && f.engine != nil {
		// The leader: its engine's committed state, captured in Persist
		// (beside later applies, which its commits need), at a sequence
		// at or past this one; the entries after the snapshot's index
		// that it holds already are passed over when they are replayed.
		snap.fsm, snap.engine, snap.index, snap.seq = f, f.engine, f.index.Load(), f.seq.Load()
		return snap, nil
	}
	if err := f.freshLocked(); err != nil {
		return nil, err
	}
	// Taken here, encoded in Persist: raft's FSM goroutine waits for
	// Snapshot, and with it every apply (and every read or forwarded write
	// waiting for one). Encoding 100k retained tasks takes ~100 ms,
	// taking them ~14 ms (dispatch BenchmarkSnapshot).
	snap.capture = dispatch.CaptureState(f.state)
	return snap, nil
}

// setBase records state, the committed state at raft index index that a
// snapshot took from the engine, as the base a stale state catches up
// from: raft may now compact the log up to that index.
func (f *fsm) setBase(index uint64, state []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.staleLocked() && f.stateIndex < index {
		f.state, f.baseSnap, f.stateIndex = nil, state, index
	}
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
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
	f.baseSnap, f.stateIndex = nil, 0
	f.skippedTo.Store(0)
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
	capture *dispatch.StateCapture // a follower's state, encoded in Persist
	log     *slog.Logger

	// On the leader, state is the engine's committed state, taken in
	// Persist, at sequence seq of raft index index or later.
	fsm        *fsm
	engine     func(context.Context) ([]byte, uint64, error)
	index, seq uint64
}

// engineStateWait bounds Persist's wait for the engine's committed state
// (a commit round trip, and the encoding).
const engineStateWait = time.Minute

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	module := s.module
	if module == nil {
		module = func(v string) ([]byte, error) { return nil, fmt.Errorf("no plugin registry on this node") }
	}
	if s.engine != nil {
		ctx, cancel := context.WithTimeout(context.Background(), engineStateWait)
		state, seq, err := s.engine(ctx)
		cancel()
		if err == nil && seq < s.seq {
			err = fmt.Errorf("the engine's committed state is at sequence %d, the snapshot needs %d", seq, s.seq)
		}
		if err != nil {
			sink.Cancel()
			return fmt.Errorf("cluster: snapshot from the engine: %w", err)
		}
		s.state = state
		s.fsm.setBase(s.index, state)
	}
	if s.capture != nil {
		state, err := s.capture.Encode()
		if err != nil {
			sink.Cancel()
			return fmt.Errorf("cluster: snapshot: encode the state: %w", err)
		}
		s.state = state
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
