package machine

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// sampleEvents has one event of every type with the fields that type
// carries (and a few it does not, which the codec must keep anyway).
func sampleEvents() []Event {
	spec := &TaskSpec{ID: "task-1", Handler: "resize@sha256:" + strings.Repeat("ab", 32), Input: []byte{0, 1, 2, 0xff},
		Policy: RunPolicy{Kind: PolicyRepeat, Count: 3, EveryMs: 1500}, MaxAttempts: 5, TimeoutMs: 2500,
		Backoff:  Backoff{Kind: BackoffExponential, BaseMs: 100, MaxMs: 6400, Jitter: 0.25},
		Priority: -7, NotBeforeMs: 1_700_000_000_123, Labels: map[string]string{"team": "imaging", "ü": "ß"}}
	return []Event{
		{Type: EvTaskSubmitted, At: 1_700_000_000_000, Task: "task-1", Spec: spec},
		{Type: EvRunCreated, At: 1, Task: "task-1", Run: "task-1#3", Index: 3, To: RunScheduled, DueAt: 4501},
		{Type: EvRunTransition, At: 2, Task: "task-1", Run: "task-1#1", From: RunScheduled, To: RunReady, DueAt: 2, Reason: "due"},
		{Type: EvLeaseAcquired, At: 3, Task: "task-1", Run: "task-1#1", From: RunReady, Attempt: 1, Worker: "pid7/w3", LeaseExp: 7503},
		{Type: EvAttemptStarted, At: 4, Task: "task-1", Run: "task-1#1", Attempt: 1},
		{Type: EvLeaseRenewed, At: 5, Task: "task-1", Run: "task-1#1", Attempt: 1, LeaseExp: 9000},
		{Type: EvAttemptFinished, At: 6, Task: "task-1", Run: "task-1#1", From: RunRunning, To: RunRetryWait, Attempt: 1,
			Outcome: OutcomeTrap, Retryable: true, Error: "wasm trap: unreachable", Output: []byte("partial\x00"), Module: "sha256:00ff", DueAt: 106, Worker: "pid7/w3"},
		{Type: EvLeaseExpired, At: 7, Task: "task-1", Run: "task-1#1", From: RunLeased, To: RunFailed, Attempt: 5, Outcome: OutcomeLost, Retryable: true, Error: "lease expired"},
		{Type: EvTaskCanceled, At: 8, Task: "task-1", Reason: "user asked"},
		{Type: EvEnginePaused, At: 9},
		{Type: EvEngineResumed, At: 10},
		{Type: EvTaskDropped, At: 11, Task: "task-1"},
		{Type: EvDependencyAdded, At: 12, Task: "task-1", After: []TaskID{"a", "b"}},
		{Type: EvTaskRetried, At: 14, Task: "task-1", Reason: "retried by a client"},
		{Type: EvRunSkipped, At: 15, Task: "task-1", Run: "task-1#2", From: RunScheduled, To: RunCanceled, Reason: "misfire"},
		{Type: EvTaskDropped, At: 16, Task: "task-1", Reason: DropPurged},
		{Type: EvTaskSubmitted, At: 13, Task: "child", Spec: &TaskSpec{ID: "child", Handler: "h", Policy: RunPolicy{Kind: PolicyCron, CronExpr: "*/5 * * * * *", MaxRuns: 3, Misfire: MisfireSkip}, MaxAttempts: 1, TimeoutMs: 1000, Backoff: Backoff{Kind: BackoffFixed, BaseMs: 5}, After: []TaskID{"task-1"}, ConcurrencyKey: "k", Parent: "p", TolerateChildFailures: true}},
	}
}

var eventCmp = []cmp.Option{cmpopts.EquateEmpty()}

func TestCodecRoundTripEveryType(t *testing.T) {
	seen := map[EventType]bool{}
	for _, e := range sampleEvents() {
		t.Run(e.Type.String(), func(t *testing.T) {
			seen[e.Type] = true
			rec, err := AppendEvent([]byte("prefix"), &e)
			if err != nil {
				t.Fatal(err)
			}
			if string(rec[:6]) != "prefix" || rec[6] != byte(e.Type) {
				t.Fatalf("record starts %q, want prefix then type byte %d", rec[:7], e.Type)
			}
			got, err := DecodeEvent(rec[6:])
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(e, got, eventCmp...); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
			again, err := AppendEvent(nil, &got)
			if err != nil {
				t.Fatal(err)
			}
			if string(again) != string(rec[6:]) {
				t.Error("re-encoding a decoded event gives other bytes: the encoding is not deterministic")
			}
		})
	}
	for typ := EventType(1); int(typ) < len(eventNames); typ++ {
		if !seen[typ] {
			t.Errorf("event type %v has no round-trip case", typ)
		}
	}
}

func TestCodecEmptyEvents(t *testing.T) {
	// A minimal event of each type survives as well (omitempty fields).
	for typ := EventType(1); int(typ) < len(eventNames); typ++ {
		rec, err := AppendEvent(nil, &Event{Type: typ})
		if err != nil {
			t.Fatalf("%v: %v", typ, err)
		}
		got, err := DecodeEvent(rec)
		if err != nil {
			t.Fatalf("%v: %v", typ, err)
		}
		if diff := cmp.Diff(Event{Type: typ}, got); diff != "" {
			t.Errorf("%v: (-want +got)\n%s", typ, diff)
		}
	}
}

