package testnet

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
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

// ephemeralPort is a port nothing listens on now, from the kernel (not
// reserved by this package).
func ephemeralPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// ports gives addrFrom the ports to try, in order.
func ports(list ...int) func() int {
	return func() int { p := list[0]; list = list[1:]; return p }
}

func TestAddrSkipsABusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().(*net.TCPAddr).Port
	free := ephemeralPort(t)
	got := addrFrom(t, ports(busy, busy, free))
	if want := "127.0.0.1:" + strconv.Itoa(free); got != want {
		t.Fatalf("addrFrom with %d held = %s, want the next free one %s", busy, got, want)
	}
}

// TestAddrNeverHandsOutAPortTwice: a port handed out stays reserved, in
// this process and against another test binary, though nothing listens on it.
func TestAddrNeverHandsOutAPortTwice(t *testing.T) {
	if port := os.Getenv("TESTNET_HOLD"); port != "" { // the other process
		p, _ := strconv.Atoi(port)
		if !reserve(p) {
			fmt.Println("not reserved")
			os.Exit(1)
		}
		fmt.Println("held")
		io.Copy(io.Discard, os.Stdin) // until the parent closes stdin
		os.Exit(0)
	}
	first := ephemeralPort(t)
	if got := addrFrom(t, func() int { return first }); got != "127.0.0.1:"+strconv.Itoa(first) {
		t.Fatalf("first pick = %s", got)
	}
	other, next := ephemeralPort(t), ephemeralPort(t)
	if got, want := addrFrom(t, ports(first, next)), "127.0.0.1:"+strconv.Itoa(next); got != want {
		t.Fatalf("after %d was handed out, addrFrom(%d, %d) = %s, want %s", first, first, next, got, want)
	}

	cmd := exec.Command(os.Args[0], "-test.run", "^TestAddrNeverHandsOutAPortTwice$")
	cmd.Env = append(os.Environ(), "TESTNET_HOLD="+strconv.Itoa(other))
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "held\n" {
		t.Fatalf("the other process said %q, want held", line)
	}
	last := ephemeralPort(t)
	if got, want := addrFrom(t, ports(other, last)), "127.0.0.1:"+strconv.Itoa(last); got != want {
		t.Fatalf("with %d held by process %d, addrFrom(%d, %d) = %s, want %s", other, cmd.Process.Pid, other, last, got, want)
	}
}
