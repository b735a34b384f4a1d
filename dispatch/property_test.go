package dispatch

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	prng "math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/oklog/ulid/v2"
	"github.com/wasmtask/wasmtask/segwal"

	"github.com/wasmtask/wasmtask/dispatch/machine"
)

// Property tests: random task mixes driven by a seeded PRNG, checked
// against properties that must hold whatever the mix and wherever a crash
// lands. Two variants:
//
//   - TestPropertyCore drives Core.Step directly with a simulated executor
//     and simulates kill -9 by rebuilding the State from the events that
//     were "appended" (decoded from their WAL encoding, from empty or from
//     a snapshot plus the tail), so a crash can land between ticks, between
//     a tick's Step and its append, or between the append and the release
//     of its replies and starts.
//   - TestPropertyEngine drives a real Engine (ManualClock, injected jitter)
//     and crashes it with Close + Open, with attempts in flight or not.
//
// Each seed is a subtest named seed=N. Replay one with
// DISPATCH_SEED=N (or -dispatch.seed=N); the base seed of a run is logged.

var propSeedFlag = flag.String("dispatch.seed", "", "run the property tests only with this seed (also env DISPATCH_SEED)")

// propSeeds returns n seeds, or the one seed asked for.
func propSeeds(t *testing.T, n int) []uint64 {
	s := *propSeedFlag
	if s == "" {
		s = os.Getenv("DISPATCH_SEED")
	}
	if s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("seed %q: %v", s, err)
		}
		t.Logf("replaying seed %d", seed)
		return []uint64{seed}
	}
	base := uint64(time.Now().UnixNano()) & (1<<40 - 1)
	t.Logf("seeds %d..%d (replay one with DISPATCH_SEED=<seed>)", base, base+uint64(n)-1)
	seeds := make([]uint64, n)
	for i := range seeds {
		seeds[i] = base + uint64(i)
	}
	return seeds
}

// ---------------------------------------------------------------------------
// Deterministic executor outcomes and the checks shared by both variants.

// drawResult is what the executor returns for attempt n of run, a pure
// function of (seed, run, attempt).
func drawResult(seed uint64, run RunID, attempt int) Result {
	h := fnv.New64a()
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:], seed)
	binary.LittleEndian.PutUint64(b[8:], uint64(attempt))
	h.Write(b[:])
	h.Write([]byte(run))
	x := h.Sum64()
	x ^= x >> 33 // splitmix finalizer: FNV alone leaves the high bits weak
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	u := float64(x>>11) / (1 << 53)
	out := "out:" + string(run) + "#" + strconv.Itoa(attempt)
	switch {
	case u < 0.45:
		return Result{Outcome: OutcomeOK, Output: []byte(out)}
	case u < 0.60:
		return Result{Outcome: OutcomeFailed, Retryable: true, Error: "flaky"}
	case u < 0.68:
		return Result{Outcome: OutcomeFailed, Error: "bad input"}
	case u < 0.80:
		return Result{Outcome: OutcomeTrap, Error: "unreachable"}
	case u < 0.92:
		return Result{Outcome: OutcomeTimeout, Error: "deadline"}
	default:
		return Result{Outcome: OutcomeABIViolation, Error: "bad export"}
	}
}

// budgets counts attempts against max_attempts (used: every outcome but
// lost, open ones included) and against MaxLostAttempts (lost).
func budgets(atts []Attempt) (used, lost int) {
	for _, a := range atts {
		if a.Outcome == OutcomeLost {
			lost++
		} else {
			used++
		}
	}
	return used, lost
}

// foldAttempts replays the policy over a run's closed attempts: the state
// the run must end in and the index of the attempt that decided it (-1:
// not decided, the run may retry).
func foldAttempts(spec *TaskSpec, atts []Attempt) (RunState, int) {
	used, lost := 0, 0 // lost attempts do not count against max_attempts
	for i, a := range atts {
		if a.Outcome == OutcomeLost {
			lost++
		} else {
			used++
		}
		switch {
		case a.Outcome == "":
			return RunRunning, -1
		case a.Outcome == OutcomeOK:
			return RunCompleted, i
		case a.Outcome == OutcomeLost && lost < MaxLostAttempts:
			continue
		case a.Outcome != OutcomeLost && a.Retryable && used < spec.MaxAttempts:
			continue
		default:
			return RunFailed, i
		}
	}
	return "", -1
}

// checkInvariants checks what must hold of any State at any time.
func checkInvariants(s *State, workers int) error {
	counts := map[RunState]int{}
	inflight := 0
	for id, t := range s.Tasks {
		if t.Spec.ID != id {
			return fmt.Errorf("task %s stored under %s", t.Spec.ID, id)
		}
		if got, want := len(t.Runs), t.Spec.RunCount(); got != want {
			return fmt.Errorf("task %s has %d runs, its policy %+v implies %d", id, got, t.Spec.Policy, want)
		}
		final := 0
		for i, rid := range t.Runs {
			r, ok := s.Runs[rid]
			if !ok || string(rid) != string(id)+"#"+strconv.Itoa(i+1) || r.Index != i+1 || r.Task != id {
				return fmt.Errorf("task %s: run %d is %q (present %v)", id, i+1, rid, ok)
			}
			counts[r.State]++
			if r.State.Final() {
				final++
			}
			if used, lost := budgets(r.Attempts); used > t.Spec.MaxAttempts || lost > MaxLostAttempts {
				return fmt.Errorf("run %s has %d attempts (%d lost), max_attempts %d", rid, len(r.Attempts), lost, t.Spec.MaxAttempts)
			}
			for j, a := range r.Attempts {
				if a.Number != j+1 {
					return fmt.Errorf("run %s: attempt %d is numbered %d", rid, j+1, a.Number)
				}
				open := a.Outcome == ""
				last := j == len(r.Attempts)-1
				if open && !(last && (r.State == RunLeased || r.State == RunRunning)) {
					return fmt.Errorf("run %s (%s): attempt %d has no outcome", rid, r.State, a.Number)
				}
			}
			switch r.State {
			case RunLeased, RunRunning:
				inflight++
				if a := r.Current(); a == nil || a.Outcome != "" {
					return fmt.Errorf("run %s is %s without an open attempt", rid, r.State)
				}
			case RunCompleted:
				if a := r.Current(); a == nil || a.Outcome != OutcomeOK {
					return fmt.Errorf("run %s is completed, last attempt %+v", rid, a)
				}
			case RunRetryWait:
				a := r.Current()
				used, lost := budgets(r.Attempts)
				if a == nil || !a.Retryable || a.Outcome == OutcomeLost && lost >= MaxLostAttempts || a.Outcome != OutcomeLost && used >= t.Spec.MaxAttempts {
					return fmt.Errorf("run %s waits for a retry after %+v (max %d)", rid, a, t.Spec.MaxAttempts)
				}
			case RunScheduled:
				if len(r.Attempts) != 0 {
					return fmt.Errorf("run %s is scheduled with %d attempts", rid, len(r.Attempts))
				}
			}
		}
		if final != t.FinalRuns() {
			return fmt.Errorf("task %s: %d final runs, bookkeeping says %d", id, final, t.FinalRuns())
		}
		if (final == len(t.Runs)) != (t.FinalAt != 0) {
			return fmt.Errorf("task %s: %d/%d runs final, FinalAt %d", id, final, len(t.Runs), t.FinalAt)
		}
	}
	if len(counts) != len(s.Counts()) {
		return fmt.Errorf("run counts %v, State.Counts %v", counts, s.Counts())
	}
	for k, v := range s.Counts() {
		if counts[k] != v {
			return fmt.Errorf("run counts %v, State.Counts %v", counts, s.Counts())
		}
	}
	if inflight != s.Inflight {
		return fmt.Errorf("%d runs leased or running, State.inflight %d", inflight, s.Inflight)
	}
	if workers > 0 && inflight > workers {
		return fmt.Errorf("%d attempts in flight, %d workers", inflight, workers)
	}
	return nil
}

