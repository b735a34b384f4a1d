// Command uppercase is the echo example: it returns its input upper-cased.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o uppercase.wasm ./examples/go/uppercase
//	wasmtask call uppercase.wasm --input "hello"     # prints HELLO
package main

import (
	"bytes"

	wasmtask "github.com/wasmtask/wasmtask/sdk/go"
)

func init() { wasmtask.Handle(upper) }

func upper(t *wasmtask.Task) error {
	t.Logf("upper-casing %d bytes", len(t.Input()))
	return t.Output(bytes.ToUpper(t.Input()))
}

func main() {}
