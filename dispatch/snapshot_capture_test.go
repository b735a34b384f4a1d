package dispatch

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wasmtask/wasmtask/dispatch/machine"
)

// TestCaptureIsolated: a capture taken in the loop encodes the state as it
// was, whatever the loop changes afterwards.
func TestCaptureIsolated(t *testing.T) {
	e, err := Open(Config{Dir: t.TempDir(), Executor: noopExecutor, Workers: 2, Logger: benchQuiet,
		Clock: NewManualClock(time.Unix(1_700_000_000, 0))})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	for i := range 20 {
		if _, err := e.Submit(ctx, TaskSpec{ID: TaskID(fmt.Sprint("c", i)), Handler: "h", Labels: map[string]string{"i": "x"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.RunUntilIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := e.Submit(ctx, TaskSpec{ID: TaskID(fmt.Sprint("p", i)), Handler: "h"}); err != nil {
			t.Fatal(err)
		}
	}
	e.mu.Lock()
	c := machine.CaptureState(e.state)
	want, _ := machine.EncodeStateLibrary(e.state)
	e.mu.Unlock()
	if err := e.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.RunUntilIdle(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := c.Encode()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("capture changed after the loop went on (err %v)", err)
	}
}
