package host

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/dispatch"
)

// conformanceCase runs one attempt of a testdata guest through Load + Run.
type conformanceCase struct {
	name   string
	module string // testdata/<module>.wasm
	input  string
	limits Limits // MemoryPages is also the limit the module is loaded with
	config map[string]string
	info   TaskInfo

	// heartbeat, when set, is called by every heartbeat after it is counted.
	heartbeat func()
	// nilHeartbeat runs the attempt with no Attempt.Heartbeat at all.
	nilHeartbeat bool
	// cancelOnHeartbeat cancels the context given to Run at the first
	// heartbeat, i.e. once the guest is known to be running.
	cancelOnHeartbeat bool
	// cancelBeforeRun cancels the context given to Run before Run starts.
	cancelBeforeRun bool

	wantOutcome       dispatch.Outcome
	wantRetryable     bool
	wantOutput        string // compared exactly; "" for every outcome but ok
	anyOutput         bool   // the output is checked by check
	wantErrorContains []string
	wantLogContains   []string
	wantLogDropped    int
	wantHeartbeats    int // -1: any number
	wantChildren      []Child
	// check, when set, makes further assertions.
	check func(t *testing.T, res Result, m *Module)
}

func (tc conformanceCase) run(t *testing.T, h *Host, wasm []byte) Result {
	t.Helper()
	m := mustLoad(t, h, wasm, tc.limits.MemoryPages)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if tc.cancelBeforeRun {
		cancel()
	}
	var beats atomic.Int32
	a := Attempt{Input: []byte(tc.input), Info: tc.info, Config: tc.config, Limits: tc.limits,
		Heartbeat: func() {
			if beats.Add(1) == 1 && tc.cancelOnHeartbeat {
				cancel()
			}
			if tc.heartbeat != nil {
				tc.heartbeat()
			}
		}}
	if tc.nilHeartbeat {
		a.Heartbeat = nil
	}
	res := h.Run(ctx, m, a)

	if res.Outcome != tc.wantOutcome {
		t.Errorf("Outcome = %s, want %s (error %q, log %q)", res.Outcome, tc.wantOutcome, res.Error, res.Log)
	}
	if res.Retryable != tc.wantRetryable {
		t.Errorf("Retryable = %v, want %v", res.Retryable, tc.wantRetryable)
	}
	if !tc.anyOutput && string(res.Output) != tc.wantOutput {
		t.Errorf("Output = %q, want %q", res.Output, tc.wantOutput)
	}
	if len(tc.wantErrorContains) == 0 && res.Error != "" {
		t.Errorf("Error = %q, want none", res.Error)
	}
	for _, s := range tc.wantErrorContains {
		if !strings.Contains(res.Error, s) {
			t.Errorf("Error = %q, want it to contain %q", res.Error, s)
		}
	}
	for _, s := range tc.wantLogContains {
		if !strings.Contains(string(res.Log), s) {
			t.Errorf("Log = %q, want it to contain %q", res.Log, s)
		}
	}
	if res.LogDropped != tc.wantLogDropped {
		t.Errorf("LogDropped = %d, want %d", res.LogDropped, tc.wantLogDropped)
	}
	if n := int(beats.Load()); tc.wantHeartbeats >= 0 && n != tc.wantHeartbeats {
		t.Errorf("Heartbeat called %d times, want %d", n, tc.wantHeartbeats)
	}
	if len(res.Children) != 0 || len(tc.wantChildren) != 0 {
		if !reflect.DeepEqual(res.Children, tc.wantChildren) {
			t.Errorf("Children = %s, want %s", describeChildren(res.Children), describeChildren(tc.wantChildren))
		}
	}
	if res.Module != m.Hash {
		t.Errorf("Module = %q, want %q", res.Module, m.Hash)
	}
	if res.Duration <= 0 {
		t.Errorf("Duration = %v, want > 0", res.Duration)
	}
	if tc.check != nil {
		tc.check(t, res, m)
	}
	return res
}

func describeChildren(cs []Child) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, c.ID+"="+string(c.Spec))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// badPointerCases: every pointer argument of every import, out of range.
func badPointerCases() []conformanceCase {
	args := []struct{ sel, name, fn string }{
		{"a", "input_read buf", "input_read"},
		{"b", "output_write ptr", "output_write"},
		{"c", "fail ptr", "fail"},
		{"d", "log ptr", "log"},
		{"e", "task_info buf", "task_info"},
		{"f", "config_get key_ptr", "config_get"},
		{"g", "config_get buf", "config_get"},
		{"h", "submit spec_ptr", "submit"},
		{"i", "submit id_buf", "submit"},
		{"j", "heartbeat ptr", "heartbeat"},
		{"k", "output_write len wraps", "output_write"},
		{"l", "log range crosses the end", "log"},
	}
	var cases []conformanceCase
	for _, a := range args {
		cases = append(cases, conformanceCase{
			name: "out of range " + a.name, module: "badptr", input: a.sel,
			config:            map[string]string{"k": "a value"},
			wantOutcome:       dispatch.OutcomeABIViolation,
			wantErrorContains: []string{"wasmtask_v1." + a.fn + ":", "outside the module's memory"},
			wantHeartbeats:    -1,
		})
	}
	return cases
}

