module github.com/wasmtask/wasmtask

go 1.26

require (
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
	go.uber.org/goleak v1.3.0 // indirect
)
