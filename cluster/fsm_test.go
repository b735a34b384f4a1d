package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wasmtask/wasmtask/dispatch"
)

// The leader applies each event once: its FSM skips the entries its own
// engine produced (advancing its index and sequence only), so its commits
// never wait for the FSM (here locked, as by a long read); the committed
// state, read on the leader, is caught up from the node's log and equals
// the engine's committed state.
func TestLeaderSkipsItsOwnEntries(t *testing.T) {
	c := newTestCluster(t)
	defer c.closeAll()
	n1 := c.start("n1", true)
	e := c.leader().Engine()
	ctx, cancel := context.WithTimeout(context.Background(), 2*testWait)
	defer cancel()
	submitAndWait(t, e, "a", 5)

	n1.fsm.mu.Lock()
	submitted := make(chan error, 1)
	go func() {
		_, err := e.Submit(ctx, dispatch.TaskSpec{ID: "b", Handler: "noop"})
		submitted <- err
	}()
	select {
	case err := <-submitted:
		if err != nil {
			n1.fsm.mu.Unlock()
			t.Fatal(err)
		}
	case <-time.After(testWait): // the FSM stays locked until then: any bound shows it
		n1.fsm.mu.Unlock()
		t.Fatal("the submit waited for the leader's FSM")
	}
	stale, applied, seq := n1.fsm.staleLocked(), n1.fsm.state.Applied, n1.fsm.seq.Load()
	n1.fsm.mu.Unlock()
	if !stale || applied >= seq || seq < e.DurableSeq() {
		t.Fatalf("the leader's FSM: stale %v, its state at %d, its sequence %d, the engine's durable %d: want a stale state behind a sequence at the engine's", stale, applied, seq, e.DurableSeq())
	}
	waitCompleted(t, ctx, e, []dispatch.TaskID{"b"})
	if !n1.Replica().WaitApplied(ctx, e.DurableSeq()) {
		t.Fatalf("the leader's FSM did not reach the engine's durable sequence %d", e.DurableSeq())
	}
	engineSeq, engineDigest := engineDigest(t, e)
	fsmSeq, fsmDigest, err := n1.Digest() // catches up from the log
	if err != nil {
		t.Fatal(err)
	}
	if fsmSeq != engineSeq || fsmDigest != engineDigest {
		t.Errorf("the leader's committed state caught up from its log: %d %s; the engine's: %d %s", fsmSeq, fsmDigest, engineSeq, engineDigest)
	}
	v, ok := n1.Replica().TaskWithoutInput("b")
	if !ok || v.State != dispatch.TaskCompleted {
		t.Errorf("task b in the leader's committed state: %v %+v", ok, v)
	}
	if st := n1.Status(); st.Tasks != 6 {
		t.Errorf("the leader's committed state holds %d tasks, want 6", st.Tasks)
	}
}

// engineDigest is Digest for an engine's committed state (once the
// engine is idle: its state is then all committed).
func engineDigest(t *testing.T, e *dispatch.Engine) (uint64, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	b, seq, err := e.CommittedState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return seq, fmt.Sprintf("%x", sha256.Sum256(b))
}

// The skip path entry by entry, on an FSM fed by hand with the entries a
// real leader committed: as a leader it skips its engine's entries (the
// very bytes it handed to raft) and nothing else, an own entry that never
// committed leaves nothing behind, and once it follows, the next entry
// (another leader's bytes) applies on a state caught up from its log.
// Its states then equal the real leader's, entry by entry.
func TestFSMSkipsOnlyItsOwnCommittedEntries(t *testing.T) {
	c := newTestCluster(t)
	defer c.closeAll()
	n1 := c.start("n1", true)
	e := c.leader().Engine()
	for i := range 4 {
		submitAndWait(t, e, fmt.Sprintf("r%d", i), 5) // a few entries each
	}
	entries, all := dispatchEntries(t, n1)
	if len(entries) < 6 {
		t.Fatalf("%d dispatch entries: too few for the test", len(entries))
	}
	// The expected committed state after each entry: a plain replica's.
	want := make([]string, len(entries))
	plain := newFSM(quietLog, nil, raft.NewInmemStore())
	for i, l := range entries {
		if err := applyOK(plain, l); err != nil {
			t.Fatal(err)
		}
		want[i] = fsmDigest(t, plain)
	}

	// The node under test: its log holds the same entries.
	logs := raft.NewInmemStore()
	if err := logs.StoreLogs(all); err != nil {
		t.Fatal(err)
	}
	f := newFSM(quietLog, nil, logs)
	lead := len(entries) / 2
	// Another node's entry first (applied), then its own: skipped.
	if err := applyOK(f, copyLog(entries[0])); err != nil {
		t.Fatal(err)
	}
	for _, l := range entries[1:lead] {
		f.own.add(l.Data)
	}
	// A frame of its engine that never commits (leadership lost).
	f.own.add(slices.Clone(entries[lead].Data))
	for i, l := range entries[1:lead] {
		if err := applyOK(f, l); err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		stale := f.staleLocked()
		f.mu.Unlock()
		if !stale || f.seq.Load() != plainSeq(t, entries[1+i]) || f.index.Load() != l.Index {
			t.Fatalf("own entry %d: stale %v, sequence %d, index %d: not skipped", l.Index, stale, f.seq.Load(), f.index.Load())
		}
	}
	// Read while leading: caught up from the log, and the same as a replica's.
	if got := fsmDigest(t, f); got != want[lead-1] {
		t.Fatalf("caught up after entry %d: digest %s, want %s", entries[lead-1].Index, got, want[lead-1])
	}
	// Leadership lost: another leader's entry at the never-committed
	// frame's place applies, before and after the engine stopped.
	if err := applyOK(f, copyLog(entries[lead])); err != nil {
		t.Fatal(err)
	}
	if got := f.skippedTo.Load(); got >= entries[lead].Index {
		t.Fatalf("another leader's entry %d was skipped (skipped to %d)", entries[lead].Index, got)
	}
	if got := fsmDigest(t, f); got != want[lead] {
		t.Fatalf("after entry %d, another leader's: digest %s, want %s", entries[lead].Index, got, want[lead])
	}
	f.follow()
	for i := lead + 1; i < len(entries); i++ {
		if err := applyOK(f, copyLog(entries[i])); err != nil {
			t.Fatal(err)
		}
		if got := fsmDigest(t, f); got != want[i] {
			t.Fatalf("after entry %d as a follower: digest %s, want %s", entries[i].Index, got, want[i])
		}
	}
}

