package testnet

import (
	"net"
	"strconv"
	"testing"
)

func TestAddrIsFreeAndOutsideTheEphemeralRange(t *testing.T) {
	seen := map[string]bool{}
	for range 20 {
		addr := Addr(t)
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(port)
		if host != "127.0.0.1" || p < lowPort || p >= highPort {
			t.Fatalf("Addr() = %s, want 127.0.0.1 and a port in [%d, %d)", addr, lowPort, highPort)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("Addr() = %s, but it cannot be bound: %v", addr, err)
		}
		ln.Close()
		seen[addr] = true
	}
	if len(seen) < 2 {
		t.Fatalf("20 calls gave %d distinct addresses, want them spread", len(seen))
	}
}

func TestAddrSkipsABusyPort(t *testing.T) {
	held := Addr(t)
	ln, err := net.Listen("tcp", held)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(held)
	busy, _ := strconv.Atoi(port)
	_, port, _ = net.SplitHostPort(Addr(t)) // free now, and not busy (held)
	free, _ := strconv.Atoi(port)
	tries := []int{busy, busy, free}
	got := addrFrom(t, func() int { p := tries[0]; tries = tries[1:]; return p })
	if want := "127.0.0.1:" + strconv.Itoa(free); got != want {
		t.Fatalf("addrFrom with %d held = %s, want the next free one %s", busy, got, want)
	}
}
