package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
)

// The remote worker side of the client (wasmtask worker uses it; see
// workers.go for the protocol).

// WorkerLease asks for up to req.Max attempts, waiting up to req.WaitMs.
func (c *Client) WorkerLease(ctx context.Context, req LeaseRequest) (LeaseResponse, error) {
	var out LeaseResponse
	_, err := c.doJSON(ctx, "POST", "/v1/workers/lease", req, &out)
	return out, err
}

// WorkerHeartbeat renews leases. A 409 (no lease named is live) is an
// *Error with code conflict: every lease named is lost.
func (c *Client) WorkerHeartbeat(ctx context.Context, req HeartbeatRequest) (HeartbeatResponse, error) {
	var out HeartbeatResponse
	_, err := c.doJSON(ctx, "POST", "/v1/workers/heartbeat", req, &out)
	return out, err
}

// WorkerResults reports finished attempts. Each result's status says
// whether it was applied; when none was (409) every status is conflict,
// returned with the *Error (code conflict) that says why.
func (c *Client) WorkerResults(ctx context.Context, req ResultRequest) (ResultResponse, error) {
	var out ResultResponse
	_, err := c.doJSON(ctx, "POST", "/v1/workers/result", req, &out)
	var e *Error
	if errors.As(err, &e) && e.Status == 409 {
		for _, r := range req.Results {
			out.Results = append(out.Results, ResultStatus{Lease: r.Lease, Status: "conflict", Error: e.Message})
		}
	}
	return out, err
}

// Workers lists the server's remote workers.
func (c *Client) Workers(ctx context.Context) (WorkerList, error) {
	var out WorkerList
	_, err := c.doJSON(ctx, "GET", "/v1/workers", nil, &out)
	return out, err
}

// Module fetches a stored module by version (sha256:<hex>) and checks that
// its bytes hash to it.
func (c *Client) Module(ctx context.Context, version string) ([]byte, error) {
	var body []byte
	if _, err := c.do(ctx, "GET", "/v1/modules/"+url.PathEscape(version), nil, "", &body); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != version {
		return nil, fmt.Errorf("module %s from %s: its %d bytes hash to %s (damaged in transit?); not used", version, c.BaseURL, len(body), got)
	}
	return body, nil
}
