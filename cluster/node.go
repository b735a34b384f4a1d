package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/wasmtask/wasmtask/dispatch"
)

// Config configures a cluster node.
type Config struct {
	// NodeID names this node in the cluster, for all time. Required.
	NodeID string
	// RaftAddr is the host:port raft listens on and the others dial. Required.
	RaftAddr string
	// HTTPAddr is this node's API base URL (http://host:port), which the
	// others forward writes to while it leads. Required.
	HTTPAddr string
	// Dir holds the raft log and stable store (raft.db) and raft's
	// snapshots (snapshots/). Required.
	Dir string
	// Bootstrap makes this node a one-voter cluster if Dir holds no raft
	// state yet (the first node); the others join it.
	Bootstrap bool
	// Engine is the template of the engine the leader runs: Executor,
	// Workers, ValidateHandler, Logger... (Dir, Log and State are set here).
	Engine dispatch.Config
	// OnEngine is called, from one goroutine, with the engine this node
	// starts when it becomes the leader, and with nil once it stopped.
	OnEngine func(*dispatch.Engine)
	Logger   *slog.Logger
	// RaftLog receives hashicorp/raft's own log lines (warnings and
	// errors). Default os.Stderr.
	RaftLog io.Writer
	// HeartbeatTimeout and ElectionTimeout are raft's (default 1s each).
	HeartbeatTimeout, ElectionTimeout time.Duration
	// LeaderLeaseTimeout is raft's: a leader that heard from no majority
	// for this long steps down (default 500ms, at most HeartbeatTimeout).
	LeaderLeaseTimeout time.Duration
	// SnapshotThreshold: raft snapshots the state after this many entries
	// (default 8192; each entry holds a frame of many events).
	SnapshotThreshold uint64
	// LogStore is raft's log and stable store: "segwal" (DATA_DIR/raft/log
	// and stable.json, the default) or "bolt" (raft-boltdb, DATA_DIR/raft/raft.db,
	// what earlier versions used: a Dir that holds a raft.db keeps it).
	LogStore string
	// Plugins, when set, is this node's plugin registry: deploys and
	// rollbacks are replicated (ProposePlugin) and carried out on it.
	Plugins Plugins
}

// Log stores (Config.LogStore).
const (
	LogStoreSegwal = "segwal"
	LogStoreBolt   = "bolt"
)

// raftStore is raft's log and stable store in one.
type raftStore interface {
	raft.LogStore
	raft.StableStore
	Close() error
}

// ErrNotLeader is returned by membership changes on a node that does not
// lead; the caller asks the leader (Status().LeaderHTTP).
var ErrNotLeader = errors.New("cluster: this node is not the leader")

// Node is one member of a wasmtask cluster: raft (log, transport,
// membership), the FSM holding the committed state, and, while it leads,
// the dispatch engine.
type Node struct {
	cfg    Config
	log    *slog.Logger
	raft   *raft.Raft
	fsm    *fsm
	trans  *raft.NetworkTransport
	store  raftStore
	notify chan bool
	stop   chan struct{}
	done   chan struct{}

	heartbeat time.Duration // raft's heartbeat timeout

	mu      sync.Mutex
	engine  *dispatch.Engine
	commits commitStats
}

