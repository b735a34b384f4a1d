package machine

import (
	"cmp"
	"container/heap"
	"fmt"
	"slices"
)

// State is everything the engine knows, rebuilt on recovery by applying the
// WAL (after the newest snapshot) to an empty State. Only apply mutates it.
type State struct {
	Tasks         map[TaskID]*Task
	Runs          map[RunID]*Run
	Paused        bool
	NextSubmitSeq uint64
	Applied       uint64 // sequence of the last WAL record applied

	// Indexes derived from the maps; rebuilt by reindex after a snapshot
	// load. Heap entries are invalidated lazily through Run.gen.
	ready  readyHeap
	timers dueHeap // scheduled and retry_wait runs by DueAt
	leases dueHeap // leased and running runs by LeaseExp
	// finals[finalsHead:] are the retainable final tasks in retention
	// order (Finals); retention pops the oldest by moving finalsHead, and
	// addFinal reuses the room it left (workflow.go).
	finals     []TaskID
	finalsHead int
	// finalKeys are the retention keys of finals' tasks, at the same
	// indexes: kept beside the ids so that ordering and retention need no
	// map lookup per task (workflow.go).
	finalKeys []finalKey
	counts    runCounts
	Inflight  int // leased + running

	// Workflow indexes (workflow.go).
	keyHolder map[string]RunID      // concurrency key -> the run holding it
	blocked   map[string]*readyHeap // ready runs waiting for a key, by key
	Doomed    []doom                // tasks to cancel because a prerequisite failed; drained by Core
	JustFinal []TaskID              // tasks that became final since the loop last looked (to wake Wait)
	// taskMem is the memory for the next task submitted, when its
	// submitter allocated it (SubmitInput.Mem): the loop then writes a
	// task into pages already touched, rather than taking the page faults
	// of a growing heap on its own time.
	taskMem *Task
	// submitted is the task the last event applied submitted, nil after
	// any other event but EvRunCreated: its runs, created next, find it
	// without a lookup in Tasks.
	submitted *Task
	// newID is the id of the task about to be submitted when the Core
	// found it absent from Tasks just before (handleSubmit): its
	// submission needs no second lookup to check that.
	newID TaskID
	// runHint is the run the next event applied names, when the Core has
	// it at hand (it found it in this state just before emitting the
	// event): Apply then finds it without a lookup in Runs. Cleared by
	// every event.
	runHint *Run
	// taskHint is likewise the task the next event applied names, which
	// the Core just found in Tasks (retention drops it): cleared by every
	// event.
	taskHint *Task
}

// NewState returns an empty State.
func NewState() *State {
	return &State{Tasks: map[TaskID]*Task{}, Runs: map[RunID]*Run{}, NextSubmitSeq: 1,
		keyHolder: map[string]RunID{}, blocked: map[string]*readyHeap{}}
}

// InvariantError is returned by apply for an event that does not fit the
// state: a transition from a state the run is not in, an unknown run, a
// wrong attempt number. It means a bug or a damaged log; the engine stops.
type InvariantError struct {
	Event  EventType
	Run    RunID
	Task   TaskID
	Reason string
}

func (e *InvariantError) Error() string {
	return fmt.Sprintf("dispatch: invariant violated by %v (task %q, run %q): %s", e.Event, e.Task, e.Run, e.Reason)
}

// readyEntry orders ready runs: priority desc, due time, submission order, run index.
type readyEntry struct {
	run      *Run
	gen      uint64
	priority int
	due      int64
	seq      uint64
}

type readyHeap []readyEntry

