package dispatch

import (
	"context"
	"sync"
	"testing"
	"time"
)

// gatedLog is a Config.Log whose commits wait until open is closed.
type gatedLog struct {
	mu      sync.Mutex
	last    uint64
	open    chan struct{}
	waiting chan struct{} // closed by the first Commit that waits
	once    sync.Once
}

func (l *gatedLog) Append(records ...[]byte) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last += uint64(len(records))
	return l.last, nil
}

func (l *gatedLog) Commit() (uint64, error) {
	l.once.Do(func() { close(l.waiting) })
	<-l.open
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last, nil
}

func (l *gatedLog) Close() error { return nil }

// TestCommittedStateWaitsForTheCommit: the engine's committed state (a
// cluster leader's raft snapshot) is answered only once every event in
// it is committed, and holds them.
func TestCommittedStateWaitsForTheCommit(t *testing.T) {
	log := &gatedLog{open: make(chan struct{}), waiting: make(chan struct{})}
	e, err := Open(Config{Dir: t.TempDir(), Executor: &recorder{}, Workers: 2, Logger: quietLogger(), Log: log, MinFreeDisk: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go e.Submit(ctx, TaskSpec{ID: "a", Handler: "h"}) // acknowledged once committed
	select {
	case <-log.waiting:
	case <-ctx.Done():
		t.Fatal("no commit started")
	}
	type answer struct {
		b   []byte
		seq uint64
		err error
	}
	got := make(chan answer, 1)
	go func() {
		b, seq, err := e.CommittedState(ctx)
		got <- answer{b, seq, err}
	}()
	select {
	case a := <-got:
		t.Fatalf("answered before the commit: sequence %d, %v", a.seq, a.err)
	case <-time.After(100 * time.Millisecond): // it cannot answer before the gate opens: any bound shows it
	}
	close(log.open)
	a := <-got
	if a.err != nil {
		t.Fatal(a.err)
	}
	s, err := DecodeState(a.b)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Tasks["a"]; !ok || s.Applied != a.seq || a.seq == 0 || a.seq > e.DurableSeq() {
		t.Errorf("committed state: task a %v, applied %d, sequence %d, durable %d", ok, s.Applied, a.seq, e.DurableSeq())
	}
}
