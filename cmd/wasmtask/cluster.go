package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/cluster"
	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/plugins"
)

func clusterFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "node-id", Usage: "cluster mode: this node's name in the cluster, for all time (with --raft-addr; see README, High availability)"},
		&cli.StringFlag{Name: "raft-addr", Usage: "cluster mode: host:port raft listens on and the other nodes dial"},
		&cli.BoolFlag{Name: "bootstrap", Usage: "cluster mode: start a new cluster with this node as its only voter (first node, first start; ignored once the data dir holds raft state)"},
		&cli.StringFlag{Name: "join", Usage: "cluster mode: API URL of any node of the cluster to join (it asks the leader to add this node as a voter; a restarted member rejoins as it is)"},
		&cli.StringFlag{Name: "advertise", Usage: "cluster mode: the API URL the other nodes forward requests to (default: the listen address)"},
		&cli.StringFlag{Name: "ca", EnvVars: []string{"WASMTASK_CA"}, Usage: "cluster mode: PEM file of the CA (or self-signed certificate) the other nodes' https:// certificates must chain to, for joins and forwarded requests; default: the system roots"},
	}
}

func clusterMode(c *cli.Context) bool {
	return c.String("node-id") != "" || c.String("raft-addr") != "" || c.Bool("bootstrap") || c.String("join") != ""
}