func (h readyHeap) Len() int { return len(h) }
func (h readyHeap) Less(i, j int) bool {
	a, b := &h[i], &h[j]
	if a.priority != b.priority {
		return a.priority > b.priority
	}
	if a.due != b.due {
		return a.due < b.due
	}
	if a.seq != b.seq {
		return a.seq < b.seq
	}
	return a.run.Index < b.run.Index
}
func (h readyHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *readyHeap) Push(x any)   { *h = append(*h, x.(readyEntry)) }
func (h *readyHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// dueEntry orders runs by a time, then submission order and run index: a
// total order, so that runs due at the same time come out of the heap in
// the same order in a state rebuilt from a snapshot as in the original.
type dueEntry struct {
	run *Run
	gen uint64
	at  int64
	seq uint64 // the task's SubmitSeq
}

type dueHeap []dueEntry

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	a, b := &h[i], &h[j]
	if a.at != b.at {
		return a.at < b.at
	}
	if a.seq != b.seq {
		return a.seq < b.seq
	}
	return a.run.Index < b.run.Index
}
func (h dueHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)   { *h = append(*h, x.(dueEntry)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// The heaps are used through the typed push/pop below rather than
// container/heap, whose any-typed Push and Pop allocate for every entry.
// heapLess is the part of heap.Interface that sifting needs.
type heapLess interface {
	Len() int
	Less(i, j int) bool
	Swap(i, j int)
}

// SiftUp restores the heap order of h after element j moved up (a smaller key).
func SiftUp(h heapLess, j int) {
	for {
		i := (j - 1) / 2 // parent
		if i == j || !h.Less(j, i) {
			break
		}
		h.Swap(i, j)
		j = i
	}
}

// SiftDown restores the heap order of h[i0:n] after element i0 moved down (a larger key).
func SiftDown(h heapLess, i0, n int) {
	i := i0
	for {
		j1 := 2*i + 1
		if j1 >= n || j1 < 0 {
			break
		}
		j := j1 // left child
		if j2 := j1 + 1; j2 < n && h.Less(j2, j1) {
			j = j2
		}
		if !h.Less(j, i) {
			break
		}
		h.Swap(i, j)
		i = j
	}
}

func (h *dueHeap) push(e dueEntry) {
	*h = append(*h, e)
	SiftUp(h, len(*h)-1)
}

// pop removes the first entry (as heap.Pop does).
func (h *dueHeap) pop() {
	n := len(*h) - 1
	h.Swap(0, n)
	SiftDown(h, 0, n)
	(*h)[n] = dueEntry{}
	*h = (*h)[:n]
}

func (h *readyHeap) push(e readyEntry) {
	*h = append(*h, e)
	SiftUp(h, len(*h)-1)
}

func (h *readyHeap) pop() {
	n := len(*h) - 1
	h.Swap(0, n)
	SiftDown(h, 0, n)
	(*h)[n] = readyEntry{}
	*h = (*h)[:n]
}

// Stale entries leave a heap only when they reach its top, which for a
// lease is its expiry (timeout + grace) and during a replay never. So that
// they do not pile up (2 lease entries per attempt, each pinning its Run),
// a heap holding more than twice its live entries (plus some slack) is
// rebuilt from the live ones: amortized O(1) per push, deterministic.
const heapSlack = 1024

func (h *dueHeap) compact(live int) {
	if len(*h) > 2*live+heapSlack {
		*h = keepLive(*h, func(e dueEntry) bool { return e.run.gen == e.gen })
		heap.Init(h)
	}
}

func (h *readyHeap) compact(live int) {
	if len(*h) > 2*live+heapSlack {
		*h = keepLive(*h, func(e readyEntry) bool { return e.run.gen == e.gen })
		heap.Init(h)
	}
}

// keepLive filters s in place, clearing the tail so that dropped entries
// do not pin their runs.
func keepLive[E any](s []E, live func(E) bool) []E {
	kept := s[:0]
	for _, e := range s {
		if live(e) {
			kept = append(kept, e)
		}
	}
	clear(s[len(kept):])
	return kept
}

// peekValid drops stale entries and returns the first live one.
func (h *dueHeap) peekValid() (dueEntry, bool) {
	for len(*h) > 0 {
		e := (*h)[0]
		if e.run.gen == e.gen {
			return e, true
		}
		h.pop()
	}
	return dueEntry{}, false
}

func (h *readyHeap) peekValid() (readyEntry, bool) {
	for len(*h) > 0 {
		e := (*h)[0]
		if e.run.gen == e.gen {
			return e, true
		}
		h.pop()
	}
	return readyEntry{}, false
}

// index records run r, which just entered its current state, in the
// indexes that state needs. The previous entries become stale via gen.
func (s *State) index(r *Run) {
	r.gen++
	switch r.State {
	case RunReady:
		t := s.taskOf(r)
		s.ready.push(readyEntry{run: r, gen: r.gen, priority: t.Spec.Priority, due: r.DueAt, seq: t.SubmitSeq})
		s.ready.compact(s.counts.of(RunReady))
	case RunScheduled, RunRetryWait:
		t := s.taskOf(r)
		if r.State == RunScheduled && t != nil && t.linked().waiting > 0 {
			return // gated by prerequisites: indexed again when the last one completes
		}
		s.timers.push(dueEntry{run: r, gen: r.gen, at: r.DueAt, seq: submitSeq(t)})
		s.timers.compact(s.counts.of(RunScheduled) + s.counts.of(RunRetryWait))
	case RunLeased, RunRunning:
		s.leases.push(dueEntry{run: r, gen: r.gen, at: r.LeaseExp, seq: submitSeq(s.taskOf(r))})
		s.leases.compact(s.Inflight)
	}
}

// reindex rebuilds the derived indexes from the maps (after a snapshot load).
func (s *State) reindex() {
	s.ready, s.timers, s.leases, s.finals, s.finalKeys, s.finalsHead = nil, nil, nil, nil, nil, 0
	s.keyHolder, s.blocked, s.Doomed = map[string]RunID{}, map[string]*readyHeap{}, nil
	s.counts = runCounts{}
	s.Inflight = 0
	var fins []*Task
	for _, t := range s.Tasks {
		t.finalRuns = 0
		t.runs = t.runs[:0]
		for _, id := range t.Runs {
			r := s.Runs[id]
			r.task = t
			t.runs = append(t.runs, r)
			s.counts.add(r.State, 1)
			if r.State == RunLeased || r.State == RunRunning {
				s.Inflight++
			}
			if r.State.Final() {
				t.finalRuns++
			}
		}
	}
	s.reindexWorkflow() // before indexing runs: gating decides what is indexed
	for _, t := range s.Tasks {
		for _, r := range t.runs {
			s.index(r)
			if k := t.Spec.ConcurrencyKey; k != "" && len(r.Attempts) > 0 && !r.State.Final() {
				s.keyHolder[k] = r.ID
			}
		}
	}
	for _, t := range s.Tasks {
		if s.retainable(t) {
			fins = append(fins, t)
		}
	}
	slices.SortFunc(fins, func(a, b *Task) int {
		return cmp.Or(cmp.Compare(a.FinalAt, b.FinalAt), cmp.Compare(a.SubmitSeq, b.SubmitSeq))
	})
	for _, t := range fins {
		s.finals = append(s.finals, t.Spec.ID)
		s.finalKeys = append(s.finalKeys, keyOf(t))
	}
}

// Counts returns the number of runs in each state.
func (s *State) Counts() map[RunState]int {
	m := map[RunState]int{}
	for i, v := range s.counts.known {
		if v != 0 {
			m[runStates[i]] = v
		}
	}
	for k, v := range s.counts.other {
		if v != 0 {
			m[k] = v
		}
	}
	return m
}

// runStates are the states runCounts keeps in an array: every run state
// changes two counts, so a map lookup each (hashing the name) showed up in
// the engine's profile.
var runStates = [...]RunState{RunScheduled, RunReady, RunLeased, RunRunning, RunRetryWait, RunCompleted, RunFailed, RunCanceled, RunSuspended}

// runCounts counts runs by state.
type runCounts struct {
	known [len(runStates)]int
	other map[RunState]int // a state this build does not know (a damaged snapshot)
}

func runStateIndex(st RunState) int {
	switch st {
	case RunScheduled:
		return 0
	case RunReady:
		return 1
	case RunLeased:
		return 2
	case RunRunning:
		return 3
	case RunRetryWait:
		return 4
	case RunCompleted:
		return 5
	case RunFailed:
		return 6
	case RunCanceled:
		return 7
	case RunSuspended:
		return 8
	}
	return -1
}

func (c *runCounts) add(st RunState, d int) {
	if i := runStateIndex(st); i >= 0 {
		c.known[i] += d
		return
	}
	if c.other == nil {
		c.other = map[RunState]int{}
	}
	c.other[st] += d
}

func (c *runCounts) of(st RunState) int {
	if i := runStateIndex(st); i >= 0 {
		return c.known[i]
	}
	return c.other[st]
}

// taskOf returns r's task: the pointer apply and reindex keep, or a lookup
// for a run not built by them.
func submitSeq(t *Task) uint64 {
	if t == nil {
		return 0
	}
	return t.SubmitSeq
}

func (s *State) taskOf(r *Run) *Task {
	if r.task != nil {
		return r.task
	}
	return s.Tasks[r.Task]
}
