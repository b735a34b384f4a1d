// Package extism runs Extism plugins (https://extism.org) as wasmtask
// handlers: it is wasmtask's own implementation of the Extism host ABI,
// the import module "extism:host/env" that every Extism PDK (Rust, Go,
// AssemblyScript, C, Zig, Haskell, JavaScript, .NET...) compiles against.
// Only the ABI counts: a plugin built elsewhere for the Extism runtime runs
// unmodified.
//
// # What the ABI is
//
// An Extism guest never shares its own memory with the host. The host
// keeps a second, "kernel" memory; the guest allocates blocks in it
// (alloc, free, length, length_unsafe), moves bytes in and out one u8 or
// u64 at a time (load_*, store_*, input_load_*), and hands the host
// offsets of blocks: output_set, error_set, config_get, var_get/var_set,
// log_*, http_request. The plugin's export named by the manifest
// ("extism": {"function": "count_vowels"}) takes no parameters and returns
// an i32 (0 success) or nothing.
//
// # Why not github.com/extism/go-sdk
//
// go-sdk v1.7.1 builds with wazero v1.12.0 and runs these plugins, but it
// cannot honour wasmtask's limits and outcomes without patching it:
//
//   - http_request uses http.DefaultClient: no timeout of its own (only the
//     whole call's), and redirects are followed to hosts outside
//     allowed_hosts;
//   - the log level is one process-wide variable (SetLogLevel), off by
//     default, so logs of one plugin depend on another's settings;
//   - every failure of a host function (a denied host, a full variable
//     store, a bad offset) is a panic with a bare string, so the outcome
//     (permanent failure, abi_violation, oom) could only be guessed from
//     the message;
//   - each CompiledPlugin owns a wazero runtime, and each call instantiates
//     the kernel (a wasm module) besides the plugin: wasmtask's runtimes,
//     memory limits, compilation cache and instance lifecycle (package
//     host) would be duplicated.
//
// This package keeps the kernel memory in Go (kernel.go), bounded by the
// plugin's memory limit, and reports every fault as a typed Fault, so
// package host maps it to the same outcomes as any other handler. It is
// also cheaper per attempt: a whole attempt (instance, call, close) of the
// WAT count_vowels plugin took 0.17-0.30 ms and 88 KB here against
// 6.2-7.8 ms and 1.7 MB for go-sdk's Instance+Call+Close, most of it the
// kernel's instantiation (shared 2-core machine, same window; commands in
// host/extism_test.go BenchmarkExtismAttempt).
//
// go-sdk stays the reference: host/extism_sdk_test.go runs the same
// plugins through both hosts and requires the same output, error and logs.
//
// # Semantics kept from the Extism runtime
//
//   - Before the function, the guest runtime is initialized the way
//     go-sdk does: hs_init(0, 0) (after _initialize) for Haskell, else
//     _initialize (WASI reactor), else __wasm_call_ctors; _start is never
//     run.
//   - alloc(0) returns 0; length of anything but a live block is 0;
//     config_get/var_get return 0 when the key is absent; var_set with a
//     value offset of 0 deletes the variable.
//   - The output is the block range given to the last output_set, read when
//     the function returns; the error is the block given to error_set.
//   - A function result other than 0, or an error set, is a failure.
//
// # wasmtask's rules on top
//
//   - Vars live for one attempt (a fresh store each time), capped at
//     Options.MaxVarBytes.
//   - Kernel memory is capped at NewCall's memoryBytes (the plugin's memory
//     limit): past it the attempt ends as oom.
//   - http_request is denied unless the manifest lists the host in
//     allowed_hosts (exact names or globs such as "*.example.com"); allowed
//     requests have a timeout, a response size cap, and redirects only to
//     allowed hosts.
//   - log_* lines at or above Options.LogLevel go to the attempt log
//     (get_log_level reports that level to the guest).
//   - Any offset outside the kernel memory ends the attempt as
//     abi_violation.
package extism
