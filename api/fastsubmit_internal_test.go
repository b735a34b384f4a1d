package api

import (
	"bufio"
	"bytes"
	"net/http"
	"strconv"
	"testing"
)

// FuzzParseFastHead: whatever request head the fast submit path accepts
// (peekHead's line endings, then parseFastHead), net/http reads as the
// same request: POST /v1/tasks over HTTP/1.1 with that Host and
// Content-Length, kept alive, no Transfer-Encoding or Expect, and the
// token (when one is set) in its Authorization. The rest of the stream is
// the body. Everything else goes to net/http, so this is what keeps the
// two paths alike.
func FuzzParseFastHead(f *testing.F) {
	post := "POST /v1/tasks HTTP/1.1\r\nHost: h:7070\r\nAuthorization: Bearer tok\r\nContent-Length: 2\r\n\r\n{}"
	for _, s := range []string{
		post,
		"POST /v1/tasks HTTP/1.1\r\nhost:h\r\ncontent-length:\t0\r\nconnection: Keep-Alive\r\n\r\n",
		"POST /v1/tasks HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\nX-Empty:\r\n\r\n{}12345",
		"POST /v1/tasks HTTP/1.1\r\nHost: [::1]:80\r\nContent-Length: 2\r\nAuthorization: bearer   tok  \r\n\r\n{}",
		"POST /v1/tasks HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST /v1/tasks HTTP/1.1\r\nHost: h\r\n Content-Length: 2\r\n\r\n{}",
		"POST /v1/tasks HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
		"POST /v1/tasks HTTP/1.1\nHost: h\nContent-Length: 2\n\n{}",
		"POST /v1/tasks HTTP/1.1\r\nHost: h\r\nContent-Length: +2\r\n\r\n{}",
	} {
		f.Add([]byte(s), "tok")
		f.Add([]byte(s), "")
	}
	f.Fuzz(func(t *testing.T, stream []byte, token string) {
		end := bytes.Index(stream, []byte("\r\n\r\n"))
		if end < 0 || end+4 > fastHeadMax || bareLineEnd(stream[:end+4]) >= 0 {
			return // peekHead hands these to net/http
		}
		host, length, ok := parseFastHead(stream[:end+2], token, fastBodyMax)
		if !ok {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(stream)))
		if err != nil {
			t.Fatalf("the fast path accepted %q, net/http refuses it: %v", stream[:end+4], err)
		}
		var problems []string
		check := func(what string, got, want any) {
			if got != want {
				problems = append(problems, what+": net/http read "+strconv.Quote(toString(got))+", the fast path "+strconv.Quote(toString(want)))
			}
		}
		check("method", req.Method, "POST")
		check("path", req.URL.Path, "/v1/tasks")
		check("raw path", req.RequestURI, "/v1/tasks")
		check("proto", req.Proto, "HTTP/1.1")
		check("host", req.Host, string(host))
		check("content-length", req.ContentLength, int64(length))
		check("close", req.Close, false)
		check("transfer-encoding", len(req.TransferEncoding), 0)
		check("expect", req.Header.Get("Expect"), "")
		check("hosts", len(req.Header.Values("Host")), 0)
		if token != "" {
			got, ok := bearerToken(req.Header.Get("Authorization"))
			check("token", ok && got == token, true)
		}
		if len(problems) > 0 {
			t.Fatalf("head %q:\n%s", stream[:end+4], bytes.Join(toBytes(problems), []byte("\n")))
		}
	})
}

func toString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	case int:
		return strconv.Itoa(v)
	case bool:
		return strconv.FormatBool(v)
	}
	return "?"
}

func toBytes(s []string) [][]byte {
	out := make([][]byte, len(s))
	for i := range s {
		out[i] = []byte(s[i])
	}
	return out
}

func TestBareLineEnd(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"a\r\nb\r\n\r\n", -1},
		{"a\nb", 1},
		{"\n", 0},
		{"a\rb", 1},
		{"a\r", -1}, // its LF may come
		{"a\r\n\r", -1},
	} {
		if got := bareLineEnd([]byte(tc.in)); got != tc.want {
			t.Errorf("bareLineEnd(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
