package segwal

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	prng "math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestCrash kills a real process that is appending to a log with SIGKILL at
// random moments, then checks what a reopened log holds:
//
//   - Open succeeds without Options.Repair (a kill can only tear the tail);
//   - every acknowledged record is there, byte for byte;
//   - sequences are contiguous from 1 and Last() never goes back;
//   - every record present, acknowledged or not, is exactly what was
//     appended under its sequence (no garbage after the acknowledged prefix).
//
// Then it restarts the child on the same directory, so appends resume after
// whatever the previous kill left. The child is this test binary re-executed
// with -test.run=^TestCrashChild$; see runCrashChild.
//
// SIGKILL does not drop the page cache, so this tests the process-crash path
// (torn writes, interrupted rotations, kills during recovery), not power
// loss. SEGWAL_CRASH_SEED=n replays the parent's random choices of a run.
func TestCrash(t *testing.T) {
	kills := 30
	if testing.Short() {
		kills = 6
		t.Log("-short: 6 kills instead of 30")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SEGWAL_CRASH_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("SEGWAL_CRASH_SEED: %v", err)
		}
	}
	t.Logf("seed %d (rerun with SEGWAL_CRASH_SEED=%d)", seed, seed)
	rng := prng.New(prng.NewPCG(seed, 0x5e6a1))

	dir := t.TempDir()
	start := time.Now()
	var (
		lastAcked   uint64 // highest sequence any child acknowledged
		lastSeen    uint64 // Last() after the previous kill
		torn        int    // kills after which Open cut a torn tail
		tempRemoved int    // leftover .tmp files Open removed
		unacked     uint64 // records found on disk that were never acknowledged
		beforeAck   int    // kills that landed before the child acknowledged anything
		appends     int
	)
	for round := 0; round < kills; round++ {
		res := runAndKill(t, dir, rng)
		if res.opened && res.openLast != lastSeen {
			t.Fatalf("kill %d: the child opened the log at Last()=%d, the parent had left it at %d", round, res.openLast, lastSeen)
		}
		if res.acks == 0 {
			beforeAck++
		}
		appends += res.acks
		lastAcked = max(lastAcked, res.lastAck)

		l, err := Open(dir, Options{SegmentSize: crashSegmentSize, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatalf("kill %d: Open after SIGKILL: %v", round, err)
		}
		rec := l.Recovery()
		if rec.TornTail != nil {
			torn++
			t.Logf("kill %d: torn tail cut: %d bytes at offset %d of %s (%v)", round, rec.TornTail.Bytes, rec.TornTail.Offset, rec.TornTail.Segment, rec.TornTail.Reason)
		}
		tempRemoved += len(rec.TempFilesRemoved)
		if len(rec.Removed) != 0 {
			t.Fatalf("kill %d: Open without Repair removed data: %+v", round, rec.Removed)
		}
		last := l.Last()
		if last < lastAcked {
			t.Fatalf("kill %d: Last() = %d, but sequence %d was acknowledged", round, last, lastAcked)
		}
		if last < lastSeen {
			t.Fatalf("kill %d: Last() = %d went back from %d", round, last, lastSeen)
		}
		if first := l.First(); first != 1 {
			t.Fatalf("kill %d: First() = %d, want 1", round, first)
		}
		unacked += last - max(res.lastAck, lastSeen)
		// Open has checked the CRC of every frame. Compare the contents of
		// what this child wrote plus a margin before it, and of everything
		// after the last kill (a full replay per kill makes -race slow).
		from := uint64(1)
		if round < kills-1 && lastSeen > crashRecheck {
			from = lastSeen - crashRecheck
		}
		want := from
		err = l.Replay(from, func(seq uint64, got []byte) error {
			if seq != want {
				return fmt.Errorf("replay gave sequence %d, want %d", seq, want)
			}
			if exp := crashRecord(seq); !bytes.Equal(got, exp) {
				return fmt.Errorf("record %d differs: %d bytes, want %d (acknowledged: %v)", seq, len(got), len(exp), seq <= lastAcked)
			}
			want++
			return nil
		})
		if err != nil {
			t.Fatalf("kill %d: %v", round, err)
		}
		if want-1 != last {
			t.Fatalf("kill %d: replay ended at %d, Last() = %d", round, want-1, last)
		}
		segs := l.Stats().Segments
		if err := l.Close(); err != nil {
			t.Fatalf("kill %d: Close: %v", round, err)
		}
		lastSeen = last
		if testing.Verbose() {
			t.Logf("kill %d: %d acks this run, last acked %d, Last() %d, %d segments", round, res.acks, lastAcked, last, segs)
		}
	}
	t.Logf("%d kills in %v: %d appends acknowledged, %d records on disk, %d torn tails cut, %d temp files removed, %d kills before the first ack, %d unacknowledged records survived",
		kills, time.Since(start).Round(time.Millisecond), appends, lastSeen, torn, tempRemoved, beforeAck, unacked)
	if lastAcked == 0 {
		t.Fatal("no append was ever acknowledged")
	}
}

