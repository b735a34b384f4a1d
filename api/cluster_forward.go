package api

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// leanForward forwards the single submissions a follower's fast path
// reads (FastListener) to the leader, over plain HTTP/1.1 connections of
// its own that stay open between requests: one write of the request, one
// read of the answer, no goroutine per connection.
//
// Why: through net/http and httputil.ReverseProxy, a follower spent
// 136-163 us of CPU per forwarded submission (wasmtask bench, 256
// clients, 3 nodes on 2 cores), more than the leader that commits it
// (~100 us): reading the request with net/http, the proxy's copy of the
// request and its headers, the transport's two goroutines per connection
// and a flush per answer. Whatever else a follower forwards (other
// routes, TLS, a body over 64 KiB) still goes through ClusterFront.forward.
//
// The answer is the leader's, headers and all (X-Wasmtask-Index among
// them), given once this node applied the write, as forward gives it
// (waitIndex), so that a read here then sees it.
type leanForward struct {
	leader func() string // the leader's API URL ("" while none is known)
	self   string        // this node's API URL
	id     string        // this node's id, sent in X-Wasmtask-Forwarded-By
	token  string        // the bearer token a submission must carry (and is sent on)
	// applied waits until this node applied the answer's index (nil: no wait).
	applied func(ctx context.Context, index string)
	// dial opens a connection to the leader's host:port.
	dial func(ctx context.Context, addr string) (net.Conn, error)

	mu     sync.Mutex
	target string        // the leader URL the idle connections lead to
	idle   []*leaderConn // most recently used last
	// parsed is the last leader URL seen, parsedHost its host:port ("":
	// not one forwarded this way).
	parsed, parsedHost string
}

// leaderConn is one connection to the leader.
type leaderConn struct {
	c net.Conn
	r *bufio.Reader
}

// Bounds of leanForward: idle connections kept (as ClusterFront.forward's
// transport keeps), how long a forwarded submission may take at the
// leader before it is answered 503, how large an answer may be.
const (
	leanIdleMax     = 1024
	leanRoundTrip   = 30 * time.Second
	leanAnswerMax   = 16 << 20
	leanDialTimeout = 2 * time.Second
)

func newLeanForward(leader func() string, self, id, token string, applied func(context.Context, string)) *leanForward {
	d := &net.Dialer{Timeout: leanDialTimeout, KeepAlive: 30 * time.Second}
	return &leanForward{leader: leader, self: self, id: id, token: token, applied: applied, dial: func(ctx context.Context, addr string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", addr)
	}}
}

