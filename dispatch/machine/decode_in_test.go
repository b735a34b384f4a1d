package machine

import (
	"testing"
	"unsafe"
)

// DecodeEventIn (a replica's decode) shares what the state holds: a
// submission's spec is decoded into its task's memory (the task Apply
// adds is that memory), and the task and run ids of later events are
// the state's own strings, with no allocation for an event of ids only.
func TestDecodeEventInSharesTheStatesMemory(t *testing.T) {
	s := NewState()
	decodeApply := func(e Event) Event {
		t.Helper()
		rec, err := AppendEvent(nil, &e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeEventIn(s, rec)
		if err != nil {
			t.Fatal(err)
		}
		if err := Apply(s, &got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	sub := decodeApply(Event{Type: EvTaskSubmitted, At: 1, Task: "t1", Spec: &TaskSpec{ID: "t1", Handler: "h", Input: []byte("in")}})
	task := s.Tasks["t1"]
	if task == nil || task.Spec.Handler != "h" || string(task.Spec.Input) != "in" || task.Spec.ID != "t1" {
		t.Fatalf("submitted task: %+v", task)
	}
	if sub.Spec != &task.Spec {
		t.Error("the submission's spec was decoded apart from its task's memory")
	}
	if unsafe.StringData(string(task.Spec.ID)) != unsafe.StringData(string(sub.Task)) {
		t.Error("the spec's id and the event's task are two strings")
	}
	run := MakeRunID("t1", task.nextRunIndex())
	decodeApply(Event{Type: EvRunCreated, At: 2, Task: "t1", Run: run, Index: task.nextRunIndex(), To: RunReady})
	r := s.Runs[run]
	ev := Event{Type: EvRunTransition, At: 3, Task: "t1", Run: run, From: RunReady, To: RunScheduled}
	rec, err := AppendEvent(nil, &ev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeEventIn(s, rec)
	if err != nil {
		t.Fatal(err)
	}
	if unsafe.StringData(string(got.Task)) != unsafe.StringData(string(task.Spec.ID)) || unsafe.StringData(string(got.Run)) != unsafe.StringData(string(r.ID)) {
		t.Error("a later event's task and run ids are copies, not the state's strings")
	}
	if n := testing.AllocsPerRun(100, func() { DecodeEventIn(s, rec) }); n != 0 {
		t.Errorf("DecodeEventIn of an event of known ids allocated %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { DecodeEvent(rec) }); n < 2 {
		t.Errorf("DecodeEvent allocated %v times: the comparison above shows nothing", n)
	}
}