func TestCodecErrors(t *testing.T) {
	valid, err := AppendEvent(nil, &Event{Type: EvRunCreated, Task: "t", Run: "t#1", Index: 1, To: RunReady})
	if err != nil {
		t.Fatal(err)
	}
	unknownField := append([]byte{byte(EvTaskDropped)}, 0xa1, 0x18, 0x63, 0x01) // {99: 1}
	dupKey := append([]byte{byte(EvTaskDropped)}, 0xa2, 0x01, 0x01, 0x01, 0x02) // {1: 1, 1: 2}
	tests := []struct {
		name      string
		rec       []byte
		wantIs    error  // errors.Is target, or nil
		wantInMsg string // the message must name this
	}{
		{name: "empty record", rec: nil, wantIs: ErrUnknownEvent, wantInMsg: "empty record"},
		{name: "type byte 0", rec: []byte{0, 0xa0}, wantIs: ErrUnknownEvent, wantInMsg: "type 0"},
		{name: "type byte past the last", rec: []byte{byte(len(eventNames)), 0xa0}, wantIs: ErrUnknownEvent, wantInMsg: "type " + strconv.Itoa(len(eventNames))},
		{name: "type byte 255", rec: []byte{255, 0xa0}, wantIs: ErrUnknownEvent, wantInMsg: "type 255"},
		{name: "trailing byte", rec: append(append([]byte{}, valid...), 0x00), wantInMsg: "run_created: 1 unexpected bytes"},
		{name: "second body", rec: append(append([]byte{}, valid...), valid[1:]...), wantInMsg: "run_created"},
		{name: "truncated body", rec: valid[:len(valid)-2], wantInMsg: "decode run_created"},
		{name: "type byte only", rec: valid[:1], wantInMsg: "decode run_created"},
		{name: "body not a map", rec: []byte{byte(EvEnginePaused), 0x01}, wantInMsg: "decode engine_paused"},
		{name: "unknown field", rec: unknownField, wantInMsg: "decode task_dropped"},
		{name: "duplicate key", rec: dupKey, wantInMsg: "decode task_dropped"},
		{name: "wrong field type", rec: []byte{byte(EvRunCreated), 0xa1, 0x07, 0x61, 'x'}, wantInMsg: "decode run_created"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeEvent(tc.rec)
			if err == nil {
				t.Fatal("decodeEvent accepted it")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %v is not %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.wantInMsg) {
				t.Errorf("error %q does not contain %q", err, tc.wantInMsg)
			}
		})
	}
	t.Run("encode unknown types", func(t *testing.T) {
		for _, typ := range []EventType{evInvalid, EventType(len(eventNames)), 255} {
			if _, err := AppendEvent(nil, &Event{Type: typ}); !errors.Is(err, ErrUnknownEvent) {
				t.Errorf("appendEvent(%v) = %v, want ErrUnknownEvent", typ, err)
			}
		}
	})
}

func TestEventTypeNames(t *testing.T) {
	names := map[string]EventType{}
	for typ := EventType(0); int(typ) < len(eventNames); typ++ {
		name := typ.String()
		if name == "" || strings.HasPrefix(name, "event_type(") {
			t.Errorf("type %d has no name", typ)
		}
		if prev, dup := names[name]; dup {
			t.Errorf("types %d and %d share the name %q", prev, typ, name)
		}
		names[name] = typ
	}
	if got := EventType(200).String(); got != "event_type(200)" {
		t.Errorf("EventType(200).String() = %q", got)
	}
}

// FuzzDecodeEvent feeds arbitrary records to the decoder: it must never
// panic, and whatever it accepts must re-encode to an event that decodes
// to the same value.
func FuzzDecodeEvent(f *testing.F) {
	for _, e := range sampleEvents() {
		rec, err := AppendEvent(nil, &e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(rec)
		f.Add(rec[:len(rec)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Add([]byte{byte(EvTaskSubmitted), 0xa1, 0x06, 0xa0})
	f.Add([]byte{byte(EvTaskSubmitted), 0xbf, 0x01, 0x01, 0xff}) // indefinite-length map
	f.Fuzz(func(t *testing.T, rec []byte) {
		e, err := DecodeEvent(rec)
		if err != nil {
			return
		}
		if e.Type != EventType(rec[0]) {
			t.Fatalf("decoded type %v from type byte %d", e.Type, rec[0])
		}
		again, err := AppendEvent(nil, &e)
		if err != nil {
			t.Fatalf("re-encode an accepted event: %v", err)
		}
		e2, err := DecodeEvent(again)
		if err != nil {
			t.Fatalf("decode a re-encoded event: %v", err)
		}
		if diff := cmp.Diff(e, e2, cmpopts.EquateEmpty(), cmpopts.EquateNaNs()); diff != "" {
			t.Fatalf("re-encoded event differs (-first +second):\n%s", diff)
		}
	})
}
