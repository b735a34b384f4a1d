// Package segwal is wasmtask's write-ahead log: a sequence of opaque records,
// numbered from 1, stored in segment files of CRC32C-checked, optionally
// zstd-compressed frames. It knows bytes and sequence numbers, nothing about
// tasks; the dispatch engine is its only writer.
//
// # Usage
//
//	log, err := segwal.Open(dir, segwal.Options{})
//	if err != nil { ... }              // *CorruptionError, ErrLocked, I/O
//	if cut := log.Recovery().TornTail; cut != nil { ... } // also logged
//	err = log.Replay(snapshotSeq+1, func(seq uint64, rec []byte) error { ... })
//	last, err := log.Append(ev1, ev2, ev3) // one frame, one fsync
//	durable, err := log.Commit()           // under SyncNone: fsync, Appends go on meanwhile
//	err = log.TruncateFront(snapshotSeq+1) // after a snapshot
//	err = log.Close()
//
// # Contract
//
//  1. One Append is one frame and, under the default SyncAlways, one fsync.
//     When Append returns nil its records survive a crash or power loss;
//     the frame is whole or absent after a crash, never half-applied.
//     Under SyncNone, Commit is the group commit: it fsyncs what was
//     appended so far without holding up Appends, and returns the last
//     sequence now durable (the dispatch engine appends the next tick while
//     the previous one is being committed).
//  2. Sequences are contiguous: the records of an Append get Last()+1 up to
//     the returned last. Replay and Reader deliver them in order, each once.
//  3. A failed write or fsync poisons the Log: every later Append returns
//     that error (no retry, since the file's state is unknown). Reopen.
//     Except a write that failed for lack of space (ENOSPC, EDQUOT): the
//     Log cuts what got out, stays usable and reports it in NoSpace; the
//     same Append succeeds once space is freed. With Preallocate the
//     active segment keeps 1 MiB of zeros ahead of its data: when more
//     cannot be allocated, Appends still land there (or past it, while the
//     disk has room for the frame alone) while NoSpace says so,
//     and when the next segment cannot be created the active one grows
//     past SegmentSize; Reserve tells when space is back. An fsync error
//     stays fatal (after a failed fsync the kernel may have dropped the
//     pages: nothing says what the disk holds).
//  4. Open checks every frame. It cuts only a torn tail: damage in the
//     newest segment with no valid frame after it and above the durable
//     point (an interrupted write after the last fsync, whose records were
//     never acknowledged). It reports the cut in Recovery().TornTail and
//     in a log line. The durable point is the file DURABLE, rewritten
//     (pwrite, no extra fsync) after every fsync with the last record it
//     made durable; a log ending below it was truncated or lost after the
//     fact, which is damage (ErrBelowDurable), not a torn tail.
//  5. Any other damage (a bad frame followed by good ones, a damaged or
//     truncated older segment, a missing segment, a sequence gap) makes Open
//     fail with a *CorruptionError naming the file and offset, and nothing
//     is changed on disk. With Options.Repair, Open keeps the longest valid
//     prefix instead and lists what it removed in Recovery().Removed.
//  6. The directory is locked with flock for the life of the Log; a second
//     Open fails with ErrLocked. The kernel drops the lock when the process
//     dies.
//  7. Methods are safe for concurrent use. A Reader sees the records that
//     existed when it was created; a record slice is valid until the next
//     call to Next (or the end of the Replay callback).
//
// # Errors
//
// Damage on disk is a *CorruptionError{Segment, Offset, Err} whose Err wraps
// one of ErrShortFrame, ErrBadHeader, ErrChecksum, ErrBadPayload,
// ErrSequenceGap, ErrBadSegmentHeader, ErrBelowDurable (use errors.Is). Misuse gives
// ErrClosed, ErrLocked, ErrCompacted, ErrOutOfRange or ErrFrameTooLarge.
//
// # Format
//
// FORMAT.md describes the files byte by byte: segments named by the first
// sequence they hold (20 digits, so lexical order is numeric), a 16-byte
// segment header, then frames with a 28-byte header (type, flags, count,
// first sequence, stored and raw length, CRC32C) and a payload of
// length-prefixed records, raw, zstd-compressed (frames of 4 to 32 KiB) or
// S2-compressed (smaller frames, where zstd's fixed cost per call is most
// of the work, and larger ones, where zstd would cost as much as the fsync). A frame never crosses a segment, so a torn write
// can only damage the newest segment.
//
// # Platforms
//
// A frame is durable once its segment is synced. On Linux that is
// fdatasync for a preallocated segment (datasync_linux.go) and fsync
// otherwise. On macOS plain fsync only hands the data to the drive, whose
// cache can lose it on power loss, so every sync there is F_FULLFSYNC
// (datasync_darwin.go; os.File.Sync does the same for the others, and both
// fall back to fsync where a filesystem answers ENOTSUP). Elsewhere
// (FreeBSD, Windows: build only, untested) it is the OS's fsync. Preallocation
// writes zeros ahead of the data on every OS (no fallocate), so it behaves
// the same everywhere. The directory lock is flock on unix and LockFileEx on
// Windows.
//
// # Deviations from the style guide
//
// Stats are plain counters (no metrics import): cmd exports them. The
// logger is log/slog rather than hclog so that this package depends only on
// the standard library and klauspost/compress, as docs/architecture.md requires;
// cmd/wasmtask bridges it to hclog. On macOS and Windows it also imports
// golang.org/x/sys for the calls package syscall lacks (see Platforms).
package segwal
