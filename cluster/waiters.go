package cluster

import (
	"container/heap"
	"slices"
	"sync"

	"github.com/wasmtask/wasmtask/dispatch"
)

// waiters wake a node's waits on its committed state (Replica) for what
// each waits for only: a task that became final, a sequence applied.
//
// Before, every wait woke at every entry applied and looked again. A
// follower that a thousand clients waited on (wasmtask bench, waits at
// 1,000 tasks/s through a follower) woke all of them for each entry, fell
// seconds behind the leader doing so, and every forwarded write, which
// answers once the follower applied it, waited that long: p99 418 ms on
// a quiet machine, seconds at load 20, where the leader answered in tens
// of milliseconds.
//
// A wait registers under the FSM's read lock, after it looked at the
// state; the FSM wakes after it released its write lock: a wait either
// saw the entry's effect or was registered before the entry applied.
type waiters struct {
	mu    sync.Mutex
	tasks map[dispatch.TaskID][]chan struct{}
	seqs  seqHeap
}

type seqWaiter struct {
	seq uint64
	ch  chan struct{}
}

// seqHeap orders the sequence waits, lowest first (container/heap).
type seqHeap []seqWaiter

func (h seqHeap) Len() int           { return len(h) }
func (h seqHeap) Less(i, j int) bool { return h[i].seq < h[j].seq }
func (h seqHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *seqHeap) Push(x any)        { *h = append(*h, x.(seqWaiter)) }
func (h *seqHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = seqWaiter{}
	*h = old[:len(old)-1]
	return w
}

// task returns a channel closed once task id changed to final (or was
// purged, or a snapshot replaced the state); dropTask forgets it.
func (w *waiters) task(id dispatch.TaskID) chan struct{} {
	ch := make(chan struct{})
	w.mu.Lock()
	if w.tasks == nil {
		w.tasks = map[dispatch.TaskID][]chan struct{}{}
	}
	w.tasks[id] = append(w.tasks[id], ch)
	w.mu.Unlock()
	return ch
}

func (w *waiters) dropTask(id dispatch.TaskID, ch chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	chs := w.tasks[id]
	if i := slices.Index(chs, ch); i >= 0 {
		chs = slices.Delete(chs, i, i+1)
	}
	if len(chs) == 0 {
		delete(w.tasks, id)
	} else {
		w.tasks[id] = chs
	}
}

// seq returns a channel closed once the state applied sequence seq (or a
// snapshot replaced it). A wait that gives up leaves it to be closed then.
func (w *waiters) seq(seq uint64) chan struct{} {
	ch := make(chan struct{})
	w.mu.Lock()
	heap.Push(&w.seqs, seqWaiter{seq, ch})
	w.mu.Unlock()
	return ch
}

// wake closes the waits of the tasks in finals and of sequences up to
// applied.
func (w *waiters) wake(finals []dispatch.TaskID, applied uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range finals {
		for _, ch := range w.tasks[id] {
			close(ch)
		}
		delete(w.tasks, id)
	}
	for len(w.seqs) > 0 && w.seqs[0].seq <= applied {
		close(heap.Pop(&w.seqs).(seqWaiter).ch)
	}
}

// wakeTasks closes every task's waits (w.mu held).
func (w *waiters) wakeTasks() {
	for id, chs := range w.tasks {
		for _, ch := range chs {
			close(ch)
		}
		delete(w.tasks, id)
	}
}

// wakeAll closes every wait (a snapshot replaced the state): each looks
// at the new state and waits again if it must.
func (w *waiters) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.wakeTasks()
	for _, s := range w.seqs {
		close(s.ch)
	}
	w.seqs = nil
}

// wakeSkipped wakes the waits of sequences up to applied and every task's
// wait: the FSM skipped an entry of its own engine (fsm.skip), whose
// finals it does not know; each looks again at the state (caught up).
// On a leader there are rarely any: its reads go to the engine.
func (w *waiters) wakeSkipped(applied uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.wakeTasks()
	for len(w.seqs) > 0 && w.seqs[0].seq <= applied {
		close(heap.Pop(&w.seqs).(seqWaiter).ch)
	}
}
