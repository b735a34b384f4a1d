package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// FastListener serves the single task submission (POST /v1/tasks with a
// Content-Length body, the request of the many-clients workload) on plain
// HTTP/1.1 connections itself, and hands every connection that sends
// anything else to the http.Server it is given to (through Accept), with
// the bytes read so far, to be served by net/http from then on.
//
// Why: net/http's work per request beyond reading and writing the socket
// (a goroutine and a read syscall that watch the connection while the
// handler runs, a context, a header map, buffers, four deadline updates
// per request) was a quarter of the server's CPU per single submit
// (123 -> 95 us of CPU per submit, wasmtask bench with 32 clients). The handler is the same
// (Server.submitTask, after the same bearer check): only the reading of
// the request and the writing of the answer are done here, byte for byte
// what net/http writes but for the order of the header lines.
//
// A connection stays here only while its requests are of the plain shape
// parseFastHead accepts (see there: POST /v1/tasks, HTTP/1.1, a Host, a
// Content-Length within fastBodyMax, the right token if one is set, no
// Expect, Transfer-Encoding, Upgrade or Connection other than keep-alive,
// well-formed header lines that fit in the read buffer); at the first
// other request the connection goes to net/http, which answers that
// request and the rest. Not used over TLS. On a cluster node
// (ClusterFront.NewFastListener) a submission is answered here while the
// node leads, and forwarded to the leader from here (leanForward) while
// another node leads.
type FastListener struct {
	net.Listener
	// server is the Server whose submissions are answered here, nil while
	// there is none (a cluster node that does not lead).
	server func() *Server
	// index: answers carry X-Wasmtask-Index, as the cluster front's do.
	index bool
	// forward, on a cluster node, sends the submissions read while the
	// node does not lead to the leader (nil: they go to net/http).
	forward *leanForward
	timeout FastTimeouts

	conns chan net.Conn // to net/http (Accept)
	errs  chan error
	done  chan struct{}
	once  sync.Once

	served atomic.Int64 // requests answered here

	mu       sync.Mutex
	active   map[*fastConn]struct{}
	closing  atomic.Bool
	inFlight atomic.Int64 // requests being answered
}

// FastTimeouts are the http.Server timeouts the fast path keeps to.
type FastTimeouts struct {
	ReadHeader, Read, Write, Idle time.Duration
}

// fastBodyMax bounds the body of a request served here (a larger one goes
// to net/http, as one over the server's MaxTaskBytes does: net/http closes
// the connection after its 413).
const fastBodyMax = 64 << 10

// fastHeadMax bounds the request head served here: it must fit in the
// connection's read buffer.
const fastHeadMax = 4 << 10

// NewFastListener serves s's single submissions on ln (plain TCP) and
// passes every other connection to whoever calls Accept (http.Server.Serve).
func (s *Server) NewFastListener(ln net.Listener, t FastTimeouts) *FastListener {
	return newFastListener(ln, t, func() *Server { return s }, false, nil)
}

// NewFastListener serves the single submissions of the Server this node
// leads with (SetServer) on ln, with X-Wasmtask-Index as ServeHTTP sets
// it, forwards those it reads while another node leads (leanForward),
// and passes every other connection to whoever calls Accept (an
// http.Server serving f). A submission read while no leader is known, or
// one that cannot go the lean way (a leader over https), goes there too,
// with its connection, for good.
//
// Why: on the leader, net/http's share of a single submission is the
// same quarter of the CPU as on one server, and there every submission of
// the cluster is answered (a follower forwards its own).
func (f *ClusterFront) NewFastListener(ln net.Listener, t FastTimeouts) *FastListener {
	return newFastListener(ln, t, f.server.Load, true, newLeanForward(f.cfg.Node.LeaderHTTP, f.cfg.Self, f.cfg.Node.ID(), f.cfg.Token, f.waitIndex))
}

func newFastListener(ln net.Listener, t FastTimeouts, server func() *Server, index bool, forward *leanForward) *FastListener {
	f := &FastListener{Listener: ln, server: server, index: index, forward: forward, timeout: t, conns: make(chan net.Conn), errs: make(chan error, 1),
		done: make(chan struct{}), active: map[*fastConn]struct{}{}}
	go f.acceptLoop()
	return f
}

