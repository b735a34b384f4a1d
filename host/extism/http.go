package extism

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// httpRequestSpec is the JSON a guest passes to http_request.
type httpRequestSpec struct {
	URL     string            `json:"url"`
	Method  string            `json:"method"`
	Headers map[string]string `json:"headers"`
}

// hostAllowed matches a host name against allowed_hosts: exact names or
// globs ("*.example.com", "*").
func (c *Call) hostAllowed(host string) bool {
	host = strings.ToLower(host)
	for _, pattern := range c.opts.AllowedHosts {
		pattern = strings.ToLower(pattern)
		if pattern == host {
			return true
		}
		if ok, err := path.Match(pattern, host); err == nil && ok {
			return true
		}
	}
	return false
}

func (c *Call) denied(rawURL, host string) error {
	if len(c.opts.AllowedHosts) == 0 {
		return &Fault{Kind: FaultDenied, Func: "http_request", Reason: fmt.Sprintf(
			"request to %s denied: this plugin may not use the network (list the host in extism.allowed_hosts in the manifest)", rawURL)}
	}
	return &Fault{Kind: FaultDenied, Func: "http_request", Reason: fmt.Sprintf(
		"request to %s denied: host %q is not in extism.allowed_hosts %q", rawURL, host, c.opts.AllowedHosts)}
}

// guardedClient is client with redirects allowed only to allowed hosts.
func (c *Call) guardedClient(client *http.Client) *http.Client {
	g := *client
	g.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		if !c.hostAllowed(req.URL.Hostname()) {
			return c.denied(req.URL.String(), req.URL.Hostname())
		}
		return nil
	}
	return &g
}

// httpRequest performs an allowed request within HTTPTimeout and
// HTTPMaxBytes; it returns the body as a block (0 when empty).
func (c *Call) httpRequest(ctx context.Context, reqOff, bodyOff uint64) (uint64, error) {
	c.status, c.headers = 0, nil
	var spec httpRequestSpec
	if err := json.Unmarshal(c.k.bytes(reqOff), &spec); err != nil {
		return 0, &Fault{Kind: FaultABI, Func: "http_request", Reason: "the request is not valid JSON: " + err.Error()}
	}
	c.k.release(reqOff)
	u, err := url.Parse(spec.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return 0, &Fault{Kind: FaultDenied, Func: "http_request", Reason: fmt.Sprintf("request to %q denied: want an http or https URL", spec.URL)}
	}
	if !c.hostAllowed(u.Hostname()) {
		return 0, c.denied(spec.URL, u.Hostname())
	}
	var body io.Reader
	if bodyOff != 0 {
		body = bytes.NewReader(append([]byte(nil), c.k.bytes(bodyOff)...))
		c.k.release(bodyOff)
	}
	method := strings.ToUpper(spec.Method)
	if method == "" {
		method = http.MethodGet
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.HTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, spec.URL, body)
	if err != nil {
		return 0, &Fault{Kind: FaultABI, Func: "http_request", Reason: err.Error()}
	}
	for k, v := range spec.Headers {
		req.Header.Set(k, v)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		var f *Fault
		if errors.As(err, &f) {
			return 0, f // a redirect to a host that is not allowed
		}
		return 0, &Fault{Kind: FaultIO, Func: "http_request", Reason: fmt.Sprintf("%s %s: %v (timeout extism.http_timeout %s)", method, spec.URL, err, c.opts.HTTPTimeout)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.opts.HTTPMaxBytes+1))
	if err != nil {
		return 0, &Fault{Kind: FaultIO, Func: "http_request", Reason: fmt.Sprintf("%s %s: reading the response: %v", method, spec.URL, err)}
	}
	if int64(len(b)) > c.opts.HTTPMaxBytes {
		return 0, &Fault{Kind: FaultDenied, Func: "http_request", Reason: fmt.Sprintf(
			"%s %s: the response is larger than extism.http_max_bytes (%d bytes)", method, spec.URL, c.opts.HTTPMaxBytes)}
	}
	c.status = int32(resp.StatusCode)
	h := map[string]string{}
	for k, v := range resp.Header {
		h[strings.ToLower(k)] = strings.Join(v, ",")
	}
	c.headers = headersJSON(h)
	return c.k.put(b)
}