// checkOutcomes checks every closed attempt against the executor's draws
// and every final run against its policy. lost decides whether a lost
// attempt is legitimate (it arose from a crash).
func checkOutcomes(s *State, seed uint64, lost func(r *Run, a *Attempt) error) error {
	for _, t := range s.Tasks {
		for _, rid := range t.Runs {
			r := s.Runs[rid]
			for i := range r.Attempts {
				a := &r.Attempts[i]
				switch a.Outcome {
				case "":
				case OutcomeLost:
					if err := lost(r, a); err != nil {
						return err
					}
				case OutcomeCancelled:
					if !t.Canceled {
						return fmt.Errorf("run %s attempt %d cancelled, task not canceled", rid, a.Number)
					}
				default:
					d := drawResult(seed, rid, a.Number)
					if a.Outcome != d.Outcome || a.Retryable != d.Outcome.Retryable(d.Retryable) || a.Error != d.Error || string(a.Output) != string(d.Output) {
						return fmt.Errorf("run %s attempt %d recorded %s retryable=%v %q, the executor returned %+v", rid, a.Number, a.Outcome, a.Retryable, a.Error, d)
					}
				}
			}
			if !r.State.Final() {
				continue
			}
			want, at := foldAttempts(&t.Spec, r.Attempts)
			switch {
			case r.State == RunCanceled && t.Canceled:
				if a := r.Current(); a != nil && a.Outcome == OutcomeOK {
					return fmt.Errorf("run %s canceled after an ok attempt", rid)
				}
			case r.State != want || at != len(r.Attempts)-1:
				return fmt.Errorf("run %s (task canceled %v) is %s after attempts %+v; policy (max %d) says %s decided by attempt %d",
					rid, t.Canceled, r.State, r.Attempts, t.Spec.MaxAttempts, want, at+1)
			}
		}
	}
	return nil
}

// replayRecords applies WAL records (record i has sequence from+i) to s.
func replayRecords(s *State, recs [][]byte, from uint64) error {
	for i, rec := range recs {
		ev, err := machine.DecodeEvent(rec)
		if err != nil {
			return fmt.Errorf("record %d: %w", from+uint64(i), err)
		}
		if err := machine.Apply(s, &ev); err != nil {
			return fmt.Errorf("record %d: %w", from+uint64(i), err)
		}
		s.Applied = from + uint64(i)
	}
	return nil
}

// quickSameState compares the exported fields of two states field by
// field: much cheaper than sameState, used at every simulated recovery
// (the end of each run compares the encodings as well).
func quickSameState(a, b *State) error {
	if a.Paused != b.Paused || a.NextSubmitSeq != b.NextSubmitSeq || a.Applied != b.Applied ||
		len(a.Tasks) != len(b.Tasks) || len(a.Runs) != len(b.Runs) {
		return fmt.Errorf("states differ: paused %v/%v, next seq %d/%d, applied %d/%d, %d/%d tasks, %d/%d runs",
			a.Paused, b.Paused, a.NextSubmitSeq, b.NextSubmitSeq, a.Applied, b.Applied, len(a.Tasks), len(b.Tasks), len(a.Runs), len(b.Runs))
	}
	for id, ta := range a.Tasks {
		tb, ok := b.Tasks[id]
		if !ok || !ta.Spec.SameAs(&tb.Spec) || ta.SubmitSeq != tb.SubmitSeq || ta.SubmittedAt != tb.SubmittedAt ||
			!slices.Equal(ta.Runs, tb.Runs) || ta.Canceled != tb.Canceled || ta.MoreFields().CancelNote != tb.MoreFields().CancelNote ||
			ta.FinalAt != tb.FinalAt || ta.FinalRuns() != tb.FinalRuns() {
			return fmt.Errorf("task %s differs: %+v vs %+v", id, ta, tb)
		}
	}
	for id, ra := range a.Runs {
		rb, ok := b.Runs[id]
		if !ok || ra.ID != rb.ID || ra.Task != rb.Task || ra.Index != rb.Index || ra.State != rb.State ||
			ra.DueAt != rb.DueAt || ra.LeaseExp != rb.LeaseExp || ra.UpdateAt != rb.UpdateAt ||
			!slices.EqualFunc(ra.Attempts, rb.Attempts, func(x, y Attempt) bool {
				return x.Number == y.Number && x.Worker == y.Worker && x.LeasedAt == y.LeasedAt && x.StartedAt == y.StartedAt &&
					x.FinishedAt == y.FinishedAt && x.Outcome == y.Outcome && x.Retryable == y.Retryable &&
					x.Error == y.Error && string(x.Output) == string(y.Output) && x.Module == y.Module
			}) {
			return fmt.Errorf("run %s differs: %+v vs %+v", id, ra, rb)
		}
	}
	if fmt.Sprint(a.Counts()) != fmt.Sprint(b.Counts()) || a.Inflight != b.Inflight || !slices.Equal(a.Finals(), b.Finals()) {
		return fmt.Errorf("derived state differs: %v/%d/%v vs %v/%d/%v", a.Counts(), a.Inflight, a.Finals(), b.Counts(), b.Inflight, b.Finals())
	}
	return nil
}

