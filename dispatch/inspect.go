package dispatch

import "github.com/wasmtask/wasmtask/dispatch/machine"

// DecodeEvent parses one WAL record written by the engine, for offline
// inspection (wasmtask wal dump). Unknown types are errors.
func DecodeEvent(rec []byte) (Event, error) { return machine.DecodeEvent(rec) }

// WALDir is where an engine with data directory dir keeps its WAL.
func WALDir(dir string) string { return dir + "/wal" }
