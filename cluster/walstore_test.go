package cluster

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
)

func testEntry(index, term uint64) *raft.Log {
	return &raft.Log{Index: index, Term: term, Type: raft.LogCommand,
		Data:       []byte(fmt.Sprintf("entry %d of term %d", index, term)),
		Extensions: []byte{byte(index)}, AppendedAt: time.Unix(1_700_000_000, int64(index))}
}

func storeRange(t *testing.T, s *walStore, from, to, term uint64) {
	t.Helper()
	var logs []*raft.Log
	for i := from; i <= to; i++ {
		logs = append(logs, testEntry(i, term))
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
}

// checkEntries: the store holds exactly [first, last], each entry as
// written in the term terms[index] says (default 1).
func checkEntries(t *testing.T, s *walStore, first, last uint64, terms map[uint64]uint64) {
	t.Helper()
	if got, _ := s.FirstIndex(); got != first {
		t.Errorf("FirstIndex = %d, want %d", got, first)
	}
	if got, _ := s.LastIndex(); got != last {
		t.Errorf("LastIndex = %d, want %d", got, last)
	}
	for i := max(first, 1) - 1; i <= last+1; i++ {
		var l raft.Log
		err := s.GetLog(i, &l)
		if first == 0 || i < first || i > last {
			if !errors.Is(err, raft.ErrLogNotFound) {
				t.Errorf("GetLog(%d) = %v, want raft.ErrLogNotFound", i, err)
			}
			continue
		}
		term := terms[i]
		if term == 0 {
			term = 1
		}
		want := testEntry(i, term)
		want.AppendedAt = want.AppendedAt.Local()
		l.AppendedAt = l.AppendedAt.Local()
		if err != nil {
			t.Errorf("GetLog(%d): %v", i, err)
		} else if diff := cmp.Diff(*want, l); diff != "" {
			t.Errorf("GetLog(%d) (-want +got):\n%s", i, diff)
		}
	}
}

// TestWalStoreLogs: raft's LogStore semantics (what raft-boltdb's tests
// check): first and last index, reads by index, suffix and prefix deletes,
// delete everything and start at a later index; the same after reopening.
func TestWalStoreLogs(t *testing.T) {
	for _, tc := range []struct {
		name        string
		ops         func(t *testing.T, s *walStore)
		first, last uint64
		terms       map[uint64]uint64
	}{
		{name: "empty", ops: func(t *testing.T, s *walStore) {}},
		{name: "store one by one and in batches", ops: func(t *testing.T, s *walStore) {
			if err := s.StoreLog(testEntry(1, 1)); err != nil {
				t.Fatal(err)
			}
			storeRange(t, s, 2, 10, 1)
		}, first: 1, last: 10},
		{name: "suffix delete then rewrite in a new term", ops: func(t *testing.T, s *walStore) {
			storeRange(t, s, 1, 10, 1)
			if err := s.DeleteRange(7, 10); err != nil {
				t.Fatal(err)
			}
			storeRange(t, s, 7, 12, 2)
		}, first: 1, last: 12, terms: map[uint64]uint64{7: 2, 8: 2, 9: 2, 10: 2, 11: 2, 12: 2}},
		{name: "prefix delete (compaction)", ops: func(t *testing.T, s *walStore) {
			storeRange(t, s, 1, 10, 1)
			if err := s.DeleteRange(1, 4); err != nil {
				t.Fatal(err)
			}
		}, first: 5, last: 10},
		{name: "prefix, suffix, prefix", ops: func(t *testing.T, s *walStore) {
			storeRange(t, s, 1, 20, 1)
			for _, r := range [][2]uint64{{1, 5}, {15, 20}} {
				if err := s.DeleteRange(r[0], r[1]); err != nil {
					t.Fatal(err)
				}
			}
			storeRange(t, s, 15, 18, 3)
			if err := s.DeleteRange(6, 9); err != nil {
				t.Fatal(err)
			}
		}, first: 10, last: 18, terms: map[uint64]uint64{15: 3, 16: 3, 17: 3, 18: 3}},
		{name: "delete everything, restart after a snapshot's index", ops: func(t *testing.T, s *walStore) {
			storeRange(t, s, 1, 10, 1)
			if err := s.DeleteRange(1, 10); err != nil {
				t.Fatal(err)
			}
			storeRange(t, s, 101, 103, 4)
		}, first: 101, last: 103, terms: map[uint64]uint64{101: 4, 102: 4, 103: 4}},
		{name: "deletes outside the entries change nothing", ops: func(t *testing.T, s *walStore) {
			storeRange(t, s, 5, 8, 1)
			for _, r := range [][2]uint64{{1, 4}, {9, 20}, {3, 2}} {
				if err := s.DeleteRange(r[0], r[1]); err != nil {
					t.Fatal(err)
				}
			}
		}, first: 5, last: 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := openWalStore(dir, quietLog)
			if err != nil {
				t.Fatal(err)
			}
			tc.ops(t, s)
			checkEntries(t, s, tc.first, tc.last, tc.terms)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s, err = openWalStore(dir, quietLog)
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			defer s.Close()
			checkEntries(t, s, tc.first, tc.last, tc.terms)
		})
	}
}

