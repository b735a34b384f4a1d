package api_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
)

// rawServer is an API server over a real engine (paused: views do not
// change under the test) on a listener of its own, with the fast submit
// path (fast) or net/http alone.
type rawServer struct {
	addr string
	fast *api.FastListener
}

func startRaw(t *testing.T, cfg api.Config, fast bool) *rawServer {
	t.Helper()
	b := setup(t, cfg)
	b.pause(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: b.api, ReadHeaderTimeout: time.Minute, IdleTimeout: time.Minute}
	rs := &rawServer{addr: ln.Addr().String()}
	var served net.Listener = ln
	if fast {
		rs.fast = b.api.NewFastListener(ln, api.FastTimeouts{ReadHeader: hs.ReadHeaderTimeout, Idle: hs.IdleTimeout})
		served = rs.fast
	}
	done := make(chan struct{})
	go func() { defer close(done); hs.Serve(served) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		hs.Shutdown(ctx)
		if rs.fast != nil {
			rs.fast.Wait(ctx)
		}
		<-done
	})
	return rs
}

var submittedAt = regexp.MustCompile(`"submitted_at": "[^"]*"`)

// exchange writes raw on a new connection and reads n responses (fewer if
// the server closes the connection), each written as its status line,
// header lines but Date (sorted) and body.
func (rs *rawServer) exchange(t *testing.T, raw string, n int) []string {
	t.Helper()
	c, err := net.Dial("tcp", rs.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute)) // a bound, not a synchronisation: answers come at once
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	var out []string
	for range n {
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			out = append(out, "read: "+err.Error())
			break
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for k, vs := range resp.Header {
			if k != "Date" {
				lines = append(lines, k+": "+strings.Join(vs, ", "))
			}
		}
		slices.Sort(lines)
		out = append(out, fmt.Sprintf("%s %s\n%s\n\n%s", resp.Proto, resp.Status, strings.Join(lines, "\n"),
			submittedAt.ReplaceAll(body, []byte(`"submitted_at": "T"`))))
	}
	return out
}

