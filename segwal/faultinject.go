//go:build wasmtask_faults

package segwal

import (
	"fmt"
	"os"
	"syscall"
)

// Fault injection for end-to-end tests, compiled only with
// `go build -tags wasmtask_faults` (never into a release): while the file
// named by WASMTASK_FAULT_FSYNC_FILE exists, every fsync of a WAL segment
// fails with EIO, as a failing disk's does. e2e/disk_test.go builds such a
// binary to show that the server keeps serving reads when it happens.
func init() {
	trigger := os.Getenv("WASMTASK_FAULT_FSYNC_FILE")
	if trigger == "" {
		return
	}
	faultHook = func(open func(string) (appendFile, error)) func(string) (appendFile, error) {
		return func(path string) (appendFile, error) {
			f, err := open(path)
			if err != nil {
				return nil, err
			}
			failing := func() error {
				if _, err := os.Stat(trigger); err == nil {
					return fmt.Errorf("fsync %s: %w (injected: %s exists)", path, syscall.EIO, trigger)
				}
				return nil
			}
			if p, ok := f.(*preallocFile); ok {
				return &faultyPrealloc{preallocFile: p, failing: failing}, nil
			}
			return &faultyFile{appendFile: f, failing: failing}, nil
		}
	}
}

// faultyPrealloc keeps the preallocated file's other methods (seal,
// reserve, ...) and fails its Sync on demand.
type faultyPrealloc struct {
	*preallocFile
	failing func() error
}

func (f *faultyPrealloc) Sync() error {
	if err := f.failing(); err != nil {
		return err
	}
	return f.preallocFile.Sync()
}

type faultyFile struct {
	appendFile
	failing func() error
}

func (f *faultyFile) Sync() error {
	if err := f.failing(); err != nil {
		return err
	}
	return f.appendFile.Sync()
}