// sameState compares two states by their snapshot encoding (every
// exported field, in a canonical order) and their derived counters.
func sameState(a, b *State) error {
	ab, err := machine.EncodeState(a)
	if err != nil {
		return err
	}
	bb, err := machine.EncodeState(b)
	if err != nil {
		return err
	}
	if string(ab) != string(bb) {
		var ba, bbody machine.SnapshotBody
		if err := machine.DecMode.Unmarshal(ab, &ba); err != nil {
			return err
		}
		if err := machine.DecMode.Unmarshal(bb, &bbody); err != nil {
			return err
		}
		return fmt.Errorf("states differ (-a +b):\n%s", cmp.Diff(ba, bbody, cmpopts.IgnoreUnexported(Task{}, Run{}), cmpopts.EquateEmpty()))
	}
	if fmt.Sprint(a.Counts()) != fmt.Sprint(b.Counts()) || a.Inflight != b.Inflight {
		return fmt.Errorf("derived counters differ: %v/%d vs %v/%d", a.Counts(), a.Inflight, b.Counts(), b.Inflight)
	}
	if fmt.Sprint(a.Finals()) != fmt.Sprint(b.Finals()) {
		return fmt.Errorf("final-task order differs: %v vs %v", a.Finals(), b.Finals())
	}
	return nil
}

// randSpec draws a task spec: policy, attempts, backoff with jitter,
// priority, a start delay.
func randSpec(rng *prng.Rand, id TaskID, now int64) TaskSpec {
	s := TaskSpec{ID: id, Handler: "h" + strconv.Itoa(rng.IntN(3)), MaxAttempts: 1 + rng.IntN(4),
		Priority: rng.IntN(5) - 2, TimeoutMs: 10_000 + rng.Int64N(20_000)}
	if rng.IntN(3) > 0 {
		s.Input = []byte("in-" + string(id))
	}
	if rng.IntN(2) == 0 {
		s.Policy = RunPolicy{Kind: PolicyOnce}
	} else {
		s.Policy = RunPolicy{Kind: PolicyRepeat, Count: 1 + rng.IntN(5), EveryMs: rng.Int64N(5001)}
	}
	jitters := []float64{0, 0.1, 0.5, 1}
	if rng.IntN(2) == 0 {
		s.Backoff = Backoff{Kind: BackoffFixed, BaseMs: rng.Int64N(2001), Jitter: jitters[rng.IntN(4)]}
	} else {
		base := 100 + rng.Int64N(900)
		s.Backoff = Backoff{Kind: BackoffExponential, BaseMs: base, MaxMs: base * rng.Int64N(9), Jitter: jitters[rng.IntN(4)]}
		if s.Backoff.MaxMs < base {
			s.Backoff.MaxMs = 0
		}
	}
	if rng.IntN(4) == 0 {
		s.NotBeforeMs = now + rng.Int64N(8000)
	}
	if err := s.Normalize(); err != nil {
		panic(err)
	}
	return s
}

func attemptKey(run RunID, n int) string { return string(run) + "@" + strconv.Itoa(n) }

// ---------------------------------------------------------------------------
// Core-level variant.

type simJob struct {
	job      Job
	started  bool
	canceled bool
	age      int
}

type simSubmit struct {
	spec TaskSpec
	ch   chan machine.Reply
	kind string // new, resubmit, dup, conflict, invalid
}

type simSnap struct {
	applied uint64
	body    []byte
}

type coreSim struct {
	t       *testing.T
	seed    uint64
	rng     *prng.Rand
	jitter  *prng.Rand
	entropy io.Reader
	now     int64
	workers int

	s    *State
	core *Core
	log  [][]byte // durable WAL records; log[i] has sequence i+1
	snap []simSnap

	specs   map[TaskID]TaskSpec // every id submitted, normalized
	order   []TaskID
	acked   map[TaskID]bool
	unacked map[TaskID]bool // submitted, reply never released: resubmitted after a crash

	jobs       map[RunID]*simJob     // attempts executing in the current process
	stale      []any                 // results and heartbeats of a dead process
	finished   []machine.ResultInput // results already delivered (re-sent as duplicates)
	dispatched map[string]bool       // run@attempt released to the executor
	completed  map[RunID]bool        // runs whose completion is durable

	expectLost map[RunID]int // open attempts at recovery: the first Step must close exactly these as lost
	lostOK     map[string]bool
	nextID     int

	// figures
	steps, crashes, crashesMid, crashesUnreleased, lost, resubDup, resubNew, snapRecoveries, snapChecked int
}

func newCoreSim(t *testing.T, seed uint64) *coreSim {
	c := &coreSim{
		t: t, seed: seed, rng: prng.New(prng.NewPCG(seed, 1)), jitter: prng.New(prng.NewPCG(seed, 2)),
		now: 1_700_000_000_000, specs: map[TaskID]TaskSpec{}, acked: map[TaskID]bool{}, unacked: map[TaskID]bool{},
		jobs: map[RunID]*simJob{}, dispatched: map[string]bool{}, completed: map[RunID]bool{},
		lostOK: map[string]bool{},
	}
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	c.entropy = ulid.Monotonic(prng.NewChaCha8(key), 0)
	c.workers = 1 + c.rng.IntN(4)
	c.s = NewState()
	c.core = c.newCore(c.s)
	c.core.Lost = false // a fresh directory: nothing to close
	return c
}

func (c *coreSim) newCore(s *State) *Core {
	return machine.NewCore(s, machine.CoreConfig{Workers: c.workers, Node: "sim", LeaseGrace: 5000, Rand: c.jitter.Float64}, c.entropy)
}

func (c *coreSim) fatalf(format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf("seed %d, step %d, t=%d: %s", c.seed, c.steps, c.now, fmt.Sprintf(format, args...))
}

func (c *coreSim) newID() TaskID {
	c.nextID++
	return TaskID(fmt.Sprintf("task-%03d", c.nextID))
}

