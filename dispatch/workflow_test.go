package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Tests of workflows: prerequisites (after), the parent/child hierarchy
// and concurrency keys, on an Engine with a ManualClock. Cron is in
// cron_test.go.

// span is one attempt as the executor saw it. start and end are positions
// in a sequence shared by every attempt of the test, so "a ended before b
// started" is end(a) < start(b) whatever the goroutines' timing.
type span struct {
	job        Job
	start, end int
}

// wfExec records the span of every attempt and answers with fn (nil: ok).
// Each attempt yields once between start and end, so attempts the engine
// lets run together do overlap.
type wfExec struct {
	mu    sync.Mutex
	seq   int
	spans []*span
	fn    func(ctx context.Context, j Job) Result
}

func (x *wfExec) Execute(ctx context.Context, j Job) Result {
	x.mu.Lock()
	x.seq++
	sp := &span{job: j, start: x.seq}
	x.spans = append(x.spans, sp)
	fn := x.fn
	x.mu.Unlock()
	runtime.Gosched()
	res := Result{Outcome: OutcomeOK}
	if fn != nil {
		res = fn(ctx, j)
	}
	x.mu.Lock()
	x.seq++
	sp.end = x.seq
	x.mu.Unlock()
	return res
}

// of returns the spans of task id's attempts, in start order.
func (x *wfExec) of(id TaskID) []span {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []span
	for _, sp := range x.spans {
		if sp.job.Task == id {
			out = append(out, *sp)
		}
	}
	return out
}

// all returns every span, in start order.
func (x *wfExec) all() []span {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]span, len(x.spans))
	for i, sp := range x.spans {
		out[i] = *sp
	}
	return out
}

// before checks that every attempt of a ended before any attempt of b
// started, and that both ran.
func (x *wfExec) before(a, b TaskID) error {
	sa, sb := x.of(a), x.of(b)
	if len(sa) == 0 || len(sb) == 0 {
		return fmt.Errorf("%s ran %d times, %s ran %d times", a, len(sa), b, len(sb))
	}
	last := sa[len(sa)-1]
	if last.end == 0 || last.end > sb[0].start {
		return fmt.Errorf("%s's attempt (%d..%d) overlaps or follows %s's first start (%d)", a, last.start, last.end, b, sb[0].start)
	}
	return nil
}

// noOverlap checks that no two of spans (in start order) overlap.
func noOverlap(spans []span) error {
	for i := 1; i < len(spans); i++ {
		p, c := spans[i-1], spans[i]
		if p.end == 0 || c.start < p.end {
			return fmt.Errorf("%s attempt %d (%d..%d) overlaps %s attempt %d (%d..%d)",
				p.job.Run, p.job.Attempt, p.start, p.end, c.job.Run, c.job.Attempt, c.start, c.end)
		}
	}
	return nil
}

// maxConcurrent is the largest number of spans in flight at once.
func maxConcurrent(spans []span) int {
	type edge struct{ at, d int }
	var edges []edge
	for _, s := range spans {
		edges = append(edges, edge{s.start, 1}, edge{s.end, -1})
	}
	slices.SortFunc(edges, func(a, b edge) int { return a.at - b.at })
	n, best := 0, 0
	for _, e := range edges {
		n += e.d
		best = max(best, n)
	}
	return best
}

// newWorkflowRig is an engineRig whose executor is a wfExec answering with fn.
func newWorkflowRig(t *testing.T, fn func(ctx context.Context, j Job) Result, edit func(*Config)) (*engineRig, *wfExec) {
	t.Helper()
	x := &wfExec{fn: fn}
	r := newEngineRig(t, func(c *Config) {
		c.Executor = x
		if edit != nil {
			edit(c)
		}
	})
	return r, x
}

func (r *engineRig) pause() {
	r.t.Helper()
	if err := r.e.Pause(r.ctx()); err != nil {
		r.t.Fatal(err)
	}
}

func (r *engineRig) resume() {
	r.t.Helper()
	if err := r.e.Resume(r.ctx()); err != nil {
		r.t.Fatal(err)
	}
}

func (r *engineRig) after(id TaskID, after ...TaskID) {
	r.t.Helper()
	if err := r.e.After(r.ctx(), id, after); err != nil {
		r.t.Fatalf("After(%s, %v): %v", id, after, err)
	}
}

// absent stands for "no such task" in the wanted states of a test.
const absent TaskState = "absent"

// checkStates compares the state of every task in want.
func (r *engineRig) checkStates(want map[TaskID]TaskState) {
	r.t.Helper()
	for _, id := range slices.Sorted(maps.Keys(want)) {
		got := absent
		if v, ok := r.e.Task(id); ok {
			got = v.State
		}
		if got != want[id] {
			r.t.Errorf("%s is %s, want %s", id, got, want[id])
		}
	}
}

// childID is the id the host derives for the n-th child of run.
func childID(run RunID, n int) TaskID {
	return TaskID(strings.Replace(string(run), "#", "-r", 1) + "-c" + strconv.Itoa(n))
}

