// Package cluster runs wasmtask in cluster mode: several `wasmtask serve`
// nodes replicate the dispatch log with hashicorp/raft (v1.7.2), so that
// the loss of one machine loses no acknowledged task and scheduling goes
// on (issue 14).
//
// # Shape
//
//   - The leader runs the dispatch engine as a single node does, with one
//     change at the committer (dispatch.Config.Log): instead of appending a
//     group of ticks to segwal and fsyncing it, it applies the group as one
//     raft entry (a frame: first sequence, count, records) and waits until
//     a majority has it. Replies, Wait wake-ups and attempt starts are
//     released only then, so a Submit is acknowledged only once committed.
//   - Every node's FSM (fsm.go) applies every committed entry through
//     dispatch.ApplyRecord: the reducer that recovery uses. Followers
//     therefore hold the leader's committed state; GET /v1/cluster?digest=1
//     compares them.
//   - On becoming leader a node waits for raft's Barrier (every entry of
//     earlier terms applied), copies the committed state and starts an
//     engine on the copy. Its first tick closes the previous leader's
//     leased and running attempts as lost and retries them under their
//     policies, as recovery's first tick does after a crash. On losing
//     leadership the engine is closed: its attempts are cancelled, and
//     their results, which could only be committed through raft, are never
//     recorded.
//   - Membership is raft's configuration; each node's API address travels
//     beside it as a replicated entry (entryMember), so that any node can
//     forward to the leader. A node started with --join asks any node's API
//     to add it (POST /v1/cluster/servers, forwarded to the leader).
//
// # Deviations from the suggested design, and why
//
//   - The leader applies each entry once (session 9; before, its FSM
//     applied every entry a second time, on a state of its own). The FSM
//     skips the entries of its own engine: raftLog hands each entry's
//     bytes to the FSM's ownFrames before raft.Apply, and hashicorp/raft
//     gives the leader's FSM the very Log it was given, so an entry is
//     skipped only when it is those bytes (and follows the sequence
//     applied): a new leader's entry, or one read back from the store, is
//     applied. Skipping advances the applied index and sequence only,
//     without the state's lock, so commits never wait for a read; the
//     FSM's State is then stale. It catches up from this node's raft log
//     (the leader wrote every skipped entry there before it committed;
//     reading to the applied index only, it never sees an entry that was
//     not committed) when the committed state is needed: a read (Replica,
//     Digest), a new engine's copy, an entry it must apply itself (an old
//     engine's, or any once this node follows). A deposed leader thus
//     drops its engine's state, with whatever it stepped past the commit,
//     and follows on the committed state. raft's snapshots on the leader
//     come from the engine (dispatch.Engine.CommittedState: a capture
//     between ticks, encoded once every event in it is committed), taken
//     in Persist, beside the applies its commits need; the snapshot may
//     hold events of entries past its index, which a replay passes over
//     (the state's sequence says what it holds). That encoding becomes the
//     stale state's base (the log may be compacted behind it), and the
//     FSM's own copy of the state is dropped: the leader holds it once.
//     Status().Tasks on a stale leader is its engine's count.
//     TestLeaderSkipsItsOwnEntries, TestFSMSkipsOnlyItsOwnCommittedEntries,
//     TestLeaderChangeAfterSkippedEntries.
//   - Attempts may start before their lease is committed, as a single
//     node starts them before their lease is fsynced, but only while the
//     leader surely still leads: within half a heartbeat timeout of issuing
//     an entry that a majority has since acknowledged (raftLog.EarlyStartOK;
//     no other node can be elected sooner). If the leader dies then, the
//     lease may be lost and the new leader runs the attempt again, under
//     the same number: an attempt in flight at the failover, at least once.
//     A leader that was paused or cut off finds its last commit too old and
//     starts nothing until a commit succeeds, which a deposed leader's never
//     does; its attempts then wait for a commit that fails (TestClusterFailover
//     counts what a resumed SIGSTOPped leader runs). serve --durable-leases
//     starts every attempt only once its lease is committed. Measured with
//     bench-cluster: waiting for the lease commit halves the completion rate
//     with the default 16 workers (each attempt waits two commits, ~7-16 ms
//     each on this loaded machine, instead of one).
//   - Group commit, as on one node: while no entry is in flight
//     (dispatch.Pipeliner, pipelineDepth), a tick's frame is applied to
//     raft at once; while one is, ticks gather into the next entry, applied
//     when the committer has seen the one in flight committed (it waits
//     only for the entries of the ticks it releases, dispatch.CommitterTo).
//     Until session 12 two entries could be in flight: on the quieter
//     machine of sessions 11-12 one is measurably cheaper (Throughput).
//     raft's apply channel is buffered (BatchApplyCh) so the loop never
//     waits for raft's leader loop.
//     A tick that starts attempts early does not force its frame out
//     either (the single-node loop writes it first, so that a crash of the
//     process keeps the leases; an entry in flight in raft keeps nothing a
//     pending one does not): before, such ticks bypassed the bound of two
//     entries, and at 256 submitters the leader wrote 10-20 entries of
//     10-30 events per write; now ~1.5 entries of 30 (32 submitters) to 230
//     events (256), for as many fsyncs and less work per event.
//   - Followers answer reads from their own committed state (Replica,
//     replica.go: the same reducer's state, views built as the engine
//     builds them) and forward writes to the leader. Their state lags the
//     leader's by the entries not yet applied (a follower learns of a
//     commit with the next entry, or after raft's CommitTimeout when
//     idle), so reads carry read-your-writes in the API (api/cluster_reads.go):
//     every answer names the dispatch sequence it reflects
//     (X-Wasmtask-Index: the leader's Engine.DurableSeq, a follower's
//     applied sequence), a request may ask for a minimum
//     (X-Wasmtask-Min-Index; the Go client sends the highest it saw), and
//     a follower waits briefly to reach it (WaitApplied) or forwards the
//     read. A write forwarded through a follower answers once the
//     follower applied it, and a task a follower lacks is asked of the
//     leader, so a 404 is always the leader's. The dispatch sequence
//     rather than the raft index: raft hands the FSM only command entries
//     (no-ops and barriers advance the index without reaching it), while
//     the sequence counts exactly what a state holds and is the same on
//     every node for committed events. A wait on a follower wakes when an
//     entry made its task final or reached its sequence (waiters.go), not
//     at every entry: woken at every entry, a thousand waits through a
//     follower kept it seconds behind the leader (issue 14's p99 418 ms).
//   - Per-peer lag: GET /v1/cluster on any node asks every member for its
//     applied index (lag: this node's commit index minus it); the leader
//     measures it every 2 s for Prometheus, wasmtask_cluster_peer_lag{peer}
//     (entries) and wasmtask_cluster_peer_up{peer} (api.ClusterFront.
//     WatchPeers). hashicorp/raft keeps each follower's match index to
//     itself, so the leader asks the followers' APIs, as GET /v1/cluster does.
//   - Plugins are replicated (plugins.go): a deploy or rollback through
//     any node reaches the leader (forwarded), which validates the module
//     (compile, trial) and proposes one raft entry holding the change and
//     the module's bytes. It answers once the entry is committed (a
//     majority holds the bytes, so a majority can run it whichever node
//     leads next) and the leader's registry activated it. Every node
//     carries out committed changes on its own registry in log order, on
//     a goroutine of its own rather than raft's FSM goroutine (a compile
//     takes up to seconds, and the FSM applies the dispatch events); a
//     node that becomes leader first waits (up to 30 s) until it applied
//     every change committed so far, so it runs the deployed versions.
//     Chosen over a small entry with the sha256 and a fetch of the bytes
//     from the leader: the log then holds everything a node needs (no
//     second protocol, no window where a committed version is on the
//     leader's disk only), at the cost of the module's bytes in the log
//     (64 MiB at most, a deploy being rare). A rollback's entry carries
//     the bytes too, so a node that never stored that version can run it.
//     The FSM keeps each plugin's active version, manifest and versions;
//     snapshots (WTRAFT02) carry that and every version's bytes, so a node
//     that catches up from a snapshot gets them (the active one active,
//     the others stored for rollbacks). Attempt counts stay per node (the
//     leader's registry counts what it runs): GET /v1/plugins goes to the
//     leader, ?local=1 shows a node's own registry.
//   - Remote workers (wasmtask worker): each node has a broker, the
//     executor of the engine it runs while it leads (api.Broker, attached
//     to each new engine); followers forward the worker routes to the
//     leader, so a worker needs one node's address, and the Go client it
//     uses (api.Client.FollowCluster) learns the others from GET
//     /v1/cluster and moves when its node refuses connections. A lease is
//     the leader's broker's: after a failover the new leader's first tick
//     closes the attempts the old one leased as lost and retries them,
//     and a result for an old lease is refused (409), as after a restart
//     of a single server. serve --workers 0 schedules only on every node.
//   - A watched --plugins folder stays its own node's: a file there is
//     loaded into that node's registry only, as on a single server (with
//     its conflict rules against API deploys), and is not replicated.
//     Give every node the same folder content, or deploy through the API,
//     which reaches every node.
//
// # Log store
//
// The project's segwal, behind a raft.LogStore and raft.StableStore
// adapter (walStore, walstore.go), for every new data dir; raft-boltdb/v2
// (v2.3.1, what this package used first) stays for a data dir that holds
// its raft.db (Config.LogStore).
//
// Why: in hashicorp/raft the store's write is on a commit's path twice,
// one after the other. The leader's loop writes a batch of entries
// (everything queued on the apply channel, up to MaxAppendEntries, one
// StoreLogs) before it lets the replicators send them, and a follower
// answers an AppendEntries only once its own StoreLogs returned; the
// leader's loop does not count commits while it writes. Bolt pays a B+tree
// update and two fsyncs per write, segwal one fdatasync of a preallocated
// segment. BenchmarkLogStore, one entry of 64 events: bolt 1.3-3.2 ms,
// walStore 0.3-1.7 ms (same runs, shared machine). BenchmarkSubmit
// (32 submitters, same run): 3 nodes on bolt 4.2-4.5k tasks/s, p50 6.0-6.6
// ms; on walStore 8.2-11.3k, p50 2.4-2.9 ms; 1 node 31.6-32.8k. With bolt's
// fsyncs turned off (NoSync, an experiment only) 3 nodes ran 2.5x faster
// on this loaded machine, which is what pointed at the store.
//
// How it maps raft onto an append-only log: each StoreLogs is one segwal
// frame of one record per entry; each DeleteRange a record naming the
// range, replayed in order at open (a follower's conflicting suffix is
// dropped and its indexes written again; after a prefix delete segwal
// removes the segments that hold only deleted records). Reads by index
// come from memory for the newest entries, up to 64 MiB of their data:
// raft keeps TrailingLogs (10240) entries after each snapshot and
// snapshots every SnapshotThreshold (8192), so up to 18k entries of a
// frame each, hundreds of MB at the 230 events per entry measured under
// load. Older entries (read when a follower catches up) are read back from
// segwal by a reader kept where the last read stopped. The store is monotonic (raft.MonotonicLogStore): after
// installing a snapshot raft deletes every entry rather than leaving a gap.
// The stable store (term, vote) is a JSON file rewritten atomically; raft
// writes it on elections only. Frames are stored uncompressed: raft
// entries are written on every node, where CPU is scarcer than bytes
// (BenchmarkSubmit, 3 rounds, 32 submitters: 3.5-5.5k tasks/s raw, 2.2-3.7k
// with segwal's zstd; 256: within noise).
// TestWalStoreLogs checks raft's LogStore semantics, TestWalStoreCrash
// kills a writer with SIGKILL and finds every acknowledged entry, and
// e2e TestClusterFailover kills the leader's process and sees it catch up.
//
// # Throughput (issue 14: 3 nodes >= 50 % of 1 node)
//
// What bounds it: a Submit is acknowledged once its entry is committed,
// and in hashicorp/raft a commit waits for two store writes one after the
// other (the leader's, then a follower's; see Log store) plus about eight
// goroutine hand-offs and two loopback round trips; one node waits for one
// fsync. With a fixed number of submitters the rate is about submitters /
// latency, so the ratio is close to the ratio of the latencies. What was
// tried, measured with BenchmarkSubmit in the same runs (the machine was
// shared, load 5-30, fsyncs 0.3-2.5 ms, so only same-run comparisons):
//
//   - The segwal log store: kept; commit 4.2-9.0 ms -> 1.6-4.5 ms, 3 nodes
//     1.7-2.0x faster than on bolt in every run.
//   - No forced entry for ticks that start attempts early (dispatch
//     loop.go): kept; 4.7k -> 6.1-6.4k tasks/s at 256 submitters, less CPU,
//     32 submitters within noise.
//   - A deeper pipeline of entries (Pipeliner bound 1, 2, 4, 8, 16): no
//     difference beyond noise; 2 kept (1 since session 12). The bound
//     only limits how many entries are applied to raft tick by tick:
//     raft's leader already
//     writes everything queued as one batch, so depth changes the entry
//     size, not the number of fsyncs.
//   - raft Config: MaxAppendEntries (64) never binds (1.5-4 entries per
//     write measured); BatchApplyCh kept; TrailingLogs and
//     SnapshotThreshold change memory and snapshot frequency, not the
//     rate (no snapshot in a benchmark run); CommitTimeout only paces an
//     idle follower; shorter heartbeats would narrow the early-start
//     window and cause elections on this loaded machine (seen at load 25).
//   - FSM apply cost (decode + reducer on every node) and hand-offs: the
//     benchmark process used 0.4-0.7 of a CPU, so it waits rather than
//     computes; the FSM is a quarter of that CPU, not the bound.
//
// Result (BenchmarkSubmit, 3 rounds interleaved with the code of this
// session's start, load average 22-24, fsyncs 1-5 ms): 32 submitters, 1
// node 7.0-7.9k tasks/s, 3 nodes 4.5-5.5k (57-79 %, submit p50 3.4-4.3
// ms), where the session's start measured 1.4-1.5k beside 8.1-13.4k
// (14-18 %, p50 14-16 ms); 256 submitters, 1 node 18-33k, 3 nodes
// 6.0-13.2k (32-40 %; bolt 4.6-4.7k). make bench-cluster (wasmtask bench,
// real processes, through the leader, 2 rounds): 32 clients 1 node
// 4.3-4.9k, 3 nodes 2.0-2.5k (46-51 %; start: 1.1-1.7k); 1 client
// 286-337 vs 706-736 (41-46 %; start: 122-161); wait p50 at 200/s
// 3.9-4.2 ms (start: 14.6-18.5 ms); a batch of 500, 3.0-5.8k vs 7.1-12.3k
// (24-81 %: CPU-bound, each event is stepped by the leader and applied by
// three FSMs on two cores).
//
// Later (session 6; BenchmarkSubmit now also runs 1024 submitters; a
// stage trace timed each entry from its Apply to the leader's write, a
// follower's write, the leader's FSM and the commit):
//
//   - The leader's FSM off the commit path: kept then (session 9 skips
//     the leader's own entries instead, see Deviations). At 256
//     submitters on a quiet machine (load < 1) the leader's apply was 0.5
//     of a 4.9 ms commit, and entries queued behind it; 3 nodes went from
//     20.2-22.4k to 24.2-26.7k tasks/s (same runs). Under load (2-5) the
//     in-process figures vary 2x from run to run and show no difference,
//     nor do real processes (make bench-cluster, through the leader, load
//     7-25: 2.0-5.6k before, 1.7-7.7k after). CPU per task is unchanged:
//     the leader still applies every event twice.
//   - Skipping the leader's apply altogether (an unsafe experiment, to
//     bound the gain): 25-28k at 256 beside 20-22k. Doing it safely needs
//     a committed state for raft's snapshots and for a deposed leader:
//     replaying the skipped entries then only defers the same CPU; taking
//     it from the engine (a copy of its state once every entry it stepped
//     is committed, the loop held meanwhile) saves it, at the cost of
//     pausing the loop for a copy of the whole state every snapshot.
//     Not done.
//   - Pipeline depth 1, 2, 4, 8 again, on a quiet machine: no difference
//     (a deeper pipeline makes more, smaller writes on the follower, whose
//     loop writes each AppendEntries with its own fsync).
//   - Where the time goes at 32 submitters (quiet): the leader's write
//     ends 0.43 ms after Apply (fsync 0.27), a follower's 0.57 ms later
//     (its fsync 0.27 and the round trip), the commit 0.25 ms after that;
//     a submit waits about twice that commit time (it waits for a slot in
//     the pipeline, then its entry). CPU per task (user + sys over the
//     run, 3 nodes in one process): about 110 us at 32 submitters, 63 us
//     at 256, against 27 us for one node; a write cycle (three fsyncs,
//     two round trips, some twenty goroutine hand-offs) costs about 0.5 ms
//     of CPU, the FSMs about 9 us per task each.
//   - At 1024 submitters in one process, the follower's write came 10.7 ms
//     after the leader's (fsync 0.4 ms): Go polls the network only when a
//     P has no runnable goroutine left (or every 10 ms, from sysmon), and
//     the submitters, woken by channel sends, always are. With raft's
//     in-memory transport (an experiment) 3 nodes ran 25-29k at 1024
//     beside 19-23k over TCP. Separate processes do not share a run
//     queue, and HTTP clients come through the netpoller like raft does:
//     make bench-cluster (real processes, through the leader, 32, 256 and
//     1024 clients, no batch or latency scenarios, instances reuse)
//     measured 3 nodes at 33-180 % of one node at load 2.5-25 (one node is
//     bound by HTTP there, not by the WAL, and varied 2-4x with the load;
//     the code of this session's start measured 19-71 % in the same
//     windows).
//     Through a follower, which forwards each write and answers once it
//     applied it: 15-56 %. Only a quiet machine can say more.
//
// Left: the two serial store writes are raft's design (the leader writes
// before it replicates); overlapping them needs a raft that counts the
// leader's own write asynchronously (etcd's raft does), not a setting of
// hashicorp/raft v1.7.2.
//
// Session 7 (machine shared, load 2-30; BenchmarkSubmit now reports
// cpu-us/task, the process's CPU per task, steadier than rates there):
//
//   - CPU per task, 20000 tasks: 1 node 19-48 us; 3 nodes in one process
//     65-125 us at 256 submitters, 130-190 us at 32. A profile at 32
//     (60000 tasks): the log store's writes 23 % (fdatasync 15 %, pwrite
//     6 %), the FSMs' decode and reduce 23 % (the leader's 9 %), GC 11 %,
//     raft's transport 8 %, the engine's loop 7 %. When the run is bound
//     by CPU (256 and more submitters, batches, real processes on 2
//     cores), 3 nodes can reach 50 % of one node only once they use at
//     most twice its CPU per task: today 3-4 times.
//   - raft pipelining off (a transport whose AppendEntriesPipeline says
//     unsupported: each follower gets one AppendEntries at a time, with
//     all that queued meanwhile, so a lagging follower catches up with
//     one fsync per batch instead of one per entry), and the engine's
//     pipeline bound 64 instead of 2, alone and together: within the
//     noise of 2 rounds at 32 and 256 submitters (one run 2x faster, the
//     next 2x slower); not kept. Through a follower at 1,000 waiting
//     clients/s pipelining off looked better at p99 (71 and 134 ms beside
//     65 and 203 ms), too few runs to keep it.
//   - The follower's waits (above) were the forwarding latency: base
//     p50/p99 36/90 ms and 87/462 ms, now 17/65 and 62/203 ms (wasmtask
//     bench, 1,000/s with waits, through a follower; interleaved, load
//     3-30).
//
// Session 9, profile before applying once on the leader (base 15d3980,
// cluster.test -test.bench 'BenchmarkSubmit/submitters=256$/nodes=3/store=segwal$'
// -test.benchtime 40000x -test.cpuprofile, load 3.3, shared machine):
// 74.6 cpu-us/task, 19.0k tasks/s. dispatch.ApplyRecord, the FSMs'
// decode and reduce, is 41 % of the process's CPU: the followers' 28 %,
// the leader's own FSM 13 % (the engine's own apply of the same events,
// machine.Apply under Core.emit, 5 %). Within it the reduce is three
// quarters (applySubmitted: a new Task and the task maps' growth), the
// decode a quarter. GC and allocation about a quarter of the CPU.
//
// Applying once on the leader (Deviations), interleaved with the base in
// the same window, 2 rounds, load 2.7-5.9 (shared: other engineers'
// builds and benchmarks), cluster.test -test.bench
// 'BenchmarkSubmit/submitters=(32|256)$/nodes=3$/store=segwal$'
// -test.benchtime 20000x: CPU per task at 32 submitters 101, 79 us
// (base 120, 131), at 256 65, 53 us (base 73, 77); tasks/s 4.3k, 8.9k
// (base 5.2k, 4.5k) and 8.8k, 14.0k (base 7.5k, 7.4k). One node, same
// runs: 13-35k and 30-84k, too noisy to give a ratio.
//
// Allocations, the same 256-submitter run with -test.memprofile
// -test.memprofilerate 4096 (3 nodes, 20000 tasks; steadier than rates on
// a shared machine): base 702k objects, 190 MB; applying once on the
// leader plus walStore's kept write buffer 536k, 143 MB; the followers'
// decode sharing the state's ids and a submission's task memory
// (machine.DecodeEventIn, in dispatch.ApplyRecord) 387k, 132 MB: 35 -> 19
// allocations per task over the three nodes. CPU per task in 3
// interleaved rounds at load 8-12: 32 submitters 110, 112, 74 us beside
// 118, 122, 89 without the decode change; 256 within noise (69, 46, 60
// beside 62, 63, 57).
//
// BenchmarkFollowerApply (a follower's FSM applying a real run's entries,
// 1000 tasks, one goroutine; 5 interleaved rounds, load 5-10): before
// DecodeEventIn 16 allocations and 1776 B per task, 3.6-3.9 us in the two
// quietest rounds; with it 9 and 1408 B, 3.3-3.6 us. Handing the decode's
// lookups to Apply as well (the Core's runHint, taskHint, newID): no
// difference, not kept.
//
// Larger raft batches: the engine's pipeline bound (entries in flight)
// 1, 2 and 4, 2 rounds each at load 5-6: 64, 46 and 31 events per entry
// at 32 submitters, 1.0-2.0 entries per store write, and no difference
// in CPU per task or rate beyond the noise (32: 90/102, 83/119, 83/74 us;
// 256: 55/56, 51/68, 53/59 us). MaxAppendEntries (64) never binds at
// 1-2 entries per write. Bound kept at 2 (until session 12, below).
//
// Tried and not kept: the FSM's fresh state with its maps sized for the
// retained tasks (machine.NewStateFor, as a fresh engine then had them;
// the engine's own presizing was reverted too, for the memory it held):
// within noise at 256 submitters (3 rounds, load 5: 54, 54, 58 us per
// task beside 56, 54, 61), and 28 MB more allocated in a 20000-task run.
// What is left of the followers' apply is mostly the new memory of each
// task (page faults under heapSetType in a growing heap) and GC.
//
// Session 11 (another machine: fsync 0.15-0.25 ms, one server 17-26k
// single submits/s at 32 clients). Real processes, wasmtask bench through
// the leader, per-process CPU from /proc: at 32 clients the leader used
// 102 us of CPU per task, each follower 33, one server 51; the leader's
// profile showed net/http at 39 % of its samples, where one server
// answers single submissions on its FastListener. The leader now does
// too (ClusterFront.NewFastListener): 62-72 us per task. A follower
// forwarding submissions through net/http and ReverseProxy used 136-163
// us per task, more than the leader; leanForward (api/cluster_forward.go)
// forwards them from the fast path over connections of its own: 55-61
// us, and 2x the tasks/s through a follower (7.1-8.6k -> 14.0-15.2k at
// 256 clients). make bench-cluster, 4 rounds (README, High
// availability): three nodes through the leader at 51-72 % of one
// server at 256 clients, 58-70 % at 1,024, 45-94 % with batches of 500,
// 37-67 % at 32 and 28-35 % at one client. With a few clients the
// commit's latency bounds the rate (two fsyncs in series, see above);
// under load the CPU does, three nodes and the bench client on two
// cores: at 32 clients they used about 132 us per task together, 2.6x
// one server's, and 50 % of one server's rate needs at most 2x.
//
// Session 12 (same machine as session 11, load < 4): one raft entry in
// flight instead of two (pipelineDepth). Per-process CPU (from /proc,
// wasmtask bench through the leader, 32 clients, 30000 tasks; real
// processes) put each entry at roughly 0.7 ms of CPU over the three nodes
// (the leader's fsync and two AppendEntries written and answered, each
// follower's decode, fsync and answer, a dozen goroutine wake-ups), so at
// 32 clients, ~9 tasks an entry, the entries were about half the
// cluster's CPU. One in flight: 2250 entries instead of 3260 for 30000
// tasks, 3.6-4.3 s of CPU over the nodes instead of 4.3-5.0. The bench's
// scenarios, 2 interleaved rounds (done tasks/s; base, then one in
// flight): through the leader, 32 clients 10.3k, 11.0k -> 12.7k, 12.8k
// (one server 20.9k, 23.0k: 49 % -> 55-61 %); 256 and 1,024 clients and
// one client within noise; waits at 1,000/s p50 3.6, 2.5 -> 2.6, 2.3 ms.
// Through a follower: 32 clients 6.2k, 6.5k -> 8.2k, 8.5k; 256 12.5k,
// 12.1k -> 14.6k, 14.0k. Then make bench-cluster, five rounds (README):
// through the leader 41-59 % of one server at 32 clients (4 of 5 rounds
// >= 48 %), 55-78 % at 256, 58-76 % at 1,024, 27-32 % with one client.
// In process (BenchmarkSubmit, 2 rounds each): 32 submitters 47-57 us of
// CPU per task beside 47-62 with two in flight, 64 events per commit
// beside 44; 256 within noise.
//
// One client stays latency-bound: each task is two entries (its submit;
// its lease and result, stepped while the submit's entry is in flight),
// and the next submit waits behind the second. Joining the second to the
// next submit would need the leader to hold an entry that nothing waits
// for (a linger). Tried (session 12, an experiment: the loop left a tick
// without replies pending, the committer waited up to L for another
// tick before writing it): one client went from 0.87-0.94k to 1.13-1.53k
// tasks/s with a third less CPU (L 0.3 and 1 ms, 2 rounds), 32 and 256
// clients and batches within noise, but a waiting client at 200 tasks/s
// waited p50 2.7-3.3 ms instead of 1.6 (in a quiet process a Go timer of
// 0.3 ms fires after 1.1 ms, measured here). Not kept: it trades the latency
// every low-rate user sees for a benchmark of one sequential client. (An
// attempt starts only once its task's submission is committed, so the
// result arrives after the submit's commit and races the next submit for
// the next entry.)
//
// Through a follower, 32 clients run at about half the leader's rate: a
// write forwarded there answers once the follower applied it (read your
// writes for plain HTTP clients), and a follower learns of a commit only
// with the next AppendEntries, which with one entry in flight follows
// the leader's next write: about one commit more per forwarded write.
//
// # Snapshots
//
// raft snapshots the FSM every SnapshotThreshold entries: the node's API
// addresses and the dispatch snapshot encoding of the state (the one
// snapshot files use), so a new or lagging node catches up from a snapshot
// plus the log's tail. Restore replaces the state. raft calls Snapshot on
// its FSM goroutine, so no entry applies meanwhile: a follower takes its
// state there (dispatch.CaptureState: final tasks by pointer, since they
// never change again; the others copied) and encodes it in Persist,
// beside later applies, as the single-node engine does with its own
// snapshots. Encoding in Snapshot held every apply, and with them the
// reads and forwarded writes waiting for one, ~100 ms per 100k retained
// tasks (BenchmarkSnapshot: capture 14 ms, encode 104 ms). The leader's
// snapshot comes from its engine (Deviations).
//
// # Data
//
// Cluster state lives in DATA_DIR/raft (log/ and stable.json, or raft.db
// for a bolt store; snapshots/); the FSM's
// state is rebuilt in memory from them at start. The single-node WAL
// (DATA_DIR/engine) is not used in cluster mode.
package cluster