// randomInputs builds the inputs of one tick in the random phase.
func (c *coreSim) randomInputs(subs *[]simSubmit) []any {
	var groups [][]any
	submit := func(spec TaskSpec, kind string) {
		ch := make(chan machine.Reply, 1)
		*subs = append(*subs, simSubmit{spec: spec, ch: ch, kind: kind})
		groups = append(groups, []any{machine.SubmitInput{Spec: spec, Reply: ch}})
	}
	if c.rng.IntN(10) < 3 && len(c.specs) < 60 {
		for range 1 + c.rng.IntN(3) {
			id := c.newID()
			spec := randSpec(c.rng, id, c.now)
			c.specs[id] = spec
			c.order = append(c.order, id)
			c.unacked[id] = true
			submit(spec, "new")
		}
	}
	if len(c.order) > 0 {
		id := c.order[c.rng.IntN(len(c.order))]
		switch c.rng.IntN(40) {
		case 0, 1:
			if c.acked[id] {
				submit(c.specs[id], "dup")
			}
		case 2:
			if c.acked[id] {
				spec := c.specs[id]
				spec.Priority += 10
				submit(spec, "conflict")
			}
		case 3:
			submit(TaskSpec{ID: "bad", Handler: "Not A Plugin"}, "invalid")
		case 4, 5:
			groups = append(groups, []any{machine.CancelInput{Task: id, Reason: "random cancel", Reply: make(chan machine.Reply, 1)}})
		case 6:
			groups = append(groups, []any{machine.CancelInput{Task: "no-such-task", Reply: make(chan machine.Reply, 1)}})
		}
	}
	switch c.rng.IntN(25) {
	case 0:
		groups = append(groups, []any{machine.PauseInput{Pause: true, Reply: make(chan machine.Reply, 1)}})
	case 1, 2:
		groups = append(groups, []any{machine.PauseInput{Pause: false, Reply: make(chan machine.Reply, 1)}})
	}
	for _, id := range sortedKeys(c.jobs) {
		j := c.jobs[id]
		j.age++
		var g []any
		if !j.started && c.rng.IntN(2) == 0 {
			g = append(g, machine.StartedInput{Run: id, Attempt: j.job.Attempt})
			j.started = true
		}
		if c.rng.IntN(8) == 0 {
			g = append(g, machine.HeartbeatInput{Run: id, Attempt: j.job.Attempt})
		}
		// Attempts finish well within their lease (timeout >= 10s plus 5s
		// grace; a job lives at most 4 ticks of at most 3s): a lost attempt
		// can then only come from a crash.
		if j.age >= 4 || c.rng.IntN(10) < 4 {
			res := drawResult(c.seed, id, j.job.Attempt)
			if j.canceled && c.rng.IntN(4) > 0 {
				res = Result{Outcome: OutcomeCancelled, Error: "context canceled"}
			}
			in := machine.ResultInput{Run: id, Attempt: j.job.Attempt, Res: res}
			g = append(g, in)
			c.finished = append(c.finished, in)
			delete(c.jobs, id)
		}
		if len(g) > 0 {
			groups = append(groups, g)
		}
	}
	for len(c.stale) > 0 && c.rng.IntN(3) == 0 {
		groups = append(groups, []any{c.stale[0]})
		c.stale = c.stale[1:]
	}
	if len(c.finished) > 0 && c.rng.IntN(30) == 0 {
		groups = append(groups, []any{c.finished[c.rng.IntN(len(c.finished))]})
	}
	c.rng.Shuffle(len(groups), func(i, j int) { groups[i], groups[j] = groups[j], groups[i] })
	var inputs []any
	for _, g := range groups {
		inputs = append(inputs, g...)
	}
	return inputs
}

