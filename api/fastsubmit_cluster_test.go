package api_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
)

// TestFastSubmitOnClusterNode: on a cluster node the fast path answers a
// submission only while the node leads, and its answer carries
// X-Wasmtask-Index as the cluster front's do (the Go client sends it back
// so that a follower's read sees the write). While the node does not
// lead, the connection goes to net/http (the front, which forwards) with
// the request it sent, and stays there once the node leads again.
func TestFastSubmitOnClusterNode(t *testing.T) {
	b := setup(t, api.Config{})
	var leading atomic.Pointer[api.Server]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fast := api.NewFastListenerOf(ln, api.FastTimeouts{ReadHeader: time.Minute, Idle: time.Minute}, leading.Load, true)
	var frontSaw atomic.Int64
	front := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		frontSaw.Add(1)
		w.WriteHeader(http.StatusTeapot) // stands for the front's forward
	})
	hs := &http.Server{Handler: front}
	go hs.Serve(fast)
	t.Cleanup(func() { hs.Close() })

	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(time.Minute))
		return c, bufio.NewReader(c)
	}
	submit := func(c net.Conn, r *bufio.Reader, id string) *http.Response {
		t.Helper()
		body := fmt.Sprintf(`{"id": %q, "handler": "echo"}`, id)
		fmt.Fprintf(c, "POST /v1/tasks HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("submit %s: %v", id, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	// Not leading: net/http's, on that connection from then on.
	c1, r1 := dial()
	if resp := submit(c1, r1, "follower-1"); resp.StatusCode != http.StatusTeapot || fast.Served() != 0 || frontSaw.Load() != 1 {
		t.Fatalf("not leading: status %d, fast path %d, front %d; want 418 from the front, 0, 1", resp.StatusCode, fast.Served(), frontSaw.Load())
	}
	leading.Store(b.api)
	if resp := submit(c1, r1, "follower-2"); resp.StatusCode != http.StatusTeapot || fast.Served() != 0 {
		t.Fatalf("a connection handed to net/http: status %d, fast path %d; want 418 from the front, 0", resp.StatusCode, fast.Served())
	}

	// Leading: answered here, with the engine's durable sequence.
	c2, r2 := dial()
	for i, id := range []string{"leader-1", "leader-2"} {
		resp := submit(c2, r2, id)
		if resp.StatusCode != http.StatusCreated || fast.Served() != int64(i+1) {
			t.Fatalf("leading, submit %d: status %d, fast path %d; want 201, %d", i, resp.StatusCode, fast.Served(), i+1)
		}
		seq, err := strconv.ParseUint(resp.Header.Get(api.IndexHeader), 10, 64)
		if err != nil || seq == 0 || seq > b.engine.DurableSeq() {
			t.Fatalf("leading, submit %d: %s %q (%v); want the engine's durable sequence, 1..%d", i, api.IndexHeader, resp.Header.Get(api.IndexHeader), err, b.engine.DurableSeq())
		}
	}

	// No longer leading: the next submission on that connection is the front's.
	leading.Store(nil)
	if resp := submit(c2, r2, "deposed"); resp.StatusCode != http.StatusTeapot || fast.Served() != 2 || frontSaw.Load() != 3 {
		t.Fatalf("deposed: status %d, fast path %d, front %d; want 418 from the front, 2, 3", resp.StatusCode, fast.Served(), frontSaw.Load())
	}
}
