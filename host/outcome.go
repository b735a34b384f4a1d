package host

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wasmtask/wasmtask/dispatch"
)

// classify turns how the guest call ended into an outcome. Precedence: an
// ABI violation, then output past its limit (sticky, whatever the guest
// returns afterwards), then a forced stop (timeout or cancel), then memory
// exhaustion, a trap, and finally the return code.
//
//	err == nil, code 0      ok
//	err == nil, code 1      failed (retryable unless fail(0, ...) was called)
//	err == nil, other code  abi_violation
//	abiViolation panic      abi_violation
//	context deadline        timeout
//	context canceled        cancelled
//	trap after a refused    oom (the allocator, memory.go, counts refusals)
//	memory.grow
//	stack overflow          trap (wazero reports it without "wasm error:")
//	wasm trap               trap, with the wasm stack trace
//	proc_exit(n), handler   as return code n, but n != 0 is a retryable failure
//	proc_exit(n), command   Command.ExitCodes.Action(n): ok, or a permanent
//	                        or retryable failure (default: 2 and 64-78
//	                        permanent, other non-zero codes retryable)
func classify(ctx context.Context, st *attemptState, mem api.Memory, code int64, err error) Result {
	switch {
	case st.violation != nil:
		return Result{Outcome: dispatch.OutcomeABIViolation, Error: st.violation.Error()}
	case violationIn(err) != nil:
		return Result{Outcome: dispatch.OutcomeABIViolation, Error: violationIn(err).Error()}
	case st.outputOver:
		return Result{Outcome: dispatch.OutcomeOutputTooLarge,
			Error: fmt.Sprintf("output exceeded the limit of %d bytes", st.limits.OutputBytes)}
	}
	if exit := exitErrorIn(err); exit != nil {
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded:
			if st.startedLate > 0 {
				return Result{Outcome: dispatch.OutcomeTimeout, Retryable: true,
					Error: fmt.Sprintf("stopped at once: the attempt's deadline had passed %s before it started (timeout %s)", st.startedLate, st.limits.Timeout)}
			}
			return Result{Outcome: dispatch.OutcomeTimeout, Retryable: true,
				Error: fmt.Sprintf("stopped at the attempt deadline (timeout %s)", st.limits.Timeout)}
		case sys.ExitCodeContextCanceled:
			return Result{Outcome: dispatch.OutcomeCancelled, Error: "attempt canceled"}
		case 0:
			err, code = nil, 0
		default:
			if st.command != nil {
				return exitResult(st, exit.ExitCode())
			}
			return failure(st, fmt.Sprintf("guest exited with code %d", exit.ExitCode()))
		}
	}
	if err != nil {
		if n := st.mem.refusals(); n > 0 {
			limit := fmt.Sprintf("memory limit of %d pages (%s)", st.limits.MemoryPages, pagesSize(st.limits.MemoryPages))
			if st.mem.declared {
				limit = fmt.Sprintf("module's declared maximum memory of %d pages (%s)", st.mem.max/65536, pagesSize(uint32(st.mem.max/65536)))
			}
			return Result{Outcome: dispatch.OutcomeOOM,
				Error: fmt.Sprintf("out of memory: memory.grow refused %d time(s) at the %s, then: %v", n, limit, firstLine(err))}
		}
		if strings.HasPrefix(err.Error(), "wasm error:") || strings.Contains(err.Error(), ": wasm error:") {
			return Result{Outcome: dispatch.OutcomeTrap, Retryable: true, Error: err.Error()}
		}
		if isStackOverflow(err) {
			return Result{Outcome: dispatch.OutcomeTrap, Retryable: true, Error: "wasm error: stack overflow (unbounded recursion in the guest?): " + err.Error()}
		}
		// A host function failed in a way that is not the guest's fault
		// (recovered by wazero): retry, and keep the message for the operator.
		return Result{Outcome: dispatch.OutcomeFailed, Retryable: true, Error: "host error: " + err.Error()}
	}
	if st.canceled.Load() && code != 0 {
		return Result{Outcome: dispatch.OutcomeCancelled, Error: "attempt canceled; the guest stopped"}
	}
	switch code {
	case 0:
		return Result{Outcome: dispatch.OutcomeOK}
	case 1:
		msg := st.failMsg
		if msg == "" {
			msg = "handler returned 1"
		}
		if ctx.Err() == nil && st.stopRequested() && !st.canceled.Load() {
			return Result{Outcome: dispatch.OutcomeTimeout, Retryable: true, Error: "stopped near the deadline: " + msg}
		}
		return failure(st, msg)
	default:
		return Result{Outcome: dispatch.OutcomeABIViolation,
			Error: fmt.Sprintf("%s returned %d; it must return 0 (success) or 1 (failure)", handleExport, code)}
	}
}

// violationIn and exitErrorIn unwrap err; for a nil err they allocate
// nothing (errors.As targets escape), which keeps a warm attempt lean.
func violationIn(err error) *abiViolation {
	if err == nil {
		return nil
	}
	var v abiViolation
	if errors.As(err, &v) {
		return &v
	}
	return nil
}

func exitErrorIn(err error) *sys.ExitError {
	if err == nil {
		return nil
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		return exit
	}
	return nil
}

func failure(st *attemptState, msg string) Result {
	if st.failMsg != "" && !strings.Contains(msg, st.failMsg) {
		msg = st.failMsg
	}
	return Result{Outcome: dispatch.OutcomeFailed, Retryable: st.failKind != 0, Error: msg}
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// exitResult classifies a command's non-zero exit code.
func exitResult(st *attemptState, code uint32) Result {
	action, mapped := st.command.ExitCodes.lookup(code)
	src := "default; the manifest's exit_codes can change it"
	if mapped {
		src = "manifest exit_codes"
	}
	switch action {
	case ExitOK:
		return Result{Outcome: dispatch.OutcomeOK}
	case ExitPermanent:
		return Result{Outcome: dispatch.OutcomeFailed,
			Error: fmt.Sprintf("command exited with code %d%s: a permanent failure (%s), not retried", code, sysexitsName(code), src)}
	}
	return Result{Outcome: dispatch.OutcomeFailed, Retryable: true,
		Error: fmt.Sprintf("command exited with code %d%s: a retryable failure (%s)", code, sysexitsName(code), src)}
}

// isStackOverflow: wazero returns its stack-overflow error bare ("stack
// overflow", no "wasm error:" prefix, not exported), possibly wrapped by
// the host ("_initialize: ...").
func isStackOverflow(err error) bool {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error() == "stack overflow"
		}
		err = next
	}
}

// pagesSize is a memory size in pages for messages: "1 MiB", "64 KiB".
func pagesSize(pages uint32) string {
	if pages%16 == 0 {
		return fmt.Sprintf("%d MiB", pages/16)
	}
	return fmt.Sprintf("%d KiB", pages*64)
}