func sortedKeys[V any](m map[RunID]V) []RunID {
	keys := make([]RunID, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// crash kinds
const (
	noCrash         = iota
	crashMidTick    // after Step, before the append: the tick's events are lost
	crashUnreleased // after the append, before replies and starts are released
)

// tick runs one Step and, unless it crashes, appends and releases it.
func (c *coreSim) tick(inputs []any, subs []simSubmit, crash int) Batch {
	c.t.Helper()
	c.steps++
	firstAfterCrash := c.expectLost != nil
	b, err := c.core.Step(c.now, inputs)
	if err != nil {
		c.fatalf("Step: %v", err)
	}
	lost := 0
	for _, ev := range b.Events {
		if ev.Outcome != OutcomeLost {
			continue
		}
		n, ok := c.expectLost[ev.Run]
		if !firstAfterCrash || !ok || n != ev.Attempt || ev.Type != EvAttemptFinished {
			c.fatalf("attempt %d of %s closed as lost (%v, %q) without a crash leaving it open", ev.Attempt, ev.Run, ev.Type, ev.Error)
		}
		delete(c.expectLost, ev.Run)
		c.lostOK[attemptKey(ev.Run, ev.Attempt)] = true
		lost++
	}
	if firstAfterCrash && len(c.expectLost) > 0 {
		c.fatalf("the first tick after a crash left attempts open: %v", c.expectLost)
	}
	c.expectLost = nil
	if crash != crashMidTick {
		c.lost += lost
	}
	if crash == crashMidTick {
		c.crashesMid++
		c.recover(false)
		return Batch{}
	}
	for i := range b.Events {
		rec, err := machine.AppendEvent(nil, &b.Events[i])
		if err != nil {
			c.fatalf("encode %+v: %v", b.Events[i], err)
		}
		c.log = append(c.log, rec)
		if ev := &b.Events[i]; ev.Type == EvAttemptFinished && ev.To == RunCompleted {
			c.completed[ev.Run] = true
		}
	}
	c.s.Applied = uint64(len(c.log))
	if crash == crashUnreleased {
		c.crashesUnreleased++
		c.recover(true)
		return Batch{}
	}
	for _, a := range b.Acks {
		a.To <- a.R
	}
	for _, sub := range subs {
		c.checkSubmitReply(sub)
	}
	for _, in := range inputs {
		var ch chan machine.Reply
		switch in := in.(type) {
		case machine.CancelInput:
			ch = in.Reply
		case machine.PauseInput:
			ch = in.Reply
		default:
			continue
		}
		select {
		case r := <-ch:
			if r.Err != nil && !errors.Is(r.Err, ErrNotFound) {
				c.fatalf("%T: %v", in, r.Err)
			}
		default:
			c.fatalf("no reply released for %+v", in)
		}
	}
	for _, ref := range b.Cancels {
		if j, ok := c.jobs[ref.Run]; ok && j.job.Attempt == ref.Attempt {
			j.canceled = true
		}
	}
	for _, job := range b.Starts {
		key := attemptKey(job.Run, job.Attempt)
		if c.dispatched[key] {
			c.fatalf("attempt %s dispatched twice", key)
		}
		if c.completed[job.Run] {
			c.fatalf("run %s dispatched (attempt %d) after its completion was durable", job.Run, job.Attempt)
		}
		if job.Attempt > job.MaxAttempts+MaxLostAttempts {
			c.fatalf("attempt %d of %s dispatched, max_attempts %d", job.Attempt, job.Run, job.MaxAttempts)
		}
		r := c.s.Runs[job.Run]
		if r == nil || r.State != RunLeased || len(r.Attempts) != job.Attempt || r.Current().Worker != job.Worker {
			c.fatalf("start %+v does not match the run %+v", job, r)
		}
		if _, busy := c.jobs[job.Run]; busy {
			c.fatalf("run %s started while attempt %d of it still runs", job.Run, c.jobs[job.Run].job.Attempt)
		}
		c.dispatched[key] = true
		c.jobs[job.Run] = &simJob{job: job}
	}
	// Invariants on every third tick (and at every recovery and the end):
	// the full scan dominates the cost under -race.
	if c.steps%3 == 0 {
		if err := checkInvariants(c.s, c.workers); err != nil {
			c.fatalf("%v", err)
		}
	}
	if c.rng.IntN(25) == 0 {
		body, err := machine.EncodeState(c.s)
		if err != nil {
			c.fatalf("encodeState: %v", err)
		}
		c.snap = append(c.snap, simSnap{applied: c.s.Applied, body: body})
	}
	return b
}

func (c *coreSim) checkSubmitReply(sub simSubmit) {
	c.t.Helper()
	var r machine.Reply
	select {
	case r = <-sub.ch:
	default:
		c.fatalf("no reply released for the submission of %s (%s)", sub.spec.ID, sub.kind)
	}
	var verr *ValidationError
	switch sub.kind {
	case "new", "resubmit":
		if r.Err != nil || r.Submit.Task != sub.spec.ID {
			c.fatalf("submit %s (%s): %+v", sub.spec.ID, sub.kind, r)
		}
		if sub.kind == "new" && r.Submit.Duplicate {
			c.fatalf("first submission of %s acknowledged as a duplicate", sub.spec.ID)
		}
		if sub.kind == "resubmit" {
			if r.Submit.Duplicate {
				c.resubDup++
			} else {
				c.resubNew++
			}
		}
		c.acked[sub.spec.ID] = true
		delete(c.unacked, sub.spec.ID)
	case "dup":
		if r.Err != nil || !r.Submit.Duplicate {
			c.fatalf("resubmitting acknowledged %s: %+v, want a duplicate", sub.spec.ID, r)
		}
	case "conflict":
		if !errors.Is(r.Err, ErrConflict) {
			c.fatalf("conflicting spec for %s: %v, want ErrConflict", sub.spec.ID, r.Err)
		}
	case "invalid":
		if !errors.As(r.Err, &verr) || verr.Field != "handler" {
			c.fatalf("invalid spec: %v, want a ValidationError on handler", r.Err)
		}
	}
}

// recover simulates kill -9 and a restart: a fresh State from the durable
// records (from empty, or from a snapshot plus the tail) and a fresh Core.
// When the crash came between ticks (or after an append), the recovered
// state must equal the live one.
func (c *coreSim) recover(liveDurable bool) {
	c.t.Helper()
	c.crashes++
	var s *State
	var from uint64 = 1
	if len(c.snap) > 0 && c.rng.IntN(3) > 0 {
		sn := c.snap[len(c.snap)-1] // the newest, as Open does; sometimes an older one
		if c.rng.IntN(3) == 0 {
			sn = c.snap[c.rng.IntN(len(c.snap))]
		}
		var err error
		if s, err = machine.DecodeState(sn.body); err != nil {
			c.fatalf("decode snapshot at %d: %v", sn.applied, err)
		}
		from = sn.applied + 1
		c.snapRecoveries++
	} else {
		s = NewState()
	}
	if err := replayRecords(s, c.log[from-1:], from); err != nil {
		c.fatalf("recovery replay: %v", err)
	}
	if liveDurable {
		if err := quickSameState(c.s, s); err != nil {
			c.fatalf("recovered state differs from the live state at the crash: %v", err)
		}
	}
	if err := checkInvariants(s, 0); err != nil {
		c.fatalf("recovered state: %v", err)
	}
	c.s = s
	c.core = c.newCore(s)
	c.expectLost = map[RunID]int{}
	for id, r := range s.Runs {
		if r.State == RunLeased || r.State == RunRunning {
			c.expectLost[id] = len(r.Attempts)
		}
	}
	// The dead process's attempts may still report: a stale result must
	// change nothing.
	for _, id := range sortedKeys(c.jobs) {
		j := c.jobs[id]
		if c.rng.IntN(3) == 0 {
			c.stale = append(c.stale, machine.ResultInput{Run: id, Attempt: j.job.Attempt, Res: drawResult(c.seed, id, j.job.Attempt)})
		}
		if c.rng.IntN(4) == 0 {
			c.stale = append(c.stale, machine.HeartbeatInput{Run: id, Attempt: j.job.Attempt})
		}
	}
	c.jobs = map[RunID]*simJob{}
}

// resubmits returns the submissions whose reply the crash swallowed.
func (c *coreSim) resubmits(subs *[]simSubmit) []any {
	var inputs []any
	for _, id := range c.order {
		if c.unacked[id] {
			ch := make(chan machine.Reply, 1)
			*subs = append(*subs, simSubmit{spec: c.specs[id], ch: ch, kind: "resubmit"})
			inputs = append(inputs, machine.SubmitInput{Spec: c.specs[id], Reply: ch})
		}
	}
	return inputs
}

func runCoreSim(t *testing.T, seed uint64, steps int) *coreSim {
	c := newCoreSim(t, seed)
	var pending []any // resubmissions owed after a crash
	var pendingSubs []simSubmit
	for range steps {
		subs := pendingSubs
		inputs := append(pending, c.randomInputs(&subs)...)
		pending, pendingSubs = nil, nil
		crash := noCrash
		switch c.rng.IntN(70) {
		case 0:
			crash = crashMidTick
		case 1:
			crash = crashUnreleased
		}
		c.tick(inputs, subs, crash)
		if crash == noCrash && c.rng.IntN(60) == 0 {
			c.recover(true) // killed between ticks
		}
		if c.expectLost != nil {
			pending = c.resubmits(&pendingSubs)
		}
		if c.rng.IntN(4) > 0 {
			c.now += c.rng.Int64N(3001)
		}
	}
	// Quiesce: no more cancels, crashes or new work; resume; deliver every
	// result; advance the clock until nothing is left.
	subs := pendingSubs
	inputs := append(pending, machine.PauseInput{Pause: false, Reply: make(chan machine.Reply, 1)})
	var last Batch
	for i := 0; ; i++ {
		if i > 500 {
			c.fatalf("runs not final after %d quiet ticks: %v", i, c.s.Counts())
		}
		for _, id := range sortedKeys(c.jobs) {
			j := c.jobs[id]
			res := drawResult(c.seed, id, j.job.Attempt)
			if j.canceled {
				res = Result{Outcome: OutcomeCancelled}
			}
			inputs = append(inputs, machine.StartedInput{Run: id, Attempt: j.job.Attempt}, machine.ResultInput{Run: id, Attempt: j.job.Attempt, Res: res})
			delete(c.jobs, id)
		}
		last = c.tick(inputs, subs, noCrash)
		inputs, subs = nil, nil
		done := len(c.jobs) == 0
		for _, r := range c.s.Runs {
			done = done && r.State.Final()
		}
		if done {
			break
		}
		c.now += 1000
	}
	if last.NextWake != 0 {
		c.fatalf("every run is final, yet the core wants to wake at %d", last.NextWake)
	}
	if err := checkInvariants(c.s, c.workers); err != nil {
		c.fatalf("%v", err)
	}
	c.finalChecks()
	return c
}

func (c *coreSim) finalChecks() {
	c.t.Helper()
	s := c.s
	for _, id := range c.order {
		if !c.acked[id] {
			c.fatalf("task %s was never acknowledged", id)
		}
		tk, ok := s.Tasks[id]
		if !ok {
			c.fatalf("acknowledged task %s is missing", id)
		}
		spec := c.specs[id]
		if !tk.Spec.SameAs(&spec) {
			c.fatalf("task %s stored spec %+v, submitted %+v", id, tk.Spec, spec)
		}
	}
	if len(s.Tasks) != len(c.order) {
		c.fatalf("%d tasks in the state, %d submitted", len(s.Tasks), len(c.order))
	}
	attempts, bound := 0, 0
	for _, tk := range s.Tasks {
		for _, rid := range tk.Runs {
			r := s.Runs[rid]
			attempts += len(r.Attempts)
			bound += tk.Spec.MaxAttempts + MaxLostAttempts
			for _, a := range r.Attempts {
				if !c.dispatched[attemptKey(rid, a.Number)] && a.Outcome != OutcomeLost {
					c.fatalf("attempt %d of %s has outcome %s but was never dispatched", a.Number, rid, a.Outcome)
				}
			}
			if r.State == RunCompleted {
				for k := range c.dispatched {
					if strings.HasPrefix(k, string(rid)+"@") {
						if n, _ := strconv.Atoi(k[len(rid)+1:]); n > len(r.Attempts) {
							c.fatalf("completed run %s: attempt %d was dispatched after the completing attempt %d", rid, n, len(r.Attempts))
						}
					}
				}
			}
		}
	}
	if attempts > bound {
		c.fatalf("%d attempts for runs allowing %d in total", attempts, bound)
	}
	if err := checkOutcomes(s, c.seed, func(r *Run, a *Attempt) error {
		if !c.lostOK[attemptKey(r.ID, a.Number)] {
			return fmt.Errorf("attempt %d of %s is lost, no crash closed it", a.Number, r.ID)
		}
		return nil
	}); err != nil {
		c.fatalf("%v", err)
	}
	// The durable log replayed from empty is the live state; so is every
	// snapshot plus its tail.
	full := NewState()
	if err := replayRecords(full, c.log, 1); err != nil {
		c.fatalf("full replay: %v", err)
	}
	if err := sameState(c.s, full); err != nil {
		c.fatalf("live state vs full replay: %v", err)
	}
	// At most a few snapshots (the newest and random others): each costs a
	// decode and a replay, and a snapshot used by a recovery was already
	// checked against the live state then.
	check := c.snap
	if len(check) > 3 {
		check = []simSnap{check[len(check)-1], check[c.rng.IntN(len(check)-1)], check[c.rng.IntN(len(check)-1)]}
	}
	c.snapChecked += len(check)
	for _, sn := range check {
		s2, err := machine.DecodeState(sn.body)
		if err != nil {
			c.fatalf("snapshot at %d: %v", sn.applied, err)
		}
		if err := replayRecords(s2, c.log[sn.applied:], sn.applied+1); err != nil {
			c.fatalf("tail after snapshot %d: %v", sn.applied, err)
		}
		if err := quickSameState(full, s2); err != nil {
			c.fatalf("snapshot at %d + tail vs full replay: %v", sn.applied, err)
		}
	}
}

// raceEnabled reports whether the test binary was built with -race, which
// makes the property runs several times slower: they then run fewer seeds.
func raceEnabled() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}

func TestPropertyCore(t *testing.T) {
	n, steps := 300, 150
	if raceEnabled() {
		n = 100
	}
	if testing.Short() {
		n = 40
	}
	defer debug.SetGCPercent(debug.SetGCPercent(400)) // the runs allocate much and keep little
	var tot struct{ steps, crashes, mid, unreleased, lost, tasks, runs, attempts, snaps, snapRec, dup, fresh int }
	for _, seed := range propSeeds(t, n) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			c := runCoreSim(t, seed, steps)
			tot.steps += c.steps
			tot.crashes += c.crashes
			tot.mid += c.crashesMid
			tot.unreleased += c.crashesUnreleased
			tot.lost += c.lost
			tot.tasks += len(c.s.Tasks)
			tot.runs += len(c.s.Runs)
			for _, r := range c.s.Runs {
				tot.attempts += len(r.Attempts)
			}
			tot.snaps += c.snapChecked
			tot.snapRec += c.snapRecoveries
			tot.dup += c.resubDup
			tot.fresh += c.resubNew
		})
	}
	t.Logf("%d ticks, %d tasks, %d runs, %d attempts; %d crashes (%d before the append, %d after it but before the release, %d recovered from a snapshot), %d attempts closed as lost; resubmissions: %d duplicates, %d fresh; %d snapshots checked",
		tot.steps, tot.tasks, tot.runs, tot.attempts, tot.crashes, tot.mid, tot.unreleased, tot.snapRec, tot.lost, tot.dup, tot.fresh, tot.snaps)
	if n > 1 && (tot.crashes == 0 || tot.lost == 0 || tot.dup == 0 || tot.fresh == 0) {
		t.Errorf("the random mix never exercised a path: %+v", tot)
	}
}

