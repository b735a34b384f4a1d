//go:build unix

package api

import (
	"net"
	"syscall"
)

// connOpen reports whether c is open with nothing to read: a peek that
// does not wait (MSG_PEEK|MSG_DONTWAIT) finds no data and no end of
// stream. A read through c would not do: with a deadline already past,
// Go returns the timeout without asking the kernel.
func connOpen(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// Open: no data, not the end of the stream (0, nil), no error.
		open = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true // never wait for readiness
	})
	return err == nil && open
}