// targetNow returns the leader's URL and host:port when a submission
// can go there this way: a leader other than this node is known, its API
// at the root of a plain HTTP address.
func (fw *leanForward) targetNow() (leader, hostport string, ok bool) {
	leader = fw.leader()
	if leader == "" || leader == fw.self {
		return "", "", false
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if leader != fw.parsed {
		fw.parsed, fw.parsedHost = leader, ""
		u, err := url.Parse(leader)
		if err == nil && u.Scheme == "http" && (u.Path == "" || u.Path == "/") && u.RawQuery == "" && u.User == nil && u.Hostname() != "" {
			fw.parsedHost = net.JoinHostPort(u.Hostname(), cmp.Or(u.Port(), "80"))
		}
	}
	return leader, fw.parsedHost, fw.parsedHost != "" // https, or a path prefix: the proxy's
}

// forward sends the submission body to the leader and writes its answer,
// or a 503 that says whether the submission may have been carried out,
// to w. It waits for this node to apply the write as forward does.
func (fw *leanForward) forward(ctx context.Context, w *fastResponse, leader, hostport string, body []byte) {
	req := make([]byte, 0, 256+len(body))
	req = append(req, "POST /v1/tasks HTTP/1.1\r\nHost: "...)
	req = append(req, hostport...)
	req = append(req, "\r\nContent-Length: "...)
	req = strconv.AppendInt(req, int64(len(body)), 10)
	req = append(req, "\r\n"+forwardedHeader+": "...)
	req = append(req, fw.id...)
	if fw.token != "" {
		req = append(req, "\r\nAuthorization: Bearer "...)
		req = append(req, fw.token...)
	}
	req = append(req, "\r\n\r\n"...)
	req = append(req, body...)

	lc, err := fw.get(ctx, leader, hostport)
	if err != nil {
		w.h.Set("Retry-After", "1")
		writeError(w, &Error{Status: 503, Code: "no_leader", Message: fmt.Sprintf("the leader at %s cannot be reached (%v); retry", leader, err)})
		return
	}
	resp, answer, err := lc.roundTrip(req)
	if err != nil {
		lc.c.Close()
		w.h.Set("Retry-After", "1")
		writeError(w, &Error{Status: 503, Code: "unavailable", Message: fmt.Sprintf("the leader at %s did not answer (%v): the request may or may not have been carried out", leader, err)})
		return
	}
	if resp.Close {
		lc.c.Close()
	} else {
		fw.put(leader, lc)
	}
	if fw.applied != nil {
		fw.applied(ctx, resp.Header.Get(IndexHeader))
	}
	for k, vs := range resp.Header {
		switch k {
		case "Connection", "Keep-Alive", "Date", "Content-Length", "Transfer-Encoding", "Trailer", "Te", "Upgrade", "Proxy-Connection":
			continue
		}
		w.h[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(answer)
}

// get returns an idle connection to the leader, or a new one.
func (fw *leanForward) get(ctx context.Context, leader, hostport string) (*leaderConn, error) {
	fw.mu.Lock()
	if fw.target != leader { // a new leader: the old one's connections go
		for _, lc := range fw.idle {
			lc.c.Close()
		}
		fw.idle, fw.target = fw.idle[:0], leader
	}
	for len(fw.idle) > 0 {
		lc := fw.idle[len(fw.idle)-1]
		fw.idle = fw.idle[:len(fw.idle)-1]
		fw.mu.Unlock()
		if lc.alive() {
			return lc, nil
		}
		lc.c.Close()
		fw.mu.Lock()
	}
	fw.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, leanDialTimeout)
	defer cancel()
	c, err := fw.dial(ctx, hostport)
	if err != nil {
		return nil, err
	}
	return &leaderConn{c: c, r: bufio.NewReaderSize(c, 4<<10)}, nil
}

// put keeps lc for the next submission to leader.
func (fw *leanForward) put(leader string, lc *leaderConn) {
	fw.mu.Lock()
	if fw.target == leader && len(fw.idle) < leanIdleMax {
		fw.idle = append(fw.idle, lc)
		lc = nil
	}
	fw.mu.Unlock()
	if lc != nil {
		lc.c.Close()
	}
}

// alive reports whether an idle connection is still open and quiet: the
// leader closes those idle past its --idle-timeout (or as it stops), and
// a submission written on one of those would fail after the fact,
// undecided (503 unavailable rather than a new connection).
func (lc *leaderConn) alive() bool {
	if lc.r.Buffered() > 0 {
		return false // nothing is due on an idle connection
	}
	return connOpen(lc.c)
}

// roundTrip writes req and reads the answer, whole.
func (lc *leaderConn) roundTrip(req []byte) (*http.Response, []byte, error) {
	lc.c.SetDeadline(time.Now().Add(leanRoundTrip))
	if _, err := lc.c.Write(req); err != nil {
		return nil, nil, err
	}
	resp, err := http.ReadResponse(lc.r, nil)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, leanAnswerMax+1))
	if err != nil {
		return nil, nil, err
	}
	if len(answer) > leanAnswerMax {
		return nil, nil, fmt.Errorf("an answer over %d bytes", leanAnswerMax)
	}
	return resp, answer, nil
}

// close closes the idle connections (the listener closes).
func (fw *leanForward) close() {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	for _, lc := range fw.idle {
		lc.c.Close()
	}
	fw.idle = nil
}