// TestFastSubmitAnswersAsNetHTTP sends the same bytes to a server with
// the fast submit path and to one without, and compares the answers
// (Date and the submission time aside): the single submits it serves
// itself, and the requests it hands to net/http (another route, a wrong
// token, Expect, chunked bodies, HTTP/1.0, Connection: close, bodies over
// its bound), including on a connection it served first.
func TestFastSubmitAnswersAsNetHTTP(t *testing.T) {
	cfg := api.Config{Token: "admin-tok", WorkerToken: "worker-tok", MaxTaskBytes: 200 << 10}
	fast, plain := startRaw(t, cfg, true), startRaw(t, cfg, false)
	post := func(body string, extra ...string) string {
		return "POST /v1/tasks HTTP/1.1\r\nHost: wasmtask.test\r\nAuthorization: Bearer admin-tok\r\n" + strings.Join(extra, "") +
			fmt.Sprintf("Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
	spec := func(id string) string { return `{"id": "` + id + `", "handler": "echo", "input": "hi"}` }
	big := `{"id": "big", "handler": "echo", "input": "` + strings.Repeat("x", 100<<10) + `"}`
	tooBig := `{"id": "toobig", "handler": "echo", "input": "` + strings.Repeat("x", 210<<10) + `"}`
	chunked := "POST /v1/tasks HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer admin-tok\r\nTransfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(spec("chunked")), spec("chunked"))
	cases := []struct {
		name string
		raw  string
		n    int  // responses
		fast bool // all answered by the fast path
	}{
		{"created", post(spec("t1")), 1, true},
		{"duplicate", post(spec("t1")), 1, true},
		{"lower-case names, no space after colons", strings.NewReplacer("Host: ", "host:", "Authorization: Bearer", "authorization:bearer",
			"Content-Type: ", "content-type:", "Content-Length: ", "content-length:\t").Replace(post(spec("t2"))), 1, true},
		{"unknown handler names the field", post(`{"handler": "nope"}`), 1, true},
		{"invalid JSON", post(`{"handler": `), 1, true},
		{"unknown field", post(`{"handler": "echo", "colour": "red"}`), 1, true},
		{"empty body", post(``), 1, true},
		{"pipelined", post(spec("p1")) + post(spec("p2")) + post(spec("p1")), 3, true},
		{"keep-alive", post(spec("k1"), "Connection: keep-alive\r\n"), 1, true},
		{"no token", strings.Replace(post(spec("n1")), "Authorization: Bearer admin-tok\r\n", "", 1), 1, false},
		{"wrong token", strings.Replace(post(spec("n2")), "admin-tok", "nope", 1), 1, false},
		{"worker token", strings.Replace(post(spec("n3")), "admin-tok", "worker-tok", 1), 1, false},
		{"expect 100-continue", post(spec("e1"), "Expect: 100-continue\r\n"), 2, false},
		{"chunked", chunked, 1, false},
		{"HTTP/1.0", strings.Replace(post(spec("old")), "HTTP/1.1", "HTTP/1.0", 1), 1, false},
		{"connection close", post(spec("c1"), "Connection: close\r\n"), 1, false},
		{"no host", strings.Replace(post(spec("nh")), "Host: wasmtask.test\r\n", "", 1), 1, false},
		{"two hosts", post(spec("h2"), "Host: other\r\n"), 1, false},
		{"two lengths", post(spec("l2"), "Content-Length: 5\r\n"), 1, false},
		{"query", strings.Replace(post(spec("q1")), "/v1/tasks", "/v1/tasks?x=1", 1), 1, false},
		{"bare LF", strings.ReplaceAll(post(spec("lf")), "\r\n", "\n"), 1, false},
		{"body over the fast bound", post(big), 1, false},
		{"body over MaxTaskBytes", post(tooBig), 1, false},
		{"fast, then another route, then fast", post(spec("m1")) + "GET /v1/tasks/m1 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer admin-tok\r\n\r\n" + post(spec("m2")), 3, false},
		{"fast, then chunked", post(spec("m3")) + chunked, 2, false},
		{"malformed header line", post(spec("bad"), "NoColon\r\n"), 1, false},
		{"space before colon", post(spec("sp"), "X-A : b\r\n"), 1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := fast.fast.Served()
			got := fast.exchange(t, tc.raw, tc.n)
			want := plain.exchange(t, tc.raw, tc.n)
			if !slices.Equal(got, want) {
				t.Errorf("fast path answered\n%s\n\nnet/http answered\n%s", strings.Join(got, "\n----\n"), strings.Join(want, "\n----\n"))
			}
			if len(got) != tc.n {
				t.Errorf("%d answers, want %d: %q", len(got), tc.n, got)
			}
			served := fast.fast.Served() - before
			if tc.fast && served != int64(tc.n) {
				t.Errorf("the fast path answered %d of %d requests, want all", served, tc.n)
			}
			if !tc.fast && served == int64(tc.n) {
				t.Errorf("the fast path answered all %d requests, want net/http to answer some", tc.n)
			}
		})
	}
}

// TestFastSubmitShutdown: http.Server.Shutdown closes the fast path's
// listener; a keep-alive connection it served and left idle is then closed
// by the server (the client reads the end of the stream), new connections
// are refused, and Wait returns with nothing in flight.
func TestFastSubmitShutdown(t *testing.T) {
	b := setup(t, api.Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fast := b.api.NewFastListener(ln, api.FastTimeouts{ReadHeader: time.Minute, Idle: time.Minute})
	hs := &http.Server{Handler: b.api}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(fast) }()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute)) // a bound: the server closes it at once
	body := `{"handler": "echo"}`
	fmt.Fprintf(c, "POST /v1/tasks HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusCreated || fast.Served() != 1 {
		t.Fatalf("status %d, %d served by the fast path; want 201, 1", resp.StatusCode, fast.Served())
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	fast.Wait(ctx)
	if ctx.Err() != nil {
		t.Fatal("Wait ran out of time with nothing in flight")
	}
	if err := <-served; err != http.ErrServerClosed {
		t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
	}
	if n, err := r.ReadByte(); err != io.EOF {
		t.Errorf("the idle connection read %q, %v after Shutdown; want it closed (EOF)", n, err)
	}
	if c2, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c2.Close()
		t.Error("a new connection was accepted after Shutdown")
	}
}

// TestFastSubmitGoClient: the submissions of the Go client (its
// User-Agent, Accept-Encoding, token, index and keep-alive connections)
// are of the form the fast path answers, and come back as the client
// expects (201, then 200 for the same spec).
func TestFastSubmitGoClient(t *testing.T) {
	fast := startRaw(t, api.Config{Token: "tok"}, true)
	cl := api.NewClient("http://"+fast.addr, "tok")
	defer cl.HTTP.CloseIdleConnections()
	spec := api.TaskSpec{ID: "go-client", Handler: "echo", Labels: map[string]string{"k": "v"}}
	for i, wantDup := range []bool{false, true} {
		res, err := cl.Submit(context.Background(), spec)
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
		if res.Task.ID != "go-client" || res.Duplicate != wantDup {
			t.Errorf("submit %d: task %q, duplicate %v; want go-client, %v", i, res.Task.ID, res.Duplicate, wantDup)
		}
	}
	if n := fast.fast.Served(); n != 2 {
		t.Errorf("the fast path answered %d of the Go client's 2 submissions", n)
	}
}
