package dispatch

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestEngineRunnableParksAndSetCapacityResumes: a run whose handler no
// worker can run stays ready, unleased (its timeout does not burn), and is
// leased once SetCapacity says the workers changed.
func TestEngineRunnableParksAndSetCapacityResumes(t *testing.T) {
	var remoteUp atomic.Bool
	r := newEngineRig(t, func(c *Config) {
		c.Runnable = func(h string) bool { return h != "remote" || remoteUp.Load() }
	})
	r.submit(TaskSpec{ID: "local", Handler: "h"})
	r.submit(TaskSpec{ID: "far", Handler: "remote"})
	if v := r.wait("local"); v.State != TaskCompleted {
		t.Fatalf("local: %s", v.State)
	}
	r.idle()
	r.advance(time.Hour) // longer than its timeout: a leased attempt would have expired
	if v := r.view("far"); v.Runs[0].State != RunReady || len(v.Runs[0].Attempts) != 0 {
		t.Fatalf("far before a worker serves it: run %s with %d attempts, want ready with none", v.Runs[0].State, len(v.Runs[0].Attempts))
	}
	remoteUp.Store(true)
	r.e.SetCapacity(4)
	if v := r.wait("far"); v.State != TaskCompleted || len(v.Runs[0].Attempts) != 1 {
		t.Fatalf("far after SetCapacity: %s, %d attempts", v.State, len(v.Runs[0].Attempts))
	}
}

func TestEngineSetCapacityBoundsInFlight(t *testing.T) {
	tests := []struct {
		name     string
		capacity int
		want     int // attempts started while all are held
	}{
		{"zero leases nothing", 0, 0},
		{"below Config.Workers", 2, 2},
		{"above Config.Workers", 7, 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newGate(t, true)
			r := newEngineRig(t, func(c *Config) { c.Workers = 4 })
			r.ex.set(g.execute)
			r.e.SetCapacity(tc.capacity)
			r.barrier()
			for i := range 10 {
				r.submit(TaskSpec{ID: TaskID(rune('a' + i)), TimeoutMs: 600_000})
			}
			r.barrier()
			for range tc.want {
				g.next(t)
			}
			select {
			case j := <-g.started:
				t.Fatalf("attempt of %s started beyond the capacity of %d", j.Task, tc.capacity)
			case <-time.After(200 * time.Millisecond):
			}
			if got := r.e.Stats().InFlight; got != tc.want {
				t.Fatalf("in flight %d, want %d", got, tc.want)
			}
			g.open()
			r.e.SetCapacity(10)
			for i := range 10 {
				if v := r.wait(TaskID(rune('a' + i))); v.State != TaskCompleted {
					t.Fatalf("%c: %s", 'a'+i, v.State)
				}
			}
		})
	}
}

// TestEngineResultWorkerNamesTheAttempt: Result.Worker replaces the slot
// name on the attempt, and the WAL replays it.
func TestEngineResultWorkerNamesTheAttempt(t *testing.T) {
	r := newEngineRig(t, nil)
	r.ex.set(func(_ context.Context, j Job) Result {
		if j.Handler == "far" {
			return Result{Outcome: OutcomeOK, Worker: "box-7"}
		}
		return Result{Outcome: OutcomeOK}
	})
	r.submit(TaskSpec{ID: "a", Handler: "far"})
	r.submit(TaskSpec{ID: "b", Handler: "near"})
	r.wait("a")
	r.wait("b")
	for range 2 {
		if w := r.view("a").Runs[0].Attempts[0].Worker; w != "box-7" {
			t.Fatalf("a's worker %q, want box-7", w)
		}
		if w := r.view("b").Runs[0].Attempts[0].Worker; w != "test/w1" && w != "test/w2" {
			t.Fatalf("b's worker %q, want the engine's slot name", w)
		}
		r.reopen()
	}
}