const (
	crashDirEnv      = "SEGWAL_CRASH_DIR"
	crashSegmentSize = 256 << 10
	crashRecheck     = 1000 // records before the previous Last() compared again after a kill
)

// TestCrashChild is the process TestCrash kills; without SEGWAL_CRASH_DIR it
// does nothing.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process of TestCrash")
	}
	if err := runCrashChild(dir); err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(3)
	}
	os.Exit(4) // not reached: the child appends until it is killed
}

// runCrashChild opens the log in dir with the default options (zstd, fsync
// per Append) and 256 KiB segments, prints "open <Last()>", then appends
// frames of crashRecord(seq) forever, printing "pre <first>" before each
// Append and "ack <last>" after every Append that returned nil. Each line is one write(2) on the unbuffered
// stdout, so the parent has it as soon as the child can be killed.
func runCrashChild(dir string) error {
	l, err := Open(dir, Options{SegmentSize: crashSegmentSize})
	if err != nil {
		return err
	}
	next := l.Last() + 1
	if _, err := fmt.Fprintf(os.Stdout, "open %d\n", next-1); err != nil {
		return err
	}
	rng := prng.New(prng.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))
	deadline := time.Now().Add(2 * time.Minute) // in case the parent is gone
	var recs [][]byte
	for time.Now().Before(deadline) {
		n := 1 + rng.IntN(24)
		if rng.IntN(20) == 0 {
			n = 64 + rng.IntN(200) // some frames larger than a segment
		}
		recs = recs[:0]
		for i := range n {
			recs = append(recs, crashRecord(next+uint64(i)))
		}
		// "pre" lets the parent aim a kill at this Append's write.
		if _, err := fmt.Fprintf(os.Stdout, "pre %d\n", next); err != nil {
			return err
		}
		last, err := l.Append(recs...)
		if err != nil {
			return err
		}
		if want := next + uint64(n) - 1; last != want {
			return fmt.Errorf("Append of %d records from %d returned %d, want %d", n, next, last, want)
		}
		if _, err := fmt.Fprintf(os.Stdout, "ack %d\n", last); err != nil {
			return err
		}
		next = last + 1
	}
	return errors.New("still running after 2 minutes")
}

// crashRecord is the content of record seq: a pure function of seq, from 0
// bytes to 4 KiB, some compressible text, some random bytes, some both.
func crashRecord(seq uint64) []byte {
	r := prng.New(prng.NewPCG(seq, 0xc0ffee))
	var n int
	switch k := r.IntN(10); {
	case k == 0:
		return []byte{}
	case k < 6:
		n = 1 + r.IntN(300)
	case k < 9:
		n = 300 + r.IntN(1500)
	default:
		n = 1800 + r.IntN(2300)
	}
	b := make([]byte, 0, n)
	text := func(n int) {
		chunk := fmt.Appendf(nil, `{"seq":%d,"event":"task.%s","attempt":%d},`, seq, [...]string{"queued", "running", "done"}[r.IntN(3)], r.IntN(5))
		for len(b) < n {
			b = append(b, chunk...)
		}
		b = b[:n]
	}
	random := func(n int) {
		for len(b) < n {
			b = binary.LittleEndian.AppendUint64(b, r.Uint64())
		}
		b = b[:n]
	}
	switch r.IntN(3) {
	case 0:
		text(n)
	case 1:
		random(n)
	default:
		text(n / 2)
		random(n)
	}
	return b
}

