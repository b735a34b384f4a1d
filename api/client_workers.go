package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sync"

	"github.com/wasmtask/wasmtask/plugins"
)

// The remote worker side of the client (wasmtask worker uses it; see
// workers.go for the protocol).

// WorkerLease asks for up to req.Max attempts, waiting up to req.WaitMs
// (and reports req.Results, if any).
func (c *Client) WorkerLease(ctx context.Context, req LeaseRequest) (LeaseResponse, error) {
	var body []byte
	if _, err := c.doJSON(ctx, "POST", "/v1/workers/lease", req, &body); err != nil {
		return LeaseResponse{}, err
	}
	out, manifests, ok := decodeLeaseResponse(body)
	if !ok {
		var wire struct {
			LeaseResponse
			Leases []struct {
				Lease
				Manifest json.RawMessage `json:"manifest,omitempty"`
			} `json:"leases"`
		}
		if err := json.Unmarshal(body, &wire); err != nil {
			return LeaseResponse{}, fmt.Errorf("decode POST /v1/workers/lease response: %w", err)
		}
		out, manifests = wire.LeaseResponse, nil
		if wire.Leases != nil {
			out.Leases = make([]Lease, len(wire.Leases))
		}
		for i, wl := range wire.Leases {
			out.Leases[i] = wl.Lease
			manifests = append(manifests, wl.Manifest)
		}
	}
	// Manifests decoded once per distinct JSON: every lease of a plugin
	// version carries the same one.
	for i, raw := range manifests {
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		m, err := c.manifests.decode(raw)
		if err != nil {
			return LeaseResponse{}, fmt.Errorf("decode POST /v1/workers/lease response: lease %s: manifest: %w", out.Leases[i].Lease, err)
		}
		out.Leases[i].Manifest, out.Leases[i].manifestJSON = m, raw
	}
	return out, nil
}

// ManifestJSON is the manifest as the server sent it (nil when the lease
// was not decoded by Client.WorkerLease): a key for the manifest that
// costs no encoding.
func (l *Lease) ManifestJSON() []byte { return l.manifestJSON }

// manifestsByJSON caches decoded manifests by their JSON (bounded: emptied
// when full). The manifests it returns are shared: read them only.
type manifestsByJSON struct {
	mu sync.Mutex
	m  map[string]*plugins.Manifest
}

func (c *manifestsByJSON) decode(raw []byte) (*plugins.Manifest, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.m[string(raw)]; ok {
		return m, nil
	}
	m := new(plugins.Manifest)
	if err := json.Unmarshal(raw, m); err != nil {
		return nil, err
	}
	if c.m == nil || len(c.m) >= maxCachedManifests {
		c.m = make(map[string]*plugins.Manifest)
	}
	c.m[string(raw)] = m
	return m, nil
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