// childrenOf stages specs as the host does: each gets the id derived from
// run and its ordinal unless it names one.
func childrenOf(t testing.TB, run RunID, specs []SpecJSON) [][]byte {
	var out [][]byte
	for i, s := range specs {
		if s.ID == "" {
			s.ID = string(childID(run, i+1))
		}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func after(ids ...TaskID) []TaskID { return ids }

func TestWorkflowDependencies(t *testing.T) {
	chain := func(n int) []TaskSpec {
		var specs []TaskSpec
		for i := range n {
			s := TaskSpec{ID: TaskID(fmt.Sprintf("t%02d", i))}
			if i > 0 {
				s.After = after(specs[i-1].ID)
			}
			specs = append(specs, s)
		}
		return specs
	}
	chainOrder := func(n int) [][2]TaskID {
		var o [][2]TaskID
		for i := 1; i < n; i++ {
			o = append(o, [2]TaskID{TaskID(fmt.Sprintf("t%02d", i-1)), TaskID(fmt.Sprintf("t%02d", i))})
		}
		return o
	}
	completed := func(ids ...TaskID) map[TaskID]TaskState {
		m := map[TaskID]TaskState{}
		for _, id := range ids {
			m[id] = TaskCompleted
		}
		return m
	}
	diamond := []TaskSpec{{ID: "A"}, {ID: "B", After: after("A")}, {ID: "C", After: after("A")}, {ID: "D", After: after("B", "C")}}
	tests := []struct {
		name     string
		workers  int
		specs    []TaskSpec
		fail     []TaskID // these fail permanently
		want     map[TaskID]TaskState
		reasons  map[TaskID][]string // substrings of the cancel reason
		order    [][2]TaskID         // a finished before b started
		neverRun []TaskID
	}{
		{name: "linear chain A->B->C, 8 workers", workers: 8,
			specs: []TaskSpec{{ID: "A"}, {ID: "B", After: after("A")}, {ID: "C", After: after("B")}},
			want:  completed("A", "B", "C"), order: [][2]TaskID{{"A", "B"}, {"B", "C"}}},
		{name: "chain of 30, 8 workers", workers: 8, specs: chain(30),
			want: map[TaskID]TaskState{"t00": TaskCompleted, "t29": TaskCompleted}, order: chainOrder(30)},
		{name: "diamond", workers: 8, specs: diamond,
			want:  completed("A", "B", "C", "D"),
			order: [][2]TaskID{{"A", "B"}, {"A", "C"}, {"B", "D"}, {"C", "D"}}},
		{name: "failure propagates over 3 levels", workers: 8,
			specs: []TaskSpec{{ID: "A"}, {ID: "B", After: after("A")}, {ID: "C", After: after("B")}},
			fail:  []TaskID{"A"},
			want:  map[TaskID]TaskState{"A": TaskFailed, "B": TaskCanceled, "C": TaskCanceled},
			reasons: map[TaskID][]string{
				"B": {"prerequisite A failed"},
				"C": {"prerequisite B canceled (prerequisite A failed)"},
			},
			neverRun: []TaskID{"B", "C"}},
		{name: "a failed branch cancels the join, not the other branch", workers: 8, specs: diamond,
			fail:     []TaskID{"B"},
			want:     map[TaskID]TaskState{"A": TaskCompleted, "B": TaskFailed, "C": TaskCompleted, "D": TaskCanceled},
			reasons:  map[TaskID][]string{"D": {"prerequisite B failed"}},
			order:    [][2]TaskID{{"A", "B"}, {"A", "C"}},
			neverRun: []TaskID{"D"}},
		{name: "a prerequisite that already failed cancels at submit", workers: 1,
			specs:    []TaskSpec{{ID: "A"}, {ID: "B", After: after("A")}},
			fail:     []TaskID{"A"},
			want:     map[TaskID]TaskState{"A": TaskFailed, "B": TaskCanceled},
			reasons:  map[TaskID][]string{"B": {"prerequisite A failed"}},
			neverRun: []TaskID{"B"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fn := func(_ context.Context, j Job) Result {
				if slices.Contains(tc.fail, j.Task) {
					return Result{Outcome: OutcomeFailed, Error: "boom"}
				}
				return Result{Outcome: OutcomeOK}
			}
			r, x := newWorkflowRig(t, fn, func(c *Config) { c.Workers = tc.workers })
			// Everything is submitted before anything runs, except in the
			// case where B arrives after A already failed.
			paused := !strings.Contains(tc.name, "at submit")
			if paused {
				r.pause()
			}
			for _, s := range tc.specs {
				if !paused {
					r.idle()
				}
				r.submit(s)
			}
			if paused {
				r.resume()
			}
			r.idle()
			r.checkStates(tc.want)
			for _, o := range tc.order {
				if err := x.before(o[0], o[1]); err != nil {
					t.Error(err)
				}
			}
			for id, subs := range tc.reasons {
				v := r.view(id)
				for _, s := range subs {
					if !strings.Contains(v.CancelNote, s) {
						t.Errorf("%s: cancel reason %q does not mention %q", id, v.CancelNote, s)
					}
				}
			}
			for _, id := range tc.neverRun {
				if n := len(x.of(id)); n != 0 {
					t.Errorf("%s ran %d attempts, want none", id, n)
				}
			}
			// Nothing changes across a restart.
			before := r.e.wal.Last()
			r.reopen()
			r.advance(time.Hour)
			r.checkStates(tc.want)
			if got := r.e.wal.Last(); got != before {
				t.Errorf("restart wrote %d records", got-before)
			}
		})
	}
}

// afterCall is a call of Engine.After.
type afterCall struct {
	task  TaskID
	after []TaskID
}

func TestWorkflowCycleRejected(t *testing.T) {
	tests := []struct {
		name    string
		setup   []TaskSpec
		declare []afterCall // accepted declarations before the rejected one
		submit  *TaskSpec   // the rejected submission, or
		call    *afterCall  // the rejected declaration
		// wantErr are substrings of the *ValidationError (field "after").
		wantErr []string
		// wantAfter: the prerequisites of these tasks after the rejection.
		wantAfter map[TaskID][]TaskID
	}{
		{name: "direct, at submit", setup: []TaskSpec{{ID: "A"}},
			submit:  &TaskSpec{ID: "X", Handler: "h", After: after("A", "X")},
			wantErr: []string{"cycle", "X -> X"}},
		{name: "direct, declared", setup: []TaskSpec{{ID: "A"}},
			call:    &afterCall{"A", after("A")},
			wantErr: []string{"cycle", "A -> A"}, wantAfter: map[TaskID][]TaskID{"A": nil}},
		{name: "transitive", setup: []TaskSpec{{ID: "A"}, {ID: "B", After: after("A")}, {ID: "C", After: after("B")}},
			call:    &afterCall{"A", after("C")},
			wantErr: []string{"cycle: A -> C -> B -> A"}, wantAfter: map[TaskID][]TaskID{"A": nil}},
		{name: "back edge of a diamond",
			setup:   []TaskSpec{{ID: "A"}, {ID: "B", After: after("A")}, {ID: "C", After: after("A")}, {ID: "D", After: after("B", "C")}},
			call:    &afterCall{"A", after("D")},
			wantErr: []string{"cycle: A -> D -> B -> A"}, wantAfter: map[TaskID][]TaskID{"A": nil}},
		{name: "through later declarations",
			setup:     []TaskSpec{{ID: "A"}, {ID: "B"}, {ID: "C"}},
			declare:   []afterCall{{"B", after("A")}, {"C", after("B")}},
			call:      &afterCall{"A", after("C")},
			wantErr:   []string{"cycle: A -> C -> B -> A"},
			wantAfter: map[TaskID][]TaskID{"A": nil, "B": after("A"), "C": after("B")}},
		{name: "all or nothing: a good prerequisite with a cyclic one",
			setup:     []TaskSpec{{ID: "A"}, {ID: "B", After: after("A")}, {ID: "X"}},
			call:      &afterCall{"A", after("X", "B")},
			wantErr:   []string{"cycle: A -> B -> A"},
			wantAfter: map[TaskID][]TaskID{"A": nil}},
		{name: "unknown prerequisite at submit", setup: []TaskSpec{{ID: "A"}},
			submit:  &TaskSpec{ID: "X", Handler: "h", After: after("A", "nope")},
			wantErr: []string{`unknown task "nope"`}},
		{name: "unknown prerequisite declared", setup: []TaskSpec{{ID: "A"}, {ID: "B"}},
			call:      &afterCall{"A", after("B", "nope")},
			wantErr:   []string{`unknown task "nope"`},
			wantAfter: map[TaskID][]TaskID{"A": nil}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, x := newWorkflowRig(t, nil, nil)
			r.pause() // nothing starts, so every task may still get prerequisites
			for _, s := range tc.setup {
				r.submit(s)
			}
			for _, d := range tc.declare {
				r.after(d.task, d.after...)
			}
			last := r.e.wal.Last()
			var err error
			if tc.submit != nil {
				_, err = r.e.Submit(r.ctx(), *tc.submit)
			} else {
				err = r.e.After(r.ctx(), tc.call.task, tc.call.after)
			}
			checkAfterError(t, err, tc.wantErr)
			if got := r.e.wal.Last(); got != last {
				t.Errorf("the rejection wrote %d records", got-last)
			}
			if tc.submit != nil {
				if _, ok := r.e.Task(tc.submit.ID); ok {
					t.Errorf("rejected task %s exists", tc.submit.ID)
				}
			}
			for id, want := range tc.wantAfter {
				if got := r.view(id).After; !slices.Equal(got, want) {
					t.Errorf("%s waits for %v, want %v", id, got, want)
				}
			}
			// The graph still runs to completion.
			r.resume()
			r.idle()
			for _, s := range tc.setup {
				if v := r.view(s.ID); v.State != TaskCompleted {
					t.Errorf("%s: %s", s.ID, v.State)
				}
			}
			for _, d := range tc.declare {
				for _, p := range d.after {
					if err := x.before(p, d.task); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
}

func TestWorkflowAfterRejected(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(r *engineRig, g *gate)
		call     afterCall
		wantErr  []string // substrings of a *ValidationError for field after
		notFound bool
	}{
		{name: "task running", call: afterCall{"A", after("B")}, wantErr: []string{"already started", "A#1 is running"},
			setup: func(r *engineRig, g *gate) {
				r.submit(TaskSpec{ID: "B", Handler: "quick", NotBeforeMs: rigEpoch.Add(time.Hour).UnixMilli()})
				r.submit(TaskSpec{ID: "A", Handler: "hold"})
				g.next(r.t)
				r.waitRunning("A#1") // an attempt reports its start once it ran startedReportDelay
			}},
		{name: "task in retry_wait", call: afterCall{"A", after("B")}, wantErr: []string{"already started", "retry_wait"},
			setup: func(r *engineRig, g *gate) {
				r.submit(TaskSpec{ID: "B", Handler: "quick", NotBeforeMs: rigEpoch.Add(time.Hour).UnixMilli()})
				r.submit(TaskSpec{ID: "A", Handler: "flaky", MaxAttempts: 3, Backoff: Backoff{Kind: BackoffFixed, BaseMs: 60_000}})
				r.idle()
			}},
		{name: "task completed", call: afterCall{"A", after("B")}, wantErr: []string{"already completed"},
			setup: func(r *engineRig, g *gate) {
				r.submit(TaskSpec{ID: "A", Handler: "quick"})
				r.submit(TaskSpec{ID: "B", Handler: "quick", NotBeforeMs: rigEpoch.Add(time.Hour).UnixMilli()})
				r.idle()
			}},
		{name: "prerequisite already failed", call: afterCall{"A", after("B")}, wantErr: []string{"prerequisite B is already failed"},
			setup: func(r *engineRig, g *gate) {
				r.submit(TaskSpec{ID: "B", Handler: "bad"})
				r.idle()
				r.submit(TaskSpec{ID: "A", Handler: "quick", NotBeforeMs: rigEpoch.Add(time.Hour).UnixMilli()})
			}},
		{name: "unknown task", call: afterCall{"nope", after("B")}, notFound: true,
			setup: func(r *engineRig, g *gate) {
				r.submit(TaskSpec{ID: "B", Handler: "quick"})
				r.idle()
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var g *gate
			r, _ := newWorkflowRig(t, func(ctx context.Context, j Job) Result {
				switch j.Handler {
				case "hold":
					return g.execute(ctx, j)
				case "flaky":
					return Result{Outcome: OutcomeFailed, Retryable: true}
				case "bad":
					return Result{Outcome: OutcomeFailed}
				}
				return Result{Outcome: OutcomeOK}
			}, nil)
			g = newGate(t, true)
			tc.setup(r, g)
			r.barrier()
			last := r.e.wal.Last()
			err := r.e.After(r.ctx(), tc.call.task, tc.call.after)
			if tc.notFound {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("got %v, want ErrNotFound", err)
				}
			} else {
				checkAfterError(t, err, tc.wantErr)
			}
			if got := r.e.wal.Last(); got != last {
				t.Errorf("the rejection wrote %d records", got-last)
			}
			if v, ok := r.e.Task(tc.call.task); ok && len(v.After) != 0 {
				t.Errorf("%s now waits for %v", tc.call.task, v.After)
			}
		})
	}
}

// checkAfterError asserts that err is a *ValidationError for field after
// whose text holds every one of want.
func checkAfterError(t *testing.T, err error, want []string) {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "after" {
		t.Fatalf("got %v, want a *ValidationError for field after", err)
	}
	for _, s := range want {
		if !strings.Contains(ve.Error(), s) {
			t.Errorf("error %q does not contain %q", ve, s)
		}
	}
}

// TestWorkflowAfterDeclaredGates: a prerequisite declared later gates
// runs that are ready and runs that are scheduled for a later time alike.
func TestWorkflowAfterDeclaredGates(t *testing.T) {
	tests := []struct {
		name string
		// B's not-before and A's, relative to the start; A runs later than B would.
		bAt, aAt time.Duration
	}{
		{name: "ready run goes back to waiting", bAt: 0, aAt: 20 * time.Second},
		{name: "scheduled run stays waiting past its due time", bAt: 5 * time.Second, aAt: 20 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, x := newWorkflowRig(t, nil, nil)
			r.pause()
			r.submit(TaskSpec{ID: "A", NotBeforeMs: rigEpoch.Add(tc.aAt).UnixMilli()})
			r.submit(TaskSpec{ID: "B", NotBeforeMs: rigEpoch.Add(tc.bAt).UnixMilli()})
			r.after("B", "A")
			r.resume()
			r.idle()
			r.advance(10 * time.Second) // past B's own due time, before A's
			if n := len(x.of("B")); n != 0 {
				t.Fatalf("B ran %d attempts before its prerequisite A", n)
			}
			if v := r.view("B"); v.State != TaskPending || !slices.Equal(v.After, after("A")) {
				t.Errorf("B: %s waiting for %v", v.State, v.After)
			}
			r.advance(10 * time.Second)
			r.checkStates(map[TaskID]TaskState{"A": TaskCompleted, "B": TaskCompleted})
			if err := x.before("A", "B"); err != nil {
				t.Error(err)
			}
		})
	}
}

// restartModes are the two ways state comes back: a snapshot (then the
// WAL tail), or the whole WAL.
var restartModes = []struct {
	name          string
	snapshotEvery int
}{
	{name: "from a snapshot", snapshotEvery: 1},
	{name: "WAL only", snapshotEvery: -1},
}

// settleSnapshots waits until no snapshot is being written, then makes
// the loop write one covering everything so far (with SnapshotEvery 1,
// any tick with events does), and waits for it.
func (r *engineRig) settleSnapshots() {
	r.t.Helper()
	for r.e.snapshots.running.Load() {
		runtime.Gosched()
	}
	r.submit(TaskSpec{ID: TaskID(fmt.Sprintf("snap-%d", r.e.wal.Last())), Handler: "snap", NotBeforeMs: rigEpoch.Add(1000 * time.Hour).UnixMilli()})
	for r.e.snapshots.running.Load() {
		runtime.Gosched()
	}
}

func TestWorkflowRestart(t *testing.T) {
	later := rigEpoch.Add(time.Hour)
	for _, mode := range restartModes {
		t.Run(mode.name, func(t *testing.T) {
			r, x := newWorkflowRig(t, func(_ context.Context, j Job) Result {
				if j.Task == "P" {
					return Result{Outcome: OutcomeOK, Children: childrenOf(t, j.Run, []SpecJSON{
						{Handler: "h", NotBefore: later.Format(time.RFC3339Nano)},
						{Handler: "h", NotBefore: later.Format(time.RFC3339Nano)},
					})}
				}
				return Result{Outcome: OutcomeOK}
			}, func(c *Config) { c.SnapshotEvery, c.SnapshotStateRatio = mode.snapshotEvery, -1 })
			r.pause()
			r.submit(TaskSpec{ID: "A", NotBeforeMs: later.UnixMilli()})
			r.submit(TaskSpec{ID: "B", After: after("A")}) // gated at submit
			r.submit(TaskSpec{ID: "C"})
			r.after("C", "A") // gated by a declaration
			r.submit(TaskSpec{ID: "P"})
			r.submit(TaskSpec{ID: "D", After: after("P")}) // waits for P's subtree
			r.resume()
			r.idle()
			kids := []TaskID{childID("P#1", 1), childID("P#1", 2)}
			mid := map[TaskID]TaskState{"A": TaskPending, "B": TaskPending, "C": TaskPending,
				"P": TaskWaitingChildren, "D": TaskPending, kids[0]: TaskPending, kids[1]: TaskPending}
			r.checkStates(mid)
			if mode.snapshotEvery > 0 {
				r.settleSnapshots()
			}
			covered := r.e.wal.Last()
			for i := range 2 { // twice: the state a restart rebuilds survives the next one
				r.reopen()
				r.idle()
				if mode.snapshotEvery > 0 && i == 0 {
					if got := r.e.Recovery().SnapshotSeq; got < covered {
						t.Fatalf("recovered from snapshot %d, want one covering %d", got, covered)
					}
				}
				r.checkStates(mid)
				for _, id := range []TaskID{"A", "B", "C", "D", kids[0], kids[1]} {
					if n := len(x.of(id)); n != 0 {
						t.Fatalf("%s ran %d attempts before its time", id, n)
					}
				}
				if got := r.view("P").Children; !slices.Equal(got, kids) {
					t.Errorf("P's children after restart: %v, want %v", got, kids)
				}
				if got := r.view("C").After; !slices.Equal(got, after("A")) {
					t.Errorf("C's prerequisites after restart: %v", got)
				}
			}
			r.advance(time.Hour)
			r.checkStates(map[TaskID]TaskState{"A": TaskCompleted, "B": TaskCompleted, "C": TaskCompleted,
				"P": TaskCompleted, "D": TaskCompleted, kids[0]: TaskCompleted, kids[1]: TaskCompleted})
			for _, o := range [][2]TaskID{{"A", "B"}, {"A", "C"}, {kids[0], "D"}, {kids[1], "D"}} {
				if err := x.before(o[0], o[1]); err != nil {
					t.Error(err)
				}
			}
			for _, id := range []TaskID{"A", "B", "C", "D", "P", kids[0], kids[1]} {
				if n := len(x.of(id)); n != 1 {
					t.Errorf("%s ran %d attempts, want 1", id, n)
				}
			}
		})
	}
}

// plan says what the attempts of one task do.
type plan struct {
	children  []SpecJSON // staged by every attempt (ids derived unless given)
	result    Result     // of the attempts that do not fail retryably (zero: ok)
	failFirst int        // the first failFirst attempts fail retryably
}

// planExec answers attempts by their task's plan; tasks without one succeed.
func planExec(t testing.TB, plans map[TaskID]plan) func(context.Context, Job) Result {
	return func(_ context.Context, j Job) Result {
		p := plans[j.Task]
		res := p.result
		if res.Outcome == "" {
			res.Outcome = OutcomeOK
		}
		if j.Attempt <= p.failFirst {
			res = Result{Outcome: OutcomeFailed, Retryable: true, Error: "not yet"}
		}
		res.Children = childrenOf(t, j.Run, p.children)
		return res
	}
}

func TestWorkflowChildren(t *testing.T) {
	soon := rigEpoch.Add(time.Minute).Format(time.RFC3339Nano)
	c1, c2, c3 := childID("P#1", 1), childID("P#1", 2), childID("P#1", 3)
	g1 := childID(RunID(c1+"#1"), 1)
	fails := Result{Outcome: OutcomeFailed, Error: "child failed"}
	tests := []struct {
		name  string
		specs []TaskSpec
		plans map[TaskID]plan
		// mid: states after the first idle; then the clock moves a minute.
		mid, want map[TaskID]TaskState
		order     [][2]TaskID // a finished before b started
		// errs: substrings of the error of the task's last attempt.
		errs     map[TaskID][]string
		attempts map[TaskID]int // attempts each task ran
		tasks    int            // tasks in the engine at the end (0: unchecked)
	}{
		{name: "parent waits for its children, then completes",
			specs: []TaskSpec{{ID: "P"}},
			plans: map[TaskID]plan{"P": {children: []SpecJSON{{Handler: "h", NotBefore: soon}, {Handler: "h", NotBefore: soon}}}},
			mid:   map[TaskID]TaskState{"P": TaskWaitingChildren, c1: TaskPending, c2: TaskPending},
			want:  map[TaskID]TaskState{"P": TaskCompleted, c1: TaskCompleted, c2: TaskCompleted},
			tasks: 3},
		{name: "a failed child fails the parent",
			specs: []TaskSpec{{ID: "P"}},
			plans: map[TaskID]plan{
				"P": {children: []SpecJSON{{Handler: "h", NotBefore: soon}, {Handler: "h", NotBefore: soon}}},
				c2:  {result: fails},
			},
			mid:  map[TaskID]TaskState{"P": TaskWaitingChildren},
			want: map[TaskID]TaskState{"P": TaskFailed, c1: TaskCompleted, c2: TaskFailed}},
		{name: "tolerate_child_failures completes anyway",
			specs: []TaskSpec{{ID: "P", TolerateChildFailures: true}},
			plans: map[TaskID]plan{
				"P": {children: []SpecJSON{{Handler: "h", NotBefore: soon}, {Handler: "h", NotBefore: soon}}},
				c2:  {result: fails},
			},
			mid:  map[TaskID]TaskState{"P": TaskWaitingChildren},
			want: map[TaskID]TaskState{"P": TaskCompleted, c1: TaskCompleted, c2: TaskFailed}},
		{name: "dependents wait for the whole subtree",
			specs: []TaskSpec{{ID: "P"}, {ID: "D", After: after("P")}},
			plans: map[TaskID]plan{
				"P": {children: []SpecJSON{{Handler: "h"}, {Handler: "h", NotBefore: soon}}},
				c1:  {children: []SpecJSON{{Handler: "h", NotBefore: soon}}},
			},
			mid:   map[TaskID]TaskState{"P": TaskWaitingChildren, c1: TaskWaitingChildren, g1: TaskPending, c2: TaskPending, "D": TaskPending},
			want:  map[TaskID]TaskState{"P": TaskCompleted, c1: TaskCompleted, g1: TaskCompleted, c2: TaskCompleted, "D": TaskCompleted},
			order: [][2]TaskID{{"P", c1}, {c1, g1}, {g1, "D"}, {c2, "D"}}},
		{name: "a failed grandchild fails its ancestors and cancels their dependents",
			specs: []TaskSpec{{ID: "P"}, {ID: "D", After: after("P")}},
			plans: map[TaskID]plan{
				"P": {children: []SpecJSON{{Handler: "h"}}},
				c1:  {children: []SpecJSON{{Handler: "h", NotBefore: soon}}},
				g1:  {result: fails},
			},
			mid:  map[TaskID]TaskState{"P": TaskWaitingChildren, c1: TaskWaitingChildren, g1: TaskPending, "D": TaskPending},
			want: map[TaskID]TaskState{"P": TaskFailed, c1: TaskFailed, g1: TaskFailed, "D": TaskCanceled}},
		{name: "children after an earlier sibling",
			specs: []TaskSpec{{ID: "P"}},
			plans: map[TaskID]plan{"P": {children: []SpecJSON{{Handler: "h"}, {Handler: "h", After: []string{string(c1)}}, {Handler: "h", After: []string{string(c1), string(c2)}}}}},
			want:  map[TaskID]TaskState{"P": TaskCompleted, c1: TaskCompleted, c2: TaskCompleted, c3: TaskCompleted},
			order: [][2]TaskID{{c1, c2}, {c2, c3}}},
		{name: "a failing parent attempt commits none",
			specs: []TaskSpec{{ID: "P", MaxAttempts: 1}},
			plans: map[TaskID]plan{"P": {children: []SpecJSON{{Handler: "h"}, {Handler: "h"}}, result: Result{Outcome: OutcomeFailed, Error: "no"}}},
			want:  map[TaskID]TaskState{"P": TaskFailed, c1: absent, c2: absent},
			tasks: 1},
		{name: "a retried parent creates its children once",
			specs:    []TaskSpec{{ID: "P", MaxAttempts: 3, Backoff: Backoff{Kind: BackoffFixed}}},
			plans:    map[TaskID]plan{"P": {children: []SpecJSON{{Handler: "h"}, {Handler: "h"}}, failFirst: 2}},
			want:     map[TaskID]TaskState{"P": TaskCompleted, c1: TaskCompleted, c2: TaskCompleted},
			attempts: map[TaskID]int{"P": 3, c1: 1, c2: 1},
			tasks:    3},
		{name: "the same child id from a later run is not created twice",
			specs:    []TaskSpec{{ID: "P", Policy: RunPolicy{Kind: PolicyRepeat, Count: 3}}},
			plans:    map[TaskID]plan{"P": {children: []SpecJSON{{ID: "shared", Handler: "h"}}}},
			want:     map[TaskID]TaskState{"P": TaskCompleted, "shared": TaskCompleted},
			attempts: map[TaskID]int{"P": 3, "shared": 1},
			tasks:    2},
		{name: "a bad child spec fails the parent attempt, naming child and field",
			specs: []TaskSpec{{ID: "P", MaxAttempts: 3}},
			plans: map[TaskID]plan{"P": {children: []SpecJSON{{Handler: "h"}, {Handler: "h", MaxAttempts: 101}}}},
			want:  map[TaskID]TaskState{"P": TaskFailed, c1: absent, c2: absent},
			errs:  map[TaskID][]string{"P": {"child 2", string(c2), "max_attempts", "101"}},
			// A rejected child is a permanent failure: no retry.
			attempts: map[TaskID]int{"P": 1},
			tasks:    1},
		{name: "two children with one id fail the parent attempt",
			specs: []TaskSpec{{ID: "P"}},
			plans: map[TaskID]plan{"P": {children: []SpecJSON{{ID: "dup", Handler: "a"}, {ID: "dup", Handler: "b"}}}},
			want:  map[TaskID]TaskState{"P": TaskFailed, "dup": absent},
			errs:  map[TaskID][]string{"P": {"child 2 (dup)", "id", "earlier child"}}},
		{name: "a child named like an existing task fails the parent attempt",
			specs: []TaskSpec{{ID: "other"}, {ID: "P"}},
			plans: map[TaskID]plan{"P": {children: []SpecJSON{{ID: "other", Handler: "h"}}}},
			want:  map[TaskID]TaskState{"P": TaskFailed, "other": TaskCompleted},
			errs:  map[TaskID][]string{"P": {"child 1 (other)", "exists with a different spec"}}},
		{name: "a child with an unknown prerequisite fails the parent attempt",
			specs: []TaskSpec{{ID: "P"}},
			plans: map[TaskID]plan{"P": {children: []SpecJSON{{Handler: "h", After: []string{"nope"}}}}},
			want:  map[TaskID]TaskState{"P": TaskFailed, c1: absent},
			errs:  map[TaskID][]string{"P": {"child 1", string(c1), "after", `unknown task "nope"`}}},
		{name: "a child waiting for its parent is a cycle",
			specs: []TaskSpec{{ID: "P"}},
			plans: map[TaskID]plan{"P": {children: []SpecJSON{{Handler: "h"}, {Handler: "h", After: []string{"P"}}}}},
			want:  map[TaskID]TaskState{"P": TaskFailed, c1: absent, c2: absent},
			errs:  map[TaskID][]string{"P": {"child 2", string(c2), "after", "cycle"}}},
		{name: "a child waiting for a task that waits for its parent is a cycle",
			specs: []TaskSpec{{ID: "P"}, {ID: "D", After: after("P")}},
			plans: map[TaskID]plan{"P": {children: []SpecJSON{{Handler: "h", After: []string{"D"}}}}},
			want:  map[TaskID]TaskState{"P": TaskFailed, c1: absent, "D": TaskCanceled},
			errs:  map[TaskID][]string{"P": {"child 1", string(c1), "after", "cycle"}}},
		{name: "a grandchild waiting for its grandparent is a cycle",
			specs: []TaskSpec{{ID: "P"}},
			plans: map[TaskID]plan{
				"P": {children: []SpecJSON{{Handler: "h"}}},
				c1:  {children: []SpecJSON{{Handler: "h", After: []string{"P"}}}},
			},
			want: map[TaskID]TaskState{"P": TaskFailed, c1: TaskFailed, g1: absent},
			errs: map[TaskID][]string{c1: {"child 1", string(g1), "after", "cycle"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, x := newWorkflowRig(t, planExec(t, tc.plans), nil)
			r.pause()
			for _, s := range tc.specs {
				r.submit(s)
			}
			r.resume()
			r.idle()
			if tc.mid != nil {
				r.checkStates(tc.mid)
			}
			r.advance(time.Minute)
			r.checkStates(tc.want)
			for _, o := range tc.order {
				if err := x.before(o[0], o[1]); err != nil {
					t.Error(err)
				}
			}
			for id, subs := range tc.errs {
				runs := r.view(id).Runs
				a := runs[len(runs)-1].Attempts
				if len(a) == 0 {
					t.Errorf("%s has no attempt", id)
					continue
				}
				for _, s := range subs {
					if !strings.Contains(a[len(a)-1].Error, s) {
						t.Errorf("%s: error %q does not contain %q", id, a[len(a)-1].Error, s)
					}
				}
			}
			for id, n := range tc.attempts {
				if got := len(x.of(id)); got != n {
					t.Errorf("%s ran %d attempts, want %d", id, got, n)
				}
			}
			if tc.tasks > 0 {
				if got := r.e.Stats().Tasks; got != tc.tasks {
					t.Errorf("%d tasks, want %d", got, tc.tasks)
				}
			}
			for id, st := range tc.want {
				if st == absent {
					continue
				}
				v := r.view(id)
				if p := v.Parent; p != "" && !slices.Contains(r.view(p).Children, id) {
					t.Errorf("%s's parent %s does not list it", id, p)
				}
			}
		})
	}
}

// TestWorkflowAfterThroughHierarchy: a parent waits for its children, so
// declaring that a child waits for its parent (or for a task that waits
// for the parent) is a cycle too.
func TestWorkflowAfterThroughHierarchy(t *testing.T) {
	later := rigEpoch.Add(time.Hour).Format(time.RFC3339Nano)
	c1, c2 := childID("P#1", 1), childID("P#1", 2)
	tests := []struct {
		name    string
		call    afterCall
		wantErr string
	}{
		{name: "child after its parent", call: afterCall{c1, after("P")}, wantErr: "cycle: " + string(c1) + " -> P -> " + string(c1)},
		{name: "child after its parent's dependent", call: afterCall{c1, after("D")}, wantErr: "cycle: " + string(c1) + " -> D -> P -> " + string(c1)},
		{name: "child after a sibling's dependent is no cycle", call: afterCall{c1, after("E")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := newWorkflowRig(t, planExec(t, map[TaskID]plan{
				"P": {children: []SpecJSON{{Handler: "h", NotBefore: later}, {Handler: "h", NotBefore: later}}},
			}), nil)
			r.submit(TaskSpec{ID: "P"})
			r.idle()
			r.submit(TaskSpec{ID: "D", After: after("P")})
			r.submit(TaskSpec{ID: "E", After: after(c2)})
			last := r.e.wal.Last()
			err := r.e.After(r.ctx(), tc.call.task, tc.call.after)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("After: %v", err)
				}
				r.advance(time.Hour)
				r.checkStates(map[TaskID]TaskState{"P": TaskCompleted, c1: TaskCompleted, "D": TaskCompleted, "E": TaskCompleted})
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != "after" || !strings.Contains(ve.Reason, tc.wantErr) {
				t.Fatalf("got %v, want a *ValidationError for field after containing %q", err, tc.wantErr)
			}
			if got := r.e.wal.Last(); got != last {
				t.Errorf("the rejection wrote %d records", got-last)
			}
		})
	}
}

func TestWorkflowDepthLimit(t *testing.T) {
	r, x := newWorkflowRig(t, func(_ context.Context, j Job) Result {
		return Result{Outcome: OutcomeOK, Children: childrenOf(t, j.Run, []SpecJSON{{Handler: "h"}})}
	}, func(c *Config) { c.Workers = 1 })
	r.submit(TaskSpec{ID: "root"})
	r.idle()
	// root is at depth 0; the task at MaxDepth cannot have children.
	ids := []TaskID{"root"}
	for range MaxDepth {
		ids = append(ids, childID(RunID(ids[len(ids)-1]+"#1"), 1))
	}
	if got := r.e.Stats().Tasks; got != MaxDepth+1 {
		t.Fatalf("%d tasks, want %d", got, MaxDepth+1)
	}
	deepest := r.view(ids[MaxDepth])
	if err := deepest.Runs[0].Attempts[0].Error; !strings.Contains(err, "depth") {
		t.Errorf("deepest task's error %q does not mention the depth", err)
	}
	for _, id := range ids {
		if v := r.view(id); v.State != TaskFailed {
			t.Errorf("%s is %s, want failed", id, v.State)
		}
	}
	if n := len(x.all()); n != MaxDepth+1 {
		t.Errorf("%d attempts, want %d", n, MaxDepth+1)
	}
}

func TestWorkflowCancelSubtree(t *testing.T) {
	later := rigEpoch.Add(time.Hour).Format(time.RFC3339Nano)
	c1, c2 := childID("P#1", 1), childID("P#1", 2)
	g1 := childID(RunID(c1+"#1"), 1)
	t.Run("waiting for children", func(t *testing.T) {
		r, x := newWorkflowRig(t, planExec(t, map[TaskID]plan{
			"P": {children: []SpecJSON{{Handler: "h"}, {Handler: "h", NotBefore: later}}},
			c1:  {children: []SpecJSON{{Handler: "h", NotBefore: later}}},
		}), nil)
		r.submit(TaskSpec{ID: "P"})
		r.submit(TaskSpec{ID: "D", After: after("P")})
		r.idle()
		r.checkStates(map[TaskID]TaskState{"P": TaskWaitingChildren, c1: TaskWaitingChildren, c2: TaskPending, g1: TaskPending})
		if err := r.e.Cancel(r.ctx(), "P", "stop"); err != nil {
			t.Fatal(err)
		}
		want := map[TaskID]TaskState{"P": TaskCanceled, c1: TaskCanceled, c2: TaskCanceled, g1: TaskCanceled, "D": TaskCanceled}
		r.checkStates(want) // durable when Cancel returned
		for _, id := range []TaskID{c2, g1} {
			if !strings.Contains(r.view(id).CancelNote, "canceled") {
				t.Errorf("%s: cancel reason %q", id, r.view(id).CancelNote)
			}
		}
		r.reopen()
		r.advance(2 * time.Hour)
		r.checkStates(want)
		for _, id := range []TaskID{c2, g1, "D"} {
			if n := len(x.of(id)); n != 0 {
				t.Errorf("%s ran %d attempts", id, n)
			}
		}
	})
	t.Run("children of an attempt that ends after the cancel", func(t *testing.T) {
		var g *gate
		r, x := newWorkflowRig(t, func(ctx context.Context, j Job) Result {
			if j.Task == "P" {
				g.execute(ctx, j)
				// The handler ignores the cancellation and succeeds.
				return Result{Outcome: OutcomeOK, Children: childrenOf(t, j.Run, []SpecJSON{{Handler: "h"}})}
			}
			return Result{Outcome: OutcomeOK}
		}, nil)
		g = newGate(t, true)
		r.submit(TaskSpec{ID: "P"})
		g.next(t)
		if err := r.e.Cancel(r.ctx(), "P", "stop"); err != nil {
			t.Fatal(err)
		}
		r.idle()
		r.advance(time.Hour)
		if n := len(x.of(c1)); n != 0 {
			t.Errorf("a child of a canceled task ran %d attempts", n)
		}
		if v, ok := r.e.Task(c1); ok && v.State != TaskCanceled {
			t.Errorf("child of a canceled task is %s", v.State)
		}
		if v := r.view("P"); v.State != TaskCanceled {
			t.Errorf("P is %s, want canceled", v.State)
		}
	})
}

// keyed returns n specs with concurrency key k, ids prefix-000...
func keyed(prefix, k string, n int, edit func(i int, s *TaskSpec)) []TaskSpec {
	var out []TaskSpec
	for i := range n {
		s := TaskSpec{ID: TaskID(fmt.Sprintf("%s-%03d", prefix, i)), Handler: "h", ConcurrencyKey: k, Labels: map[string]string{"key": k}}
		if edit != nil {
			edit(i, &s)
		}
		out = append(out, s)
	}
	return out
}

// spansOfKey returns the spans of attempts whose task has key k.
func spansOfKey(x *wfExec, k string) []span {
	var out []span
	for _, s := range x.all() {
		if s.job.Labels["key"] == k {
			out = append(out, s)
		}
	}
	return out
}

func TestWorkflowConcurrencyKeyExclusive(t *testing.T) {
	tests := []struct {
		name  string
		keys  []string // tasks are spread over these keys
		n     int      // tasks per key
		plain int      // tasks without a key mixed in
	}{
		{name: "200 tasks of one key, 8 workers", keys: []string{"k"}, n: 200, plain: 50},
		{name: "two keys of 100 tasks", keys: []string{"k1", "k2"}, n: 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			running := map[string]int{}
			violations := 0
			r, x := newWorkflowRig(t, func(_ context.Context, j Job) Result {
				k := j.Labels["key"]
				mu.Lock()
				running[k]++
				if k != "" && running[k] > 1 {
					violations++
				}
				mu.Unlock()
				runtime.Gosched()
				mu.Lock()
				running[k]--
				mu.Unlock()
				if k != "" && j.Attempt == 1 && strings.HasSuffix(string(j.Task), "7") {
					// Every tenth task retries once: the key is held through retry_wait.
					return Result{Outcome: OutcomeFailed, Retryable: true}
				}
				return Result{Outcome: OutcomeOK}
			}, func(c *Config) { c.Workers = 8 })
			r.pause()
			var specs [][]TaskSpec
			for _, k := range tc.keys {
				specs = append(specs, keyed(k, k, tc.n, func(_ int, s *TaskSpec) {
					s.MaxAttempts = 2
					s.Backoff = Backoff{Kind: BackoffFixed}
				}))
			}
			for i := range tc.n { // the keys interleaved in submission order
				for _, s := range specs {
					r.submit(s[i])
				}
			}
			for i := range tc.plain {
				r.submit(TaskSpec{ID: TaskID(fmt.Sprintf("plain-%03d", i)), Handler: "h"})
			}
			r.resume()
			r.idle()
			if st := r.e.Stats(); st.RunsByState[RunCompleted] != tc.n*len(tc.keys)+tc.plain {
				t.Fatalf("runs: %v", st.RunsByState)
			}
			if violations > 0 {
				t.Errorf("%d attempts started while another attempt of their key ran", violations)
			}
			for _, k := range tc.keys {
				s := spansOfKey(x, k)
				if want := tc.n + tc.n/10; len(s) != want {
					t.Errorf("key %s: %d attempts, want %d", k, len(s), want)
				}
				if err := noOverlap(s); err != nil {
					t.Errorf("key %s: %v", k, err)
				}
			}
			if tc.plain > 0 {
				if got := maxConcurrent(x.all()); got < 2 {
					t.Logf("at most %d attempts at once", got) // informative: goroutine timing decides
				}
			}
		})
	}
}

// TestWorkflowConcurrencyKeyParallel: two keys held at the same time.
func TestWorkflowConcurrencyKeyParallel(t *testing.T) {
	var g *gate
	r, x := newWorkflowRig(t, func(ctx context.Context, j Job) Result { return g.execute(ctx, j) }, func(c *Config) { c.Workers = 8 })
	g = newGate(t, true)
	for _, k := range []string{"k1", "k2"} {
		for _, s := range keyed(k, k, 3, nil) {
			r.submit(s)
		}
	}
	got := []string{g.next(t).Labels["key"], g.next(t).Labels["key"]}
	slices.Sort(got)
	if !slices.Equal(got, []string{"k1", "k2"}) {
		t.Fatalf("running keys %v, want k1 and k2 together", got)
	}
	r.barrier()
	if n := len(g.started); n != 0 {
		t.Fatalf("%d more attempts started while both keys were held", n)
	}
	g.open()
	r.idle()
	for _, k := range []string{"k1", "k2"} {
		if err := noOverlap(spansOfKey(x, k)); err != nil {
			t.Error(err)
		}
	}
	if got := maxConcurrent(x.all()); got != 2 {
		t.Errorf("at most %d attempts at once, want 2 (one per key)", got)
	}
}

// TestWorkflowValidateHandler: Config.ValidateHandler checks the handlers
// of submitted tasks and of children alike.
func TestWorkflowValidateHandler(t *testing.T) {
	tests := []struct {
		name    string
		spec    TaskSpec
		wantErr string // of Submit ("": accepted)
		want    map[TaskID]TaskState
		errs    []string // of P's attempt
	}{
		{name: "a task with an unknown handler is rejected", spec: TaskSpec{ID: "X", Handler: "missing"}, wantErr: "handler: no plugin"},
		{name: "a child with an unknown handler fails the parent attempt", spec: TaskSpec{ID: "P", Handler: "h"},
			want: map[TaskID]TaskState{"P": TaskFailed, childID("P#1", 1): absent},
			errs: []string{"child 1 (" + string(childID("P#1", 1)) + ")", "handler: no plugin"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := newWorkflowRig(t, planExec(t, map[TaskID]plan{"P": {children: []SpecJSON{{Handler: "missing"}}}}), func(c *Config) {
				c.ValidateHandler = func(h string) error {
					if h == "missing" {
						return errors.New("no plugin \"missing\" is deployed")
					}
					return nil
				}
			})
			_, err := r.e.Submit(r.ctx(), tc.spec)
			if tc.wantErr != "" {
				var ve *ValidationError
				if !errors.As(err, &ve) || !strings.Contains(ve.Error(), tc.wantErr) {
					t.Fatalf("Submit: %v, want a *ValidationError containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r.idle()
			r.checkStates(tc.want)
			a := r.view("P").Runs[0].Attempts
			for _, s := range tc.errs {
				if !strings.Contains(a[len(a)-1].Error, s) {
					t.Errorf("error %q does not contain %q", a[len(a)-1].Error, s)
				}
			}
		})
	}
}

func TestWorkflowConcurrencyKeyDoesNotBlockOthers(t *testing.T) {
	var g *gate
	r, x := newWorkflowRig(t, func(ctx context.Context, j Job) Result {
		if j.Handler == "hold" {
			return g.execute(ctx, j)
		}
		return Result{Outcome: OutcomeOK}
	}, func(c *Config) { c.Workers = 2 })
	g = newGate(t, true)
	r.submit(TaskSpec{ID: "holder", Handler: "hold", ConcurrencyKey: "k", Labels: map[string]string{"key": "k"}})
	g.next(t)
	blocked := keyed("blocked", "k", 50, nil)
	for _, s := range blocked {
		r.submit(s)
	}
	r.submit(TaskSpec{ID: "free", Handler: "h"})
	v := r.wait("free")
	if v.State != TaskCompleted {
		t.Fatalf("free: %s", v.State)
	}
	if a := v.Runs[0].Attempts[0]; a.LeasedAt != v.SubmittedAt {
		t.Errorf("free was leased at %d, submitted at %d: it waited", a.LeasedAt, v.SubmittedAt)
	}
	for _, s := range blocked {
		if n := len(x.of(s.ID)); n != 0 {
			t.Fatalf("%s ran while the key was held", s.ID)
		}
	}
	g.open()
	r.idle()
	for _, s := range blocked {
		if v := r.view(s.ID); v.State != TaskCompleted {
			t.Errorf("%s: %s", s.ID, v.State)
		}
	}
	if err := noOverlap(spansOfKey(x, "k")); err != nil {
		t.Error(err)
	}
}

// TestWorkflowConcurrencyKeyRetryWait: a run keeps its key through
// retry_wait, also across a restart, whichever way the state comes back.
func TestWorkflowConcurrencyKeyRetryWait(t *testing.T) {
	modes := append([]struct {
		name          string
		snapshotEvery int
	}{{name: "no restart"}}, restartModes...)
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			r, x := newWorkflowRig(t, func(_ context.Context, j Job) Result {
				if j.Task == "A" && j.Attempt == 1 {
					return Result{Outcome: OutcomeFailed, Retryable: true, Error: "later"}
				}
				return Result{Outcome: OutcomeOK}
			}, func(c *Config) {
				c.SnapshotEvery = -1
				if mode.snapshotEvery != 0 {
					c.SnapshotEvery, c.SnapshotStateRatio = mode.snapshotEvery, -1
				}
			})
			r.pause()
			spec := TaskSpec{ConcurrencyKey: "k", MaxAttempts: 2, Backoff: Backoff{Kind: BackoffFixed, BaseMs: 10_000}}
			a, b := spec, spec
			a.ID, b.ID = "A", "B"
			r.submit(a)
			r.submit(b)
			r.resume()
			r.idle()
			if v := r.view("A"); v.Runs[0].State != RunRetryWait {
				t.Fatalf("A's run is %s, want retry_wait", v.Runs[0].State)
			}
			if mode.snapshotEvery != 0 {
				if mode.snapshotEvery > 0 {
					r.settleSnapshots()
				}
				covered := r.e.wal.Last()
				r.reopen()
				r.idle()
				if mode.snapshotEvery > 0 && r.e.Recovery().SnapshotSeq < covered {
					t.Fatalf("recovered from snapshot %d, want one covering %d", r.e.Recovery().SnapshotSeq, covered)
				}
			}
			r.advance(5 * time.Second)
			if n := len(x.of("B")); n != 0 {
				t.Fatalf("B ran while A held the key in retry_wait")
			}
			if v := r.view("B"); v.State != TaskPending {
				t.Errorf("B is %s", v.State)
			}
			r.advance(5 * time.Second)
			r.checkStates(map[TaskID]TaskState{"A": TaskCompleted, "B": TaskCompleted})
			if err := x.before("A", "B"); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestWorkflowConcurrencyKeyHandOff: when the run a released key was
// handed to leaves without taking it (canceled, or gated by a later
// prerequisite), the next run waiting for the key gets it.
func TestWorkflowConcurrencyKeyHandOff(t *testing.T) {
	tests := []struct {
		name  string
		leave func(r *engineRig) // makes k-000 leave the ready state
	}{
		{name: "canceled", leave: func(r *engineRig) {
			if err := r.e.Cancel(r.ctx(), "k-000", "not needed"); err != nil {
				r.t.Fatal(err)
			}
		}},
		{name: "gated by a later prerequisite", leave: func(r *engineRig) {
			r.submit(TaskSpec{ID: "gate", Handler: "h", NotBeforeMs: rigEpoch.Add(time.Hour).UnixMilli()})
			r.after("k-000", "gate")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var g *gate
			r, _ := newWorkflowRig(t, func(ctx context.Context, j Job) Result {
				if j.Handler == "hold" {
					return g.execute(ctx, j)
				}
				return Result{Outcome: OutcomeOK}
			}, func(c *Config) { c.Workers = 2 })
			g = newGate(t, true)
			r.submit(TaskSpec{ID: "holder", Handler: "hold", ConcurrencyKey: "k"})
			g.next(t)
			for _, s := range keyed("k", "k", 3, nil) {
				r.submit(s) // parked: the key is held
			}
			r.pause()
			g.open() // holder completes; the key goes to k-000, which cannot start while paused
			r.idle()
			tc.leave(r)
			r.resume()
			r.idle()
			r.checkStates(map[TaskID]TaskState{"k-001": TaskCompleted, "k-002": TaskCompleted})
		})
	}
}

// TestWorkflowRetentionKeepsSubtree: retention drops the final children of
// a parent only once the parent is final, so a child that failed long
// before its siblings ended still fails the parent.
func TestWorkflowRetentionKeepsSubtree(t *testing.T) {
	later := rigEpoch.Add(time.Hour).Format(time.RFC3339Nano)
	kids := []TaskID{childID("P#1", 1), childID("P#1", 2), childID("P#1", 3), childID("P#1", 4)}
	for _, mode := range restartModes {
		t.Run(mode.name, func(t *testing.T) {
			r, _ := newWorkflowRig(t, planExec(t, map[TaskID]plan{
				"P":     {children: []SpecJSON{{Handler: "h"}, {Handler: "h", NotBefore: later}, {Handler: "h"}, {Handler: "h"}}},
				kids[0]: {result: Result{Outcome: OutcomeFailed, Error: "child failed"}},
			}), func(c *Config) {
				c.RetainCount = 2
				c.SnapshotEvery, c.SnapshotStateRatio = mode.snapshotEvery, -1
			})
			r.submit(TaskSpec{ID: "P"})
			r.idle()
			r.checkStates(map[TaskID]TaskState{"P": TaskWaitingChildren, kids[0]: TaskFailed, kids[1]: TaskPending,
				kids[2]: TaskCompleted, kids[3]: TaskCompleted})
			if mode.snapshotEvery > 0 {
				r.settleSnapshots()
			}
			r.reopen()
			r.advance(time.Hour)
			// P is final, so retention keeps only the 2 newest final tasks.
			r.checkStates(map[TaskID]TaskState{"P": TaskFailed, kids[1]: TaskCompleted, kids[0]: absent, kids[2]: absent, kids[3]: absent})
		})
	}
}
