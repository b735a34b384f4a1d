// Package payload keeps task inputs and attempt outputs on disk so that the
// engine's memory grows with the number of tasks, not with their payloads.
//
// A Store is a content-addressed directory: a payload is a file named by
// the SHA-256 of its bytes, <dir>/<first 2 hex digits>/<64 hex digits>. Put
// writes a temporary file, fsyncs it, renames it into place and fsyncs the
// directory before it returns, so a WAL record that names a payload (and
// is written after Put returned) never points at a file a crash could take
// back. PutMany stores a batch the same way with one fsync per file (a
// few at once) and one per directory touched, all before it returns. Get
// reads a payload back and checks its size and hash: a file cut short or
// altered is a *DamagedError naming the file, never wrong bytes.
//
// Files are removed by a mark-and-sweep the engine runs after each
// snapshot: BeginSweep (when the snapshot's state is captured) starts
// remembering payloads put or pinned from then on; Sweep(live) removes
// every file neither in live (the payloads the captured state names) nor
// remembered. A payload is pinned from its Put until the engine has applied
// the submission or result that names it, so a file is never removed
// between its write and the event that makes it live.
//
// Budget counts the payload bytes the process holds in memory for work in
// progress (submissions being received, inputs of running attempts,
// outputs on their way to the store); the API refuses submissions that do
// not fit (429 with Retry-After).
//
// The package does pure file I/O; it knows nothing of tasks or the WAL.
package payload
