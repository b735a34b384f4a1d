package dispatch

import (
	"fmt"
	"runtime"
	"time"

	"github.com/wasmtask/wasmtask/dispatch/machine"
)

// loop is the engine's goroutine. Per tick: wait for an input or the timer,
// drain what else is queued, Step, append the events as one WAL frame
// (written, not yet fsynced), and hand what the tick releases (replies,
// attempts to start or cancel, Wait wake-ups) to the committer, then go on
// with the next tick while the committer fsyncs. Nothing leaves the engine
// before its events are durable.
func (e *Engine) loop() {
	defer close(e.done)
	go e.commitLoop()
	var timer Timer
	var timerC <-chan time.Time
	var timerAt int64 // when timerC fires (unix ms), while it is armed
	inputs := make([]any, 0, e.cfg.MaxBatch)
	first := true
	for {
		if !first {
			select {
			case in := <-e.inbox:
				inputs = append(inputs, in)
			case in := <-e.results:
				inputs = append(inputs, in)
			case <-timerC:
				timerC = nil
			case <-e.poke:
				e.applyCapacity()
			case <-e.commitFailed:
				e.stopLoop(e.commitErr)
				return
			case <-e.stop:
				e.stopLoop(nil)
				return
			}
		}
		first = false
		if e.durable.Load() < e.state.Applied {
			// A tick stepped is not durable yet: an fsync is in flight or
			// about to be, and what this tick decides (early starts aside)
			// waits for the next one: let the goroutines that
			// are ready (submitters, workers) queue their inputs first, for
			// a larger tick. Measured (BenchmarkEngineNoop, 1024 workers):
			// 1 -> 30-40 tasks per tick, 25 -> 20 us of CPU per task.
			runtime.Gosched()
		}
	drain:
		for len(inputs) < e.cfg.MaxBatch {
			select {
			case in := <-e.results:
				inputs = append(inputs, in)
			case in := <-e.inbox:
				inputs = append(inputs, in)
			default:
				break drain
			}
		}
		var probes []chan idleReply
		var snapReqs []chan error
		kept := inputs[:0]
		for _, in := range inputs {
			if p, ok := in.(idleProbe); ok {
				probes = append(probes, p.reply)
				continue
			}
			if d, ok := in.(drainInput); ok {
				e.core.Drain = d.on
				close(d.reply)
				continue
			}
			if sn, ok := in.(snapshotInput); ok {
				snapReqs = append(snapReqs, sn.reply)
				continue
			}
			if c, ok := in.(captureInput); ok {
				c.reply <- machine.CaptureState(e.state) // between ticks: what was stepped so far
				continue
			}
			kept = append(kept, in)
		}
		inputs = kept

		now := unixMs(e.cfg.Clock.Now())
		inputs = e.renewQueued(now, inputs)
		select {
		case spare := <-e.spareArrays:
			e.core.SpareStarts, e.core.SpareAcks = spare.starts, spare.acks
			if len(e.state.JustFinal) == 0 {
				e.state.JustFinal = spare.finals // the loop's alone: readers do not look at it
			}
		default:
		}
		// Readers (Task, List, Wait, Stats) take e.mu for reading and then
		// wait until what they saw, up to State.Applied, is durable; so
		// Applied moves with the state, before the frame is even written.
		e.mu.Lock()
		batch, err := e.core.Step(now, inputs)
		if err != nil {
			e.mu.Unlock()
			e.stopLoop(fmt.Errorf("dispatch: engine stopped: %w", err))
			return
		}
		// Counted before anything of the tick can be released: a caller
		// answered by this tick sees it in Stats.
		e.stats.ticks.Add(1)
		want := e.state.Applied + uint64(len(batch.Events))
		e.state.Applied = want
		tick := &committedTick{seq: want, acks: batch.Acks, cancels: batch.Cancels, starts: batch.Starts,
			finals: e.state.JustFinal}
		tick.finalViews = e.finalViews(tick.finals)
		e.state.JustFinal = nil
		if len(probes) > 0 {
			tick.idle = e.idle(now, batch)
			tick.probes = probes
		}
		e.mu.Unlock()
		e.unpinHandled(inputs)
		var early []Job
		tick.starts, early = e.splitEarly(tick.starts, e.early[:0])
		_, replicated := e.out.(Pipeliner)
		if replicated && len(early) > 0 {
			e.startJobs(early) // see below
			clear(early)
			early = early[:0]
		}
		e.early = early
		if err := e.pend(tick, batch.Events, early); err != nil {
			e.stopLoop(err)
			return
		}
		clear(early)
		if len(early) > 0 && !replicated {
			// Written before they start (fsynced later): a crash of the
			// process keeps what it wrote, so their leases are found and
			// closed as lost, counted against the lost-attempt budget.
			// While inputs are queued, the next tick's leases join them in
			// one write (for a few ticks at most): with few workers a tick
			// holds one or two attempts, and a write per tick was a third
			// of the loop's time. Not with a Pipeliner (raft): an entry in
			// flight survives nothing that a pending one does not, so they
			// start at once.
			e.earlyTicks++
			if e.earlyTicks < earlyDeferTicks && len(e.inbox) == 0 && len(e.results) == 0 {
				// Let the goroutines that are ready (runners with results,
				// submitters) queue their inputs first: under load they
				// come within a Gosched and their tick joins this write.
				runtime.Gosched()
			}
			if e.earlyTicks >= earlyDeferTicks || len(e.inbox) == 0 && len(e.results) == 0 {
				e.earlyTicks = 0
				if err := e.flush(); err != nil {
					e.stopLoop(err)
					return
				}
			}
		}
		e.releaseFinished(inputs)
		e.adjustLeaseAhead()
		recycleInputs(inputs)
		clear(inputs)
		inputs = inputs[:0]
		if len(snapReqs) > 0 {
			// A snapshot being written waits for its events to be durable,
			// and snapshotNow waits for it: the committer has them (pend
			// woke it).
			e.snapshotNow(snapReqs)
		} else if e.snapshotDue() {
			e.snapshot()
		}
		// A timer armed for no later than the next due time stays: waking
		// early costs one empty tick, which re-arms it, whereas a new timer
		// every tick cost an eighth of the loop's allocations.
		if batch.NextWake > 0 && (timerC == nil || batch.NextWake < timerAt) {
			if timer != nil {
				timer.Stop()
			}
			timer = e.cfg.Clock.NewTimer(time.Duration(batch.NextWake-now) * time.Millisecond)
			timerC, timerAt = timer.C(), batch.NextWake
		}
	}
}