// serveCluster is serve in cluster mode: raft state in DATA_DIR/raft, the
// engine running on whichever node leads, every other route forwarded to
// it (api.ClusterFront).
func serveCluster(c *cli.Context, hl hclog.Logger, logger *slog.Logger, dataDir string, reg *plugins.Registry, broker *api.Broker, exec dispatch.Executor, m *metrics) error {
	id, raftAddr, join := c.String("node-id"), c.String("raft-addr"), c.String("join")
	switch {
	case id == "":
		return fail(exitUsage, "cluster mode needs --node-id (this node's name in the cluster)")
	case raftAddr == "":
		return fail(exitUsage, "cluster mode needs --raft-addr host:port (where raft listens)")
	case c.Bool("bootstrap") && join != "":
		return fail(exitUsage, "--bootstrap starts a new cluster and --join joins one: pass one of them")
	}
	if join != "" {
		if u, err := url.Parse(join); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return fail(exitUsage, "--join %q: want the API URL of a node, like http://127.0.0.1:7070", join)
		}
	}
	var peerTLS *tls.Config // the other nodes' https:// APIs
	if ca := c.String("ca"); ca != "" {
		var err error
		if peerTLS, err = api.CAConfig(ca); err != nil {
			return fail(exitUsage, "--ca: %v", err)
		}
	}
	ctx := c.Context
	if dir := c.String("plugins"); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fail(exitFailed, "--plugins: %v", err)
		}
		if err := reg.Watch(ctx, dir, 0); err != nil {
			return fail(exitFailed, "%v", err)
		}
		hl.Info("watching plugins", "dir", dir)
	}
	ln, warnings, err := listen(c)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		hl.Warn(w)
	}
	self := c.String("advertise")
	if self == "" {
		self = ln.url()
	}
	token := c.String("token")
	var front *api.ClusterFront
	// The node calls onEngine from its own goroutine as soon as it leads,
	// which can be before cluster.Open has returned and front is built.
	frontReady := make(chan struct{})
	historyCtx, stopHistory := context.WithCancel(ctx)
	defer stopHistory()
	var stopServerHistory context.CancelFunc = func() {}
	onEngine := func(e *dispatch.Engine) {
		select {
		case <-frontReady:
		case <-ctx.Done():
			return
		}
		stopServerHistory()
		if e == nil {
			front.SetServer(nil)
			return
		}
		broker.Attach(e) // the leader's engine runs attempts here and on remote workers
		srv := api.New(api.Config{Engine: e, Plugins: reg, Broker: broker, Token: token, Metrics: m.handler(), Logger: logger, Version: buildVersion(),
			DiskUsage: func() api.DiskUsage { return diskUsage(dataDir) }})
		srv.SetReady(true)
		var hctx context.Context
		hctx, stopServerHistory = context.WithCancel(historyCtx)
		go srv.SampleHistory(hctx, c.Duration("history-interval"))
		front.SetServer(srv)
	}
	raftDir := filepath.Join(dataDir, "raft")
	node, err := cluster.Open(cluster.Config{NodeID: id, RaftAddr: raftAddr, HTTPAddr: self, Dir: raftDir, Bootstrap: c.Bool("bootstrap"),
		Engine: dispatch.Config{Executor: exec, Runnable: broker.Runnable, Workers: max(c.Int("workers"), 1), Logger: logger, ValidateHandler: reg.Check, Node: id,
			DurableLeases: c.Bool("durable-leases")},
		OnEngine: onEngine, Logger: logger, RaftLog: hclogWriter{logger}, Plugins: api.PluginApplier{Reg: reg}})
	if err != nil {
		ln.Close()
		return fail(exitFailed, "%v", err)
	}
	front = api.NewClusterFront(api.ClusterConfig{Node: node, Self: self, Token: token, Metrics: m.handler(), Logger: logger,
		Plugins: reg, Version: buildVersion(), TLS: peerTLS})
	close(frontReady)
	m.watchEngineOf(node.Engine)
	m.watchCluster(node)
	m.watchFollowerReads(front)
	m.reg.MustRegister(peerLagCollector{front})
	peersCtx, stopPeers := context.WithCancel(ctx)
	defer stopPeers()
	go front.WatchPeers(peersCtx, 2*time.Second)

	hs := ln.httpServer(c, front)
	hl.Info("listening", "addr", ln.url(), "data_dir", dataDir, "workers", c.Int("workers"), "node_id", id, "raft_addr", raftAddr, "raft_dir", raftDir)
	// As serve's: single submissions skip net/http, answered on the
	// leader and forwarded by a follower.
	fast, serveErr := ln.serveFast(c, hs, front.NewFastListener)
	if join != "" {
		go joinCluster(ctx, hl, join, token, c.String("ca"), api.JoinRequest{ID: id, RaftAddr: raftAddr, HTTP: self})
	}
	select {
	case <-ctx.Done():
		hl.Info("shutting down")
	case err := <-serveErr:
		node.Close()
		return fail(exitFailed, "http server: %v", err)
	}
	front.StopWaits()
	broker.StopLeasing() // remote attempts in flight may still report during the drain
	if srv := front.Server(); srv != nil {
		srv.StopWaits()
		if e := node.Engine(); e != nil {
			left, _ := e.Drain(c.Duration("drain-timeout"))
			if left > 0 {
				hl.Warn("drain timeout: attempts still running are closed as lost and retried by the next leader", "attempts", left)
			}
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		hl.Warn("http shutdown", "err", err)
	}
	if fast != nil {
		fast.Wait(shutdownCtx) // the submissions it answers: as Shutdown does for net/http's
	}
	if err := node.Close(); err != nil {
		return fail(exitFailed, "close cluster node: %v", err)
	}
	hl.Info("stopped")
	return nil
}

