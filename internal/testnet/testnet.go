// Package testnet hands tests loopback addresses that a process started
// later (a raft transport, a restarted `wasmtask serve`) can still bind.
//
// Listening on 127.0.0.1:0 and closing the listener gives a free port, but
// it is a port from the kernel's ephemeral range (32768-60999 here): every
// outgoing connection on the machine takes its local port from that range
// too, so under load (benchmarks, e2e clients, other test binaries) one can
// take the port between the probe and the real bind, and the node under
// test fails with "address already in use". Ports below the range are never
// handed out by the kernel; Addr picks one at random there and checks that
// it is free. A port handed out is also reserved for the rest of the
// process with a lock file under os.TempDir()/wasmtask-testnet (reserve):
// test binaries run in parallel (make test runs every package at once, and
// a package's parallel tests share the range), and a port one picked could
// otherwise be picked again by another between its probe and its bind
// (TestClusterFailover: "bind: address already in use" in a fresh-clone
// make test). The kernel drops the lock when the process ends. Only tests
// import it.
package testnet

import (
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
)

// The ports Addr picks from: above the well-known and registered services
// tests are likely to meet, below Linux's default ephemeral range.
const (
	lowPort  = 20000
	highPort = 32000
)

// Addr returns "127.0.0.1:PORT" for a port outside the ephemeral range
// that nothing listened on just now.
func Addr(t testing.TB) string {
	t.Helper()
	return addrFrom(t, func() int { return lowPort + rand.IntN(highPort-lowPort) })
}

// addrFrom is Addr with the ports to try given by next.
func addrFrom(t testing.TB, next func() int) string {
	t.Helper()
	var last error
	for range 100 {
		port := next()
		if !reserve(port) {
			last = fmt.Errorf("port %d: handed out already (this process or another test binary)", port)
			continue
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			release(port)
			last = err
			continue
		}
		ln.Close()
		return addr
	}
	t.Fatalf("testnet: no free loopback port in %d-%d after 100 tries: %v", lowPort, highPort, last)
	return ""
}