func (f *FastListener) acceptLoop() {
	var pause time.Duration
	for {
		c, err := f.Listener.Accept()
		if err != nil {
			var ne interface{ Temporary() bool }
			if errors.As(err, &ne) && ne.Temporary() && !f.closing.Load() {
				// A temporary error (out of descriptors): as net/http does.
				pause = min(max(2*pause, 5*time.Millisecond), time.Second)
				time.Sleep(pause)
				continue
			}
			select {
			case f.errs <- err:
			case <-f.done:
			}
			return
		}
		pause = 0
		fc := &fastConn{f: f, c: c}
		f.mu.Lock()
		if f.closing.Load() {
			f.mu.Unlock()
			c.Close()
			continue
		}
		f.active[fc] = struct{}{}
		f.mu.Unlock()
		go fc.serve()
	}
}

// Accept returns the next connection for net/http.
func (f *FastListener) Accept() (net.Conn, error) {
	select {
	case c := <-f.conns:
		return c, nil
	case err := <-f.errs:
		return nil, err
	case <-f.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting; connections served here close once their
// request in progress is answered (Wait waits for that).
func (f *FastListener) Close() error {
	var err error
	f.once.Do(func() {
		f.closing.Store(true)
		err = f.Listener.Close()
		if f.forward != nil {
			f.forward.close()
		}
		close(f.done)
		f.mu.Lock()
		for fc := range f.active {
			fc.wake()
		}
		f.mu.Unlock()
	})
	return err
}

// Served counts the requests answered by the fast path.
func (f *FastListener) Served() int64 { return f.served.Load() }

// Wait waits until the requests being answered here are answered, or ctx
// ends (http.Server.Shutdown does the same for its own connections).
func (f *FastListener) Wait(ctx context.Context) {
	for f.inFlight.Load() > 0 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
}

// fastConn is one connection served by the fast path.
type fastConn struct {
	f    *FastListener
	c    net.Conn
	r    *bufio.Reader
	busy atomic.Bool // answering a request (Close lets it finish)
	// rd and wd: the read and write deadlines set (zero: none).
	rd, wd time.Time

	req  http.Request
	url  url.URL
	body fastBody
	w    fastResponse
}

// wake makes an idle connection's read return, so that it sees closing.
func (fc *fastConn) wake() {
	if !fc.busy.Load() {
		fc.c.SetReadDeadline(time.Unix(1, 0))
	}
}

func (fc *fastConn) drop() {
	fc.f.mu.Lock()
	delete(fc.f.active, fc)
	fc.f.mu.Unlock()
}

func (fc *fastConn) serve() {
	defer fc.drop()
	fc.r = bufio.NewReaderSize(fc.c, fastHeadMax)
	fc.req.URL = &fc.url
	fc.req.Header = http.Header{}
	fc.req.Body = &fc.body
	fc.req.RemoteAddr = fc.c.RemoteAddr().String()
	fc.w.h = http.Header{}
	t := fc.f.timeout
	for first := true; ; first = false {
		// Waiting for a request, as net/http does: the header timeout
		// before the first, the idle timeout (the read timeout if none;
		// none if neither is set) between requests.
		wait := t.ReadHeader
		if !first {
			if wait = t.Idle; wait <= 0 {
				wait = t.Read
			}
		}
		if fc.r.Buffered() == 0 {
			fc.setReadDeadline(wait)
		}
		if fc.f.closing.Load() {
			fc.c.Close()
			return
		}
		if _, err := fc.r.Peek(1); err != nil {
			fc.c.Close()
			return
		}
		fc.busy.Store(true)
		fc.f.inFlight.Add(1)
		if fc.f.closing.Load() { // Close ran between the check and busy
			fc.f.inFlight.Add(-1)
			fc.c.Close()
			return
		}
		ok := fc.serveOne()
		fc.busy.Store(false)
		fc.f.inFlight.Add(-1)
		if !ok {
			return
		}
	}
}

// setReadDeadline makes reads end d from now (never if d is 0), give or
// take an eighth of d: a deadline set earlier that ends between 7/8 d
// and d from now stays. Each setting costs a timer update, and a
// connection answering a submission every few hundred microseconds would
// make four per request as net/http does (idle, head, body, write).
func (fc *fastConn) setReadDeadline(d time.Duration) {
	if d <= 0 {
		if !fc.rd.IsZero() {
			fc.rd = time.Time{}
			fc.c.SetReadDeadline(fc.rd)
		}
		return
	}
	now := time.Now()
	if left := fc.rd.Sub(now); !fc.rd.IsZero() && left <= d && left >= d-d/8 {
		return
	}
	fc.rd = now.Add(d)
	fc.c.SetReadDeadline(fc.rd)
}

// serveOne answers one request here or hands the connection to net/http;
// false: the connection is closed or handed over.
func (fc *fastConn) serveOne() bool {
	t := fc.f.timeout
	head, n, ok := fc.peekHead()
	if !ok {
		return fc.handOff()
	}
	s := fc.f.server()
	var length int
	var leader, leaderHost string
	switch {
	case s != nil:
		length, ok = fc.parse(head, s.cfg.Token, min(fastBodyMax, s.cfg.MaxTaskBytes))
	case fc.f.forward != nil && !hasField(head, forwardedHeader):
		// (A submission another node forwarded here, which this node no
		// longer leads, is net/http's: forward answers it 503 no_leader
		// rather than send it round.)
		if leader, leaderHost, ok = fc.f.forward.targetNow(); ok {
			length, ok = fc.parse(head, fc.f.forward.token, fastBodyMax)
		}
	default:
		ok = false
	}
	if !ok {
		return fc.handOff()
	}
	// The head is served here: the body follows it.
	if fc.r.Buffered() < n+length {
		fc.setReadDeadline(t.Read)
	}
	fc.r.Discard(n)
	body := fc.w.body[:0]
	body = slices.Grow(body, length)[:length]
	if _, err := io.ReadFull(fc.r, body); err != nil {
		fc.c.Close()
		return false
	}
	fc.body.Reset(body)
	fc.body.b = body
	fc.req.ContentLength = int64(length)
	if t.Write > 0 {
		if now := time.Now(); fc.wd.Sub(now) < t.Write-t.Write/8 {
			fc.wd = now.Add(t.Write)
			fc.c.SetWriteDeadline(fc.wd)
		}
	}
	fc.w.reset()
	if s == nil {
		fc.f.forward.forward(context.Background(), &fc.w, leader, leaderHost, body)
	} else {
		if !fc.handle(s) {
			fc.c.Close()
			return false
		}
		if fc.f.index && fc.w.h.Get(IndexHeader) == "" {
			// What indexWriter sets; read once the handler is done, so
			// never below the submission's own sequence.
			fc.w.h.Set(IndexHeader, strconv.FormatUint(s.cfg.Engine.DurableSeq(), 10))
		}
	}
	fc.w.body = body
	fc.f.served.Add(1)
	closing := fc.f.closing.Load()
	out := fc.w.appendResponse(fc.w.out[:0], closing)
	fc.w.out = out
	if _, err := fc.c.Write(out); err != nil || closing {
		fc.c.Close()
		return false
	}
	return true
}

// handle runs the handler; false if it panicked (net/http then closes the
// connection and logs the panic: so does this).
func (fc *fastConn) handle(s *Server) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			s.cfg.Logger.Error("http: panic serving "+fc.req.RemoteAddr, "panic", p, "stack", string(buf))
			ok = false
		}
	}()
	s.submitTask(&fc.w, &fc.req)
	return true
}

