//go:build wasip1

// Command gonoop is a Go SDK handler that does nothing and succeeds (the
// same as cmd/wasmtask/testdata/gonoop, which `wasmtask bench` runs): the
// Go guest of BenchmarkAttemptParallel with the SDK's per-attempt work.
//
// The build constraint keeps it out of `go vet ./...` on other platforms.
package main

import wasmtask "github.com/wasmtask/wasmtask/sdk/go"

func init() { wasmtask.Handle(func(*wasmtask.Task) error { return nil }) }

func main() {}
