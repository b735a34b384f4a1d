package dispatch

import (
	"errors"
	"fmt"

	"github.com/wasmtask/wasmtask/dispatch/machine"
)

var errReplayStopped = errors.New("dispatch: replay stopped")

// replay applies the WAL records after state.Applied to state, through
// apply as live ticks do. Another goroutine reads and decodes the records
// in batches while this one applies them: decoding is a third of the work,
// and the two overlap. The error is the one the plain loop would return:
// the first record, by sequence, that fails to decode or to apply.
func (e *Engine) replay(state *State) error {
	const batchSize = 1024
	type batch struct {
		first  uint64
		events []Event
		bytes  int
	}
	from := state.Applied + 1
	batches := make(chan batch, 8)
	free := make(chan []Event, 10)
	stop := make(chan struct{})
	var readErr error // set before batches is closed
	go func() {
		defer close(batches)
		cur := batch{events: make([]Event, 0, batchSize)}
		send := func() bool {
			select {
			case batches <- cur:
			case <-stop:
				return false
			}
			select {
			case events := <-free:
				cur = batch{events: events}
			default:
				cur = batch{events: make([]Event, 0, batchSize)}
			}
			return true
		}
		readErr = e.wal.Replay(from, func(seq uint64, rec []byte) error {
			ev, err := machine.DecodeEvent(rec)
			if err != nil {
				return fmt.Errorf("WAL record %d: %w", seq, err)
			}
			if len(cur.events) == 0 {
				cur.first = seq
			}
			cur.events = append(cur.events, ev)
			cur.bytes += len(rec)
			if len(cur.events) == batchSize && !send() {
				return errReplayStopped
			}
			return nil
		})
		if len(cur.events) > 0 {
			send()
		}
	}()
	var applyErr error
	for b := range batches {
		for i := 0; i < len(b.events) && applyErr == nil; i++ {
			seq := b.first + uint64(i)
			if err := machine.Apply(state, &b.events[i]); err != nil {
				applyErr = fmt.Errorf("WAL record %d: %w", seq, err)
				close(stop) // and drain what the reader already sent
				break
			}
			state.Applied = seq
			e.recovery.EventsReplayed++
		}
		if applyErr == nil {
			e.recovery.BytesReplayed += uint64(b.bytes)
		}
		clear(b.events)
		select {
		case free <- b.events[:0]:
		default:
		}
	}
	if applyErr != nil {
		return applyErr
	}
	return readErr
}
