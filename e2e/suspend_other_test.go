//go:build !unix

package e2e

import (
	"errors"
	"os"
)

var errNoSuspend = errors.New("suspending a process (SIGSTOP) is unix-only: this test needs it")

// suspend is unix-only (suspend_unix_test.go).
func suspend(*os.Process) error { return errNoSuspend }

// resume is unix-only (suspend_unix_test.go).
func resume(*os.Process) error { return errNoSuspend }
