package dispatch

import (
	"context"
	"sync"
	"time"

	"github.com/wasmtask/wasmtask/segwal"

	"github.com/wasmtask/wasmtask/dispatch/machine"
)

type (
	idleProbe struct{ reply chan idleReply }
	idleReply struct {
		idle bool
		next chan struct{} // closed by the next tick
	}
	drainInput struct {
		on    bool
		reply chan struct{}
	}
)

// send delivers an input to the loop, or fails when the engine stopped,
// or with a *DiskFullError: for new work while the disk is full, for any
// input while the loop waits for space to write.
func (e *Engine) send(ctx context.Context, in any) error {
	if err := e.disk.refused(); err != nil {
		switch in.(type) {
		case *machine.SubmitInput, machine.SubmitManyInput, machine.RetryInput:
			return err
		}
		if e.disk.stalled.Load() {
			return err
		}
	}
	select {
	case e.inbox <- in:
		return nil
	case <-e.done:
		return e.stoppedErr()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *Engine) stoppedErr() error {
	return stoppedBy(e.err)
}

// submitInputs hold Submit's inputs to the loop (recycleInputs).
var submitInputs = sync.Pool{New: func() any { return new(machine.SubmitInput) }}

func putSubmitInput(in *machine.SubmitInput) {
	*in = machine.SubmitInput{}
	submitInputs.Put(in)
}

// replyChans are reply channels for Submit, which is the hot path: a
// channel goes back to the pool only once its one reply was received.
var replyChans = sync.Pool{New: func() any { return make(chan machine.Reply, 1) }}

func (e *Engine) await(ctx context.Context, ch chan machine.Reply) (machine.Reply, error) {
	r, _, err := e.awaitReply(ctx, ch)
	return r, err
}

// awaitReply waits for the reply on ch; received reports whether it came.
func (e *Engine) awaitReply(ctx context.Context, ch chan machine.Reply) (r machine.Reply, received bool, err error) {
	select {
	case r := <-ch:
		return r, true, r.Err
	case <-e.done:
		select {
		case r := <-ch:
			return r, true, r.Err
		default:
		}
		return machine.Reply{}, false, e.stoppedErr()
	case <-ctx.Done():
		return machine.Reply{}, false, ctx.Err()
	}
}

// Submit validates and stores a task. It returns once the task is durable
// (fsynced). Resubmitting the same spec under the same id is a no-op
// (Duplicate); a different spec under an existing id is ErrConflict. An
// invalid spec is a *ValidationError naming the field.
func (e *Engine) Submit(ctx context.Context, spec TaskSpec) (SubmitResult, error) {
	r, err := e.submit(ctx, spec, false, false)
	return r.Submit, err
}

// SubmitView is Submit returning the task's view as of its submission
// (for a duplicate, as of the resubmission). It is durable when SubmitView
// returns, as Submit's answer is; Task called after Submit may wait for
// one more fsync, as the loop has often stepped further by then. An input
// kept in the payload store is not read back into the view: its
// Spec.InputRef names it (Task reads it).
func (e *Engine) SubmitView(ctx context.Context, spec TaskSpec) (SubmitResult, TaskView, error) {
	r, err := e.submit(ctx, spec, true, false)
	if err != nil || r.View == nil {
		return r.Submit, TaskView{}, err
	}
	return r.Submit, *r.View, nil
}

// SubmitValidView is SubmitView for a spec checked already (ValidSpec):
// Normalize does not run again.
func (e *Engine) SubmitValidView(ctx context.Context, spec ValidSpec) (SubmitResult, TaskView, error) {
	r, err := e.submit(ctx, spec.Spec(), true, true)
	if err != nil || r.View == nil {
		return r.Submit, TaskView{}, err
	}
	return r.Submit, *r.View, nil
}

// submit submits spec, normalized already if valid.
func (e *Engine) submit(ctx context.Context, spec TaskSpec, view, valid bool) (machine.Reply, error) {
	// Normalize is a pure function of the spec: run it here, beside the
	// caller, rather than in the loop that every submission goes through.
	// The input the loop will own is made first and its spec checked in
	// place: a spec whose address Normalize and spill take escapes, and
	// was a copy of its own on the heap.
	// It comes from submitInputs, to which the loop returns it once the
	// tick that stepped it is written.
	in := submitInputs.Get().(*machine.SubmitInput)
	*in = machine.SubmitInput{Spec: spec, Normalized: true, View: view}
	if !valid {
		if err := in.Spec.Normalize(); err != nil {
			putSubmitInput(in)
			return machine.Reply{}, err
		}
	}
	ref, err := e.spill(&in.Spec)
	if err != nil {
		putSubmitInput(in)
		return machine.Reply{}, err
	}
	ch := replyChans.Get().(chan machine.Reply)
	in.Reply = ch
	// The task's memory, touched here first: the heap of an engine taking
	// on tasks grows, and the page faults of its new memory were the
	// largest single cost of a submission in the loop.
	in.Mem = new(machine.Task)
	if err := e.send(ctx, in); err != nil {
		putSubmitInput(in)
		replyChans.Put(ch)
		if ref != "" {
			e.payloads.Unpin(ref) // the loop never saw it
		}
		return machine.Reply{}, err
	}
	r, received, err := e.awaitReply(ctx, ch)
	if received {
		replyChans.Put(ch) // its one reply was taken: nothing is sent on it again
	}
	if r.View != nil {
		// Outputs (a duplicate of a task that ran); the input stays named
		// by Spec.InputRef (the caller has it; Task reads it back).
		e.resolveView(r.View, false)
	}
	return r, err
}

// SubmitMany submits specs together: one input to the loop, handled in
// one tick (so in one WAL frame and one fsync), answered once that tick is
// durable. results[i] and errs[i] are what Submit would return for
// specs[i]; err is set when none could be submitted (the engine stopped,
// ctx ended).
func (e *Engine) SubmitMany(ctx context.Context, specs []TaskSpec) (results []SubmitResult, errs []error, err error) {
	errs = make([]error, len(specs))
	index := make([]int, 0, len(specs)) // normal[k] is specs[index[k]]
	normal := make([]TaskSpec, 0, len(specs))
	for i, spec := range specs {
		if errs[i] = spec.Normalize(); errs[i] == nil {
			normal = append(normal, spec)
			index = append(index, i)
		}
	}
	return e.submitMany(ctx, normal, index, errs)
}

// SubmitValidMany is SubmitMany for specs checked already (ValidSpec):
// Normalize does not run again.
func (e *Engine) SubmitValidMany(ctx context.Context, specs []ValidSpec) (results []SubmitResult, errs []error, err error) {
	index, normal := make([]int, len(specs)), make([]TaskSpec, len(specs))
	for i := range specs {
		normal[i], index[i] = specs[i].Spec(), i
	}
	return e.submitMany(ctx, normal, index, make([]error, len(specs)))
}

// submitMany submits the normalized specs normal of a caller's batch:
// normal[k] is its spec index[k], errs has a slot for each of its specs
// (those not in normal hold their error already).
func (e *Engine) submitMany(ctx context.Context, normal []TaskSpec, index []int, errs []error) (results []SubmitResult, _ []error, err error) {
	results = make([]SubmitResult, len(errs))
	ch := make(chan machine.Reply, len(normal))
	in := make(machine.SubmitManyInput, 0, len(normal))
	// The batch's large inputs are stored together, durable before the
	// loop sees (and the WAL names) any of them.
	toSpill := make([]*TaskSpec, len(normal))
	for k := range normal {
		toSpill[k] = &normal[k]
	}
	spillErrs := e.spillMany(toSpill)
	kept := index[:0]
	for k, i := range index {
		if errs[i] = spillErrs[k]; errs[i] == nil {
			in = append(in, machine.SubmitInput{Spec: normal[k], Reply: ch, Normalized: true})
			kept = append(kept, i)
		}
	}
	index = kept
	if len(in) == 0 {
		return results, errs, nil
	}
	if err := e.send(ctx, in); err != nil {
		e.unpinHandled([]any{in}) // the loop never saw them
		return nil, nil, err
	}
	for _, i := range index {
		r, received, err := e.awaitReply(ctx, ch)
		if !received {
			return nil, nil, err // stopped or ctx ended before the answer
		}
		results[i], errs[i] = r.Submit, r.Err
	}
	return results, errs, nil
}

// Cancel cancels a task: its scheduled, ready and retry-waiting runs at
// once (durably, before Cancel returns); running attempts get their
// context cancelled and end as canceled. Canceling a final task is a no-op.
func (e *Engine) Cancel(ctx context.Context, id TaskID, reason string) error {
	ch := make(chan machine.Reply, 1)
	if err := e.send(ctx, machine.CancelInput{Task: id, Reason: reason, Reply: ch}); err != nil {
		return err
	}
	_, err := e.await(ctx, ch)
	return err
}

// Pause stops dispatching new attempts (durably); running ones go on.
func (e *Engine) Pause(ctx context.Context) error { return e.setPaused(ctx, true) }

// Resume undoes Pause.
func (e *Engine) Resume(ctx context.Context) error { return e.setPaused(ctx, false) }

func (e *Engine) setPaused(ctx context.Context, p bool) error {
	ch := make(chan machine.Reply, 1)
	if err := e.send(ctx, machine.PauseInput{Pause: p, Reply: ch}); err != nil {
		return err
	}
	_, err := e.await(ctx, ch)
	return err
}

// Drain stops starting attempts and waits until none is in flight or the
// timeout passes. It returns the number of attempts still running.
func (e *Engine) Drain(timeout time.Duration) (int, error) {
	ch := make(chan struct{})
	if err := e.send(context.Background(), drainInput{on: true, reply: ch}); err != nil {
		return 0, err
	}
	select {
	case <-ch:
	case <-e.done: // send may queue into the inbox of a loop that already ended
		return 0, e.stoppedErr()
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		changed := e.changedCh()
		e.mu.RLock()
		n := e.state.Inflight
		e.mu.RUnlock()
		if n == 0 {
			return 0, nil
		}
		select {
		case <-changed:
		case <-e.done:
			return n, e.stoppedErr()
		case <-deadline.C:
			return n, nil
		}
	}
}

// RunUntilIdle waits until the engine has nothing to do at the current
// time: no queued input, no attempt in flight, nothing due. For tests with
// a ManualClock: advance the clock, then RunUntilIdle.
// idleRecheck: RunUntilIdle probes again after this long even when no
// tick was released meanwhile. A probe answered "busy" because an input
// was queued waits for the next release, but an input that changes
// nothing (a heartbeat or a started report of an attempt that has ended)
// makes a tick that releases nothing: without the recheck the caller
// waited forever on an idle engine (TestPropertyEngine, 2 of 3 loaded
// runs of 8).
const idleRecheck = 20 * time.Millisecond

func (e *Engine) RunUntilIdle(ctx context.Context) error {
	for {
		ch := make(chan idleReply, 1)
		if err := e.send(ctx, idleProbe{reply: ch}); err != nil {
			return err
		}
		var r idleReply
		select {
		case r = <-ch:
		case <-e.done:
			return e.stoppedErr()
		case <-ctx.Done():
			return ctx.Err()
		}
		if r.idle {
			return nil
		}
		select {
		case <-r.next:
		case <-time.After(idleRecheck):
		case <-e.done:
			return e.stoppedErr()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close stops the loop, cancels running attempts, waits for the workers
// and closes the WAL. Attempts cut short are closed as lost on the next
// Open and retried under their policy.
func (e *Engine) Close() error {
	select {
	case <-e.done:
	default:
		select {
		case e.stop <- struct{}{}:
		case <-e.done:
		}
		<-e.done
	}
	e.workers.Wait()
	e.stopCollector()
	err := e.out.Close()
	if e.err != nil {
		return e.err
	}
	return err
}

// Err returns the fatal error that stopped the loop, if any.
func (e *Engine) Err() error {
	select {
	case <-e.done:
		return e.err
	default:
		return nil
	}
}

// DiskStatus reports the data dir's disk as the engine sees it: whether new
// submissions are refused for lack of space, the free space at the last
// check, and how many such episodes there were.
func (e *Engine) DiskStatus() DiskStatus { return e.disk.status() }

// DiskFull returns the *DiskFullError that new submissions get while the
// disk is full, nil otherwise: the API refuses a request with it before
// reading the body.
func (e *Engine) DiskFull() error { return e.disk.refused() }

// Recovery reports what Open did.
func (e *Engine) Recovery() RecoveryInfo { return e.recovery }

// WALStats returns the WAL's counters since Open (appends, fsyncs, bytes).
func (e *Engine) WALStats() segwal.Stats {
	if e.wal == nil {
		return segwal.Stats{}
	}
	return e.wal.Stats()
}
