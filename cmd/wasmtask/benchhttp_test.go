package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
)

// TestViewIDState: the lean client reads a view's id and state from the
// server's indented JSON, never from a nested member or a label, and falls
// back to a full decode for JSON written otherwise.
func TestViewIDState(t *testing.T) {
	for _, tc := range []struct {
		name, body, id, state string
		wantErr               bool
	}{
		{name: "server's view", body: "{\n  \"id\": \"T1\",\n  \"handler\": \"h\",\n  \"state\": \"pending\",\n  \"runs\": [\n    {\n      \"id\": \"T1#1\",\n      \"state\": \"ready\"\n    }\n  ]\n}\n",
			id: "T1", state: "pending"},
		{name: "nested members first", body: "{\n  \"runs\": [\n    {\n      \"id\": \"T1#1\",\n      \"state\": \"ready\"\n    }\n  ],\n  \"labels\": {\n    \"state\": \"x\"\n  },\n  \"state\": \"completed\",\n  \"id\": \"T2\"\n}\n",
			id: "T2", state: "completed"},
		{name: "compact JSON", body: `{"runs":[{"id":"T1#1","state":"ready"}],"id":"T3","state":"failed"}`, id: "T3", state: "failed"},
		{name: "escaped id", body: "{\n  \"id\": \"a\\u0062\",\n  \"state\": \"pending\"\n}", id: "ab", state: "pending"},
		{name: "not JSON", body: "<html>", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, state, err := viewIDState([]byte(tc.body))
			if (err != nil) != tc.wantErr || id != tc.id || state != tc.state {
				t.Errorf("viewIDState = %q, %q, %v; want %q, %q, error %v", id, state, err, tc.id, tc.state, tc.wantErr)
			}
		})
	}
}

// TestBenchHTTP: the lean client keeps its connection across requests,
// sends the token and the body, reads chunked and sized answers, resends
// a 429 after its Retry-After, turns other errors into *api.Error, and
// dials again after the server closed the connection.
func TestBenchHTTP(t *testing.T) {
	var busy atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer sesame" {
			w.WriteHeader(401)
			io.WriteString(w, `{"error": {"code": "unauthorized", "message": "missing or wrong bearer token"}}`)
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set(api.IndexHeader, "7") // as a cluster node answers
		switch r.URL.Path {
		case "/index":
			fmt.Fprintf(w, "min %s", r.Header.Get(api.MinIndexHeader))
		case "/echo":
			fmt.Fprintf(w, "%s %s", r.Method, body)
		case "/chunked":
			for i := range 3 {
				fmt.Fprintf(w, "part%d ", i)
				w.(http.Flusher).Flush()
			}
		case "/busy":
			if busy.Add(1) == 1 {
				w.Header().Set("Retry-After", "0")
				w.WriteHeader(429)
				io.WriteString(w, `{"error": {"code": "busy", "message": "try again"}}`)
				return
			}
			io.WriteString(w, "done")
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "closing")
		default:
			w.WriteHeader(404)
			io.WriteString(w, `{"error": {"code": "not_found", "message": "no such route"}}`)
		}
	}))
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	cl := api.NewClient(srv.URL, "sesame")
	b, err := newBenchHTTP(cl)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	ctx := context.Background()
	for _, tc := range []struct {
		name, method, path, body string
		wantStatus               int
		want                     string
		wantCode                 string
	}{
		{name: "post", method: "POST", path: "/echo", body: `{"a": 1}`, wantStatus: 200, want: `POST {"a": 1}`},
		{name: "index sent back", method: "GET", path: "/index", wantStatus: 200, want: "min 7"},
		{name: "get", method: "GET", path: "/echo", wantStatus: 200, want: "GET "},
		{name: "chunked", method: "GET", path: "/chunked", wantStatus: 200, want: "part0 part1 part2 "},
		{name: "busy then done", method: "POST", path: "/busy", body: "{}", wantStatus: 200, want: "done"},
		{name: "error", method: "GET", path: "/nope", wantStatus: 404, wantCode: "not_found"},
		{name: "closed by the server", method: "GET", path: "/close", wantStatus: 200, want: "closing"},
		{name: "after the close", method: "GET", path: "/echo", wantStatus: 200, want: "GET "},
		{name: "large body", method: "POST", path: "/echo", body: strings.Repeat("x", 100<<10), wantStatus: 200, want: "POST " + strings.Repeat("x", 100<<10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			status, out, err := b.do(ctx, tc.method, tc.path, body, nil)
			if status != tc.wantStatus {
				t.Fatalf("status %d (%v), want %d", status, err, tc.wantStatus)
			}
			if tc.wantCode != "" {
				var e *api.Error
				if !errors.As(err, &e) || e.Code != tc.wantCode || e.Status != tc.wantStatus {
					t.Fatalf("error %v, want an *api.Error %s", err, tc.wantCode)
				}
				return
			}
			if err != nil || string(out) != tc.want {
				t.Fatalf("answer %.80q, %v; want %.80q", out, err, tc.want)
			}
		})
	}
	if n := len(b.idle); n != 1 {
		t.Errorf("%d idle connections after requests one at a time, want 1", n)
	}

	// An idle connection is checked before it is used: kept while open,
	// dropped once the server closed it.
	staleAfter = 0
	defer func() { staleAfter = time.Second }()
	before := conns.Load()
	if status, _, err := b.do(ctx, "GET", "/echo", nil, nil); status != 200 || conns.Load() != before {
		t.Errorf("an open idle connection checked: %d %v, %d connections, want the same one", status, err, conns.Load()-before)
	}
	if len(b.idle) == 1 {
		b.idle[0].c.(interface{ CloseRead() error }).CloseRead() // as if the server had closed it
	}
	if status, out, err := b.do(ctx, "POST", "/echo", []byte("again"), nil); status != 200 || string(out) != "POST again" {
		t.Errorf("after the server closed the idle connection: %d %q %v", status, out, err)
	}

	// A wrong token: the server's 401 as an *api.Error.
	bad, _ := newBenchHTTP(api.NewClient(srv.URL, "wrong"))
	defer bad.close()
	var e *api.Error
	if _, _, err := bad.do(ctx, "GET", "/echo", nil, nil); !errors.As(err, &e) || e.Code != "unauthorized" {
		t.Errorf("wrong token: %v, want unauthorized", err)
	}
	// Nobody listening: unreachable.
	srv.Close()
	gone, _ := newBenchHTTP(api.NewClient(srv.URL, ""))
	if _, _, err := gone.do(ctx, "GET", "/echo", nil, nil); !api.IsUnreachable(err) {
		t.Errorf("closed server: %v, want unreachable", err)
	}
}