// SetCapacity bounds the attempts in flight at n (n >= 0), replacing
// Config.Workers, and gives ready runs that Config.Runnable refused another
// chance: a server with remote workers calls it as workers come and go
// (its own workers plus the remote ones' slots). It does not block.
func (e *Engine) SetCapacity(n int) {
	e.capacity.Store(int64(max(n, 0)))
	select {
	case e.poke <- struct{}{}:
	default: // a poke is pending: the loop reads the latest bound
	}
}

// applyCapacity hands SetCapacity's bound, and the lease-ahead, to the
// core (in the loop).
func (e *Engine) applyCapacity() {
	e.mu.Lock()
	e.core.SetWorkers(e.leaseBound())
	e.mu.Unlock()
	e.startQueued()
}

// idle judges the state after the tick, not whether the tick did work: a
// tick with events but nothing in flight or due is followed by no other
// (its timer was re-armed for the future), so waiting for one would hang.
func (e *Engine) idle(now int64, b Batch) bool {
	if len(e.inbox) > 0 || len(e.results) > 0 || e.state.Inflight > 0 {
		return false
	}
	return b.NextWake == 0 || b.NextWake > now || e.state.Paused
}

func (e *Engine) broadcast() {
	e.changedMu.Lock()
	close(e.changed)
	e.changed = make(chan struct{})
	e.changedMu.Unlock()
}

func (e *Engine) changedCh() chan struct{} {
	e.changedMu.Lock()
	defer e.changedMu.Unlock()
	return e.changed
}

// shutdown ends the loop: cancels running attempts, fails queued callers.
func (e *Engine) shutdown(err error) {
	e.err = err
	if err != nil {
		e.log.Error("dispatch: loop stopped", "err", err)
	}
	e.cancelsMu.Lock()
	for _, ctx := range e.cancels {
		ctx.cancel()
	}
	e.cancelsMu.Unlock()
	e.broadcast()
	for {
		select {
		case in := <-e.inbox:
			failInput(in, err)
		default:
			return
		}
	}
}

func failInput(in any, err error) {
	err = stoppedBy(err)
	switch in := in.(type) {
	case *machine.SubmitInput:
		in.Reply <- machine.Reply{Err: err}
	case machine.SubmitManyInput:
		for _, sub := range in {
			sub.Reply <- machine.Reply{Err: err}
		}
	case machine.CancelInput:
		in.Reply <- machine.Reply{Err: err}
	case machine.PauseInput:
		in.Reply <- machine.Reply{Err: err}
	case machine.AfterInput:
		in.Reply <- machine.Reply{Err: err}
	case machine.RetryInput:
		in.Reply <- machine.Reply{Err: err}
	case machine.DeleteInput:
		in.Reply <- machine.Reply{Err: err}
	case machine.PurgeInput:
		in.Reply <- machine.Reply{Err: err}
	case idleProbe:
		in.reply <- idleReply{idle: true}
	case drainInput:
		close(in.reply)
	case snapshotInput:
		in.reply <- err
	}
}
