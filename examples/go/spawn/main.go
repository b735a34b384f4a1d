// Command spawn submits one child task (handler "uppercase", the same
// input) and outputs the child's id. The child is staged: it is created only
// when this attempt succeeds.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o spawn.wasm ./examples/go/spawn
//	wasmtask call spawn.wasm --input "hello"     # prints call-r1-c1
package main

import wasmtask "github.com/wasmtask/wasmtask/sdk/go"

func init() { wasmtask.Handle(spawn) }

func spawn(t *wasmtask.Task) error {
	id, err := t.Submit(wasmtask.ChildSpec{Handler: "uppercase", Input: string(t.Input())})
	if err != nil {
		return err
	}
	t.Logf("submitted child %s", id)
	return t.OutputString(id)
}

func main() {}
