package dispatch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	prng "math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/segwal"
)

// TestCrash kills a real process running an Engine with SIGKILL at random
// moments, restarts it on the same directory each time, and checks that
// nothing acknowledged is lost and that retries stay within their limits.
//
// The child is this test binary re-executed with -test.run=^TestCrashChild$
// and DISPATCH_CRASH_DIR naming the data directory. It opens the Engine with
// the default WAL options (one fsync per tick), small segments and frequent
// snapshots (so WAL truncation happens between kills), reads task ids on
// stdin, submits them from a few goroutines (so ticks batch), and prints
// "ack <id> <duplicate>" once Submit returned nil, "exec <run> <attempt>"
// when an attempt starts executing, and "ready {...}" with its recovery
// figures after Open.
//
// The parent keeps at most crashWindow submissions outstanding, kills the
// child when a random number of acks arrived (sometimes at a random moment
// right after the start, which can land inside Open), and on every restart
// first resubmits the ids sent but not acknowledged: each must come back as
// a Duplicate (it was durable) or as a fresh submission. After the last
// kill the parent opens the Engine itself, waits until every task is final,
// and checks:
//
//   - every acknowledged task exists, and no other;
//   - each run has at most max_attempts attempts that were not lost and at
//     most MaxLostAttempts lost ones, numbered 1..n (no number twice), each
//     with an outcome;
//   - every outcome is either what the deterministic executor returns for
//     (run, attempt) or lost, and every lost attempt was closed by a
//     restart ("the engine stopped..."), at most Workers per restart;
//   - the run ended as its attempts imply: completed, or failed only when
//     its outcomes used up max_attempts (lost ones do not count, up to
//     MaxLostAttempts) or one was permanent;
//   - no attempt executed twice, in one process or across them: an attempt
//     that starts before its lease is durable starts once the lease is
//     written, and SIGKILL keeps what the process wrote (dispatch/doc.go);
//     and no attempt of a completed run executed after the completing one;
//   - every snapshot loaded cleanly and recovery used one once the WAL was
//     truncated.
//
// It runs once in each mode of starting attempts: as soon as they are
// leased (the default) and once their lease is durable.
// DISPATCH_CRASH_SEED=n replays the parent's random choices.
func TestCrash(t *testing.T) {
	for _, durable := range []bool{false, true} {
		name := "start-early"
		if durable {
			name = "durable-leases"
		}
		t.Run(name, func(t *testing.T) { testCrash(t, durable) })
	}
}

func testCrash(t *testing.T, durableLeases bool) {
	if testing.Short() {
		t.Log("-short: fewer tasks and kills")
	}
	total, kills := 3000, 7
	if testing.Short() {
		total, kills = 1200, 5
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DISPATCH_CRASH_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("DISPATCH_CRASH_SEED: %v", err)
		}
	}
	t.Logf("seed %d (rerun with DISPATCH_CRASH_SEED=%d)", seed, seed)
	start := time.Now()
	p := &crashParent{
		t: t, rng: prng.New(prng.NewPCG(seed, 0xc4a5)), dir: t.TempDir(), total: total,
		acked: map[TaskID]bool{}, sentRound: map[TaskID]int{}, executed: map[string]int{},
		execRound: map[string]int{}, durableLeases: durableLeases,
	}
	for round := range kills {
		p.round(round, round == kills-1)
	}
	childTime := time.Since(start)
	p.verify()
	t.Logf("%d tasks over %d child processes, %d SIGKILLs (%d during startup or recovery) in %v; then the parent finished the work in %v",
		p.total, kills, kills, p.earlyKills, childTime.Round(time.Millisecond), (time.Since(start) - childTime).Round(time.Millisecond))
}

const (
	crashEnvDir   = "DISPATCH_CRASH_DIR"
	crashEnvMode  = "DISPATCH_CRASH_DURABLE_LEASES" // "1": Config.DurableLeases
	crashWorkers  = 8
	crashWindow   = 96 // submissions outstanding at once
	crashMaxTries = 3
)

