// Package e2e holds the end-to-end tests of wasmtask: they build the
// wasmtask binary once (with -race when the tests run with -race), start
// `wasmtask serve` as a subprocess on a free port and a temporary data
// directory, and drive it through the HTTP API (api.Client and raw HTTP)
// and through the CLI, checking the contract of docs/: status codes,
// the error shape, exit codes, hot-swap and rollback of plugins, the
// watched plugin folder, the token, long-poll waits, pagination, graceful
// drain on SIGTERM and recovery after kill -9.
//
// The package has no code besides this file; go test -short skips the
// heaviest tests (hot-swap under 1,000 tasks, the kill -9 cycles). TestSoak
// (make soak) runs only with WASMTASK_SOAK_CYCLES set.
//
// Test modules are .wat files in testdata with the generated .wasm beside
// them (make wasm regenerates them).
package e2e
