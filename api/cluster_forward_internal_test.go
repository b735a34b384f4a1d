package api

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// leaderStub is a leader's API as a follower's fast path sees it: it
// records the submissions forwarded to it and the connections they came
// on, and answers each as answer says.
type leaderStub struct {
	srv   *httptest.Server
	conns atomic.Int64
	mu    sync.Mutex
	got   []*http.Request
	body  []string
	// answer writes the answer to request n (from 0).
	answer func(n int, w http.ResponseWriter)
}

func startLeaderStub(t *testing.T, idleTimeout time.Duration, answer func(n int, w http.ResponseWriter)) *leaderStub {
	l := &leaderStub{answer: answer}
	l.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		l.mu.Lock()
		n := len(l.got)
		l.got, l.body = append(l.got, r), append(l.body, string(b))
		l.mu.Unlock()
		l.answer(n, w)
	}))
	l.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			l.conns.Add(1)
		}
	}
	l.srv.Config.IdleTimeout = idleTimeout
	l.srv.Start()
	t.Cleanup(l.srv.Close)
	return l
}

// follower is a FastListener that forwards every submission to leader()
// through a leanForward with token tok; what it hands to net/http gets
// 418. applied records the indexes it was asked to wait for.
func startFollower(t *testing.T, leader func() string, tok string) (addr string, applied *[]string) {
	var mu sync.Mutex
	applied = new([]string)
	fw := newLeanForward(leader, "http://self.invalid", "n2", tok, func(_ context.Context, index string) {
		mu.Lock()
		*applied = append(*applied, index)
		mu.Unlock()
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := newFastListener(ln, FastTimeouts{ReadHeader: time.Minute, Idle: time.Minute}, func() *Server { return nil }, true, fw)
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })}
	go hs.Serve(fl)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String(), applied
}

// rawSubmit sends a submission on c and reads the answer.
func rawSubmit(t *testing.T, c net.Conn, r *bufio.Reader, tok, body string) (*http.Response, string) {
	t.Helper()
	auth := ""
	if tok != "" {
		auth = "Authorization: Bearer " + tok + "\r\n"
	}
	fmt.Fprintf(c, "POST /v1/tasks HTTP/1.1\r\nHost: follower\r\nUser-Agent: test\r\n%sContent-Length: %d\r\n\r\n%s", auth, len(body), body)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func dialRaw(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(time.Minute))
	return c, bufio.NewReader(c)
}

