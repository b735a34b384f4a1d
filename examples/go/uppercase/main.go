// Command uppercase is the echo example: it returns its input with ASCII
// letters upper-cased; other bytes (UTF-8 included) pass through unchanged,
// the same in every language's example. The input "!fail" fails the attempt
// permanently, to show a failure that is not retried.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o uppercase.wasm ./examples/go/uppercase
//	wasmtask call uppercase.wasm --input "hello"     # prints HELLO
//	wasmtask call uppercase.wasm --input "!fail"     # outcome: failed [permanent]
package main

import (
	"errors"

	wasmtask "github.com/wasmtask/wasmtask/sdk/go"
)

func init() { wasmtask.Handle(upper) }

func upper(t *wasmtask.Task) error {
	in := t.Input()
	t.Logf("upper-casing %d bytes", len(in))
	if string(in) == "!fail" {
		return wasmtask.Permanent(errors.New("the input asked to fail"))
	}
	out := make([]byte, len(in))
	for i, c := range in {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		out[i] = c
	}
	return t.Output(out)
}

func main() {}
