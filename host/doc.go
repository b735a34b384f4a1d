// Package host will run each attempt in a wazero sandbox through the guest
// ABI wasmtask_v1: compiled-module cache keyed by sha256, the wasmtask_v1
// host module, WASI wiring with captured stdout and stderr, per-plugin limits
// and outcome classification. It implements dispatch.Executor and imports
// dispatch for its types only.
//
// Not written yet: see issue 4 ("The WebAssembly host").
package host