// dispatchEntries reads node n's raft log: its dispatch entries (frames
// of events), and every entry.
func dispatchEntries(t testing.TB, n *Node) (entries, all []*raft.Log) {
	t.Helper()
	last, err := n.store.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= last; i++ {
		var l raft.Log
		if err := n.store.GetLog(i, &l); err != nil {
			t.Fatal(err)
		}
		all = append(all, &l)
		if l.Type == raft.LogCommand && len(l.Data) > 0 && l.Data[0] == entryEvents {
			entries = append(entries, &l)
		}
	}
	return entries, all
}

func applyOK(f *fsm, l *raft.Log) error {
	if err, _ := f.Apply(l).(error); err != nil {
		return fmt.Errorf("entry %d: %w", l.Index, err)
	}
	return nil
}

func copyLog(l *raft.Log) *raft.Log {
	c := *l
	c.Data = slices.Clone(l.Data)
	return &c
}

func plainSeq(t *testing.T, l *raft.Log) uint64 {
	first, count, ok := frameSpan(l.Data[1:])
	if !ok {
		t.Fatalf("entry %d: bad frame", l.Index)
	}
	return first + count - 1
}

func fsmDigest(t *testing.T, f *fsm) string {
	t.Helper()
	var d string
	f.read(func(s *dispatch.State) {
		b, err := dispatch.EncodeState(s)
		if err != nil {
			t.Fatal(err)
		}
		d = fmt.Sprintf("%d/%x", s.Applied, sha256.Sum256(b))
	})
	return d
}

// A follower's snapshot is taken under the FSM's lock and encoded in
// Persist, while later entries apply (raft's FSM goroutine does not wait
// for the encoding): what Persist writes is the state when Snapshot ran,
// tasks still in progress then included, however far the applies went
// meanwhile (-race: the encoding reads nothing an apply writes).
func TestFollowerSnapshotEncodesTheStateItWasTakenAt(t *testing.T) {
	c := newTestCluster(t)
	defer c.closeAll()
	n1 := c.start("n1", true)
	e := c.leader().Engine()
	for i := range 4 {
		submitAndWait(t, e, fmt.Sprintf("r%d", i), 20)
	}
	entries, _ := dispatchEntries(t, n1)
	f := newFSM(quietLog, nil, raft.NewInmemStore())
	// Apply up to an entry after which some task is still in progress.
	k, inProgress := 0, 0
	for k < len(entries)-2 && (k < 3 || inProgress == 0) {
		if err := applyOK(f, copyLog(entries[k])); err != nil {
			t.Fatal(err)
		}
		k++
		inProgress = 0
		f.read(func(s *dispatch.State) {
			for id := range s.Tasks {
				if exists, final := dispatch.TaskFinal(s, id); exists && !final {
					inProgress++
				}
			}
		})
	}
	if inProgress == 0 {
		t.Fatalf("no entry of %d leaves a task in progress", len(entries))
	}
	var want []byte
	var err error
	f.read(func(s *dispatch.State) {
		if want, err = dispatch.EncodeState(s); err != nil {
			t.Fatal(err)
		}
	})
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Half the later entries apply before Persist, the rest beside it.
	mid := k + (len(entries)-k)/2
	for _, l := range entries[k:mid] {
		if err := applyOK(f, copyLog(l)); err != nil {
			t.Fatal(err)
		}
	}
	applied := make(chan error, 1)
	go func() {
		for _, l := range entries[mid:] {
			if err := applyOK(f, copyLog(l)); err != nil {
				applied <- err
				return
			}
		}
		applied <- nil
	}()
	var sink bufferSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	if !sink.closed || !bytes.HasSuffix(sink.Bytes(), want) {
		t.Fatalf("the snapshot (%d bytes, closed %v) does not end with the state at entry %d (%d bytes, %d tasks in progress)", sink.Len(), sink.closed, entries[k-1].Index, len(want), inProgress)
	}
	var final []byte
	f.read(func(s *dispatch.State) { final, err = dispatch.EncodeState(s) })
	if err != nil || bytes.Equal(final, want) {
		t.Fatalf("the applies after the snapshot changed nothing (err %v): the test shows nothing", err)
	}
}

// bufferSink is a raft.SnapshotSink in memory.
type bufferSink struct {
	bytes.Buffer
	closed bool
}

func (s *bufferSink) ID() string    { return "test" }
func (s *bufferSink) Cancel() error { return nil }
func (s *bufferSink) Close() error  { s.closed = true; return nil }
