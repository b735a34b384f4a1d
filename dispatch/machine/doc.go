// Package machine is wasmtask's state machine: the task/run/attempt model,
// the events that change it, the State they build, the reducer (Apply),
// the workflow rules (after, children, cron, concurrency keys, retention,
// retries and purges) and Core, which turns inputs into events.
//
// It is pure. Core.Step(now, inputs) is fed the time and the inputs (a
// submission, a worker's report, a cancel...) and returns a Batch: the
// events it derived and applied, the attempts to start, the replies to
// release once the events are durable. It reads no clock, does no I/O
// (no os, no files, no segwal, no network) and starts no goroutine, so
// the same inputs and times give the same events, and the same events
// applied to the same State give the same State. The codecs here turn
// events and states into bytes and back (AppendEvent/DecodeEvent, one
// tick's events; EncodeState/DecodeState, a snapshot's payload); where the
// bytes go is not this package's business.
//
// That is what lets one state machine serve two drivers, as etcd keeps
// its raft package free of storage and transport:
//
//   - dispatch.Engine, the single-node loop: it feeds Core from its
//     channels and a Clock, appends each Batch's events to the WAL
//     (segwal), fsyncs, and only then releases replies and attempts;
//     recovery replays the WAL through Apply;
//   - a replicated log (raft's FSM): the leader's loop proposes each
//     tick's events as one log entry, and every node applies committed
//     entries through the same Apply, so followers hold the same State.
//
// dispatch keeps type aliases for the names its users know
// (dispatch.TaskSpec is machine.TaskSpec), so api, host and cmd need not
// import this package. arch_test.go (repository root) checks that it
// imports neither os nor segwal nor dispatch.
//
// The model, the loop and recovery are described in dispatch's doc.go.
package machine
