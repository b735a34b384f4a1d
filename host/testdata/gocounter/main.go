//go:build wasip1

// Command gocounter is the reuse-policy guest of package host written with
// the Go SDK: a package variable counts the attempts this instance ran and
// each attempt outputs it as decimal text, so a test sees whether the
// instance (and its Go runtime) was kept ("2", "3", ...) or fresh ("1").
// Every attempt also allocates and drops 256 KiB, so a heap that grew
// across attempts would show in the instance's memory. The input "panic"
// panics (a failed attempt: the SDK recovers it), "exit" calls os.Exit
// (the instance is gone).
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o gocounter.wasm ./testdata/gocounter
//
// The build constraint keeps it out of `go vet ./...` on other platforms.
package main

import (
	"fmt"
	"os"
	"strconv"

	wasmtask "github.com/wasmtask/wasmtask/sdk/go"
)

var (
	count int
	sink  []byte
)

func init() { wasmtask.Handle(handle) }

func handle(t *wasmtask.Task) error {
	count++
	sink = make([]byte, 256<<10)
	sink[len(sink)-1] = byte(count)
	switch string(t.Input()) {
	case "panic":
		panic("asked to")
	case "exit":
		os.Exit(3)
	case "print":
		fmt.Println("attempt", count)
	}
	return t.Output([]byte(strconv.Itoa(count)))
}

func main() {}
