package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/wasmtask/wasmtask/api"
)

// benchHTTP is the lean HTTP/1.1 client of wasmtask bench's hot requests
// (submit, batch submit, wait): persistent connections, each used by one
// request at a time, requests written from prepared bytes in one write and
// responses read with http.ReadResponse. The bench client shares the
// machine with the server it measures: net/http's Transport (two
// goroutines per connection and a hand-off to each per request) and
// encoding/json's reflection cost it as much CPU per submit as a third of
// the server's. It measures the same thing: every submit is acknowledged
// (201 or 200) by the server once durable, every wait answers the task's
// final view.
type benchHTTP struct {
	addr    string      // host:port
	host    string      // the Host header
	tls     *tls.Config // nil: plain TCP
	auth    string      // "Authorization: Bearer ...\r\n" or ""
	timeout time.Duration
	// index, as api.Client's: the newest state sequence a cluster node
	// answered (X-Wasmtask-Index), sent back so that a follower answers a
	// wait with the task it was just given (read-your-writes).
	index *api.IndexTracker

	mu   sync.Mutex
	idle []*benchConn
}

type benchConn struct {
	c   net.Conn
	r   *bufio.Reader
	req []byte // the request being written
	// deadline: of reads and writes, set by once (see there).
	deadline time.Time
	idle     time.Time // since when it waits in benchHTTP.idle
}

// staleAfter: a connection idle longer is checked before it is used, as
// the server may have closed it (--idle-timeout, a restart): a request
// written to it would fail, and a POST is not resent blindly.
var staleAfter = time.Second

// newBenchHTTP returns the lean client for cl's server.
func newBenchHTTP(cl *api.Client) (*benchHTTP, error) {
	u, err := url.Parse(cl.BaseURL)
	if err != nil {
		return nil, err
	}
	b := &benchHTTP{addr: u.Host, host: u.Host, timeout: 2 * time.Minute, index: cl.Index}
	if b.index == nil {
		b.index = new(api.IndexTracker)
	}
	switch u.Scheme {
	case "http":
		if u.Port() == "" {
			b.addr = net.JoinHostPort(u.Hostname(), "80")
		}
	case "https":
		if u.Port() == "" {
			b.addr = net.JoinHostPort(u.Hostname(), "443")
		}
		b.tls = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
		if t, ok := cl.HTTP.Transport.(*http.Transport); ok && t.TLSClientConfig != nil {
			b.tls = t.TLSClientConfig.Clone()
			if b.tls.ServerName == "" {
				b.tls.ServerName = u.Hostname()
			}
		}
	default:
		return nil, fmt.Errorf("server %s: want http:// or https://", cl.BaseURL)
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("server %s: a path prefix is not supported by bench", cl.BaseURL)
	}
	if cl.Token != "" {
		b.auth = "Authorization: Bearer " + cl.Token + "\r\n"
	}
	return b, nil
}