func crashConfig(dir string, ex Executor, log *slog.Logger, durableLeases bool) Config {
	return Config{
		Dir: dir, Executor: ex, Workers: crashWorkers, Logger: log, DurableLeases: durableLeases,
		SnapshotEvery: 500, SnapshotStateRatio: -1, SnapshotRetain: 2,
		WAL: segwal.Options{SegmentSize: 32 << 10}, // default sync: one fsync per tick
	}
}

func crashSpec(id TaskID) TaskSpec {
	return TaskSpec{ID: id, Handler: "crash", Input: []byte(id), MaxAttempts: crashMaxTries,
		Backoff: Backoff{Kind: BackoffFixed, BaseMs: 5}}
}

// crashOutcome is the executor's deterministic verdict on an attempt:
// mostly ok, a fifth fail retryably, a few fail for good.
func crashOutcome(run RunID, attempt int) Result {
	h := fnv.New64a()
	h.Write([]byte(run))
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(attempt))
	h.Write(b[:])
	x := h.Sum64()
	x ^= x >> 31
	x *= 0x9e3779b97f4a7c15
	x ^= x >> 29
	switch u := x % 100; {
	case u < 20:
		return Result{Outcome: OutcomeFailed, Retryable: true, Error: "flaky"}
	case u < 22:
		return Result{Outcome: OutcomeFailed, Error: "bad input"}
	}
	return Result{Outcome: OutcomeOK, Output: []byte("done " + string(run))}
}

// crashReady is what the child reports after Open.
type crashReady struct {
	SnapshotSeq uint64 `json:"snapshot_seq"`
	Events      uint64 `json:"events_replayed"`
	DurationMs  float64
	SnapErrors  []string `json:"snapshot_errors"`
	TornTail    bool     `json:"torn_tail"`
	WALFirst    uint64   `json:"wal_first"`
	Tasks       int      `json:"tasks"`
}

// TestCrashChild is the child process of TestCrash; it does nothing
// unless DISPATCH_CRASH_DIR is set.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnvDir)
	if dir == "" {
		t.Skip("the child process of TestCrash")
	}
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		line := fmt.Sprintf("crashchild "+format+"\n", args...)
		outMu.Lock()
		defer outMu.Unlock()
		if _, err := os.Stdout.WriteString(line); err != nil {
			os.Exit(3) // the parent is gone
		}
	}
	ex := ExecutorFunc(func(ctx context.Context, j Job) Result {
		say("exec %s %d", j.Run, j.Attempt)
		select { // a tiny random amount of work
		case <-time.After(time.Duration(prng.IntN(300)) * time.Microsecond):
		case <-ctx.Done():
			return Result{Outcome: OutcomeCancelled, Error: ctx.Err().Error()}
		}
		return crashOutcome(j.Run, j.Attempt)
	})
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e, err := Open(crashConfig(dir, ex, log, os.Getenv(crashEnvMode) == "1"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "crashchild: Open: %v\n", err)
		os.Exit(2)
	}
	rec := e.Recovery()
	ready := crashReady{SnapshotSeq: rec.SnapshotSeq, Events: rec.EventsReplayed,
		DurationMs: float64(rec.Duration.Microseconds()) / 1000, TornTail: rec.WAL.TornTail != nil,
		WALFirst: e.wal.First(), Tasks: e.Stats().Tasks}
	for _, err := range rec.SnapshotErrors {
		ready.SnapErrors = append(ready.SnapErrors, err.Error())
	}
	b, _ := json.Marshal(ready)
	say("ready %s", b)

	ids := make(chan TaskID)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for id := range ids {
				res, err := e.Submit(context.Background(), crashSpec(id))
				if err != nil {
					say("err %s %v", id, strings.ReplaceAll(err.Error(), "\n", " "))
					continue
				}
				say("ack %s %v", id, res.Duplicate)
			}
		})
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		ids <- TaskID(sc.Text())
	}
	// stdin closed: the parent is gone. Exit without Close, like a crash.
	close(ids)
	wg.Wait()
	os.Exit(0)
}

type crashParent struct {
	t     *testing.T
	rng   *prng.Rand
	dir   string
	total int

	next      int // ids c00001.. below next were sent at least once
	acked     map[TaskID]bool
	pending   []TaskID       // sent, not acknowledged (in send order)
	sentRound map[TaskID]int // round of the first send
	executed  map[string]int // run@attempt -> executions seen, all processes
	execRound map[string]int // run@attempt -> round of its last execution (-1: the parent's)

	durableLeases bool

	starts, earlyKills, dups, freshResubmits, acks int
	readies                                        []crashReady
	stderr                                         []string
}