// joinCluster asks the cluster at addr to add this node, until it has.
func joinCluster(ctx context.Context, hl hclog.Logger, addr, token, caFile string, req api.JoinRequest) {
	cl := api.NewClient(addr, token)
	if caFile != "" {
		if err := cl.TrustCA(caFile); err != nil { // read once already (--ca): not expected
			hl.Error("join the cluster", "err", err)
			return
		}
	}
	for delay := 200 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
		_, err := cl.ClusterJoin(ctx, req)
		if err == nil {
			hl.Info("joined the cluster", "via", addr)
			return
		}
		hl.Warn("join the cluster: retrying", "via", addr, "err", err, "in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// hclogWriter turns hashicorp/raft's log lines (hclog text, warnings and
// errors) into the server's log.
type hclogWriter struct{ log *slog.Logger }

func (w hclogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimSpace(p), []byte("\n")) {
		s := string(line)
		level := slog.LevelWarn
		if strings.Contains(s, "[ERROR]") {
			level = slog.LevelError
		}
		w.log.Log(context.Background(), level, "raft: "+s)
	}
	return len(p), nil
}

// watchCluster registers the node's raft gauges.
func (m *metrics) watchCluster(n *cluster.Node) {
	gauge := func(name, help string, f func(cluster.Status) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(n.Status()) })
	}
	m.reg.MustRegister(
		gauge("wasmtask_cluster_leader", "1 while this node leads the cluster, else 0.", func(s cluster.Status) float64 {
			if s.Role == "leader" {
				return 1
			}
			return 0
		}),
		gauge("wasmtask_cluster_term", "The raft term this node is in.", func(s cluster.Status) float64 { return float64(s.Term) }),
		gauge("wasmtask_cluster_commit_index", "The raft commit index this node knows.", func(s cluster.Status) float64 { return float64(s.CommitIndex) }),
		gauge("wasmtask_cluster_applied_index", "The raft index this node's state applied.", func(s cluster.Status) float64 { return float64(s.AppliedIndex) }),
		gauge("wasmtask_cluster_last_contact_seconds", "Seconds since this follower last heard the leader (0 on the leader).", func(s cluster.Status) float64 {
			return float64(s.LastContactMs) / 1000
		}),
		gauge("wasmtask_cluster_servers", "Servers in the cluster's configuration.", func(s cluster.Status) float64 { return float64(len(s.Servers)) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "wasmtask_cluster_commits_total",
			Help: "Raft entries of dispatch events this node committed while it led (each holds the ticks stepped during the previous commit)."},
			func() float64 { return float64(n.Status().Commits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "wasmtask_cluster_commit_seconds_total",
			Help: "Time spent waiting for those commits (a majority's write); divide by wasmtask_cluster_commits_total for the mean latency."},
			func() float64 { return n.Status().CommitSeconds }),
	)
}

// watchFollowerReads counts the reads this node answered from its own
// replicated state while it followed, and those it forwarded to the leader.
func (m *metrics) watchFollowerReads(f *api.ClusterFront) {
	for _, answered := range []string{"local", "leader"} {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "wasmtask_cluster_follower_reads_total",
			Help:        "Reads this node answered while it followed: from its own replicated state (local), or forwarded to the leader (leader: it had not caught up with the client's X-Wasmtask-Min-Index in time, or did not hold the task).",
			ConstLabels: prometheus.Labels{"answered": answered}},
			func() float64 {
				local, forwarded := f.FollowerReads()
				if answered == "local" {
					return float64(local)
				}
				return float64(forwarded)
			}))
	}
}

// peerLagCollector reports, on the leader, how far each other member is
// behind (api.ClusterFront.WatchPeers measures it every 2 s).
type peerLagCollector struct{ f *api.ClusterFront }

var (
	peerLagDesc = prometheus.NewDesc("wasmtask_cluster_peer_lag",
		"On the leader: raft entries each other member has not applied yet (the leader's commit index minus the member's applied index), measured every 2s.", []string{"peer"}, nil)
	peerUpDesc = prometheus.NewDesc("wasmtask_cluster_peer_up",
		"On the leader: 1 if the member answered the last measure of its lag (within 1s), else 0.", []string{"peer"}, nil)
)

func (c peerLagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- peerLagDesc
	ch <- peerUpDesc
}

func (c peerLagCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.f.PeerLags() {
		up := 0.0
		if p.Up {
			up = 1
			ch <- prometheus.MustNewConstMetric(peerLagDesc, prometheus.GaugeValue, float64(p.Lag), p.ID)
		}
		ch <- prometheus.MustNewConstMetric(peerUpDesc, prometheus.GaugeValue, up, p.ID)
	}
}