// TestWalStoreRefusesGaps: entries must follow the last one (the store is
// monotonic); a refused write changes nothing.
func TestWalStoreRefusesGaps(t *testing.T) {
	s, err := openWalStore(t.TempDir(), quietLog)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.IsMonotonic() {
		t.Fatal("IsMonotonic = false")
	}
	storeRange(t, s, 1, 3, 1)
	for _, logs := range [][]*raft.Log{
		{testEntry(5, 1)},
		{testEntry(3, 1)},
		{testEntry(4, 1), testEntry(6, 1)},
	} {
		err := s.StoreLogs(logs)
		if err == nil || !strings.Contains(err.Error(), "indexes must follow each other") {
			t.Errorf("StoreLogs from %d: err = %v, want the indexes refused", logs[0].Index, err)
		}
	}
	checkEntries(t, s, 1, 3, nil)
}

// TestWalStoreCompactionRemovesSegments: a prefix delete lets segwal
// remove the segments that hold only deleted entries.
func TestWalStoreCompactionRemovesSegments(t *testing.T) {
	old := walStoreSegment
	walStoreSegment = 64 << 10
	defer func() { walStoreSegment = old }()
	dir := t.TempDir()
	s, err := openWalStore(dir, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 8<<10)
	for i := uint64(1); i <= 100; i++ {
		if err := s.StoreLog(&raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: big}); err != nil {
			t.Fatal(err)
		}
	}
	segments := func() int {
		names, err := filepath.Glob(filepath.Join(dir, walStoreLogDir, "*.seg"))
		if err != nil {
			t.Fatal(err)
		}
		return len(names)
	}
	before := segments()
	if err := s.DeleteRange(1, 90); err != nil {
		t.Fatal(err)
	}
	if after := segments(); before < 10 || after > 3 {
		t.Errorf("segments: %d before compacting 90 of 100 entries of 8 KiB, %d after; want >= 10, then <= 3", before, after)
	}
	s.Close()
	if s, err = openWalStore(dir, quietLog); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if first, _ := s.FirstIndex(); first != 91 {
		t.Errorf("FirstIndex after reopen = %d, want 91", first)
	}
}

