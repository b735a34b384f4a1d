//go:build unix

package e2e

import (
	"os"
	"syscall"
)

// suspend stops p (SIGSTOP) the way a frozen VM or a long pause would: it
// keeps its sockets, leases and files and runs nothing until resume.
func suspend(p *os.Process) error { return p.Signal(syscall.SIGSTOP) }

// resume continues a process stopped by suspend (SIGCONT).
func resume(p *os.Process) error { return p.Signal(syscall.SIGCONT) }