// ---------------------------------------------------------------------------
// Engine-level variant.

type propExecutor struct {
	seed       uint64
	mu         sync.Mutex
	dispatched map[string]int // run@attempt -> times executed
	calls      int
}

func (x *propExecutor) Execute(ctx context.Context, j Job) Result {
	x.mu.Lock()
	x.dispatched[attemptKey(j.Run, j.Attempt)]++
	x.calls++
	slow := x.calls%5 == 0
	x.mu.Unlock()
	if slow { // a little real work, so Close finds attempts in flight
		select {
		case <-ctx.Done():
		case <-time.After(time.Millisecond):
		}
	}
	if ctx.Err() == context.Canceled {
		return Result{Outcome: OutcomeCancelled, Error: "context canceled"}
	}
	return drawResult(x.seed, j.Run, j.Attempt)
}

type engineProp struct {
	t       *testing.T
	seed    uint64
	rng     *prng.Rand
	dir     string
	clk     *ManualClock
	ex      *propExecutor
	cfg     Config
	e       *Engine
	specs   map[TaskID]TaskSpec
	order   []TaskID
	reopens []int64       // clock at every Open after a Close
	dirty   map[int64]int // reopen times that followed a Close with attempts possibly in flight -> workers of the closed engine
	nextID  int
	lost    int
	closes  int
}