func (b *benchHTTP) get() (*benchConn, error) {
	for {
		b.mu.Lock()
		n := len(b.idle)
		if n == 0 {
			b.mu.Unlock()
			break
		}
		c := b.idle[n-1]
		b.idle = b.idle[:n-1]
		b.mu.Unlock()
		if time.Since(c.idle) < staleAfter || c.alive() {
			return c, nil
		}
		c.c.Close()
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	var c net.Conn
	var err error
	if b.tls != nil {
		c, err = tls.DialWithDialer(&d, "tcp", b.addr, b.tls)
	} else {
		c, err = d.Dial("tcp", b.addr)
	}
	if err != nil {
		return nil, &api.UnreachableError{URL: b.host, Err: err}
	}
	return &benchConn{c: c, r: bufio.NewReaderSize(c, 16<<10)}, nil
}

// alive reports whether an idle connection is still open: nothing to
// read (the server sends nothing unasked) and no end of stream.
func (c *benchConn) alive() bool {
	if c.r.Buffered() > 0 {
		return false
	}
	// A deadline already past would fail the read before it looks at the
	// socket: a closed one answers at once, an open one within 1 ms.
	c.c.SetReadDeadline(time.Now().Add(time.Millisecond))
	c.deadline = time.Time{} // the next request sets its own
	_, err := c.r.Peek(1)
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (b *benchHTTP) put(c *benchConn) {
	c.idle = time.Now()
	b.mu.Lock()
	b.idle = append(b.idle, c)
	b.mu.Unlock()
}

// close closes the idle connections.
func (b *benchHTTP) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.idle {
		c.c.Close()
	}
	b.idle = nil
}

// do sends one request and returns the status and the body (appended to
// buf). A response other than 2xx is an *api.Error; 429 is resent after
// its Retry-After, as api.Client does.
func (b *benchHTTP) do(ctx context.Context, method, path string, body, buf []byte) (int, []byte, error) {
	for try := 0; ; try++ {
		status, out, retry, err := b.once(method, path, body, buf)
		if err == nil && status >= 400 {
			e := decodeAPIError(status, out)
			if status == http.StatusTooManyRequests && try < 30 {
				select {
				case <-time.After(min(max(retry, 100*time.Millisecond), 10*time.Second)):
					continue
				case <-ctx.Done():
					return status, out, ctx.Err()
				}
			}
			return status, out, e
		}
		if err == nil && ctx.Err() != nil {
			err = ctx.Err()
		}
		return status, out, err
	}
}

func (b *benchHTTP) once(method, path string, body, buf []byte) (status int, out []byte, retryAfter time.Duration, err error) {
	c, err := b.get()
	if err != nil {
		return 0, buf, 0, err
	}
	c.req = append(c.req[:0], method...)
	c.req = append(c.req, ' ')
	c.req = append(c.req, path...)
	c.req = append(c.req, " HTTP/1.1\r\nHost: "...)
	c.req = append(c.req, b.host...)
	c.req = append(c.req, "\r\n"...)
	c.req = append(c.req, b.auth...)
	if v := b.index.Load(); v > 0 {
		c.req = append(c.req, api.MinIndexHeader+": "...)
		c.req = strconv.AppendUint(c.req, v, 10)
		c.req = append(c.req, "\r\n"...)
	}
	if body != nil {
		c.req = append(c.req, "Content-Type: application/json\r\nContent-Length: "...)
		c.req = strconv.AppendInt(c.req, int64(len(body)), 10)
		c.req = append(c.req, "\r\n"...)
	}
	c.req = append(c.req, "\r\n"...)
	if len(body) < 64<<10 {
		c.req = append(c.req, body...)
		body = nil
	}
	fail := func(err error) (int, []byte, time.Duration, error) {
		c.c.Close()
		return 0, buf, 0, &api.UnreachableError{URL: b.host, Err: err}
	}
	// Each request gets between 3/4 of timeout and timeout (90 s of 2
	// minutes: room for a wait's 1 m long-poll): resetting the deadline
	// for every request was 4 % of the client's CPU per submit.
	if now := time.Now(); c.deadline.Sub(now) < b.timeout*3/4 {
		c.deadline = now.Add(b.timeout)
		c.c.SetDeadline(c.deadline)
	}
	if _, err := c.c.Write(c.req); err != nil {
		return fail(err)
	}
	if len(body) > 0 {
		if _, err := c.c.Write(body); err != nil {
			return fail(err)
		}
	}
	h, err := readResponseHead(c.r)
	if err != nil {
		return fail(err)
	}
	out = buf[:0]
	switch {
	case h.chunked:
		if out, err = appendAll(out, httputil.NewChunkedReader(c.r)); err != nil {
			return fail(err)
		}
		for { // the trailer, up to its empty line
			line, err := readLine(c.r)
			if err != nil {
				return fail(err)
			}
			if len(line) == 0 {
				break
			}
		}
	case h.length >= 0:
		n := len(out)
		out = slices.Grow(out, int(h.length))[:n+int(h.length)]
		if _, err := io.ReadFull(c.r, out[n:]); err != nil {
			return fail(err)
		}
	case h.status == http.StatusNoContent || h.status == http.StatusNotModified:
	default: // no length: the body runs to the end of the connection
		h.close = true
		if out, err = appendAll(out, c.r); err != nil {
			return fail(err)
		}
	}
	if h.close {
		c.c.Close()
	} else {
		b.put(c)
	}
	if h.index > 0 {
		b.index.Observe(h.index)
	}
	return h.status, out, h.retryAfter, nil
}

// responseHead is what the lean client needs of a response's head.
type responseHead struct {
	status     int
	length     int64 // Content-Length, -1 if not sent
	chunked    bool
	close      bool // the server closes the connection after this response
	index      uint64
	retryAfter time.Duration
}

// readResponseHead reads an HTTP/1.x status line and header fields,
// keeping only the ones the bench acts on (http.ReadResponse builds a
// header map and a body reader for each response: a fifth of the lean
// client's CPU per submit).
func readResponseHead(r *bufio.Reader) (responseHead, error) {
	h := responseHead{length: -1}
	line, err := readLine(r)
	if err != nil {
		return h, err
	}
	proto, rest, ok1 := bytes.Cut(line, []byte{' '})
	code, _, _ := bytes.Cut(rest, []byte{' '})
	st, err := strconv.Atoi(string(code))
	if !ok1 || !bytes.HasPrefix(proto, []byte("HTTP/1.")) || err != nil || len(code) != 3 {
		return h, fmt.Errorf("malformed HTTP status line %q", line)
	}
	h.status = st
	h.close = string(proto) == "HTTP/1.0"
	for {
		line, err := readLine(r)
		if err != nil {
			return h, err
		}
		if len(line) == 0 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			return h, fmt.Errorf("malformed HTTP header line %q", line)
		}
		v = bytes.TrimSpace(v)
		switch {
		case asciiEqualFold(k, "Content-Length"):
			if h.length, err = strconv.ParseInt(string(v), 10, 64); err != nil || h.length < 0 {
				return h, fmt.Errorf("malformed Content-Length %q", v)
			}
		case asciiEqualFold(k, "Transfer-Encoding"):
			h.chunked = asciiEqualFold(v, "chunked")
		case asciiEqualFold(k, "Connection"):
			h.close = asciiEqualFold(v, "close")
		case asciiEqualFold(k, api.IndexHeader):
			h.index, _ = strconv.ParseUint(string(v), 10, 64)
		case asciiEqualFold(k, "Retry-After"):
			if s, err := strconv.Atoi(string(v)); err == nil {
				h.retryAfter = time.Duration(s) * time.Second
			}
		}
	}
	if h.chunked {
		h.length = -1
	}
	if h.status/100 == 1 { // 1xx: an interim answer (not asked for), the real one follows
		return readResponseHead(r)
	}
	return h, nil
}

