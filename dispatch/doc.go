// Package dispatch will hold the wasmtask engine: the task, run and attempt
// model, the events that record every change, the one pure reducer used both
// live and in recovery, the dispatch loop that owns the write-ahead log, the
// bounded worker pool, snapshots and recovery.
//
// It knows segwal and nothing of WebAssembly: it never imports host or
// wazero, and it defines the Executor interface that host implements.
//
// Not written yet: see issue 3 ("The dispatch engine").
package dispatch
