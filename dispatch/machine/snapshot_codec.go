package machine

import (
	"cmp"
	"fmt"
	"io"
	"slices"
)

// SnapshotBody is the CBOR payload of a snapshot: the state at Applied.
type SnapshotBody struct {
	Version       int     `cbor:"1,keyasint"`
	Applied       uint64  `cbor:"2,keyasint"`
	NextSubmitSeq uint64  `cbor:"3,keyasint"`
	Paused        bool    `cbor:"4,keyasint,omitempty"`
	Tasks         []*Task `cbor:"5,keyasint"`
	Runs          []*Run  `cbor:"6,keyasint"`
}

// EncodeState captures s as CBOR, tasks and runs in submission order so the
// bytes do not depend on map order.
func EncodeState(s *State) ([]byte, error) { return CaptureState(s).Encode() }

// StateCapture is what a snapshot holds, taken in the loop and encoded
// outside it. Taking it costs a fraction of encoding it: a final task and
// its runs never change again (apply only changes runs that are not final,
// and the loop never cancels a final task), so they are captured by
// pointer; only tasks still in progress are copied.
type StateCapture struct {
	applied, nextSubmitSeq uint64
	paused                 bool
	tasks                  []capturedTask
	runs                   []*Run // a task's runs are runs[first:first+len(task.Runs)]
}

type capturedTask struct {
	t     *Task
	seq   uint64 // t.SubmitSeq, read here so that sorting does not chase t
	first int
}

// CaptureState is called in the loop.
func CaptureState(s *State) *StateCapture {
	c := &StateCapture{applied: s.Applied, nextSubmitSeq: s.NextSubmitSeq, paused: s.Paused,
		tasks: make([]capturedTask, 0, len(s.Tasks)), runs: make([]*Run, 0, len(s.Runs))}
	for _, t := range s.Tasks {
		final := t.IsFinal()
		if !final {
			cp := *t // Runs is only ever appended to: the copy's prefix stays valid
			t = &cp
		}
		c.tasks = append(c.tasks, capturedTask{t: t, seq: t.SubmitSeq, first: len(c.runs)})
		if final && len(t.runs) == len(t.Runs) {
			c.runs = append(c.runs, t.runs...)
			continue
		}
		for i, id := range t.Runs {
			var r *Run
			if len(t.runs) == len(t.Runs) {
				r = t.runs[i]
			} else {
				r = s.Runs[id] // a State not built by apply
			}
			if r != nil && !r.State.Final() {
				cp := *r
				cp.Attempts = slices.Clone(r.Attempts)
				r = &cp
			}
			c.runs = append(c.runs, r)
		}
	}
	return c
}

// Applied is the sequence the capture covers.
func (c *StateCapture) Applied() uint64 { return c.applied }

// Encode returns the CBOR of snapshotBody (what encMode.Marshal would
// write for it) for the capture: tasks in submission order, then each
// task's runs in the same order.
func (c *StateCapture) Encode() ([]byte, error) {
	var w sliceWriter
	err := c.EncodeTo(&w)
	return w, err
}

type sliceWriter []byte

func (w *sliceWriter) Write(p []byte) (int, error) {
	*w = append(*w, p...)
	return len(p), nil
}

// EncodeTo writes the encoding to w in chunks of about snapChunk bytes,
// so that a snapshot never needs a buffer of its size.
func (c *StateCapture) EncodeTo(w io.Writer) error {
	const snapChunk = 256 << 10
	tasks := sortBySeq(c.tasks)
	dst := make([]byte, 0, snapChunk+4<<10)
	flush := func(force bool) error {
		if len(dst) < snapChunk && !force {
			return nil
		}
		_, err := w.Write(dst)
		dst = dst[:0]
		return err
	}
	dst = appendHead(dst, cborMap, 5+count(c.paused))
	dst = appendInt(dst, 1, 1) // Version
	dst = appendUint(dst, 2, c.applied)
	dst = appendUint(dst, 3, c.nextSubmitSeq)
	if c.paused {
		dst = append(dst, 4, cborTrue)
	}
	dst = append(dst, 5)
	if len(tasks) == 0 {
		dst = append(dst, cborNull)
	} else {
		dst = appendHead(dst, cborArray, uint64(len(tasks)))
		for _, ct := range tasks {
			var err error
			if dst, err = appendTask(dst, ct.t); err != nil {
				return err
			}
			if err := flush(false); err != nil {
				return err
			}
		}
	}
	dst = append(dst, 6)
	if len(c.runs) == 0 {
		dst = append(dst, cborNull)
	} else {
		dst = appendHead(dst, cborArray, uint64(len(c.runs)))
		for _, ct := range tasks {
			for _, r := range c.runs[ct.first : ct.first+len(ct.t.Runs)] {
				if r == nil {
					dst = append(dst, cborNull) // a damaged state: as the library writes a nil *Run
					continue
				}
				dst = appendRun(dst, r)
			}
			if err := flush(false); err != nil {
				return err
			}
		}
	}
	return flush(true)
}