func TestConformance(t *testing.T) {
	childSpec := `{"handler":"child","input":"x"}`
	logLine := "a log line of thirty-two bytes!!"
	cases := []conformanceCase{
		// input_len, input_read
		{name: "input_read in 5-byte chunks", module: "echo", input: "hello, wasm world",
			wantOutcome: dispatch.OutcomeOK, wantOutput: "HELLO, WASM WORLD"},
		{name: "input_read at and past the end", module: "inputread", input: "abc",
			wantOutcome: dispatch.OutcomeOK, wantOutput: le32(3, 0, -1, 0)},
		{name: "input_read of an empty input", module: "inputread", input: "",
			wantOutcome: dispatch.OutcomeOK, wantOutput: le32(0, 0, -1, 0)},

		// output_write
		{name: "output within the limit", module: "output", input: "abcd", limits: Limits{OutputBytes: 12},
			wantOutcome: dispatch.OutcomeOK, wantOutput: "abcdabcdabcd"},
		{name: "output past the limit though the guest returns 0", module: "output", input: "abcd",
			limits:            Limits{OutputBytes: 10},
			wantOutcome:       dispatch.OutcomeOutputTooLarge,
			wantErrorContains: []string{"limit of 10 bytes"}},

		// fail
		{name: "fail permanent", module: "fail", input: "0",
			wantOutcome: dispatch.OutcomeFailed, wantRetryable: false,
			wantErrorContains: []string{"permanent: bad input"}},
		{name: "fail retryable", module: "fail", input: "1",
			wantOutcome: dispatch.OutcomeFailed, wantRetryable: true,
			wantErrorContains: []string{"retryable: try again"}},
		{name: "return 1 without fail is retryable", module: "fail", input: "x",
			wantOutcome: dispatch.OutcomeFailed, wantRetryable: true,
			wantErrorContains: []string{"returned 1"}},
		{name: "fail with an unknown kind", module: "fail", input: "5",
			wantOutcome:       dispatch.OutcomeABIViolation,
			wantErrorContains: []string{"wasmtask_v1.fail:", "kind 5"}},

		// log
		{name: "log levels", module: "logs",
			wantOutcome: dispatch.OutcomeOK,
			wantLogContains: []string{"[debug] " + logLine + "\n", "[info] " + logLine + "\n",
				"[warn] " + logLine + "\n", "[error] " + logLine + "\n"}},
		{name: "log past the quota", module: "logs", limits: Limits{LogBytes: 100},
			wantOutcome: dispatch.OutcomeOK,
			// ten lines of 41, 40, 40, 41, ... bytes: 405 in all, 100 kept
			wantLogContains: []string{"[debug] " + logLine + "\n"},
			wantLogDropped:  305,
			check: func(t *testing.T, res Result, _ *Module) {
				if len(res.Log) != 100 {
					t.Errorf("len(Log) = %d, want the quota, 100", len(res.Log))
				}
			}},

		// WASI stdout and stderr in handler mode
		{name: "wasi stdout and stderr go to the log", module: "wasi",
			wantOutcome: dispatch.OutcomeOK, wantOutput: "out",
			wantLogContains: []string{"hello from stdout\n", "hello from stderr\n"}},

		// task_info
		{name: "task_info", module: "taskinfo",
			limits: Limits{Timeout: 20 * time.Second},
			info: TaskInfo{TaskID: "t1", RunID: "t1#2", Attempt: 2, MaxAttempts: 5, Handler: "info@v1",
				ParentID: "p0", Labels: map[string]string{"team": "a"}},
			wantOutcome: dispatch.OutcomeOK, anyOutput: true,
			check: func(t *testing.T, res Result, m *Module) {
				checkTaskInfo(t, res, m, 20*time.Second, TaskInfo{TaskID: "t1", RunID: "t1#2", Attempt: 2,
					MaxAttempts: 5, Handler: "info@v1", ParentID: "p0", Labels: map[string]string{"team": "a"}})
			}},
		{name: "task_info of a root task without labels", module: "taskinfo",
			info:        TaskInfo{TaskID: "root", RunID: "root#1", Attempt: 1, MaxAttempts: 1, Handler: "h"},
			wantOutcome: dispatch.OutcomeOK, anyOutput: true,
			check: func(t *testing.T, res Result, m *Module) {
				checkTaskInfo(t, res, m, DefaultLimits().Timeout, TaskInfo{TaskID: "root", RunID: "root#1",
					Attempt: 1, MaxAttempts: 1, Handler: "h", Labels: map[string]string{}})
			}},

		// config_get
		{name: "config_get present", module: "config", input: "greeting",
			config:      map[string]string{"greeting": "hello", "other": "x"},
			wantOutcome: dispatch.OutcomeOK, wantOutput: le32(5) + "hello"},
		{name: "config_get empty value", module: "config", input: "empty",
			config:      map[string]string{"empty": ""},
			wantOutcome: dispatch.OutcomeOK, wantOutput: le32(0)},
		{name: "config_get absent", module: "config", input: "missing",
			config:      map[string]string{"greeting": "hello"},
			wantOutcome: dispatch.OutcomeOK, wantOutput: le32(-2)},
		{name: "config_get without a config", module: "config", input: "greeting",
			wantOutcome: dispatch.OutcomeOK, wantOutput: le32(-2)},

		// submit
		{name: "submit stages children with derived ids", module: "submit", input: childSpec,
			info:        TaskInfo{TaskID: "parent", RunID: "parent#1"},
			wantOutcome: dispatch.OutcomeOK,
			wantOutput:  le32(-3, 12, 12, -1) + "parent-r1-c1" + "parent-r1-c2",
			wantChildren: []Child{{ID: "parent-r1-c1", Spec: []byte(childSpec)},
				{ID: "parent-r1-c2", Spec: []byte(childSpec)}}},
		{name: "submit past Limits.Children", module: "submit", input: childSpec,
			info: TaskInfo{TaskID: "parent", RunID: "parent#3"}, limits: Limits{Children: 1},
			wantOutcome:  dispatch.OutcomeOK,
			wantOutput:   le32(-3, 12, -6, -1) + "parent-r3-c1",
			wantChildren: []Child{{ID: "parent-r3-c1", Spec: []byte(childSpec)}}},
		{name: "submit of a spec without a handler", module: "submit", input: `{"input":"x"}`,
			info:        TaskInfo{TaskID: "parent", RunID: "parent#1"},
			wantOutcome: dispatch.OutcomeOK, wantOutput: le32(-1, -1, -1, -1),
			wantLogContains: []string{"[warn] submit: spec is not a JSON object with a handler"}},
		{name: "children of a failed attempt are dropped", module: "submit", input: " " + childSpec,
			info:        TaskInfo{TaskID: "parent", RunID: "parent#1"},
			wantOutcome: dispatch.OutcomeFailed, wantRetryable: true,
			wantErrorContains: []string{"returned 1"}},

		// heartbeat
		{name: "heartbeat calls Attempt.Heartbeat", module: "heartbeat", input: "xxx",
			wantOutcome: dispatch.OutcomeOK, wantOutput: le32(0, 0, 0), wantHeartbeats: 3},
		{name: "heartbeat without a callback", module: "heartbeat", input: "xx", nilHeartbeat: true,
			wantOutcome: dispatch.OutcomeOK, wantOutput: le32(0, 0)},
		{name: "heartbeat returns 1 once canceled", module: "heartbeat", cancelOnHeartbeat: true,
			wantOutcome:       dispatch.OutcomeCancelled,
			wantErrorContains: []string{"the guest stopped"},
			wantLogContains:   []string{"heartbeat: stop requested"},
			wantHeartbeats:    -1},
		{name: "a panic in the heartbeat callback", module: "heartbeat", input: "x",
			heartbeat:         func() { panic("heartbeat callback exploded") },
			wantOutcome:       dispatch.OutcomeFailed,
			wantRetryable:     true,
			wantErrorContains: []string{"host error", "heartbeat callback exploded"},
			wantHeartbeats:    1},

		// cancelled
		{name: "cancelled after the caller cancels", module: "cancelled", cancelOnHeartbeat: true,
			limits:            Limits{Timeout: time.Minute, Grace: 30 * time.Second},
			wantOutcome:       dispatch.OutcomeCancelled,
			wantErrorContains: []string{"the guest stopped"},
			wantLogContains:   []string{"cancelled: stopping"},
			wantHeartbeats:    1,
			check: func(t *testing.T, res Result, _ *Module) {
				// Only a cooperative stop ends it before the grace period.
				if res.Duration >= 30*time.Second {
					t.Errorf("Duration = %v, want the guest to stop before the grace period", res.Duration)
				}
			}},
		{name: "cancelled near the deadline", module: "cancelled",
			// cancelled() says 1 from 900 ms on: the guest has 100 ms to stop.
			limits:            Limits{Timeout: time.Second},
			wantOutcome:       dispatch.OutcomeTimeout,
			wantRetryable:     true,
			wantErrorContains: []string{"stopped near the deadline"},
			wantLogContains:   []string{"cancelled: stopping"},
			wantHeartbeats:    1},
		{name: "a guest that ignores a cancel is stopped after the grace", module: "loop",
			cancelBeforeRun: true, limits: Limits{Timeout: time.Minute, Grace: 50 * time.Millisecond},
			wantOutcome:       dispatch.OutcomeCancelled,
			wantErrorContains: []string{"attempt canceled"}},

		// return codes, traps, limits
		{name: "wasmtask_handle returns 7", module: "badret",
			wantOutcome:       dispatch.OutcomeABIViolation,
			wantErrorContains: []string{"wasmtask_handle returned 7"}},
		{name: "infinite loop", module: "loop", limits: Limits{Timeout: 100 * time.Millisecond},
			wantOutcome: dispatch.OutcomeTimeout, wantRetryable: true,
			wantErrorContains: []string{"deadline"}},
		{name: "memory.grow bomb", module: "grow", limits: Limits{MemoryPages: 16},
			wantOutcome:       dispatch.OutcomeOOM,
			wantErrorContains: []string{"memory limit of 16 pages"}},
		{name: "unreachable", module: "trap",
			wantOutcome: dispatch.OutcomeTrap, wantRetryable: true,
			wantErrorContains: []string{"unreachable", "wasm stack trace"}},

		// entry points
		{name: "reactor: _initialize runs before wasmtask_handle", module: "reactor",
			wantOutcome: dispatch.OutcomeOK, wantOutput: le32(42)},
		{name: "command mode: stdin to stdout, stderr to the log", module: "command", input: "hello",
			wantOutcome: dispatch.OutcomeOK, wantOutput: "hello",
			wantLogContains: []string{"command: stderr line\n"}},
		{name: "command mode: empty stdin", module: "command",
			wantOutcome: dispatch.OutcomeOK, wantOutput: ""},
		{name: "command mode: proc_exit(3)", module: "command", input: "!boom",
			wantOutcome: dispatch.OutcomeFailed, wantRetryable: true,
			wantErrorContains: []string{"exited with code 3"},
			wantLogContains:   []string{"command: stderr line\n"}},
		{name: "command mode: stdout past the output limit", module: "command", input: "hello",
			limits:            Limits{OutputBytes: 3},
			wantOutcome:       dispatch.OutcomeOutputTooLarge,
			wantErrorContains: []string{"limit of 3 bytes"}},
	}
	cases = append(cases, badPointerCases()...)

	h := newTestHost(t, Config{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, h, readWasm(t, tc.module))
		})
	}
}