// Open starts the node: raft recovers its snapshot and log from Dir and
// rejoins the cluster it belonged to (or bootstraps one, with Bootstrap).
func Open(cfg Config) (*Node, error) {
	for _, req := range []struct{ name, v string }{{"NodeID", cfg.NodeID}, {"RaftAddr", cfg.RaftAddr}, {"HTTPAddr", cfg.HTTPAddr}, {"Dir", cfg.Dir}} {
		if req.v == "" {
			return nil, fmt.Errorf("cluster: Config.%s is required", req.name)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RaftLog == nil {
		cfg.RaftLog = os.Stderr
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: cfg.RaftLog, DisableTime: true})
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
		rc.LeaderLeaseTimeout = min(rc.LeaderLeaseTimeout, cfg.HeartbeatTimeout)
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	if cfg.LeaderLeaseTimeout > 0 {
		rc.LeaderLeaseTimeout = min(cfg.LeaderLeaseTimeout, rc.HeartbeatTimeout)
	}
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
		rc.TrailingLogs = cfg.SnapshotThreshold
	}
	// The engine's loop applies a frame per tick: a buffered apply channel
	// lets it go on stepping while raft's leader loop writes the previous
	// batch (unbuffered, each Apply waited for that loop).
	rc.BatchApplyCh = true
	notify := make(chan bool, 16)
	rc.NotifyCh = notify

	addr, err := net.ResolveTCPAddr("tcp", cfg.RaftAddr)
	if err != nil {
		return nil, fmt.Errorf("cluster: --raft-addr %s: %w", cfg.RaftAddr, err)
	}
	store, err := openStore(&cfg)
	if err != nil {
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, rc.Logger)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	trans, err := raft.NewTCPTransportWithLogger(cfg.RaftAddr, addr, 3, 10*time.Second, rc.Logger)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("cluster: listen on --raft-addr %s: %w", cfg.RaftAddr, err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger, fsm: newFSM(cfg.Logger, cfg.Plugins, store), trans: trans, store: store, notify: notify, heartbeat: rc.HeartbeatTimeout,
		stop: make(chan struct{}), done: make(chan struct{})}
	if cfg.Bootstrap {
		existing, err := raft.HasExistingState(store, store, snaps)
		if err != nil {
			n.closeStores()
			return nil, fmt.Errorf("cluster: %w", err)
		}
		if !existing {
			boot := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: rc.LocalID, Address: trans.LocalAddr()}}}
			if err := raft.BootstrapCluster(rc, store, store, snaps, trans, boot); err != nil {
				n.closeStores()
				return nil, fmt.Errorf("cluster: bootstrap: %w", err)
			}
		}
	}
	var logs raft.LogStore = store // walStore reads from memory
	if cfg.LogStore == LogStoreBolt {
		// The leader reads back what it replicates: recent entries come
		// from memory rather than a bolt read transaction each.
		if logs, err = raft.NewLogCache(512, store); err != nil {
			n.closeStores()
			return nil, fmt.Errorf("cluster: %w", err)
		}
	}
	n.raft, err = raft.NewRaft(rc, n.fsm, logs, store, snaps, trans)
	if err != nil {
		n.closeStores()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	go n.run()
	return n, nil
}

// openStore opens the log store cfg.LogStore names (default segwal, or
// bolt when Dir holds a raft.db of an earlier version) and sets it there.
func openStore(cfg *Config) (raftStore, error) {
	bolt := filepath.Join(cfg.Dir, "raft.db")
	if cfg.LogStore == "" {
		cfg.LogStore = LogStoreSegwal
		if _, err := os.Stat(bolt); err == nil {
			cfg.LogStore = LogStoreBolt
		}
	}
	switch cfg.LogStore {
	case LogStoreSegwal:
		if _, err := os.Stat(bolt); err == nil {
			return nil, fmt.Errorf("cluster: %s holds raft-boltdb's raft.db: open it with the bolt log store, or remove the node's raft folder and join it again", cfg.Dir)
		}
		return openWalStore(cfg.Dir, cfg.Logger)
	case LogStoreBolt:
		store, err := raftboltdb.NewBoltStore(bolt)
		if err != nil {
			return nil, fmt.Errorf("cluster: open %s: %w", bolt, err)
		}
		return store, nil
	}
	return nil, fmt.Errorf("cluster: unknown Config.LogStore %q (segwal or bolt)", cfg.LogStore)
}

func (n *Node) closeStores() {
	n.trans.Close()
	n.store.Close()
}

// run follows leadership: it starts the engine when this node becomes
// the leader (and again if the engine stopped while it still leads) and
// stops it when the node loses leadership.
func (n *Node) run() {
	defer close(n.done)
	var engineDone <-chan struct{}
	var retry <-chan time.Time
	for {
		select {
		case <-n.stop:
			n.stopEngine("node closing")
			return
		case leader := <-n.notify:
			if leader {
				n.log.Info("cluster: this node leads", "node", n.cfg.NodeID, "term", n.raft.CurrentTerm())
				engineDone, retry = n.startEngine()
			} else {
				n.log.Info("cluster: this node no longer leads", "node", n.cfg.NodeID)
				n.stopEngine("leadership lost")
				engineDone, retry = nil, nil
			}
		case <-engineDone:
			n.stopEngine("engine stopped")
			engineDone, retry = nil, time.After(100*time.Millisecond)
		case <-retry:
			retry = nil
			if n.raft.State() == raft.Leader {
				engineDone, retry = n.startEngine()
			}
		}
	}
}

