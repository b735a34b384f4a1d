package dispatch

import (
	"fmt"

	"github.com/wasmtask/wasmtask/dispatch/machine"
)

// A replica (a cluster follower, or raft's FSM on any node) holds a State
// that it changes only through ApplyRecord, with the records a leader's
// engine wrote to its Log, in order: the same reducer as the loop and
// recovery, so every replica holds the leader's committed state.

// ApplyRecord decodes one record, the seq-th, and applies it to s through
// the reducer. A record at or below s.Applied is skipped (applied already:
// reported false); one past s.Applied+1 is an error (a gap in the log).
// The tasks it made final are appended to s.JustFinal, which the caller
// clears.
func ApplyRecord(s *State, seq uint64, rec []byte) (applied bool, err error) {
	if seq <= s.Applied {
		return false, nil
	}
	if seq != s.Applied+1 {
		return false, fmt.Errorf("dispatch: record %d follows %d: a gap in the log", seq, s.Applied)
	}
	ev, err := machine.DecodeEventIn(s, rec)
	if err != nil {
		return false, fmt.Errorf("dispatch: record %d: %w", seq, err)
	}
	if err := machine.Apply(s, &ev); err != nil {
		return false, fmt.Errorf("dispatch: record %d: %w", seq, err)
	}
	s.Applied = seq
	// What a loop would drain: the cancellations are in the log already.
	// s.JustFinal is left to the caller, which wakes its waits for those
	// tasks and clears it (cluster's FSM, once per entry).
	s.Doomed = nil
	return true, nil
}

// EncodeState returns the snapshot encoding of s (CBOR, tasks in
// submission order), which DecodeState reads back.
func EncodeState(s *State) ([]byte, error) { return machine.EncodeState(s) }

// StateCapture is a state taken for a snapshot: cheap to take (a final
// task and its runs never change again, so only tasks in progress are
// copied), encoded later beside further applies (its Encode writes what
// EncodeState would have written when it was taken).
type StateCapture = machine.StateCapture

// CaptureState takes s for an encoding later (StateCapture). It must not
// run concurrently with an apply to s; its Encode may.
func CaptureState(s *State) *StateCapture { return machine.CaptureState(s) }

// DecodeState decodes what EncodeState wrote.
func DecodeState(b []byte) (*State, error) { return machine.DecodeState(b) }

// CopyState returns a deep copy of s (through its snapshot encoding).
func CopyState(s *State) (*State, error) {
	b, err := machine.EncodeState(s)
	if err != nil {
		return nil, err
	}
	return machine.DecodeState(b)
}

// ViewTask returns the view of task id in s, without reading the payload
// store (a replica's payloads are inline), and whether it is final.
func ViewTask(s *State, id TaskID) (v TaskView, ok bool) {
	t, ok := s.Tasks[id]
	if !ok {
		return v, false
	}
	return machine.ViewOf(s, t), true
}

// TaskFinal reports whether task id is in s and whether it is final,
// without building its view (a replica's waits check it at every entry).
func TaskFinal(s *State, id TaskID) (exists, final bool) {
	t, ok := s.Tasks[id]
	if !ok {
		return false, false
	}
	switch s.StateOf(t) {
	case TaskCompleted, TaskFailed, TaskCanceled:
		return true, true
	}
	return true, false
}