// TestWalStoreStable: raft's StableStore semantics: a missing key is an
// error whose text is "not found" (raft compares it); values survive a
// reopen.
func TestWalStoreStable(t *testing.T) {
	dir := t.TempDir()
	s, err := openWalStore(dir, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get([]byte("LastVoteCand")); err == nil || err.Error() != "not found" {
		t.Errorf("Get of a missing key: %v, want \"not found\"", err)
	}
	if _, err := s.GetUint64([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
		t.Errorf("GetUint64 of a missing key: %v, want \"not found\"", err)
	}
	for term := uint64(1); term <= 3; term++ {
		if err := s.SetUint64([]byte("CurrentTerm"), term); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("n2")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = openWalStore(dir, quietLog); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 3 {
		t.Errorf("CurrentTerm after reopen = %d, %v; want 3", v, err)
	}
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "n2" {
		t.Errorf("LastVoteCand after reopen = %q, %v; want n2", v, err)
	}
	if err := os.WriteFile(filepath.Join(dir, walStoreStable), []byte("{"), 0o640); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := openWalStore(dir, quietLog); err == nil || !strings.Contains(err.Error(), "stable.json is damaged") {
		t.Errorf("open with a damaged stable.json: %v, want it named", err)
	}
}

// TestWalStoreCrash: a writer process stores entries (every 7th batch
// cutting its last two entries and rewriting them in a new term, every
// 50th compacting a prefix, as raft does) and prints each index once
// StoreLogs returned; it is killed with SIGKILL mid-run. Reopened, the
// store holds every acknowledged entry, contiguous, as last written.
func TestWalStoreCrash(t *testing.T) {
	if dir := os.Getenv("WALSTORE_CRASH_WRITER"); dir != "" {
		crashWriter(dir)
		return
	}
	if testing.Short() {
		t.Skip("runs a writer process")
	}
	for round := range 3 {
		t.Run(fmt.Sprintf("round=%d", round), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run", "^TestWalStoreCrash$")
			cmd.Env = append(os.Environ(), "WALSTORE_CRASH_WRITER="+dir)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			acked := map[uint64]uint64{}     // index -> term acknowledged last
			var compacted, compacting uint64 // first index kept by the last compaction acknowledged, begun
			// Kill after a number of lines, then read what the writer printed
			// before it died: the pipe holds lines this loop had not read yet,
			// and a compaction or delete they announce may be on disk.
			sc := bufio.NewScanner(out)
			for n := 0; sc.Scan(); n++ {
				if n == 2000+round*700 {
					cmd.Process.Kill()
				}
				f := strings.Fields(sc.Text())
				if len(f) != 3 {
					t.Fatalf("writer: %s", sc.Text())
				}
				a, _ := strconv.ParseUint(f[1], 10, 64)
				b, _ := strconv.ParseUint(f[2], 10, 64)
				switch f[0] {
				case "stored": // index term
					acked[a] = b
				case "deleting": // lo hi: these may be gone from now on
					for i := a; i <= b; i++ {
						delete(acked, i)
					}
				case "compacting": // first index kept
					compacting = a
				case "compacted":
					compacted = a
				}
			}
			cmd.Process.Kill() // in case the writer stopped early
			cmd.Wait()
			s, err := openWalStore(dir, quietLog)
			if err != nil {
				t.Fatalf("reopen after kill -9: %v", err)
			}
			defer s.Close()
			lo, _ := s.FirstIndex()
			hi, _ := s.LastIndex()
			if lo < max(compacted, 1) || lo > max(compacting, 1) {
				t.Errorf("FirstIndex %d: compactions acknowledged up to %d, begun up to %d", lo, compacted, compacting)
			}
			for i, term := range acked {
				if i < lo {
					continue // compacted
				}
				var l raft.Log
				if err := s.GetLog(i, &l); err != nil {
					t.Fatalf("acknowledged entry %d (store holds [%d, %d]): %v", i, lo, hi, err)
				}
				if l.Term < term {
					t.Errorf("entry %d: term %d, term %d was acknowledged", i, l.Term, term)
				}
			}
			for i := lo; i <= hi; i++ {
				var l raft.Log
				if err := s.GetLog(i, &l); err != nil {
					t.Fatalf("GetLog(%d) in [%d, %d]: %v", i, lo, hi, err)
				}
				if want := fmt.Sprintf("entry %d of term %d", i, l.Term); string(l.Data) != want {
					t.Errorf("entry %d holds %q, want %q", i, l.Data, want)
				}
			}
			t.Logf("killed after %d acknowledged entries; reopened with [%d, %d]", len(acked), lo, hi)
		})
	}
}

func crashWriter(dir string) {
	s, err := openWalStore(dir, quietLog)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fail := func(err error) {
		fmt.Println("error", err)
		os.Exit(1)
	}
	next, term := uint64(1), uint64(1)
	for batch := 1; ; batch++ {
		if batch%7 == 0 && next > 3 {
			term++
			fmt.Println("deleting", next-2, next-1)
			if err := s.DeleteRange(next-2, next-1); err != nil {
				fail(err)
			}
			next -= 2
		}
		logs := []*raft.Log{}
		for range 1 + batch%5 {
			logs = append(logs, testEntry(next, term))
			next++
		}
		if err := s.StoreLogs(logs); err != nil {
			fail(err)
		}
		for _, l := range logs {
			fmt.Println("stored", l.Index, l.Term)
		}
		if batch%50 == 0 {
			fmt.Println("compacting", next-99, 0)
			if err := s.DeleteRange(1, next-100); err != nil {
				fail(err)
			}
			fmt.Println("compacted", next-99, 0)
		}
	}
}

// quietLog drops segwal's recovery reports (a killed writer leaves a torn
// tail that Open cuts and reports).
var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestWalStoreReadsBack: past walStoreMemory only the newest entries'
// data stay in memory; older ones are read back from segwal, in order (a
// follower catching up), backwards and after deletes, and after a reopen.
func TestWalStoreReadsBack(t *testing.T) {
	old := walStoreMemory
	walStoreMemory = 300 // about ten test entries
	defer func() { walStoreMemory = old }()
	dir := t.TempDir()
	s, err := openWalStore(dir, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	for from := uint64(1); from <= 400; from += 8 {
		storeRange(t, s, from, from+7, 1)
	}
	check := func(stage string, first, last uint64, terms map[uint64]uint64) {
		t.Helper()
		s.mu.RLock()
		inMem, onDisk, n := s.inMem, s.onDisk, len(s.entries)
		s.mu.RUnlock()
		if inMem > walStoreMemory+64 || onDisk < n-20 {
			t.Errorf("%s: %d bytes of data in memory, %d of %d entries on disk only; want <= %d bytes", stage, inMem, onDisk, n, walStoreMemory)
		}
		checkEntries(t, s, first, last, terms)            // forward
		for i := last; i >= first && i <= last; i -= 37 { // backward, skipping (i wraps below 0)
			var l raft.Log
			if err := s.GetLog(i, &l); err != nil || l.Index != i || !strings.HasPrefix(string(l.Data), fmt.Sprintf("entry %d ", i)) {
				t.Errorf("%s: GetLog(%d) = %d %q, %v", stage, i, l.Index, l.Data, err)
			}
		}
	}
	check("stored", 1, 400, nil)
	if err := s.DeleteRange(391, 400); err != nil {
		t.Fatal(err)
	}
	storeRange(t, s, 391, 420, 2)
	if err := s.DeleteRange(1, 100); err != nil {
		t.Fatal(err)
	}
	terms := map[uint64]uint64{}
	for i := uint64(391); i <= 420; i++ {
		terms[i] = 2
	}
	check("deleted", 101, 420, terms)
	s.Close()
	if s, err = openWalStore(dir, quietLog); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check("reopened", 101, 420, terms)
}

// TestWalStoreLargeEntryReadBack: an entry of a plugin's size read back
// from segwal does not leave a reader holding its frame.
func TestWalStoreLargeEntryReadBack(t *testing.T) {
	old := walStoreMemory
	walStoreMemory = 1 << 10
	defer func() { walStoreMemory = old }()
	s, err := openWalStore(t.TempDir(), quietLog)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i % 251)
	}
	if err := s.StoreLogs([]*raft.Log{{Index: 1, Term: 1, Type: raft.LogCommand, Data: big}}); err != nil {
		t.Fatal(err)
	}
	storeRange(t, s, 2, 50, 1)
	for range 2 {
		var l raft.Log
		if err := s.GetLog(1, &l); err != nil || !bytes.Equal(l.Data, big) {
			t.Fatalf("GetLog(1): %d bytes, %v; want the 3 MiB written", len(l.Data), err)
		}
	}
	s.readMu.Lock()
	kept, readsBack := len(s.readers), s.readsBack
	s.readMu.Unlock()
	if kept != 0 || readsBack != 2 {
		t.Errorf("%d readers kept after reading the large entry back, %d reads back; want 0 kept, 2 reads", kept, readsBack)
	}
}
