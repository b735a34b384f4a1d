package machine

import (
	"cmp"
	"math"
	"slices"
)

// Hand-written CBOR for the types the engine encodes all the time: events
// (every tick), and tasks and runs (every snapshot). Each function writes
// exactly the bytes encMode (CoreDetEncOptions) writes for the same value:
// keys in ascending order, omitempty fields left out when zero, shortest
// heads, nil slices as null. events_fast_test.go and cbor_test.go check
// them against the library. A field added to one of these types must be
// added here too (the tests catch a mismatch).

const (
	cborUint  = 0 << 5
	cborNeg   = 1 << 5
	cborBytes = 2 << 5
	cborText  = 3 << 5
	cborArray = 4 << 5
	cborMap   = 5 << 5
	cborFalse = 0xf4
	cborTrue  = 0xf5
	cborNull  = 0xf6
)

// appendHead appends a CBOR head of major type major (already shifted)
// and argument v in its shortest form.
func appendHead(dst []byte, major byte, v uint64) []byte {
	switch {
	case v < 24:
		return append(dst, major|byte(v))
	case v <= 0xff:
		return append(dst, major|24, byte(v))
	case v <= 0xffff:
		return append(dst, major|25, byte(v>>8), byte(v))
	case v <= 0xffffffff:
		return append(dst, major|26, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return append(dst, major|27, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// Field writers: key (an integer below 24, so one byte), then the value.

func appendInt(dst []byte, key byte, v int64) []byte {
	dst = append(dst, key)
	if v < 0 {
		return appendHead(dst, cborNeg, uint64(-(v + 1)))
	}
	return appendHead(dst, cborUint, uint64(v))
}

func appendUint(dst []byte, key byte, v uint64) []byte {
	return appendHead(append(dst, key), cborUint, v)
}

func appendText(dst []byte, key byte, s string) []byte {
	dst = appendHead(append(dst, key), cborText, uint64(len(s)))
	return append(dst, s...)
}

func appendByteString(dst []byte, key byte, b []byte) []byte {
	dst = appendHead(append(dst, key), cborBytes, uint64(len(b)))
	return append(dst, b...)
}

// appendFloat writes f as the library does (shortest of float16, float32
// and float64 that holds it exactly). Only the common case, a value that
// needs 64 bits (like the default jitter 0.1), is written here.
func appendFloat(dst []byte, key byte, f float64) ([]byte, error) {
	dst = append(dst, key)
	if !math.IsNaN(f) && float64(float32(f)) != f {
		return appendHead(dst, 7<<5, math.Float64bits(f)), nil // 0xfb + 8 bytes
	}
	b, err := encMode.Marshal(f)
	return append(dst, b...), err
}

// count returns how many of set are true: the size of a map whose
// omitempty fields are left out.
func count(set ...bool) uint64 {
	n := uint64(0)
	for _, s := range set {
		if s {
			n++
		}
	}
	return n
}

func appendSpec(dst []byte, s *TaskSpec) ([]byte, error) {
	if s.workflowFields() {
		b, err := encMode.Marshal(s)
		return append(dst, b...), err
	}
	dst = appendHead(dst, cborMap, 5+count(s.ID != "", len(s.Input) > 0, s.Priority != 0, s.NotBeforeMs != 0, len(s.Labels) > 0,
		s.InputRef != "", s.InputSize != 0))
	if s.ID != "" {
		dst = appendText(dst, 1, string(s.ID))
	}
	dst = appendText(dst, 2, s.Handler)
	if len(s.Input) > 0 {
		dst = appendByteString(dst, 3, s.Input)
	}
	dst = append(dst, 4)
	dst = appendHead(dst, cborMap, 1+count(s.Policy.Count != 0, s.Policy.EveryMs != 0))
	dst = appendText(dst, 1, string(s.Policy.Kind))
	if s.Policy.Count != 0 {
		dst = appendInt(dst, 2, int64(s.Policy.Count))
	}
	if s.Policy.EveryMs != 0 {
		dst = appendInt(dst, 3, s.Policy.EveryMs)
	}
	dst = appendInt(dst, 5, int64(s.MaxAttempts))
	dst = appendInt(dst, 6, s.TimeoutMs)
	b := &s.Backoff
	dst = append(dst, 7)
	dst = appendHead(dst, cborMap, 2+count(b.MaxMs != 0, b.Jitter != 0))
	dst = appendText(dst, 1, string(b.Kind))
	dst = appendInt(dst, 2, b.BaseMs)
	if b.MaxMs != 0 {
		dst = appendInt(dst, 3, b.MaxMs)
	}
	if b.Jitter != 0 {
		var err error
		if dst, err = appendFloat(dst, 4, b.Jitter); err != nil {
			return dst, err
		}
	}
	if s.Priority != 0 {
		dst = appendInt(dst, 8, int64(s.Priority))
	}
	if s.NotBeforeMs != 0 {
		dst = appendInt(dst, 9, s.NotBeforeMs)
	}
	if len(s.Labels) > 0 {
		// Keys in the order of their encodings, compared bytewise: the
		// length head comes first, so shorter keys first, then by bytes.
		keys := make([]string, 0, len(s.Labels))
		for k := range s.Labels {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b string) int {
			if len(a) != len(b) {
				return cmp.Compare(len(a), len(b))
			}
			return cmp.Compare(a, b)
		})
		dst = appendHead(append(dst, 10), cborMap, uint64(len(keys)))
		for _, k := range keys {
			dst = appendHead(dst, cborText, uint64(len(k)))
			dst = append(dst, k...)
			v := s.Labels[k]
			dst = appendHead(dst, cborText, uint64(len(v)))
			dst = append(dst, v...)
		}
	}
	// Keys 11-14 (workflow fields) never reach this encoder.
	if s.InputRef != "" {
		dst = appendText(dst, 15, s.InputRef)
	}
	if s.InputSize != 0 {
		dst = appendInt(dst, 16, s.InputSize)
	}
	return dst, nil
}

func appendTask(dst []byte, t *Task) ([]byte, error) {
	if len(t.more().AddedAfter) > 0 || t.more().Retries > 0 || t.more().Skipped > 0 || t.more().Pruned > 0 || t.more().CronLast != 0 {
		b, err := encMode.Marshal(t)
		return append(dst, b...), err
	}
	dst = appendHead(dst, cborMap, 4+count(t.Canceled, t.more().CancelNote != "", t.FinalAt != 0))
	var err error
	if dst, err = appendSpec(append(dst, 1), &t.Spec); err != nil {
		return dst, err
	}
	dst = appendUint(dst, 2, t.SubmitSeq)
	dst = appendInt(dst, 3, t.SubmittedAt)
	dst = append(dst, 4)
	if t.Runs == nil {
		dst = append(dst, cborNull)
	} else {
		dst = appendHead(dst, cborArray, uint64(len(t.Runs)))
		for _, id := range t.Runs {
			dst = appendHead(dst, cborText, uint64(len(id)))
			dst = append(dst, id...)
		}
	}
	if t.Canceled {
		dst = append(dst, 5, cborTrue)
	}
	if t.more().CancelNote != "" {
		dst = appendText(dst, 6, t.more().CancelNote)
	}
	if t.FinalAt != 0 {
		dst = appendInt(dst, 7, t.FinalAt)
	}
	return dst, nil
}

func appendRun(dst []byte, r *Run) []byte {
	dst = appendHead(dst, cborMap, 6+count(r.LeaseExp != 0, len(r.Attempts) > 0, r.Reason != ""))
	dst = appendText(dst, 1, string(r.ID))
	dst = appendText(dst, 2, string(r.Task))
	dst = appendInt(dst, 3, int64(r.Index))
	dst = appendText(dst, 4, string(r.State))
	dst = appendInt(dst, 5, r.DueAt)
	if r.LeaseExp != 0 {
		dst = appendInt(dst, 6, r.LeaseExp)
	}
	if len(r.Attempts) > 0 {
		dst = appendHead(append(dst, 7), cborArray, uint64(len(r.Attempts)))
		for i := range r.Attempts {
			dst = appendAttempt(dst, &r.Attempts[i])
		}
	}
	dst = appendInt(dst, 8, r.UpdateAt)
	if r.Reason != "" {
		dst = appendText(dst, 9, r.Reason)
	}
	return dst
}

func appendAttempt(dst []byte, a *Attempt) []byte {
	dst = appendHead(dst, cborMap, 2+count(a.Worker != "", a.StartedAt != 0, a.FinishedAt != 0, a.Outcome != "",
		a.Retryable, a.Error != "", len(a.Output) > 0, a.Module != "", len(a.Log) > 0, a.OutputRef != "", a.OutputSize != 0))
	dst = appendInt(dst, 1, int64(a.Number))
	if a.Worker != "" {
		dst = appendText(dst, 2, a.Worker)
	}
	dst = appendInt(dst, 3, a.LeasedAt)
	if a.StartedAt != 0 {
		dst = appendInt(dst, 4, a.StartedAt)
	}
	if a.FinishedAt != 0 {
		dst = appendInt(dst, 5, a.FinishedAt)
	}
	if a.Outcome != "" {
		dst = appendText(dst, 6, string(a.Outcome))
	}
	if a.Retryable {
		dst = append(dst, 7, cborTrue)
	}
	if a.Error != "" {
		dst = appendText(dst, 8, a.Error)
	}
	if len(a.Output) > 0 {
		dst = appendByteString(dst, 9, a.Output)
	}
	if a.Module != "" {
		dst = appendText(dst, 10, a.Module)
	}
	if len(a.Log) > 0 {
		dst = appendByteString(dst, 11, a.Log)
	}
	if a.OutputRef != "" {
		dst = appendText(dst, 12, a.OutputRef)
	}
	if a.OutputSize != 0 {
		dst = appendInt(dst, 13, a.OutputSize)
	}
	return dst
}