// peekHead returns the request head (up to and without its empty line)
// and its length with the empty line, if it is all in the read buffer
// within fastHeadMax.
func (fc *fastConn) peekHead() (head []byte, n int, ok bool) {
	for {
		buf, err := fc.r.Peek(fc.r.Buffered())
		if err != nil {
			return nil, 0, false
		}
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			return buf[:i+2], i + 4, bareLineEnd(buf[:i+4]) < 0
		}
		if bareLineEnd(buf) >= 0 {
			// A line ended by LF alone (or a CR alone), which net/http
			// reads: its head would never end here.
			return nil, 0, false
		}
		if len(buf) >= fastHeadMax {
			return nil, 0, false
		}
		// More of the head is on its way: read it (Peek fills the buffer),
		// within the header timeout (set only now: a read may wait).
		fc.setReadDeadline(fc.f.timeout.ReadHeader)
		if _, err := fc.r.Peek(len(buf) + 1); err != nil {
			return nil, 0, false
		}
	}
}

// bareLineEnd is the index of the first LF not after a CR or CR not
// before an LF in b, -1 if none (a CR at its end may be followed by its LF).
func bareLineEnd(b []byte) int {
	for i, c := range b {
		switch {
		case c == '\n' && (i == 0 || b[i-1] != '\r'):
			return i
		case c == '\r' && i+1 < len(b) && b[i+1] != '\n':
			return i
		}
	}
	return -1
}

