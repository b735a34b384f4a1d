package segwal

import (
	"errors"
	"fmt"
)

// Sentinels carried by a *CorruptionError (match them with errors.Is) and
// returned by Log methods.
var (
	// ErrShortFrame: the file ends inside a frame header or payload.
	ErrShortFrame = errors.New("segwal: short frame")
	// ErrBadHeader: a frame header field is out of range (type 0 or unknown,
	// unknown flags, non-zero reserved bits, impossible lengths).
	ErrBadHeader = errors.New("segwal: bad frame header")
	// ErrChecksum: the CRC32C stored in a frame does not match its bytes.
	ErrChecksum = errors.New("segwal: checksum mismatch")
	// ErrBadPayload: a checksummed payload does not decode into the records
	// its header announces.
	ErrBadPayload = errors.New("segwal: bad frame payload")
	// ErrSequenceGap: a frame or segment does not start at the sequence that
	// follows the previous one (a missing or truncated segment).
	ErrSequenceGap = errors.New("segwal: sequence gap")
	// ErrBadSegmentHeader: a segment file does not start with a valid
	// segment header.
	ErrBadSegmentHeader = errors.New("segwal: bad segment header")

	// ErrClosed is returned by methods called after Close.
	ErrClosed = errors.New("segwal: log closed")
	// ErrLocked is returned by Open when another Log holds the directory.
	ErrLocked = errors.New("segwal: directory locked by another process")
	// ErrCompacted is returned by Replay for a sequence that TruncateFront
	// already removed.
	ErrCompacted = errors.New("segwal: records removed by TruncateFront")
	// ErrOutOfRange is returned by Replay for a sequence past Last()+1.
	ErrOutOfRange = errors.New("segwal: sequence past the end of the log")
	// ErrFrameTooLarge is returned by Append when one call's records exceed
	// MaxFrameBytes.
	ErrFrameTooLarge = errors.New("segwal: frame too large")
)

// CorruptionError reports damage found on disk: which segment file, at which
// byte offset, and what is wrong (Err wraps one of the sentinels above).
type CorruptionError struct {
	Segment string // path of the segment file
	Offset  int64  // byte offset in that file where the damage starts
	Err     error
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("segwal: corrupt segment %s at offset %d: %v", e.Segment, e.Offset, e.Err)
}

func (e *CorruptionError) Unwrap() error { return e.Err }
