package api

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
)

// TrustCA makes the client accept servers whose certificate chains to the
// PEM certificates in caFile (for a self-signed or private CA), in addition
// to nothing else: with a CA file the system roots are not consulted. Without
// a call the system roots are used for https:// servers.
func (c *Client) TrustCA(caFile string) error {
	cfg, err := CAConfig(caFile)
	if err != nil {
		return err
	}
	var t *http.Transport
	if base, ok := c.HTTP.Transport.(*http.Transport); ok && base != nil {
		t = base.Clone()
	} else {
		t = http.DefaultTransport.(*http.Transport).Clone()
	}
	t.TLSClientConfig = cfg
	hc := *c.HTTP
	hc.Transport = t
	c.HTTP = &hc
	return nil
}

// CAConfig is the TLS configuration of a client that accepts the servers
// whose certificate chains to the PEM certificates in caFile, and no other.
func CAConfig(caFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it (want a file with -----BEGIN CERTIFICATE-----)", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
