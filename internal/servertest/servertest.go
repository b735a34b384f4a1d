// Package servertest starts a wasmtask server in the test's process: a
// host, a plugin registry and an engine on t.TempDir(), the HTTP API over
// httptest, and the echo module (host/testdata/echo.wasm) deployed as
// "echo"; with Options.Remote its attempts go through a Broker, to remote
// workers. The tests of api and worker start their servers with it (three
// copies of the same setup before). Only tests import it.
package servertest

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/host"
	"github.com/wasmtask/wasmtask/plugins"
)

// Options configure Start; zero values are defaults.
type Options struct {
	// API is the server's config; Engine and Plugins are filled in,
	// Broker with Remote, Logger when nil (a discarding one).
	API api.Config
	// Engine changes the engine's config (Workers is 2 without Remote,
	// else max(LocalWorkers, 1)).
	Engine func(*dispatch.Config)
	// Remote: attempts go through a Broker, to remote workers, and to
	// LocalWorkers of the server's own; LeaseTimeout is the broker's.
	Remote       bool
	LocalWorkers int
	LeaseTimeout time.Duration
	// Wrap, if not nil, wraps the API's handler (a test's middleware).
	Wrap func(http.Handler) http.Handler
}

// Server is a started server; everything is closed when the test ends.
type Server struct {
	HTTP   *httptest.Server
	API    *api.Server
	Engine *dispatch.Engine
	Plugin *plugins.Registry
	Broker *api.Broker // with Options.Remote
	// Client talks to HTTP with Options.API.Token.
	Client *api.Client
	// Echo is the version of the echo plugin.
	Echo string
}

// Discard is a logger that writes nothing.
var Discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// Start starts a server.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	ctx := context.Background()
	h, err := host.New(ctx, host.Config{Logger: Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	reg, err := plugins.Open(ctx, filepath.Join(t.TempDir(), "plugins"), h, plugins.Options{Logger: Discard})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Plugin: reg}
	ecfg := dispatch.Config{Dir: t.TempDir(), Executor: host.NewExecutor(h, reg.Resolve), ValidateHandler: reg.Check, Workers: 2, Logger: Discard}
	if opts.Remote {
		s.Broker = api.NewBroker(api.BrokerConfig{Local: ecfg.Executor, LocalWorkers: opts.LocalWorkers, Plugins: reg,
			LeaseTimeout: opts.LeaseTimeout, Logger: Discard})
		t.Cleanup(s.Broker.Close)
		ecfg.Executor, ecfg.Runnable, ecfg.Workers = s.Broker, s.Broker.Runnable, max(opts.LocalWorkers, 1)
	}
	if opts.Engine != nil {
		opts.Engine(&ecfg)
	}
	if s.Engine, err = dispatch.Open(ecfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Engine.Close() })
	if s.Broker != nil {
		s.Broker.Attach(s.Engine)
	}
	res, err := reg.Deploy(ctx, "echo", Module(t, "echo"), nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	s.Echo = res.Version
	cfg := opts.API
	cfg.Engine, cfg.Plugins = s.Engine, reg
	if s.Broker != nil {
		cfg.Broker = s.Broker
	}
	if cfg.Logger == nil {
		cfg.Logger = Discard
	}
	s.API = api.New(cfg)
	var handler http.Handler = s.API
	if opts.Wrap != nil {
		handler = opts.Wrap(handler)
	}
	s.HTTP = httptest.NewServer(handler)
	t.Cleanup(s.HTTP.Close)
	s.Client = api.NewClient(s.HTTP.URL, cfg.Token)
	return s
}

// Module reads host/testdata/NAME.wasm (from any package's tests).
func Module(t testing.TB, name string) []byte {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "host", "testdata", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