// sortBySeq orders tasks by submission. Sequences are unique and, with
// retention dropping the oldest, mostly dense: then each task goes
// straight to its place; otherwise they are sorted.
func sortBySeq(tasks []capturedTask) []capturedTask {
	if len(tasks) == 0 {
		return tasks
	}
	lo, hi := tasks[0].seq, tasks[0].seq
	for _, ct := range tasks {
		lo, hi = min(lo, ct.seq), max(hi, ct.seq)
	}
	if span := hi - lo; span < 2*uint64(len(tasks)) {
		slots := make([]capturedTask, span+1)
		placed := 0
		for _, ct := range tasks {
			if slots[ct.seq-lo].t == nil {
				slots[ct.seq-lo] = ct
				placed++
			}
		}
		if placed == len(tasks) { // no two tasks with one sequence (a State not built by apply)
			out := tasks[:0]
			for _, ct := range slots {
				if ct.t != nil {
					out = append(out, ct)
				}
			}
			return out
		}
	}
	slices.SortFunc(tasks, func(a, b capturedTask) int { return cmp.Compare(a.seq, b.seq) })
	return tasks
}

// DecodeState rebuilds a State, derived indexes included, from what
// EncodeState wrote.
func DecodeState(b []byte) (*State, error) {
	var body SnapshotBody
	if err := DecMode.Unmarshal(b, &body); err != nil {
		return nil, err
	}
	if body.Version != 1 {
		return nil, fmt.Errorf("snapshot version %d, this build reads 1", body.Version)
	}
	s := NewState()
	s.Applied, s.NextSubmitSeq, s.Paused = body.Applied, body.NextSubmitSeq, body.Paused
	for _, t := range body.Tasks {
		s.Tasks[t.Spec.ID] = t
	}
	for _, r := range body.Runs {
		if _, ok := s.Tasks[r.Task]; !ok {
			return nil, fmt.Errorf("run %s of unknown task %s", r.ID, r.Task)
		}
		s.Runs[r.ID] = r
	}
	for _, t := range s.Tasks {
		for _, id := range t.Runs {
			if _, ok := s.Runs[id]; !ok {
				return nil, fmt.Errorf("task %s lists unknown run %s", t.Spec.ID, id)
			}
		}
	}
	s.reindex()
	return s, nil
}

// EncodeStateLibrary is EncodeState as the CBOR library writes it: the
// reference the fast encoder is checked against (tests, benchmarks).
func EncodeStateLibrary(s *State) ([]byte, error) {
	body := SnapshotBody{Version: 1, Applied: s.Applied, NextSubmitSeq: s.NextSubmitSeq, Paused: s.Paused}
	for _, t := range s.Tasks {
		body.Tasks = append(body.Tasks, t)
	}
	slices.SortFunc(body.Tasks, func(a, b *Task) int { return cmp.Compare(a.SubmitSeq, b.SubmitSeq) })
	for _, t := range body.Tasks {
		for _, id := range t.Runs {
			body.Runs = append(body.Runs, s.Runs[id])
		}
	}
	return encMode.Marshal(&body)
}

// PayloadRefs calls ref for every payload store reference the capture
// names (task inputs and attempt outputs): what a recovery from its
// snapshot, or from any later point of the WAL, may read.
func (c *StateCapture) PayloadRefs(ref func(string)) {
	for _, ct := range c.tasks {
		if ct.t.Spec.InputRef != "" {
			ref(ct.t.Spec.InputRef)
		}
	}
	for _, r := range c.runs {
		if r == nil {
			continue
		}
		for i := range r.Attempts {
			if r.Attempts[i].OutputRef != "" {
				ref(r.Attempts[i].OutputRef)
			}
		}
	}
}

// InlineBytes sums the inputs and outputs the capture holds inline (not
// in the payload store).
func (c *StateCapture) InlineBytes() int64 {
	var n int64
	for _, ct := range c.tasks {
		n += int64(len(ct.t.Spec.Input))
	}
	for _, r := range c.runs {
		if r == nil {
			continue
		}
		for i := range r.Attempts {
			n += int64(len(r.Attempts[i].Output))
		}
	}
	return n
}
