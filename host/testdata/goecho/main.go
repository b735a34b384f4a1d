//go:build wasip1

// Command goecho is the echo handler of testdata/echo.wat written in Go: it
// upper-cases its input. It is a test guest of package host, built by the
// tests (goguest_test.go) with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o goecho.wasm ./testdata/goecho
//
// The build constraint keeps it out of `go vet ./...` on other platforms.
package main

import "unsafe"

//go:wasmimport wasmtask_v1 input_read
func inputRead(offset uint32, buf unsafe.Pointer, limit uint32) int32

//go:wasmimport wasmtask_v1 output_write
func outputWrite(ptr unsafe.Pointer, n uint32) int32

var buf [4096]byte

//go:wasmexport wasmtask_handle
func handle() int32 {
	var off uint32
	for {
		n := inputRead(off, unsafe.Pointer(&buf[0]), uint32(len(buf)))
		if n < 0 {
			return 1
		}
		if n == 0 {
			return 0
		}
		chunk := buf[:n]
		for i, c := range chunk {
			if 'a' <= c && c <= 'z' {
				chunk[i] = c - 'a' + 'A'
			}
		}
		if outputWrite(unsafe.Pointer(&chunk[0]), uint32(n)) < 0 {
			return 1
		}
		off += uint32(n)
	}
}

func main() {}