// TestReadResponseHead: the lean client's response parser keeps the
// status and the fields it acts on, whatever their case, skips an interim
// 1xx answer and refuses a malformed head.
func TestReadResponseHead(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		want       responseHead
		wantErr    bool
	}{
		{name: "sized", head: "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 12\r\nX-Wasmtask-Index: 42\r\n\r\n",
			want: responseHead{status: 201, length: 12, index: 42}},
		{name: "lower-case fields", head: "HTTP/1.1 429 Too Many Requests\r\ncontent-length: 3\r\nretry-after: 2\r\nconnection: close\r\n\r\n",
			want: responseHead{status: 429, length: 3, close: true, retryAfter: 2 * time.Second}},
		{name: "chunked", head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
			want: responseHead{status: 200, length: -1, chunked: true}},
		{name: "HTTP/1.0 closes", head: "HTTP/1.0 200 OK\nContent-Length: 0\n\n",
			want: responseHead{status: 200, length: 0, close: true}},
		{name: "interim 100 skipped", head: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n",
			want: responseHead{status: 200, length: 1}},
		{name: "not HTTP", head: "<html>\r\n\r\n", wantErr: true},
		{name: "bad length", head: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", wantErr: true},
		{name: "cut short", head: "HTTP/1.1 200 OK\r\nContent-Len", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readResponseHead(bufio.NewReader(strings.NewReader(tc.head)))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("readResponseHead = %+v, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("readResponseHead = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// TestPollPause: the throughput scenario polls less often while much is
// left and at least every 1 ms near the end, never overshooting half of
// what the rate so far says is left.
func TestPollPause(t *testing.T) {
	for _, tc := range []struct {
		name    string
		done, n int
		elapsed time.Duration
		want    time.Duration
	}{
		{name: "nothing done yet", done: 0, n: 100, elapsed: time.Second, want: 2 * time.Millisecond},
		{name: "half done", done: 50, n: 100, elapsed: 10 * time.Millisecond, want: 5 * time.Millisecond},
		{name: "much left", done: 10, n: 100, elapsed: time.Second, want: 20 * time.Millisecond},
		{name: "almost done", done: 99, n: 100, elapsed: 10 * time.Millisecond, want: time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pollPause(tc.done, tc.n, tc.elapsed); got != tc.want {
				t.Errorf("pollPause(%d, %d, %v) = %v, want %v", tc.done, tc.n, tc.elapsed, got, tc.want)
			}
		})
	}
}

// TestRunCountDoneSince: a scenario ends when its tasks are final, also
// past the engine's bound on retained final tasks, where the final count
// stops growing (a 200k-task bench against the default 100k bound waited
// forever).
func TestRunCountDoneSince(t *testing.T) {
	for _, tc := range []struct {
		name      string
		base, now runCount
		n         int
		want      bool
	}{
		{name: "all final, nothing dropped", base: runCount{final: 10}, now: runCount{final: 110}, n: 100, want: true},
		{name: "some still open", base: runCount{final: 10}, now: runCount{final: 90, open: 20}, n: 100, want: false},
		{name: "final count capped by retention", base: runCount{}, now: runCount{final: 100000}, n: 200000, want: true},
		{name: "capped, some still open", base: runCount{}, now: runCount{final: 100000, open: 5}, n: 200000, want: false},
		{name: "open work before the scenario", base: runCount{open: 3}, now: runCount{final: 100000, open: 3}, n: 200000, want: true},
		{name: "open work before, one of ours left", base: runCount{open: 3}, now: runCount{final: 100000, open: 4}, n: 200000, want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.now.doneSince(tc.base, tc.n); got != tc.want {
				t.Errorf("%+v.doneSince(%+v, %d) = %v, want %v", tc.now, tc.base, tc.n, got, tc.want)
			}
		})
	}
}