// readLine reads one CRLF- (or LF-) terminated line, without it; the
// slice is valid until the next read from r.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, errors.New("an HTTP response header line longer than 16 KiB")
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

func asciiEqualFold[T []byte | string](a T, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(b) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// appendAll appends what r has to read to out.
func appendAll(out []byte, r io.Reader) ([]byte, error) {
	w := bytes.NewBuffer(out)
	_, err := io.Copy(w, r)
	return w.Bytes(), err
}

// decodeAPIError is the *api.Error of an error response's body.
func decodeAPIError(status int, body []byte) *api.Error {
	var wrap struct {
		Error *api.Error `json:"error"`
	}
	if json.Unmarshal(body, &wrap) == nil && wrap.Error != nil {
		wrap.Error.Status = status
		return wrap.Error
	}
	return &api.Error{Status: status, Code: http.StatusText(status), Message: fmt.Sprintf("HTTP %d: %.200s", status, body)}
}

// viewIDState reads a task view's id and state. The server writes them
// as top-level members, two spaces in (docs/http-api.md's indented JSON);
// a view written otherwise is decoded in full.
func viewIDState(body []byte) (id, state string, err error) {
	id, ok1 := topString(body, `"id": "`)
	state, ok2 := topString(body, `"state": "`)
	if ok1 && ok2 {
		return id, state, nil
	}
	var v struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return "", "", fmt.Errorf("decode a task view: %w", err)
	}
	return v.ID, v.State, nil
}