// TestLeanForward: a submission read by a follower's fast path reaches
// the leader with its body, the token and X-Wasmtask-Forwarded-By, and
// the client gets the leader's answer (status, headers, body) once the
// node applied the answer's index; submissions share the leader
// connections; a leader that cannot be reached is 503 no_leader with
// Retry-After, and one that closes the connection after answering costs
// a new connection, not an error.
func TestLeanForward(t *testing.T) {
	leader := startLeaderStub(t, 0, func(n int, w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(IndexHeader, fmt.Sprint(40+n))
		w.Header().Set("Location", fmt.Sprintf("/v1/tasks/t%d", n))
		if n == 2 {
			w.Header().Set("Connection", "close")
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id": "t%d"}`, n)
	})
	var leaderURL atomic.Pointer[string]
	url := leader.srv.URL
	leaderURL.Store(&url)
	addr, applied := startFollower(t, func() string { return *leaderURL.Load() }, "tok")

	c, r := dialRaw(t, addr)
	for n := range 4 {
		body := fmt.Sprintf(`{"handler": "echo", "n": %d}`, n)
		resp, answer := rawSubmit(t, c, r, "tok", body)
		want := fmt.Sprintf(`{"id": "t%d"}`, n)
		if resp.StatusCode != http.StatusCreated || answer != want || resp.Header.Get(IndexHeader) != fmt.Sprint(40+n) ||
			resp.Header.Get("Location") != fmt.Sprintf("/v1/tasks/t%d", n) || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("submission %d: %d %v %s; want the leader's 201, its headers and %s", n, resp.StatusCode, resp.Header, answer, want)
		}
		if resp.Close {
			t.Fatalf("submission %d: the follower closes the client's connection (the leader closed its own)", n)
		}
		leader.mu.Lock()
		got, gotBody := leader.got[n], leader.body[n]
		leader.mu.Unlock()
		if got.Method != "POST" || got.URL.Path != "/v1/tasks" || gotBody != body || got.Header.Get("Authorization") != "Bearer tok" ||
			got.Header.Get(forwardedHeader) != "n2" || got.ContentLength != int64(len(body)) {
			t.Fatalf("submission %d reached the leader as %s %s %v %q; want POST /v1/tasks with the body, the token and %s: n2", n, got.Method, got.URL, got.Header, gotBody, forwardedHeader)
		}
	}
	if want := []string{"40", "41", "42", "43"}; fmt.Sprint(*applied) != fmt.Sprint(want) {
		t.Errorf("waited for indexes %v, want %v (each answer's, before it is given)", *applied, want)
	}
	// Submissions 0-2 on one connection; the leader closed it after 2.
	if n := leader.conns.Load(); n != 2 {
		t.Errorf("the leader saw %d connections for 4 sequential submissions (closing one after the third), want 2", n)
	}

	// A wrong token is not forwarded this way: net/http's (here 418).
	c2, r2 := dialRaw(t, addr)
	if resp, _ := rawSubmit(t, c2, r2, "wrong", `{}`); resp.StatusCode != http.StatusTeapot {
		t.Errorf("a submission with the wrong token got %d, want it handed to net/http (418 here)", resp.StatusCode)
	}

	// A submission another node forwarded here is not sent on (this node
	// does not lead): net/http's, which answers it 503 no_leader.
	c4, r4 := dialRaw(t, addr)
	body := `{"handler": "echo"}`
	fmt.Fprintf(c4, "POST /v1/tasks HTTP/1.1\r\nHost: follower\r\nAuthorization: Bearer tok\r\nx-wasmtask-forwarded-by: n3\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	if resp, err := http.ReadResponse(r4, nil); err != nil || resp.StatusCode != http.StatusTeapot {
		t.Errorf("a forwarded submission: %v %v; want it handed to net/http (418 here), not forwarded again", resp, err)
	}
	leader.mu.Lock()
	if n := len(leader.got); n != 4 {
		t.Errorf("the leader got %d submissions, want the 4 sent here first", n)
	}
	leader.mu.Unlock()

	// The leader gone: 503 no_leader, with Retry-After.
	leader.srv.Close()
	gone := "http://" + leader.srv.Listener.Addr().String()
	leaderURL.Store(&gone)
	c3, r3 := dialRaw(t, addr)
	resp, answer := rawSubmit(t, c3, r3, "tok", `{"handler": "echo"}`)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || !strings.Contains(answer, `"no_leader"`) {
		t.Errorf("with the leader gone: %d %v %s; want 503 no_leader with Retry-After: 1", resp.StatusCode, resp.Header, answer)
	}
}

// TestLeanForwardIdleConnectionClosedByLeader: a connection the leader
// closed while it sat idle (its --idle-timeout) is not used: the next
// submission goes on a new one and succeeds.
func TestLeanForwardIdleConnectionClosedByLeader(t *testing.T) {
	leader := startLeaderStub(t, 50*time.Millisecond, func(n int, w http.ResponseWriter) {
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id": "t%d"}`, n)
	})
	url := leader.srv.URL
	addr, _ := startFollower(t, func() string { return url }, "")
	c, r := dialRaw(t, addr)
	for n := range 2 {
		if n == 1 {
			time.Sleep(300 * time.Millisecond) // past the leader's idle timeout: it closed the connection
		}
		resp, answer := rawSubmit(t, c, r, "", `{"handler": "echo"}`)
		if resp.StatusCode != http.StatusCreated || answer != fmt.Sprintf(`{"id": "t%d"}`, n) {
			t.Fatalf("submission %d: %d %s; want 201 from the leader", n, resp.StatusCode, answer)
		}
	}
	if n := leader.conns.Load(); n != 2 {
		t.Errorf("the leader saw %d connections, want 2 (the idle one it closed was not used)", n)
	}
}