// checkTaskInfo decodes the task_info JSON the guest wrote as its output.
func checkTaskInfo(t *testing.T, res Result, m *Module, timeout time.Duration, want TaskInfo) {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(res.Output, &fields); err != nil {
		t.Fatalf("task_info is not a JSON object: %v: %q", err, res.Output)
	}
	for _, k := range []string{"task_id", "run_id", "attempt", "max_attempts", "handler", "module",
		"deadline_ms", "parent_id", "labels"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("task_info has no %q: %s", k, res.Output)
		}
	}
	var got TaskInfo
	if err := json.Unmarshal(res.Output, &got); err != nil {
		t.Fatalf("task_info: %v", err)
	}
	if !strings.HasPrefix(got.Module, "sha256:") || got.Module != m.Hash {
		t.Errorf("module = %q, want %q", got.Module, m.Hash)
	}
	// The deadline is the attempt's start plus its timeout; the attempt
	// started at most res.Duration before now.
	now := time.Now()
	lo := now.Add(-res.Duration).Add(timeout).Add(-time.Second).UnixMilli()
	hi := now.Add(timeout).Add(time.Second).UnixMilli()
	if got.DeadlineMs < lo || got.DeadlineMs > hi {
		t.Errorf("deadline_ms = %d, want within [%d, %d]", got.DeadlineMs, lo, hi)
	}
	want.Module, want.DeadlineMs = got.Module, got.DeadlineMs
	if !reflect.DeepEqual(got, want) {
		t.Errorf("task_info = %+v, want %+v", got, want)
	}
}