// handOff gives the connection, with what was read of it, to net/http.
func (fc *fastConn) handOff() bool {
	fc.c.SetDeadline(time.Time{})
	var c net.Conn = fc.c
	if fc.r.Buffered() > 0 {
		c = &prefixConn{Conn: fc.c, r: fc.r}
	}
	select {
	case fc.f.conns <- c:
	case <-fc.f.done:
		fc.c.Close()
	}
	return false
}

// prefixConn reads what its bufio.Reader holds before the connection.
type prefixConn struct {
	net.Conn
	r *bufio.Reader
}

// CloseWrite half-closes a TCP connection (net/http does before it closes
// one on an error, so that the client reads the answer).
func (p *prefixConn) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if p.r != nil {
		if p.r.Buffered() > 0 {
			return p.r.Read(b)
		}
		p.r = nil
	}
	return p.Conn.Read(b)
}

// parse reads a request head (parseFastHead) and, if it is one served
// here (with that token and body bound), fills fc.req and returns the
// Content-Length.
func (fc *fastConn) parse(head []byte, token string, bodyMax int64) (length int, ok bool) {
	host, length, ok := parseFastHead(head, token, bodyMax)
	if !ok {
		return 0, false
	}
	r := &fc.req
	r.Method, r.Proto, r.ProtoMajor, r.ProtoMinor = http.MethodPost, "HTTP/1.1", 1, 1
	fc.url = url.URL{Path: "/v1/tasks"}
	if string(host) != r.Host {
		r.Host = string(host)
	}
	clear(r.Header)
	return length, true
}

// parseFastHead reads a request head (lines ended by CRLF, the last one's
// included) and reports whether it is one served here (see FastListener):
// with token set, it must carry it. It returns the Host and the
// Content-Length. What it accepts, net/http reads alike (FuzzParseFastHead).
func parseFastHead(head []byte, token string, bodyMax int64) (host []byte, length int, ok bool) {
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	if string(line) != "POST /v1/tasks HTTP/1.1" {
		return nil, 0, false
	}
	var auth []byte
	length = -1
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		k, v, found := bytes.Cut(line, []byte(":"))
		if !found || !validFieldName(k) || !validFieldValue(v) {
			return nil, 0, false
		}
		v = bytes.Trim(v, " \t")
		switch {
		case asciiFold(k, "host"):
			if host != nil || !validHost(v) {
				return nil, 0, false
			}
			host = v
		case asciiFold(k, "content-length"):
			if length >= 0 || len(v) == 0 || len(v) > 9 {
				return nil, 0, false
			}
			n := 0
			for _, c := range v {
				if c < '0' || c > '9' {
					return nil, 0, false
				}
				n = n*10 + int(c-'0')
			}
			if int64(n) > bodyMax {
				return nil, 0, false
			}
			length = n
		case asciiFold(k, "authorization"):
			if auth != nil {
				return nil, 0, false
			}
			auth = v
		case asciiFold(k, "connection"):
			if !asciiFold(v, "keep-alive") {
				return nil, 0, false
			}
		case asciiFold(k, "transfer-encoding"), asciiFold(k, "expect"), asciiFold(k, "upgrade"),
			asciiFold(k, "te"), asciiFold(k, "trailer"):
			return nil, 0, false
		}
	}
	if host == nil || length < 0 {
		return nil, 0, false
	}
	if token != "" {
		// The admin token only: any other answer (401, 403, a worker
		// token's refusal) is net/http's.
		got, ok := bearerToken(string(auth))
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			return nil, 0, false
		}
	}
	return host, length, true
}