// sawExec counts an execution of attempt key in round (one process). An
// attempt runs at most once in a process; again in a later one only after
// a kill took its lease, which the killed process started before it was
// durable.
func (p *crashParent) sawExec(key string, round int) {
	if r, ok := p.execRound[key]; ok && r == round {
		p.t.Errorf("attempt %s executed twice in the process of round %d", key, round)
	}
	p.execRound[key] = round
	p.executed[key]++
}

func crashID(i int) TaskID { return TaskID(fmt.Sprintf("c%05d", i+1)) }

// round runs one child until it is killed. The last round waits until
// every task was sent and acknowledged, then kills it while attempts run.
func (p *crashParent) round(round int, last bool) {
	t := p.t
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnvDir+"="+p.dir)
	if p.durableLeases {
		cmd.Env = append(cmd.Env, crashEnvMode+"=1")
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.starts++
	began := time.Now()

	lines := make(chan string, 256)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()

	// The writer resubmits what the previous child left unacknowledged,
	// then sends new ids, with at most crashWindow outstanding.
	toSend := slices.Clone(p.pending)
	for p.next < p.total && len(toSend) < crashWindow {
		toSend = append(toSend, p.claim(round))
	}
	tokens := make(chan struct{}, crashWindow)
	stop := make(chan struct{})
	sendQ := make(chan TaskID, crashWindow)
	var writer sync.WaitGroup
	writer.Go(func() {
		w := bufio.NewWriter(stdin)
		for id := range sendQ {
			select {
			case tokens <- struct{}{}:
			case <-stop:
				return
			}
			w.WriteString(string(id) + "\n")
			if w.Flush() != nil {
				return // the child is dead
			}
		}
	})
	for _, id := range toSend {
		sendQ <- id
	}

	mode := "acks"
	target := 150 + p.rng.IntN(500)
	var deadline <-chan time.Time
	switch {
	case last:
		mode = "last"
	case p.rng.IntN(4) == 0 || p.earlyKills == 0 && round == 2:
		mode = "early"
		deadline = time.After(time.Duration(p.rng.IntN(250)) * time.Millisecond)
	}
	guard := time.NewTimer(30 * time.Second)
	defer guard.Stop()
	acks, ready, execs := 0, false, 0
	var killedAt time.Duration
	kill := func(why string) {
		killedAt = time.Since(began)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("kill: %v", err)
		}
		t.Logf("round %d: SIGKILL after %v (%s): %d acks, %d executions seen, ready=%v", round, killedAt.Round(time.Millisecond), why, acks, execs, ready)
	}
	killed := false
	handle := func(line string) {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "crashchild" {
			return // test framework output
		}
		switch f[1] {
		case "ready":
			var r crashReady
			if err := json.Unmarshal([]byte(strings.Join(f[2:], " ")), &r); err != nil {
				t.Fatalf("round %d: %q: %v", round, line, err)
			}
			ready = true
			p.readies = append(p.readies, r)
			t.Logf("round %d: child recovered in %.1fms: snapshot at %d, %d events replayed, WAL from %d, %d tasks, torn tail %v",
				round, r.DurationMs, r.SnapshotSeq, r.Events, r.WALFirst, r.Tasks, r.TornTail)
			if len(r.SnapErrors) > 0 {
				t.Errorf("round %d: the child skipped damaged snapshots: %v", round, r.SnapErrors)
			}
		case "exec":
			n, _ := strconv.Atoi(f[3])
			p.sawExec(attemptKey(RunID(f[2]), n), round)
			execs++
		case "ack":
			id := TaskID(f[2])
			dup := f[3] == "true"
			first, sent := p.sentRound[id]
			switch {
			case !sent:
				t.Fatalf("round %d: ack for %s, never sent", round, id)
			case p.acked[id]:
				t.Fatalf("round %d: %s acknowledged twice", round, id)
			case dup && first == round:
				t.Fatalf("round %d: %s acknowledged as a duplicate on its first submission", round, id)
			case dup:
				p.dups++
			case first < round:
				p.freshResubmits++
			}
			p.acked[id] = true
			p.pending = slices.DeleteFunc(p.pending, func(x TaskID) bool { return x == id })
			acks++
			p.acks++
			if killed {
				return
			}
			<-tokens
			if p.next < p.total {
				sendQ <- p.claim(round)
			}
		case "err":
			t.Fatalf("round %d: Submit failed in the child: %s", round, line)
		}
	}
	for !killed {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("round %d: the child exited on its own; stderr:\n%s", round, stderr.String())
			}
			handle(line)
			switch mode {
			case "acks":
				if acks >= target || ready && p.next == p.total && len(p.pending) == 0 {
					// A little more work goes on before the kill lands.
					time.Sleep(time.Duration(p.rng.IntN(15)) * time.Millisecond)
					kill(fmt.Sprintf("%d acks reached", target))
					killed = true
				}
			case "last":
				if p.next == p.total && len(p.pending) == 0 {
					time.Sleep(time.Duration(p.rng.IntN(30)) * time.Millisecond)
					kill("every task acknowledged")
					killed = true
				}
			}
		case <-deadline:
			kill("random moment after the start")
			p.earlyKills++
			killed = true
		case <-guard.C:
			t.Fatalf("round %d (%s): no progress in 30s (%d acks); stderr:\n%s", round, mode, acks, stderr.String())
		}
	}
	close(stop)
	for line := range lines { // what the child wrote before it died still counts
		handle(line)
	}
	close(sendQ)
	writer.Wait()
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("round %d: child ended with %v, want SIGKILL; stderr:\n%s", round, err, stderr.String())
	}
	if s := strings.TrimSpace(stderr.String()); s != "" {
		p.stderr = append(p.stderr, fmt.Sprintf("round %d:\n%s", round, s))
	}
}