func clusterCommand() *cli.Command {
	// lags: st holds each member's applied index and lag (GET /v1/cluster
	// measures them; a membership change answers the configuration only).
	show := func(c *cli.Context, st api.ClusterStatus, lags bool) error {
		if c.Bool("json") {
			printJSON(c.App.Writer, st)
			return nil
		}
		writeClusterStatus(c.App.Writer, st, lags)
		return nil
	}
	return &cli.Command{
		Name:  "cluster",
		Usage: "see and change a cluster's membership (serve --node-id ...)",
		Subcommands: []*cli.Command{
			{Name: "status", Usage: "role, term, leader, commit and applied index of the node asked, and each member's lag", Flags: clientFlags(jsonFlag),
				Action: func(c *cli.Context) error {
					if c.NArg() != 0 {
						return fail(exitUsage, "cluster status takes no arguments")
					}
					st, err := clientFrom(c).ClusterStatus(c.Context)
					if err != nil {
						return apiFail(err)
					}
					return show(c, st, true)
				}},
			{Name: "add", Usage: "add a voter: wasmtask cluster add NODE_ID RAFT_ADDR [--http URL] (serve --join does this by itself)", ArgsUsage: "NODE_ID RAFT_ADDR",
				Flags: clientFlags(jsonFlag, &cli.StringFlag{Name: "http", Usage: "the new node's API URL (for forwarding; it also sends it when it starts with --join)"}),
				Action: func(c *cli.Context) error {
					if c.NArg() != 2 {
						return fail(exitUsage, "cluster add takes NODE_ID RAFT_ADDR, got %q", c.Args().Slice())
					}
					st, err := clientFrom(c).ClusterJoin(c.Context, api.JoinRequest{ID: c.Args().Get(0), RaftAddr: c.Args().Get(1), HTTP: c.String("http")})
					if err != nil {
						return apiFail(err)
					}
					return show(c, st, false)
				}},
			{Name: "remove", Usage: "remove a server from the cluster: wasmtask cluster remove NODE_ID", ArgsUsage: "NODE_ID", Flags: clientFlags(jsonFlag),
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return fail(exitUsage, "cluster remove takes NODE_ID, got %q", c.Args().Slice())
					}
					st, err := clientFrom(c).ClusterRemove(c.Context, c.Args().Get(0))
					if err != nil {
						return apiFail(err)
					}
					return show(c, st, false)
				}},
		},
	}
}

// writeClusterStatus prints st; lags: with each member's applied index
// and lag (else the configuration only, and where to see them).
func writeClusterStatus(w io.Writer, st api.ClusterStatus, lags bool) {
	leader := st.Leader
	if leader == "" {
		leader = "none known (election under way or no quorum)"
	}
	fmt.Fprintf(w, "node %s: %s, term %d, leader %s\n", st.NodeID, st.Role, st.Term, leader)
	fmt.Fprintf(w, "index: last %d, commit %d, applied %d (sequence %d, %d tasks)\n", st.LastIndex, st.CommitIndex, st.AppliedIndex, st.AppliedSeq, st.Tasks)
	if st.Commits > 0 {
		fmt.Fprintf(w, "commits while leading: %d of %.1f events each, %.2f ms each\n", st.Commits, float64(st.CommitEvents)/float64(st.Commits), 1000*st.CommitSeconds/float64(st.Commits))
	}
	for _, s := range st.Servers {
		role := "voter"
		if !s.Voter {
			role = "nonvoter"
		}
		if s.Leader {
			role += ", leader"
		}
		line := fmt.Sprintf("  %-10s %-22s %-28s %s", s.ID, s.RaftAddr, orDash(s.HTTP), role)
		switch {
		case !lags:
		case s.Error != "":
			line += "  unreachable: " + s.Error
		default:
			line += fmt.Sprintf("  applied %d, lag %d", s.AppliedIndex, s.Lag)
		}
		fmt.Fprintln(w, line)
	}
	if !lags {
		fmt.Fprintln(w, "(wasmtask cluster status shows how far each member is behind)")
	}
}
