package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/wasmtask/wasmtask/api"
	"golang.org/x/net/netutil"
)

// networkFlags are serve's flags for the listener: TLS, the guard against
// an open port without a token, HTTP timeouts and a connection limit.
func networkFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "tls-cert", EnvVars: []string{"WASMTASK_TLS_CERT"}, Usage: "serve HTTPS with this PEM certificate (chain) file; needs --tls-key"},
		&cli.StringFlag{Name: "tls-key", EnvVars: []string{"WASMTASK_TLS_KEY"}, Usage: "PEM private key of --tls-cert"},
		&cli.BoolFlag{Name: "insecure", Usage: "allow listening on a non-loopback address without --token (anyone who reaches the port can deploy code)"},
		&cli.DurationFlag{Name: "read-timeout", Value: 2 * time.Minute, Usage: "longest time to read a whole request, body included (a plugin deploy is the largest)"},
		&cli.DurationFlag{Name: "write-timeout", Value: time.Minute, Usage: "longest time to write a response (wait requests get their own timeout on top)"},
		&cli.DurationFlag{Name: "idle-timeout", Value: 2 * time.Minute, Usage: "how long an idle keep-alive connection stays open"},
		&cli.IntFlag{Name: "max-conns", Value: 4096, Usage: "connections served at once; more wait in the kernel's accept queue (0: no limit)"},
	}
}

// listener is what serve listens with: the raw listener (bounded), the
// scheme clients must use, and the http.Server settings that go with it.
type listener struct {
	net.Listener
	scheme string
	tls    *tls.Config
}

// checkAddr refuses, before the engine recovers, what listen would refuse
// after: a non-loopback --addr without a token, half a TLS pair.
func checkAddr(c *cli.Context) error {
	if (c.String("tls-cert") == "") != (c.String("tls-key") == "") {
		return fail(exitUsage, "--tls-cert and --tls-key go together: give both (PEM files) or neither")
	}
	if c.String("token") != "" || c.Bool("insecure") {
		return nil
	}
	host, _, err := net.SplitHostPort(c.String("addr"))
	if err != nil {
		return fail(exitUsage, "--addr %q: %v (want host:port, e.g. 127.0.0.1:7070)", c.String("addr"), err)
	}
	ips := []net.IP{net.ParseIP(host)}
	if host == "" {
		ips = []net.IP{net.IPv4zero}
	} else if ips[0] == nil {
		if ips, err = net.LookupIP(host); err != nil {
			return fail(exitUsage, "--addr %q: %v", c.String("addr"), err)
		}
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return refuseOpen(c.String("addr"), ip.String())
		}
	}
	return nil
}

func refuseOpen(addr, resolved string) error {
	return fail(exitUsage, "refusing to listen on %s (%s) without --token: anyone who can reach it could deploy "+
		"code and cancel work. Set --token or WASMTASK_TOKEN (and --tls-cert/--tls-key), listen on 127.0.0.1, "+
		"or pass --insecure to accept the risk", addr, resolved)
}

// listen opens --addr and applies the network flags. It refuses a
// non-loopback address without a token unless --insecure is set: a wasmtask
// server runs the code it is sent, so an open port without a token is remote
// code execution for anyone who can reach it.
func listen(c *cli.Context) (*listener, []string, error) {
	certFile, keyFile := c.String("tls-cert"), c.String("tls-key") // a half pair was refused by checkAddr
	var tlsConf *tls.Config
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, nil, fail(exitUsage, "--tls-cert %s / --tls-key %s: %v", certFile, keyFile, err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if c.Int("max-conns") < 0 {
		return nil, nil, fail(exitUsage, "--max-conns must be 0 (no limit) or more, got %d", c.Int("max-conns"))
	}
	addr := c.String("addr")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fail(exitFailed, "listen on %s: %v (is another wasmtask running? use --addr)", addr, err)
	}
	var warnings []string
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		switch {
		case c.String("token") == "" && !c.Bool("insecure"):
			ln.Close()
			return nil, nil, refuseOpen(addr, ln.Addr().String())
		case c.String("token") == "":
			warnings = append(warnings, "listening on a non-loopback address without --token (--insecure): anyone who can reach it can deploy code")
		case tlsConf == nil:
			warnings = append(warnings, "listening on a non-loopback address without TLS: the token crosses the network in clear text (set --tls-cert/--tls-key)")
		}
	}
	if n := c.Int("max-conns"); n > 0 {
		ln = netutil.LimitListener(ln, n)
	}
	l := &listener{Listener: ln, scheme: "http", tls: tlsConf}
	if tlsConf != nil {
		l.scheme = "https"
	}
	return l, warnings, nil
}

// httpServer returns the http.Server for h with the timeouts of the flags.
func (l *listener) httpServer(c *cli.Context, h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		TLSConfig:         l.tls,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       c.Duration("read-timeout"),
		WriteTimeout:      c.Duration("write-timeout"),
		IdleTimeout:       c.Duration("idle-timeout"),
		MaxHeaderBytes:    64 << 10,
	}
}

// serve serves hs on the listener, over TLS when it has a certificate.
func (l *listener) serve(hs *http.Server) error {
	if l.tls != nil {
		return hs.ServeTLS(l.Listener, "", "")
	}
	return hs.Serve(l.Listener)
}

// serveFast serves hs on l from a goroutine, its error on the channel
// returned; with --fast-submit on a plain listener, single submissions
// through the FastListener newFast makes (nil otherwise).
func (l *listener) serveFast(c *cli.Context, hs *http.Server, newFast func(net.Listener, api.FastTimeouts) *api.FastListener) (*api.FastListener, <-chan error) {
	serveErr := make(chan error, 1)
	if l.tls != nil || !c.Bool("fast-submit") {
		go func() { serveErr <- l.serve(hs) }()
		return nil, serveErr
	}
	fast := newFast(l.Listener, api.FastTimeouts{ReadHeader: hs.ReadHeaderTimeout, Read: hs.ReadTimeout, Write: hs.WriteTimeout, Idle: hs.IdleTimeout})
	go func() { serveErr <- hs.Serve(fast) }()
	return fast, serveErr
}

// url is the address clients use.
func (l *listener) url() string { return fmt.Sprintf("%s://%s", l.scheme, l.Addr()) }