// claim takes the next new id to send in round.
func (p *crashParent) claim(round int) TaskID {
	id := crashID(p.next)
	p.next++
	p.sentRound[id] = round
	p.pending = append(p.pending, id)
	return id
}

// verify opens the Engine in the parent, finishes every task and checks.
func (p *crashParent) verify() {
	t := p.t
	t.Helper()
	for _, s := range p.stderr {
		t.Logf("child stderr (warnings): %s", s)
	}
	var mu sync.Mutex
	ex := ExecutorFunc(func(ctx context.Context, j Job) Result {
		mu.Lock()
		p.sawExec(attemptKey(j.Run, j.Attempt), -1)
		mu.Unlock()
		return crashOutcome(j.Run, j.Attempt)
	})
	opened := time.Now()
	e, err := Open(crashConfig(p.dir, ex, slog.New(slog.DiscardHandler), p.durableLeases))
	if err != nil {
		t.Fatalf("Open after the last kill: %v", err)
	}
	defer e.Close()
	rec := e.Recovery()
	t.Logf("parent recovered in %v: snapshot at %d, %d events replayed, WAL from %d (%d segments), torn tail %v",
		rec.Duration.Round(time.Microsecond), rec.SnapshotSeq, rec.EventsReplayed, e.wal.First(), rec.WAL.Segments, rec.WAL.TornTail != nil)
	if len(rec.SnapshotErrors) > 0 {
		t.Errorf("Open skipped damaged snapshots: %v", rec.SnapshotErrors)
	}
	if e.wal.First() > 1 && rec.SnapshotSeq == 0 {
		t.Errorf("the WAL was truncated to %d but no snapshot was loaded", e.wal.First())
	}
	if e.wal.First() == 1 {
		t.Errorf("the WAL was never truncated after %d snapshots' worth of events: the test does not exercise truncation", rec.EventsReplayed/500)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	for _, id := range slices.Clone(p.pending) { // none, unless the last child died early
		if _, err := e.Submit(ctx, crashSpec(id)); err != nil {
			t.Fatalf("resubmit %s: %v", id, err)
		}
		p.acked[id] = true
	}
	views := make([]TaskView, p.total)
	for i := range p.total {
		id := crashID(i)
		if !p.acked[id] {
			t.Fatalf("task %s was never acknowledged", id)
		}
		v, err := e.Wait(ctx, id)
		if err != nil {
			t.Fatalf("acknowledged task %s: %v", id, err)
		}
		views[i] = v
	}
	finished := time.Since(opened)
	if n := e.Stats().Tasks; n != p.total {
		t.Errorf("%d tasks in the engine, %d submitted", n, p.total)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()

	lostBy := map[int64]int{}
	var lost, failed, attempts int
	for _, v := range views {
		if len(v.Runs) != 1 {
			t.Fatalf("task %s has %d runs, want 1", v.ID, len(v.Runs))
		}
		r := v.Runs[0]
		attempts += len(r.Attempts)
		if used, lost := budgets(r.Attempts); used > crashMaxTries || lost > MaxLostAttempts {
			t.Errorf("run %s has %d attempts, %d lost; max_attempts %d", r.ID, len(r.Attempts), lost, crashMaxTries)
		}
		for i, a := range r.Attempts {
			if a.Number != i+1 {
				t.Errorf("run %s: attempt %d is numbered %d", r.ID, i+1, a.Number)
			}
			switch {
			case a.Outcome == "":
				t.Errorf("run %s (%s): attempt %d has no outcome", r.ID, r.State, a.Number)
			case a.Outcome == OutcomeLost:
				if !strings.HasPrefix(a.Error, "the engine stopped") {
					t.Errorf("run %s: attempt %d lost but not by a restart: %q", r.ID, a.Number, a.Error)
				}
				lostBy[a.FinishedAt]++
				lost++
			default:
				d := crashOutcome(r.ID, a.Number)
				if a.Outcome != d.Outcome || a.Retryable != d.Outcome.Retryable(d.Retryable) || a.Error != d.Error || string(a.Output) != string(d.Output) {
					t.Errorf("run %s attempt %d recorded %s %q, the executor returned %+v", r.ID, a.Number, a.Outcome, a.Error, d)
				}
				if p.executed[attemptKey(r.ID, a.Number)] == 0 {
					t.Errorf("run %s attempt %d has outcome %s but never executed", r.ID, a.Number, a.Outcome)
				}
			}
		}
		want, at := foldAttempts(&v.Spec, r.Attempts)
		if r.State != want || at != len(r.Attempts)-1 {
			t.Errorf("run %s is %s after %+v; its outcomes say %s at attempt %d", r.ID, r.State, r.Attempts, want, at+1)
		}
		if r.State == RunFailed {
			failed++
		}
		for n := len(r.Attempts) + 1; n <= crashMaxTries+MaxLostAttempts; n++ {
			if p.executed[attemptKey(r.ID, n)] > 0 {
				t.Errorf("run %s (%s after %d attempts): attempt %d executed", r.ID, r.State, len(r.Attempts), n)
			}
		}
	}
	for k, n := range p.executed {
		if n > 1 { // an early start's lease is written before it starts: SIGKILL keeps it
			t.Errorf("attempt %s executed %d times", k, n)
		}
	}
	if len(lostBy) > p.starts {
		t.Errorf("lost attempts were closed at %d different times, but there were only %d restarts", len(lostBy), p.starts)
	}
	for at, n := range lostBy {
		if n > MaxLeased(crashWorkers) {
			t.Errorf("%d attempts lost in the restart at %d, with %d workers (%d leased at most)", n, at, crashWorkers, MaxLeased(crashWorkers))
		}
	}
	if lost == 0 {
		t.Errorf("no kill caught an attempt in flight: the test does not exercise lost attempts")
	}
	var recMs []string
	for _, r := range p.readies {
		recMs = append(recMs, fmt.Sprintf("%.1f", r.DurationMs))
	}
	t.Logf("%d tasks, %d attempts (%d executions seen), %d failed as their outcomes imply; %d attempts lost over %d restarts; resubmissions after a kill: %d duplicates (durable, unacknowledged), %d fresh; child recoveries (ms): %s; the parent finished the rest in %v",
		p.total, attempts, len(p.executed), failed, lost, len(lostBy), p.dups, p.freshResubmits, strings.Join(recMs, " "), finished.Round(time.Millisecond))
}
