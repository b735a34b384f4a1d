package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tlsCert and tlsKey are a self-signed certificate for 127.0.0.1 that
// TestMain writes; every client of the suite trusts it. With
// WASMTASK_E2E_TLS=1 every server of the suite serves HTTPS with it
// (make e2e-tls), so the whole suite runs over TLS.
var tlsCert, tlsKey string

// allTLS reports whether WASMTASK_E2E_TLS=1 asks for HTTPS everywhere.
func allTLS() bool { return os.Getenv("WASMTASK_E2E_TLS") == "1" }

// writeTestCert writes a self-signed ECDSA certificate for 127.0.0.1 and
// localhost into dir and makes the default HTTP transport trust it.
func writeTestCert(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "wasmtask e2e"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	tlsCert, tlsKey = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(tlsCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(tlsKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	http.DefaultTransport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: pool}
	return nil
}

// TestTLS: with --tls-cert/--tls-key the server speaks HTTPS only; the CLI
// reaches it with --ca (or WASMTASK_CA), the Go client with TrustCA, and a
// client that does not trust the certificate cannot reach it.
func TestTLS(t *testing.T) {
	s := startServer(t, serverOpts{tls: true, token: "s3cret"})
	if !strings.HasPrefix(s.URL, "https://") {
		t.Fatalf("the server logged %q, want an https:// address", s.URL)
	}
	s.deploy("noop", module(t, "noop"))

	t.Run("CLI with --ca", func(t *testing.T) {
		r := runCLI(t, []string{"WASMTASK_CA="}, "submit", "noop", "--input", "x", "--wait",
			"--server", s.URL, "--token", "s3cret", "--ca", tlsCert)
		if r.code != 0 || !strings.Contains(r.stdout, "completed") {
			t.Fatalf("submit over TLS: %s", r)
		}
	})
	t.Run("CLI without the CA", func(t *testing.T) {
		r := runCLI(t, []string{"WASMTASK_CA="}, "list", "--server", s.URL, "--token", "s3cret")
		if r.code != 3 || !strings.Contains(r.stderr, "certificate") {
			t.Fatalf("want exit 3 naming the certificate, got %s", r)
		}
	})
	t.Run("CLI with a CA file that is not PEM", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "ca.pem")
		os.WriteFile(bad, []byte("not a certificate"), 0o600)
		r := runCLI(t, nil, "list", "--server", s.URL, "--token", "s3cret", "--ca", bad)
		if r.code != 2 || !strings.Contains(r.stderr, "--ca") || !strings.Contains(r.stderr, bad) {
			t.Fatalf("want exit 2 naming --ca and the file, got %s", r)
		}
	})
	t.Run("plain HTTP to the TLS port", func(t *testing.T) {
		resp, err := http.Get("http://" + strings.TrimPrefix(s.URL, "https://") + "/v1/tasks")
		if err == nil {
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("plain HTTP got %d, want 400 (the TLS server answers a plain request with 400)", resp.StatusCode)
			}
		}
	})
	t.Run("Go client", func(t *testing.T) {
		v := s.do("POST", "/v1/tasks", map[string]any{"handler": "noop", "input": "y"})
		if v.status != 201 {
			t.Fatalf("submit over TLS: HTTP %d %s", v.status, v.body)
		}
		s.waitFinal(v.view(t).ID, 30*time.Second)
	})
}

// TestServeNetworkGuards: serve refuses a non-loopback address without a
// token (naming --token and --insecure), and half a TLS pair, before it
// touches the data dir's engine.
func TestServeNetworkGuards(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"all interfaces without a token", []string{"--addr", "0.0.0.0:0"}, []string{"refusing to listen", "0.0.0.0:0", "--token", "--insecure"}},
		{"empty host without a token", []string{"--addr", ":0"}, []string{"refusing to listen", "--token"}},
		{"cert without key", []string{"--tls-cert", "cert.pem"}, []string{"--tls-cert and --tls-key go together"}},
		{"unreadable cert", []string{"--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"}, []string{"--tls-cert /nonexistent/cert.pem", "no such file"}},
		{"cluster node with an unreadable --ca", []string{"--node-id", "n1", "--raft-addr", "127.0.0.1:0", "--bootstrap", "--ca", "/nonexistent/ca.pem"}, []string{"--ca: CA file", "/nonexistent/ca.pem", "no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"serve", "--data-dir", t.TempDir()}, tc.args...)
			if !strings.Contains(strings.Join(tc.args, " "), "--addr") {
				args = append(args, "--addr", "127.0.0.1:0")
			}
			r := runCLI(t, nil, args...)
			if r.code != 2 {
				t.Fatalf("want exit 2, got %s", r)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, r.stderr)
				}
			}
		})
	}
}

// TestWaitOutlivesWriteTimeout: a long poll gets its own write deadline, so
// a short --write-timeout does not cut a wait that is longer.
func TestWaitOutlivesWriteTimeout(t *testing.T) {
	s := startServer(t, serverOpts{extra: []string{"--write-timeout", "2s"}})
	s.deploy("noop", module(t, "noop"))
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	r := s.do("POST", "/v1/tasks", map[string]any{"id": "later", "handler": "noop", "input": "x", "not_before": later})
	if r.status != 201 {
		t.Fatalf("submit: HTTP %d %s", r.status, r.body)
	}
	start := time.Now()
	w := s.do("GET", "/v1/tasks/later/wait?timeout=4s", nil)
	if w.status != 200 || w.view(t).State != "pending" {
		t.Fatalf("wait past the write timeout: HTTP %d %s", w.status, w.body)
	}
	if d := time.Since(start); d < 4*time.Second {
		t.Fatalf("the wait returned after %v, before its timeout", d)
	}
}

// TestMaxConns: --max-conns bounds the connections served at once; one more
// waits until a served one closes.
func TestMaxConns(t *testing.T) {
	s := startServer(t, serverOpts{extra: []string{"--max-conns", "2"}})
	addr := strings.TrimPrefix(strings.TrimPrefix(s.URL, "https://"), "http://")
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	time.Sleep(200 * time.Millisecond) // let the server accept both
	var tlsConfig *tls.Config
	if c := http.DefaultTransport.(*http.Transport).TLSClientConfig; c != nil {
		// The suite's trust, without the h2 that DefaultTransport adds to
		// it once used: this transport speaks HTTP/1.1 only, and read the
		// server's HTTP/2 frames as a malformed answer (WASMTASK_E2E_TLS=1).
		tlsConfig = c.Clone()
		tlsConfig.NextProtos = nil
	}
	get := func(timeout time.Duration) error {
		cl := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: tlsConfig}}
		resp, err := cl.Get(s.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(500 * time.Millisecond); err == nil {
		t.Fatal("a third connection was served while two were held open with --max-conns 2")
	}
	held[0].Close()
	if err := get(5 * time.Second); err != nil {
		t.Fatalf("after one held connection closed: %v", err)
	}
}
