package dispatch

import (
	"fmt"
)

// BusyError refuses a submission whose payload does not fit in the memory
// budget (Config.MaxPayloadMemory) right now. Nothing was written; the
// client retries after RetryAfter.
type BusyError struct {
	Need, Used, Max int64
}

// RetryAfterSeconds is the wait a BusyError suggests: the budget is held by
// requests and attempts in flight, which last about that long.
const RetryAfterSeconds = 1

func (e *BusyError) Error() string {
	return fmt.Sprintf("the server holds %d of its %d bytes of payload memory (--max-payload-memory) for work in progress and this submission needs %d more; retry in %ds, or raise --max-payload-memory",
		e.Used, e.Max, e.Need, RetryAfterSeconds)
}

// AdmitPayload reserves n bytes of payload memory for a submission being
// received (its body and the input decoded from it) until release is
// called. It never waits: when the bytes do not fit it returns a
// *BusyError (a submission alone larger than the whole budget is admitted
// while nothing else is held).
func (e *Engine) AdmitPayload(n int64) (release func(), err error) {
	if used, ok := e.budget.TryAcquire(n); !ok {
		e.throttled.Add(1)
		return nil, &BusyError{Need: n, Used: used, Max: e.budget.Max()}
	}
	return func() { e.budget.Release(n) }, nil
}

// PayloadStats are the payload counters for status and metrics.
type PayloadStats struct {
	MemoryUsed, MemoryPeak, MemoryMax int64  // payload bytes held in memory for work in progress
	StoreFiles, StoreBytes            int64  // what the payload store holds on disk
	Throttled                         uint64 // submissions refused by AdmitPayload
}

// PayloadStats returns the payload counters.
func (e *Engine) PayloadStats() PayloadStats {
	files, bytes := e.payloads.Usage()
	return PayloadStats{MemoryUsed: e.budget.Used(), MemoryPeak: e.budget.Peak(), MemoryMax: e.budget.Max(),
		StoreFiles: files, StoreBytes: bytes, Throttled: e.throttled.Load()}
}