type crashRun struct {
	opened   bool   // the child printed "open"
	openLast uint64 // Last() the child saw at Open
	acks     int    // Appends acknowledged
	lastAck  uint64 // highest sequence acknowledged (0 if none)
}

// runAndKill starts a child on dir and kills it with SIGKILL, either at a
// random delay after start (possibly during Open's recovery) or at a random
// delay after the start of a random Append. It reads every line the child
// wrote before it died and checks that SIGKILL is what ended it.
func runAndKill(t *testing.T, dir string, rng *prng.Rand) crashRun {
	t.Helper()
	// Kill at a random delay after the child announces its Append number
	// killAt (1..100): up to 300µs aims at encoding and writing the frame,
	// up to 3ms at the fsync or a rotation. One time in ten, kill on a timer
	// from the start instead, when the child may still be starting or
	// recovering.
	killAt := 1 + rng.IntN(100)
	delay := time.Duration(rng.IntN(300)) * time.Microsecond
	if rng.IntN(2) == 0 {
		delay = time.Duration(rng.IntN(3000)) * time.Microsecond
	}
	startDelay := time.Duration(-1)
	if rng.IntN(10) == 0 {
		killAt = 0
		startDelay = time.Duration(rng.IntN(50_000)) * time.Microsecond
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var killOnce sync.Once
	kill := func() { killOnce.Do(func() { cmd.Process.Kill() }) }
	var killTimer *time.Timer
	if startDelay >= 0 {
		killTimer = time.AfterFunc(startDelay, kill)
	}
	pres := 0
	// A child that stops making progress is a failure, found below by its
	// exit status; this only bounds the wait.
	watchdog := time.AfterFunc(20*time.Second, kill)
	defer watchdog.Stop()

	var run crashRun
	var bad []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		verb, arg, _ := strings.Cut(line, " ")
		v, err := strconv.ParseUint(arg, 10, 64)
		switch {
		case err != nil:
			bad = append(bad, line)
		case verb == "open":
			run.opened, run.openLast = true, v
		case verb == "pre":
			if want := max(run.lastAck, run.openLast) + 1; v != want {
				t.Errorf("child announced an Append from %d, want %d", v, want)
			}
			pres++
			if pres == killAt {
				killTimer = time.AfterFunc(delay, kill)
			}
		case verb == "ack":
			if v <= run.lastAck || v <= run.openLast {
				t.Errorf("child acknowledged %d after %d (opened at %d)", v, run.lastAck, run.openLast)
			}
			run.acks++
			run.lastAck = v
		default:
			bad = append(bad, line)
		}
	}
	// EOF: the child is dead (it never closes stdout), or reading failed.
	scanErr := sc.Err()
	kill()
	if killTimer != nil {
		killTimer.Stop()
	}
	waitErr := cmd.Wait()
	if scanErr != nil {
		t.Fatalf("reading the child's output: %v", scanErr)
	}
	if len(bad) > 0 {
		t.Fatalf("unexpected output from the child: %q\nstderr:\n%s", bad, stderr.Bytes())
	}
	var ee *exec.ExitError
	if !errors.As(waitErr, &ee) {
		t.Fatalf("child: %v\nstderr:\n%s", waitErr, stderr.Bytes())
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, not by SIGKILL\nstderr:\n%s", waitErr, stderr.Bytes())
	}
	if !watchdog.Stop() {
		// The watchdog may have fired only because the kill came late; a
		// child that did reach Append killAt was making progress.
		if killAt > 0 && pres < killAt {
			t.Fatalf("child stalled: %d Appends in 20s, waiting for %d\nstderr:\n%s", pres, killAt, stderr.Bytes())
		}
	}
	return run
}