// hasField reports whether the request head (as parseFastHead takes it)
// has a header line named name, ignoring ASCII case.
func hasField(head []byte, name string) bool {
	_, rest, _ := bytes.Cut(head, []byte("\r\n"))
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		if k, _, found := bytes.Cut(line, []byte(":")); found && bytes.EqualFold(k, []byte(name)) {
			return true
		}
	}
	return false
}

// asciiFold reports whether b equals the lower-case s, ignoring ASCII case.
func asciiFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(s) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// validFieldName: a token (RFC 9110), no spaces before the colon.
func validFieldName(k []byte) bool {
	if len(k) == 0 {
		return false
	}
	for _, c := range k {
		if c >= 0x80 || !tokenChar[c] {
			return false
		}
	}
	return true
}

var tokenChar = func() (t [128]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// validFieldValue: visible ASCII, spaces and tabs (no control bytes, no
// obsolete line folding, no bytes past ASCII: net/http decides those).
func validFieldValue(v []byte) bool {
	for _, c := range v {
		if (c < 0x20 && c != '\t') || c >= 0x7f {
			return false
		}
	}
	return true
}

// validHost: the characters of a host name, an IPv4 or bracketed IPv6
// address, and a port (net/http checks more; anything else goes there).
func validHost(h []byte) bool {
	if len(h) == 0 {
		return false
	}
	for _, c := range h {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '-', c == ':', c == '[', c == ']', c == '_':
		default:
			return false
		}
	}
	return true
}

// fastBody is the body of a request served here, read whole before its
// handler runs: submitTask takes its bytes as they are (they are the
// connection's buffer, valid until the handler returns; the spec decoded
// from them copies what it keeps).
type fastBody struct {
	bytes.Reader
	b []byte
}

func (*fastBody) Close() error { return nil }

// fastResponse is the http.ResponseWriter of a request served here: it
// keeps the answer to write it in one piece.
type fastResponse struct {
	h      http.Header
	status int
	buf    []byte // the body
	body   []byte // the request body's buffer, kept for the next request
	out    []byte // the whole response
}

func (w *fastResponse) reset() {
	clear(w.h)
	w.status = 0
	w.buf = w.buf[:0]
}

func (w *fastResponse) Header() http.Header { return w.h }

func (w *fastResponse) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *fastResponse) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.buf = append(w.buf, b...)
	return len(b), nil
}

// appendResponse appends the response as net/http writes it: the status
// line, the handler's header lines (sorted), Date, Content-Length, and
// Connection: close when the server is closing.
func (w *fastResponse) appendResponse(out []byte, closing bool) []byte {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(w.status), 10)
	out = append(out, ' ')
	out = append(out, http.StatusText(w.status)...)
	out = append(out, "\r\n"...)
	keys := make([]string, 0, 4)
	for k := range w.h {
		if k != "Content-Length" && k != "Date" && k != "Connection" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range w.h[k] {
			out = append(out, k...)
			out = append(out, ": "...)
			out = append(out, v...)
			out = append(out, "\r\n"...)
		}
	}
	out = append(out, "Date: "...)
	out = appendHTTPDate(out)
	out = append(out, "\r\nContent-Length: "...)
	out = strconv.AppendInt(out, int64(len(w.buf)), 10)
	out = append(out, "\r\n"...)
	if closing {
		out = append(out, "Connection: close\r\n"...)
	}
	out = append(out, "\r\n"...)
	return append(out, w.buf...)
}

// httpDate caches the Date header's value, formatted once a second.
var httpDate struct {
	mu   sync.Mutex
	sec  int64
	text []byte
}

func appendHTTPDate(out []byte) []byte {
	now := time.Now()
	httpDate.mu.Lock()
	if s := now.Unix(); s != httpDate.sec {
		httpDate.sec = s
		httpDate.text = now.UTC().AppendFormat(httpDate.text[:0], http.TimeFormat)
	}
	out = append(out, httpDate.text...)
	httpDate.mu.Unlock()
	return out
}
