package machine

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// taskBeforeMore is Task as snapshots up to 15d3980 encoded it, its rarely
// set fields inline (they moved to TaskMore): the same keys, so snapshots
// written by either read under the other.
type taskBeforeMore struct {
	Spec         TaskSpec `cbor:"1,keyasint"`
	SubmitSeq    uint64   `cbor:"2,keyasint"`
	SubmittedAt  int64    `cbor:"3,keyasint"`
	Runs         []RunID  `cbor:"4,keyasint"`
	Canceled     bool     `cbor:"5,keyasint,omitempty"`
	CancelNote   string   `cbor:"6,keyasint,omitempty"`
	FinalAt      int64    `cbor:"7,keyasint,omitempty"`
	AddedAfter   []TaskID `cbor:"8,keyasint,omitempty"`
	Retries      int      `cbor:"9,keyasint,omitempty"`
	RetryFrom    int      `cbor:"10,keyasint,omitempty"`
	RetrySeq     uint64   `cbor:"11,keyasint,omitempty"`
	Skipped      int      `cbor:"12,keyasint,omitempty"`
	Pruned       int      `cbor:"13,keyasint,omitempty"`
	PrunedFailed bool     `cbor:"14,keyasint,omitempty"`
	CronLast     int64    `cbor:"15,keyasint,omitempty"`
}

type snapshotBeforeMore struct {
	Version       int               `cbor:"1,keyasint"`
	Applied       uint64            `cbor:"2,keyasint"`
	NextSubmitSeq uint64            `cbor:"3,keyasint"`
	Tasks         []*taskBeforeMore `cbor:"5,keyasint"`
	Runs          []*Run            `cbor:"6,keyasint"`
}

// TestTaskMoreCompatible: a snapshot written with the rarely set fields
// inline in Task decodes into the same state, those fields included,
// and a state encodes to the same bytes either way (fast encoder and
// library).
func TestTaskMoreCompatible(t *testing.T) {
	spec := func(id TaskID) TaskSpec {
		s := TaskSpec{ID: id, Handler: "h"}
		if err := s.Normalize(); err != nil {
			t.Fatal(err)
		}
		return s
	}
	cron := spec("cron")
	cron.Policy = RunPolicy{Kind: PolicyCron, CronExpr: "* * * * *"}
	old := []*taskBeforeMore{
		{Spec: spec("plain"), SubmitSeq: 1, SubmittedAt: 10, Runs: []RunID{"plain#1"}, FinalAt: 20},
		{Spec: spec("canceled"), SubmitSeq: 2, SubmittedAt: 11, Runs: []RunID{"canceled#1"}, FinalAt: 21,
			Canceled: true, CancelNote: "by the user"},
		{Spec: spec("retried"), SubmitSeq: 3, SubmittedAt: 12, Runs: []RunID{"retried#1", "retried#2"},
			Retries: 1, RetryFrom: 2, RetrySeq: 7, AddedAfter: []TaskID{"plain"}},
		{Spec: cron, SubmitSeq: 4, SubmittedAt: 13, Runs: []RunID{"cron#3"}, Skipped: 1, Pruned: 2,
			PrunedFailed: true, CronLast: 60_000},
	}
	runs := []*Run{
		{ID: "plain#1", Task: "plain", Index: 1, State: RunCompleted, UpdateAt: 20},
		{ID: "canceled#1", Task: "canceled", Index: 1, State: RunCanceled, UpdateAt: 21, Reason: "by the user"},
		{ID: "retried#1", Task: "retried", Index: 1, State: RunFailed, UpdateAt: 15},
		{ID: "retried#2", Task: "retried", Index: 2, State: RunScheduled, DueAt: 99, UpdateAt: 16},
		{ID: "cron#3", Task: "cron", Index: 3, State: RunScheduled, DueAt: 120_000, UpdateAt: 17},
	}
	b, err := encMode.Marshal(snapshotBeforeMore{Version: 1, Applied: 30, NextSubmitSeq: 8, Tasks: old, Runs: runs})
	if err != nil {
		t.Fatal(err)
	}
	s, err := DecodeState(b)
	if err != nil {
		t.Fatalf("a snapshot with the fields inline: %v", err)
	}
	for _, o := range old {
		nt := s.Tasks[o.Spec.ID]
		if nt == nil {
			t.Fatalf("task %s lost", o.Spec.ID)
		}
		m := nt.MoreFields()
		got := taskBeforeMore{Spec: nt.Spec, SubmitSeq: nt.SubmitSeq, SubmittedAt: nt.SubmittedAt, Runs: nt.Runs,
			Canceled: nt.Canceled, CancelNote: m.CancelNote, FinalAt: nt.FinalAt, AddedAfter: m.AddedAfter,
			Retries: m.Retries, RetryFrom: m.RetryFrom, RetrySeq: m.RetrySeq, Skipped: m.Skipped, Pruned: m.Pruned,
			PrunedFailed: m.PrunedFailed, CronLast: m.CronLast}
		if diff := cmp.Diff(*o, got); diff != "" {
			t.Errorf("task %s (-written +read):\n%s", o.Spec.ID, diff)
		}
		if (nt.TaskMore == nil) != (o.Spec.ID == "plain") {
			t.Errorf("task %s: TaskMore %v: only a task that sets none of its fields goes without", o.Spec.ID, nt.TaskMore)
		}
		oldBytes, err := encMode.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		fast, err := appendTask(nil, nt)
		if err != nil {
			t.Fatal(err)
		}
		lib, err := encMode.Marshal(nt)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fast, oldBytes) || !bytes.Equal(lib, oldBytes) {
			t.Errorf("task %s encodes differently:\nbefore  %x\nfast    %x\nlibrary %x", o.Spec.ID, oldBytes, fast, lib)
		}
	}
	if got := s.Tasks["retried"].prereqs(); !cmp.Equal(got, []TaskID{"plain"}) {
		t.Errorf("retried's prerequisites %v, want the one added after submission", got)
	}
}

// TestTaskMoreCopyOnWrite: a change to a task's rarely set fields leaves a
// copy of the task taken before (a snapshot's capture, a retry's original)
// as it was.
func TestTaskMoreCopyOnWrite(t *testing.T) {
	tk := &Task{}
	tk.editMore().Retries = 1
	before := *tk
	tk.editMore().Retries++
	tk.editMore().CancelNote = "later"
	if m := before.MoreFields(); m.Retries != 1 || m.CancelNote != "" {
		t.Errorf("the copy taken before sees %+v", m)
	}
	if m := tk.MoreFields(); m.Retries != 2 || m.CancelNote != "later" {
		t.Errorf("the task has %+v", m)
	}
}