// startEngine brings the committed state up to date (Barrier: every entry
// of earlier terms applied) and starts the leader's engine on a copy of
// it. Its first tick closes the attempts a previous leader left leased or
// running as lost and retries them, as recovery does after a crash.
func (n *Node) startEngine() (done <-chan struct{}, retry <-chan time.Time) {
	n.stopEngine("restarting")
	again := time.After(200 * time.Millisecond)
	if err := n.raft.Barrier(10 * time.Second).Error(); err != nil {
		n.log.Warn("cluster: barrier before leading failed", "err", err)
		return nil, again
	}
	if n.fsm.member(n.cfg.NodeID) != n.cfg.HTTPAddr {
		if err := n.applyMember(memberEntry{ID: n.cfg.NodeID, HTTP: n.cfg.HTTPAddr}); err != nil {
			n.log.Warn("cluster: record this node's HTTP address", "err", err)
			return nil, again
		}
	}
	// The plugin changes committed so far are carried out here first, so
	// that the new leader runs the versions the cluster deployed.
	pctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if !n.fsm.pluginQ.idle(pctx) {
		n.log.Warn("cluster: leading before every replicated plugin change was applied here (30s)")
	}
	cancel()
	state, err := n.fsm.copyState()
	if err != nil {
		n.log.Error("cluster: cannot lead: the committed state is suspect", "err", err)
		return nil, again
	}
	cfg := n.cfg.Engine
	n.fsm.own.reset()
	cfg.Log, cfg.State, cfg.Dir = newRaftLog(n.raft, state.Applied, &n.commits, n.heartbeat/2, &n.fsm.own), state, filepath.Join(n.cfg.Dir, "engine")
	if cfg.Node == "" {
		cfg.Node = n.cfg.NodeID
	}
	seq, tasks := state.Applied, len(state.Tasks) // the engine owns state from here on
	e, err := dispatch.Open(cfg)
	if err != nil {
		n.log.Error("cluster: start the engine", "err", err)
		return nil, again
	}
	n.mu.Lock()
	n.engine = e
	n.mu.Unlock()
	n.fsm.lead(e.CommittedState)
	n.log.Info("cluster: engine started", "seq", seq, "tasks", tasks)
	if n.cfg.OnEngine != nil {
		n.cfg.OnEngine(e)
	}
	return e.Done(), nil
}

func (n *Node) stopEngine(why string) {
	n.mu.Lock()
	e := n.engine
	n.engine = nil
	n.mu.Unlock()
	if e == nil {
		return
	}
	if n.cfg.OnEngine != nil {
		n.cfg.OnEngine(nil)
	}
	err := e.Close()
	n.fsm.follow()
	n.log.Info("cluster: engine stopped", "why", why, "err", err)
}

// Engine returns the engine this node runs as the leader, or nil.
func (n *Node) Engine() *dispatch.Engine {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.engine
}

func (n *Node) applyMember(m memberEntry) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return n.raft.Apply(append([]byte{entryMember}, b...), 10*time.Second).Error()
}

// Join adds a voter (or updates its addresses); on the leader only.
func (n *Node) Join(id, raftAddr, httpAddr string) error {
	if id == "" || raftAddr == "" {
		return errors.New("cluster: join needs the node's id and raft address")
	}
	if n.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	if httpAddr != "" && n.fsm.member(id) != httpAddr {
		if err := n.applyMember(memberEntry{ID: id, HTTP: httpAddr}); err != nil {
			return fmt.Errorf("cluster: record %s's HTTP address: %w", id, err)
		}
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	for _, s := range cf.Configuration().Servers {
		if s.ID == raft.ServerID(id) && s.Address == raft.ServerAddress(raftAddr) && s.Suffrage == raft.Voter {
			return nil // a restarted member joining again
		}
	}
	if err := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, 30*time.Second).Error(); err != nil {
		return fmt.Errorf("cluster: add %s: %w", id, err)
	}
	n.log.Info("cluster: added a voter", "node", id, "raft_addr", raftAddr, "http", httpAddr)
	return nil
}

// Remove removes a server from the cluster; on the leader only. Removing
// the leader itself makes it step down once the change is committed.
func (n *Node) Remove(id string) error {
	if n.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	found := false
	for _, s := range cf.Configuration().Servers {
		found = found || s.ID == raft.ServerID(id)
	}
	if !found {
		return fmt.Errorf("cluster: no server %q in the cluster", id)
	}
	if err := n.applyMember(memberEntry{ID: id, Remove: true}); err != nil {
		return err
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, 30*time.Second).Error(); err != nil {
		return fmt.Errorf("cluster: remove %s: %w", id, err)
	}
	n.log.Info("cluster: removed a server", "node", id)
	return nil
}

// Close stops the engine and raft (the node stays a member: restarted on
// the same Dir, it rejoins and catches up).
func (n *Node) Close() error {
	select {
	case <-n.stop:
	default:
		close(n.stop)
	}
	<-n.done
	err := n.raft.Shutdown().Error()
	n.closeStores()
	return err
}