func (p *engineProp) fatalf(format string, args ...any) {
	p.t.Helper()
	p.t.Fatalf("seed %d: %s", p.seed, fmt.Sprintf(format, args...))
}

func (p *engineProp) open() {
	p.t.Helper()
	p.cfg.Workers = 1 + p.rng.IntN(4)
	e, err := Open(p.cfg)
	if err != nil {
		p.fatalf("Open: %v", err)
	}
	if len(e.Recovery().SnapshotErrors) > 0 {
		p.fatalf("Open skipped snapshots: %v", e.Recovery().SnapshotErrors)
	}
	p.e = e
}

// crash closes the engine (with or without letting it go idle first),
// checks the WAL and the snapshots against the live state, and reopens.
func (p *engineProp) crash(ctx context.Context) {
	p.t.Helper()
	clean := p.rng.IntN(2) == 0
	if clean {
		if err := p.e.RunUntilIdle(ctx); err != nil {
			p.fatalf("RunUntilIdle: %v", err)
		}
	}
	if err := p.e.Close(); err != nil {
		p.fatalf("Close: %v", err)
	}
	p.closes++
	if p.rng.IntN(3) == 0 { // a full replay per crash is costly under -race; the end checks again
		p.checkDisk(p.e.state)
	}
	// Every restart at its own millisecond, so its lost attempts are told
	// apart by FinishedAt.
	p.clk.Advance(time.Millisecond)
	now := unixMs(p.clk.Now())
	p.reopens = append(p.reopens, now)
	if !clean {
		p.dirty[now] = p.cfg.Workers
	}
	p.open()
}

// checkDisk replays the whole WAL from empty and compares it with live,
// then checks every snapshot plus its tail against the full replay.
func (p *engineProp) checkDisk(live *State) {
	p.t.Helper()
	w, err := segwal.Open(filepath.Join(p.dir, "wal"), segwal.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		p.fatalf("open WAL: %v", err)
	}
	defer w.Close()
	if w.First() != 1 {
		p.fatalf("WAL starts at %d: the test keeps one segment so it can replay from 1", w.First())
	}
	var recs [][]byte
	if err := w.Replay(1, func(_ uint64, rec []byte) error {
		recs = append(recs, slices.Clone(rec))
		return nil
	}); err != nil {
		p.fatalf("WAL replay: %v", err)
	}
	full := NewState()
	if err := replayRecords(full, recs, 1); err != nil {
		p.fatalf("replay: %v", err)
	}
	if err := sameState(live, full); err != nil {
		p.fatalf("live state vs WAL replayed from empty: %v", err)
	}
	sn := &snapshotter{dir: filepath.Join(p.dir, "snapshots")}
	seqs, err := sn.list()
	if err != nil {
		p.fatalf("list snapshots: %v", err)
	}
	for _, seq := range seqs {
		s, err := readSnapshot(filepath.Join(sn.dir, snapName(seq)), seq)
		if err != nil {
			p.fatalf("snapshot %d: %v", seq, err)
		}
		if err := replayRecords(s, recs[seq:], seq+1); err != nil {
			p.fatalf("tail after snapshot %d: %v", seq, err)
		}
		if err := sameState(full, s); err != nil {
			p.fatalf("snapshot %d + tail vs full replay: %v", seq, err)
		}
	}
}

