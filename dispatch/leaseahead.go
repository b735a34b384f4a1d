package dispatch

import (
	"time"

	"github.com/wasmtask/wasmtask/dispatch/machine"
)

// Lease-ahead. With few runners and short attempts, a runner that finished
// an attempt waited for the loop to step its result, lease the next
// attempt and write the lease before it could start again: two goroutine
// hand-offs and a tick per attempt, so the rate was the runners divided by
// that cycle (about two attempts per tick, a WAL write per tick), not what
// the engine can do. So the core leases ahead of the runners: about
// leaseAheadWait of work at the mean run time of recent attempts (at most
// MaxLeaseAhead times the runner bound; none once attempts take longer
// than leaseAheadWait). Those attempts wait, leased, in the pool's queue
// (runPool), and a runner that finishes one takes the next from there at
// once. The loop then steps many results and leases per tick, and the
// fixed cost of a tick (wake-ups, the frame, the write) is shared by them.
// Measured (BenchmarkEngineNoop/workers=default, 4 runners): 2 -> 30
// tasks per tick, a WAL write per 50 tasks instead of per 2.5.
//
// What it changes (dispatch/doc.go, "Capacity"):
//   - Config.Workers (or SetCapacity) still bounds the attempts that run at
//     once; the attempts leased (Stats.InFlight, leased runs in views) may
//     be more, their worker named by slots beyond the bound.
//   - Priorities decide the order of leases, so a run that becomes ready
//     while attempts are queued waits for them: about leaseAheadWait.
//   - An attempt's timeout still counts from its start, and a start later
//     than half the lease grace renews the lease (Core.handleStarted). An
//     attempt that waits in the queue for half the lease grace (every
//     runner held by a long attempt) is renewed by the loop as a running
//     one is by its heartbeats (renewQueued): its lease does not expire
//     while it waits for a runner.
const (
	// leaseAheadWait: the attempts leased ahead of the runners are about
	// this much of their work (at the mean run time of recent attempts)...
	leaseAheadWait = time.Millisecond
	// ... and at most MaxLeaseAhead times the runners.
	leaseAheadWindow = 16 // attempts ended per decision
)

// MaxLeaseAhead: the attempts leased ahead of the runners are at most this
// many times Config.Workers (or SetCapacity's bound).
const MaxLeaseAhead = 16

// MaxLeased is the most attempts leased at once with a runner bound of
// workers: what a crash can close as lost.
func MaxLeased(workers int) int { return workers + workers*MaxLeaseAhead }

// leaseBound is the core's bound on leased attempts: the runner bound
// (Config.Workers or SetCapacity's) and the attempts leased ahead of it.
func (e *Engine) leaseBound() int {
	n := e.workerBound()
	return n + n*e.leaseAhead/leaseAheadScale
}

// leaseAheadScale: e.leaseAhead counts sixteenths of the runner bound.
const leaseAheadScale = 16

// adjustLeaseAhead sets how far the core leases ahead of the runners from
// the mean run time of the attempts that ended since the last decision
// (in the loop, once a tick; a decision per leaseAheadWindow attempts).
func (e *Engine) adjustLeaseAhead() {
	n := e.runCount.Load()
	if n-e.aheadCount < leaseAheadWindow {
		return
	}
	ns := e.runNanos.Load()
	mean := max((ns-e.aheadNanos)/(n-e.aheadCount), 1)
	e.aheadCount, e.aheadNanos = n, ns
	ahead := int(min(int64(leaseAheadWait)*leaseAheadScale/mean, MaxLeaseAhead*leaseAheadScale))
	if ahead != e.leaseAhead {
		e.leaseAhead = ahead
		e.applyCapacity()
	}
}

// renewQueued adds to inputs a heartbeat for the attempts waiting in the
// pool's queue that were leased half the lease grace ago or more (once a
// tick, before Step expires leases): it renews the lease of an attempt that
// waits for a runner, as a runner's heartbeat renews that of an attempt
// that runs. The queue is in lease order but for a fsync's worth of ticks
// (early starts go first), so the scan stops at the first attempt leased
// less than a quarter of the grace ago: usually the first. The core
// ignores the heartbeat of an attempt no longer leased.
func (e *Engine) renewQueued(now int64, inputs []any) []any {
	grace := e.cfg.LeaseGrace.Milliseconds()
	p := &e.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.queue[p.head:] {
		waited := now - (a.job.DeadlineMs - a.job.TimeoutMs) // since the lease
		if waited < grace/4 {
			break
		}
		if waited >= grace/2 {
			inputs = append(inputs, machine.HeartbeatInput{Run: a.job.Run, Attempt: a.job.Attempt})
		}
	}
	return inputs
}
