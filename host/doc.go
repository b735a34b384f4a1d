// Package host runs handler attempts in a wazero sandbox through the guest
// ABI wasmtask_v1 (sdk/ABI.md). Handlers are untrusted: a module gets
// exactly the imports of the ABI plus WASI preview1 with real clocks, crypto
// random and captured stdout/stderr, and no filesystem, environment or
// network unless its manifest grants them (Command). It implements dispatch.Executor (Executor) and imports dispatch
// for its types only; dispatch never imports host.
//
// # Usage
//
//	h, err := host.New(ctx, host.Config{CacheDir: filepath.Join(dataDir, "wazero")})
//	m, err := h.Load(ctx, wasm, 0)        // validate + compile once per sha256
//	res := h.Run(ctx, m, host.Attempt{Input: in, Limits: host.DefaultLimits()})
//	// res.Outcome: ok, failed, trap, timeout, cancelled, oom, output_too_large, abi_violation
//
// # Contract
//
//  1. Load compiles a module once per (content hash, memory limit) and
//     keeps it; concurrent loads of the same module wait for one compile.
//     wazero's file cache under Config.CacheDir makes a restart cheap.
//     LoadFile (wasmtask call) also remembers a file's hash by its identity
//     and maps a large file under a read lease instead of copying it
//     (modfile.go).
//  2. Load rejects, naming the import or export: an import the host does
//     not provide (or with another signature), an imported memory, no
//     exported "memory", no entry point (wasmtask_handle, or _start for
//     command mode), a declared minimum memory above the limit, tables
//     whose declared minimums exceed Limits.TableElements or, at 8 bytes an
//     element, do not fit in the memory limit beside the memory minimum.
//     The host writes a maximum into every table (sections.go), so
//     table.grow past the limit returns -1 instead of allocating.
//  3. Run uses one fresh anonymous instance per attempt, closed afterwards:
//     _initialize first when exported, then wasmtask_handle (in one call
//     from the host, through an export the host adds: entry.go). What an
//     instance never sees is kept between fresh attempts of a module:
//     wazero's call engines (callengine.go: scratch stack and registers,
//     pointed at the next instance) and the instance config of a handler
//     without arguments, environment or files (its stdout and stderr
//     routed to the attempt using it). Command-mode
//     modules (_start, no wasmtask_handle) read stdin and write stdout.
//     Extism plugins (modules importing extism:host/env, ModeExtism) run the
//     export named by Attempt.Extism through package host/extism, with the
//     same limits and outcomes (extism_mode.go).
//     Pool.Run (pool.go) runs a plugin version under its InstancePolicy:
//     fresh as Run; reuse, where an instance stays alive between attempts;
//     or reset, reuse with memory and mutable globals restored to their
//     post-_initialize state before each attempt (reset.go; NewPool gets
//     the module's bytes for it: a Module does not keep them). Host functions find the attempt's state in the call's
//     context and WASI stdout/stderr are routed per attempt, so input,
//     output, logs, children and cancellation stay per attempt. An instance
//     is checked out by one attempt at a time; it goes back only after ok
//     or failed (any other outcome, a closed module, MaxUses attempts or
//     memory past MaxMemoryPages discard it). The Host keeps at most
//     Config.MaxIdleInstances idle across pools (the oldest is closed to
//     make room) and closes those idle past their pool's IdleTimeout;
//     Pool.Close drains a pool (the registry's hot swap). An attempt that
//     finds no idle instance while its pool runs one per core waits for
//     one to come back, at most as long as making one takes, when the
//     pool's attempts are short beside that (a Go guest: microseconds
//     against milliseconds): a burst from many workers does not make an
//     instance per worker.
//  4. Limits (memory pages, table elements, timeout, output bytes, log
//     bytes, children per attempt) come from the plugin and are clamped to the operator's
//     maxima. The runtime closes the guest at its deadline
//     (WithCloseOnContextDone); cancelled() and heartbeat() report a stop
//     Limits.Grace before that, and a grace period after a cancel.
//  5. Every way an attempt can end has an outcome (outcome.go, classify).
//     Guest memory is only touched through one bounds-checked path; an
//     out-of-range pointer ends the attempt as abi_violation. A panic in a
//     host function is recovered by wazero and becomes an outcome, never a
//     crash of the process.
//  6. Children submitted by the guest are staged in Result.Children with
//     ids derived from (run, ordinal) and only returned on success.
//  7. WASI command mode (command.go): argv[0] is the plugin name, then
//     Command.Args; the environment is exactly Command.Env; files are the
//     validated Command.Mounts, the input file (Command.Input "file") and a
//     per-attempt scratch directory of at most Command.ScratchBytes
//     (scratch.go says what the cap counts), removed after the attempt.
//     A command's exit code goes through Command.ExitCodes (default: 0 ok,
//     2 and 64-78 permanent, anything else retryable); a failed command's
//     stdout is appended to the attempt's log.
//
// # Memory limits
//
// Every instance's linear memory comes from the host's allocator
// (memory.go, wazero's experimental.MemoryAllocator): it refuses a
// memory.grow past the plugin's limit, or past the module's declared
// maximum (taken out of the compiled bytes so that it is enforced there
// too), and counts the refusal; a trap after a refused grow is an oom.
// wazero's own cap is the wasm32 maximum, so every InstantiateModule must
// pass Module.withMemory. The Host keeps one runtime per distinct limit.
//
// The buffers come from a pool (memPool, Config.MemoryPoolBytes): wazero
// frees an instance's memory when it closes it, and the next instance
// takes the buffer, zeroing only what its last owner could have written,
// instead of allocating (and the kernel faulting in) fresh memory per
// attempt. This is safe because nothing keeps a slice of guest memory past
// its instance: host functions, WASI writers, the Extism path and reset
// snapshots copy what they read (TestNoGuestMemoryAlias runs every path
// with released buffers poisoned, as every test host does). Host.Close
// stops the pool first: closing a runtime frees the memory of guests still
// running. The pool is bounded, and drops buffers unused for 10s.
//
// Not under the limit: wazero's stack for wasm code, a Go slice doubled
// from 10 KiB until it is over 50,000,000 bytes (a constant of wazero's;
// there is no option and no call-depth limit). Unbounded recursion thus
// allocates ~168 MB before it traps with "stack overflow" (the last stack
// is 84 MB, the 42 MB one before it alive while copied;
// TestStackOverflowMemory): `wasmtask call` of testdata/recurse.wasm peaks
// at 185 MB RSS against 17 MB for echo. Plan host memory per worker as
// the memory limit plus ~170 MB. wazero never shrinks a call handle's
// stack: a reused instance whose attempt ran 1 ms or more gets a new
// handle (stackRefreshAfter), so an idle instance keeps a few MB of stack
// at most (TestPoolDropsGrownStack).
package host
