// Command gonoop is the Go counterpart of `wasmtask bench`'s built-in WAT
// no-op: a handler that does nothing and succeeds, to measure what a Go
// guest costs through the whole server (BENCH_HANDLER=go
// scripts/bench-server.sh --instances reuse).
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o gonoop.wasm ./cmd/wasmtask/testdata/gonoop
//	wasmtask bench --handler-wasm gonoop.wasm --instances reuse
package main

import wasmtask "github.com/wasmtask/wasmtask/sdk/go"

func init() { wasmtask.Handle(func(*wasmtask.Task) error { return nil }) }

func main() {}
