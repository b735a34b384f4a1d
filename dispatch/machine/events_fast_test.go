package machine

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The hand-written event codec (appendEventBody, decodeEventBody) must be
// indistinguishable from the CBOR library it replaces on the hot path:
// the same bytes out, and on the way in either the library's result or a
// hand-over to the library.

func randomEvent(r *rand.Rand) Event {
	ints := []int64{0, 1, -1, 23, 24, -24, -25, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, 1_700_000_000_123, -1_700_000_000_123, math.MaxInt64, math.MinInt64}
	strs := []string{"", "a", "task-01HF", "ü-ß-日本", strings.Repeat("x", 23), strings.Repeat("y", 24), strings.Repeat("z", 255), strings.Repeat("w", 256), strings.Repeat("v", 70_000)}
	i := func() int64 {
		if r.IntN(2) == 0 {
			return ints[r.IntN(len(ints))]
		}
		return r.Int64() >> r.IntN(64)
	}
	str := func() string {
		if r.IntN(3) == 0 {
			return ""
		}
		return strs[r.IntN(len(strs))]
	}
	e := Event{Type: EventType(1 + r.IntN(len(eventNames)-1)), At: i(), Task: TaskID(str()), Run: RunID(str()),
		From: RunState(str()), To: RunState(str()), Index: int(i()), DueAt: i(), Attempt: int(i()), Worker: str(),
		LeaseExp: i(), Outcome: Outcome(str()), Retryable: r.IntN(2) == 0, Error: str(), Module: str(), Reason: str(),
		ExecStart: i(), ExecEnd: i()}
	switch r.IntN(4) {
	case 0:
		e.Output = []byte(str())
	case 1: // in the payload store
		e.OutputRef, e.OutputSize = str(), i()
	}
	if r.IntN(4) == 0 {
		e.Spec = &TaskSpec{ID: TaskID(str()), Handler: str(), Input: []byte(str()), Policy: RunPolicy{Kind: PolicyRepeat, Count: int(i()), EveryMs: i()},
			MaxAttempts: int(i()), TimeoutMs: i(), Backoff: Backoff{Kind: BackoffExponential, BaseMs: i(), MaxMs: i(), Jitter: r.Float64()},
			Priority: int(i()), NotBeforeMs: i()}
		if r.IntN(3) == 0 {
			e.Spec.Input, e.Spec.InputRef, e.Spec.InputSize = nil, str(), i()
		}
		if r.IntN(2) == 0 {
			e.Spec.Labels = map[string]string{str(): str(), "b": "1", "aa": "2"}
		}
	}
	// Leave many fields at zero, as real events do.
	for range r.IntN(17) {
		switch r.IntN(9) {
		case 0:
			e.At = 0
		case 1:
			e.Task, e.Run = "", ""
		case 2:
			e.From, e.To = "", ""
		case 3:
			e.Index, e.Attempt = 0, 0
		case 4:
			e.DueAt, e.LeaseExp = 0, 0
		case 5:
			e.Worker, e.Outcome, e.Error = "", "", ""
		case 6:
			e.Output, e.Module, e.Retryable = nil, "", false
		case 7:
			e.Spec, e.Reason = nil, ""
		case 8:
			e.ExecStart, e.ExecEnd = 0, 0
		}
	}
	return e
}

func TestEventFastEncodeMatchesLibrary(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	events := []Event{{Type: EvEnginePaused}, {Type: EvTaskDropped, Task: "t"}}
	for range 5000 {
		events = append(events, randomEvent(r))
	}
	for i, e := range events {
		want, err := encMode.Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendEventBody([]byte{0xee}, &e)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[1:], want) {
			t.Fatalf("event %d %+v:\nfast    %x\nlibrary %x", i, e, got[1:], want)
		}
		// And the fast decoder reads it back as the library does.
		var fast, lib Event
		rest, ok := decodeEventBody(want, &fast, nil, nil)
		if !ok || len(rest) != 0 {
			t.Fatalf("event %d: the fast decoder handed its own encoding over (ok %v, %d bytes left)", i, ok, len(rest))
		}
		if _, err := DecMode.UnmarshalFirst(want, &lib); err != nil {
			// The library rejects some of what random strings make
			// (none: every string here is valid UTF-8), so this is a bug.
			t.Fatalf("event %d: library decode: %v", i, err)
		}
		if diff := cmp.Diff(lib, fast); diff != "" {
			t.Fatalf("event %d: fast decode differs from the library (-library +fast):\n%s", i, diff)
		}
	}
}

// FuzzEventFastDecode: whatever the fast decoder accepts, the library
// accepts too, with the same event and the same bytes left over.
func FuzzEventFastDecode(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		e := randomEvent(r)
		b, err := appendEventBody(nil, &e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte{0xa1, 0x01, 0x18, 0x05})            // non-shortest int: the library decides
	f.Add([]byte{0xa2, 0x02, 0x61, 'a', 0x01, 0x00}) // keys out of order
	f.Add([]byte{0xa1, 0x0f, 0x40})                  // empty byte string
	f.Add([]byte{0xa1, 0x02, 0x62, 0xc3, 0x28})      // invalid UTF-8
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast Event
		rest, ok := decodeEventBody(b, &fast, nil, nil)
		if !ok {
			return
		}
		var lib Event
		libRest, err := DecMode.UnmarshalFirst(b, &lib)
		if err != nil {
			t.Fatalf("fast path accepted %x, the library rejects it: %v", b, err)
		}
		if len(rest) != len(libRest) {
			t.Fatalf("%x: fast path leaves %d bytes, the library %d", b, len(rest), len(libRest))
		}
		if diff := cmp.Diff(lib, fast); diff != "" {
			t.Fatalf("%x: (-library +fast):\n%s", b, diff)
		}
	})
}

func BenchmarkEventCodec(b *testing.B) {
	e := Event{Type: EvAttemptFinished, At: 1_700_000_000_123, Task: "01HF8X2J9K7Q3V5W6Y8Z0A1B2C", Run: "01HF8X2J9K7Q3V5W6Y8Z0A1B2C#1",
		From: RunRunning, To: RunCompleted, Attempt: 1, Outcome: OutcomeOK}
	rec, _ := AppendEvent(nil, &e)
	b.Run("encode/fast", func(b *testing.B) {
		var buf []byte
		for range b.N {
			buf, _ = AppendEvent(buf[:0], &e)
		}
	})
	b.Run("encode/library", func(b *testing.B) {
		for range b.N {
			encMode.Marshal(&e)
		}
	})
	b.Run("decode/fast", func(b *testing.B) {
		for range b.N {
			DecodeEvent(rec)
		}
	})
	b.Run("decode/library", func(b *testing.B) {
		for range b.N {
			var x Event
			DecMode.UnmarshalFirst(rec[1:], &x)
		}
	})
}

func TestDecodedNamesKeepTheirValue(t *testing.T) {
	for _, s := range []RunState{RunScheduled, RunReady, RunLeased, RunRunning, RunRetryWait, RunCompleted, RunFailed, RunCanceled, RunSuspended, "x"} {
		if got := runStateOf([]byte(s)); got != s {
			t.Errorf("runStateOf(%q) = %q", s, got)
		}
	}
	for _, o := range []Outcome{OutcomeOK, OutcomeFailed, OutcomeTrap, OutcomeTimeout, OutcomeCancelled, OutcomeOOM, OutcomeOutputTooLarge, OutcomeABIViolation, OutcomeLost, ""} {
		if got := outcomeOf([]byte(o)); got != o {
			t.Errorf("outcomeOf(%q) = %q", o, got)
		}
	}
}
