package dispatch

import (
	"context"
	"fmt"

	"github.com/wasmtask/wasmtask/dispatch/machine"
)

// captureInput asks the loop for a capture of the state between ticks.
type captureInput struct{ reply chan *machine.StateCapture }

// CommittedState returns the snapshot encoding of the engine's state (what
// EncodeState writes) and the sequence it covers, once every event in it
// is durable: committed by a majority on a replicated Log. A cluster
// leader's raft FSM does not apply its own engine's entries a second time;
// raft's snapshots on the leader are taken from here instead. The state is
// captured between two ticks (machine.CaptureState, as the engine's own
// snapshots) and encoded here, beside the loop.
func (e *Engine) CommittedState(ctx context.Context) ([]byte, uint64, error) {
	reply := make(chan *machine.StateCapture, 1)
	if err := e.send(ctx, captureInput{reply: reply}); err != nil {
		return nil, 0, err
	}
	var c *machine.StateCapture
	select {
	case c = <-reply:
	case <-e.done:
		return nil, 0, e.stoppedErr()
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	applied := c.Applied()
	if e.waitDurable(applied); e.durable.Load() < applied {
		return nil, 0, fmt.Errorf("dispatch: state %d: %w: its events never became durable", applied, ErrStopped)
	}
	b, err := c.Encode()
	return b, applied, err
}