func (p *engineProp) submit(ctx context.Context, k int) {
	p.t.Helper()
	specs := make([]TaskSpec, k)
	for i := range specs {
		p.nextID++
		id := TaskID(fmt.Sprintf("task-%03d", p.nextID))
		specs[i] = randSpec(p.rng, id, unixMs(p.clk.Now()))
		p.specs[id] = specs[i]
		p.order = append(p.order, id)
	}
	errs := make([]error, k)
	var wg sync.WaitGroup
	for i := range specs {
		wg.Go(func() {
			var res SubmitResult
			res, errs[i] = p.e.Submit(ctx, specs[i])
			if errs[i] == nil && (res.Duplicate || res.Task != specs[i].ID) {
				errs[i] = fmt.Errorf("unexpected result %+v", res)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			p.fatalf("Submit %s: %v", specs[i].ID, err)
		}
	}
}

func runEngineProp(t *testing.T, seed uint64, ops int) *engineProp {
	rng := prng.New(prng.NewPCG(seed, 3))
	jitter := prng.New(prng.NewPCG(seed, 4)) // read only by the loop goroutine
	p := &engineProp{
		t: t, seed: seed, rng: rng, dir: t.TempDir(), clk: NewManualClock(time.UnixMilli(1_700_000_000_000)),
		ex: &propExecutor{seed: seed, dispatched: map[string]int{}}, specs: map[TaskID]TaskSpec{}, dirty: map[int64]int{},
	}
	p.cfg = Config{Dir: p.dir, Executor: p.ex, Clock: p.clk, Logger: slog.New(slog.DiscardHandler), Node: "prop",
		SnapshotEvery: 10 + rng.IntN(60), SnapshotStateRatio: -1, SnapshotRetain: 3, WAL: segwal.Options{Sync: segwal.SyncNone}, Rand: jitter.Float64}
	p.open()
	defer func() { p.e.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range ops {
		switch x := rng.IntN(20); {
		case x < 6:
			p.submit(ctx, 1+rng.IntN(4))
		case x < 7 && len(p.order) > 0:
			if err := p.e.Cancel(ctx, p.order[rng.IntN(len(p.order))], "random"); err != nil {
				p.fatalf("Cancel: %v", err)
			}
		case x < 8:
			if err := p.e.Pause(ctx); err != nil {
				p.fatalf("Pause: %v", err)
			}
		case x < 10:
			if err := p.e.Resume(ctx); err != nil {
				p.fatalf("Resume: %v", err)
			}
		case x < 17:
			// The clock moves only when nothing is in flight, so no lease can
			// expire: a lost attempt can only come from a crash.
			if err := p.e.RunUntilIdle(ctx); err != nil {
				p.fatalf("RunUntilIdle: %v", err)
			}
			p.clk.Advance(time.Duration(rng.IntN(3001)) * time.Millisecond)
		default:
			p.crash(ctx)
		}
	}
	if err := p.e.Resume(ctx); err != nil {
		p.fatalf("Resume: %v", err)
	}
	for i := 0; ; i++ {
		if err := p.e.RunUntilIdle(ctx); err != nil {
			p.fatalf("RunUntilIdle: %v", err)
		}
		st := p.e.Stats()
		open := 0
		for s, n := range st.RunsByState {
			if !s.Final() {
				open += n
			}
		}
		if open == 0 {
			break
		}
		if i > 200 {
			p.fatalf("runs not final after %d clock advances: %v", i, st.RunsByState)
		}
		p.clk.Advance(time.Second)
	}
	if err := p.e.Close(); err != nil {
		p.fatalf("Close: %v", err)
	}
	p.checkDisk(p.e.state)
	p.finalChecks(p.e.state)
	return p
}

func (p *engineProp) finalChecks(s *State) {
	p.t.Helper()
	if err := checkInvariants(s, 0); err != nil {
		p.fatalf("%v", err)
	}
	if len(s.Tasks) != len(p.order) {
		p.fatalf("%d tasks, %d submitted", len(s.Tasks), len(p.order))
	}
	p.ex.mu.Lock()
	defer p.ex.mu.Unlock()
	for k, n := range p.ex.dispatched {
		if n > 1 {
			p.fatalf("attempt %s executed %d times", k, n)
		}
		i := strings.LastIndexByte(k, '@')
		num, _ := strconv.Atoi(k[i+1:])
		if r := s.Runs[RunID(k[:i])]; r == nil || len(r.Attempts) < num {
			p.fatalf("attempt %s was executed but is not recorded", k)
		}
	}
	lostAt := map[int64]int{}
	for _, id := range p.order {
		tk, ok := s.Tasks[id]
		if !ok {
			p.fatalf("acknowledged task %s is missing", id)
		}
		spec := p.specs[id]
		if !tk.Spec.SameAs(&spec) {
			p.fatalf("task %s stored spec %+v, submitted %+v", id, tk.Spec, spec)
		}
		for _, rid := range tk.Runs {
			r := s.Runs[rid]
			if !r.State.Final() {
				p.fatalf("run %s is %s after the quiet phase", rid, r.State)
			}
			for _, a := range r.Attempts {
				// Lost, or canceled while it waited, leased ahead, for a
				// runner: the only outcomes of an attempt never executed.
				if a.Outcome != OutcomeLost && a.Outcome != OutcomeCancelled && p.ex.dispatched[attemptKey(rid, a.Number)] == 0 {
					p.fatalf("attempt %d of %s has outcome %s but was never executed", a.Number, rid, a.Outcome)
				}
			}
			if r.State == RunCompleted {
				for n := len(r.Attempts) + 1; n <= tk.Spec.MaxAttempts+MaxLostAttempts; n++ {
					if p.ex.dispatched[attemptKey(rid, n)] > 0 {
						p.fatalf("completed run %s: attempt %d executed after the completing attempt", rid, n)
					}
				}
			}
		}
	}
	if err := checkOutcomes(s, p.seed, func(r *Run, a *Attempt) error {
		if !strings.HasPrefix(a.Error, "the engine stopped") || !slices.Contains(p.reopens, a.FinishedAt) {
			return fmt.Errorf("attempt %d of %s lost at %d (%q): not closed by a restart (%v)", a.Number, r.ID, a.FinishedAt, a.Error, p.reopens)
		}
		lostAt[a.FinishedAt]++
		p.lost++
		return nil
	}); err != nil {
		p.fatalf("%v", err)
	}
	for at, n := range lostAt {
		if w, ok := p.dirty[at]; !ok {
			p.fatalf("%d attempts lost by a restart at %d that followed an idle engine", n, at)
		} else if n > MaxLeased(w) {
			p.fatalf("%d attempts lost by the restart at %d, the engine it replaced had %d workers (%d leased at most)", n, at, w, MaxLeased(w))
		}
	}
}

func TestPropertyEngine(t *testing.T) {
	n, ops := 60, 80
	if raceEnabled() {
		n = 25
	}
	if testing.Short() {
		n = 8
	}
	var tasks, runs, attempts, closes, lost, calls int
	for _, seed := range propSeeds(t, n) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			p := runEngineProp(t, seed, ops)
			tasks += len(p.order)
			runs += len(p.e.state.Runs)
			for _, r := range p.e.state.Runs {
				attempts += len(r.Attempts)
			}
			closes += p.closes
			lost += p.lost
			calls += p.ex.calls
		})
	}
	t.Logf("%d tasks, %d runs, %d attempts (%d executed); %d Close+Open crashes, %d attempts closed as lost", tasks, runs, attempts, calls, closes, lost)
	if n > 1 && (closes == 0 || lost == 0) {
		t.Errorf("the random mix never crashed with attempts in flight (%d crashes, %d lost)", closes, lost)
	}
}