// topString finds a top-level member `key` (up to its opening quote) of
// an object indented by two spaces and returns its string value, if it
// has no escapes. A newline is escaped inside JSON strings, so "\n  " then
// the key only matches a member of the outer object.
func topString(body []byte, key string) (string, bool) {
	var pat [32]byte
	p := append(append(pat[:0], "\n  "...), key...)
	i := bytes.Index(body, p)
	if i < 0 {
		return "", false
	}
	rest := body[i+len(p):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || bytes.IndexByte(rest[:j], '\\') >= 0 {
		return "", false
	}
	return string(rest[:j]), true
}

// errNoResults: a batch answer without one result per task.
var errNoResults = errors.New("the batch answer does not have one result per task")

// specBody is the JSON of one task of the run (all are alike: the server
// names each); it counts the task as spec() does.
func (b *bench) specBody() []byte {
	b.specOnce.Do(func() {
		spec := api.TaskSpec{Handler: b.handler, Labels: map[string]string{benchLabel: b.run}}
		b.specJSON, _ = json.Marshal(spec)
	})
	b.tasks.Add(1)
	return b.specJSON
}

var benchBufs = sync.Pool{New: func() any { return new([]byte) }}

// submitLean submits k tasks through the lean client: one POST /v1/tasks,
// or a batch of k. Each must be acknowledged.
func (b *bench) submitLean(k int) error {
	bufp := benchBufs.Get().(*[]byte)
	defer benchBufs.Put(bufp)
	if k == 1 {
		status, out, err := b.lean.do(b.ctx, "POST", "/v1/tasks", b.specBody(), *bufp)
		*bufp = out
		if err == nil && status != http.StatusCreated && status != http.StatusOK {
			err = fmt.Errorf("POST /v1/tasks: HTTP %d", status)
		}
		return err
	}
	body := append([]byte(nil), `{"tasks": [`...)
	for i := range k {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, b.specBody()...)
	}
	body = append(body, "]}"...)
	_, out, err := b.lean.do(b.ctx, "POST", "/v1/tasks/batch", body, *bufp)
	*bufp = out
	if err != nil {
		return err
	}
	// Every result must say 201 (or 200, a duplicate): count them rather
	// than decode them all; anything else is decoded to say why.
	if bytes.Count(out, []byte(`"status": 201`)) == k {
		return nil
	}
	var res struct {
		Results []api.BatchResult `json:"results"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return fmt.Errorf("decode the batch answer: %w", err)
	}
	if len(res.Results) != k {
		return errNoResults
	}
	for _, r := range res.Results {
		if r.Error != nil {
			return r.Error
		}
		if r.Status != http.StatusCreated && r.Status != http.StatusOK {
			return fmt.Errorf("batch: a task answered %d", r.Status)
		}
	}
	return nil
}

// submitWaitPath submits and waits in one request (POST /v1/tasks?wait=),
// what a waiting client does; the wait is the same as GET .../wait's.
const submitWaitPath = "/v1/tasks?wait=1m0s"

// submitAndWaitLean is submitAndWait through the lean client.
func (b *bench) submitAndWaitLean(wait bool) (string, error) {
	bufp := benchBufs.Get().(*[]byte)
	defer benchBufs.Put(bufp)
	path := "/v1/tasks"
	if wait {
		path = submitWaitPath // a server without ?wait answers at once: then GET .../wait
	}
	status, out, err := b.lean.do(b.ctx, "POST", path, b.specBody(), *bufp)
	*bufp = out
	if err != nil {
		return "", err
	}
	if status != http.StatusCreated && status != http.StatusOK {
		return "", fmt.Errorf("POST /v1/tasks: HTTP %d", status)
	}
	id, state, err := viewIDState(out)
	if err != nil {
		return "", err
	}
	for wait && !isFinal(state) {
		_, out, err = b.lean.do(b.ctx, "GET", "/v1/tasks/"+url.PathEscape(id)+"/wait?timeout=1m0s", nil, *bufp)
		*bufp = out
		if err != nil {
			return id, err
		}
		if _, state, err = viewIDState(out); err != nil {
			return id, err
		}
	}
	if wait && state != "completed" {
		return id, errors.New("task " + id + " " + state)
	}
	return id, nil
}
