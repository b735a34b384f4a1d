// Command coordinator submits a small workflow from inside a handler: a
// fan-out of N children (handler "uppercase" by default) and one fan-in
// task that runs only after all of them completed. The children are staged
// and committed with this attempt's success; their ids derive from this run
// and their ordinal, so a retried coordinator creates none twice. The
// coordinator's own task stays waiting_children until the whole workflow is
// final.
//
// Input (JSON, every field optional): {"items": 10, "worker": "uppercase", "fanin": "uppercase"}
//
// items is at most 1000: the fan-in's after lists every child (the engine's
// MaxAfter), and the host's default of 100 children per attempt is raised
// to 1001 by the manifest coordinator.json (build-examples.sh copies it
// beside the module; deploy it with `wasmtask plugin deploy coordinator
// coordinator.wasm --manifest coordinator.json`).
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o coordinator.wasm ./examples/go/coordinator
//	wasmtask submit coordinator --input '{"items": 5}' --wait
package main

import (
	"fmt"

	wasmtask "github.com/wasmtask/wasmtask/sdk/go"
)

type request struct {
	Items  int    `json:"items"`
	Worker string `json:"worker"`
	FanIn  string `json:"fanin"`
}

func init() { wasmtask.Handle(coordinate) }

func coordinate(t *wasmtask.Task) error {
	req := request{Items: 10, Worker: "uppercase", FanIn: "uppercase"}
	if len(t.Input()) > 0 {
		if err := t.DecodeInput(&req); err != nil {
			return err
		}
	}
	if req.Items < 1 || req.Items > 1000 {
		return wasmtask.Permanent(fmt.Errorf("items must be between 1 and 1000, got %d", req.Items))
	}
	ids := make([]string, 0, req.Items)
	for i := 1; i <= req.Items; i++ {
		id, err := t.Submit(wasmtask.ChildSpec{Handler: req.Worker, Input: fmt.Sprintf("item %d", i), MaxAttempts: 3})
		if err != nil {
			return fmt.Errorf("submit child %d: %w", i, err)
		}
		ids = append(ids, id)
	}
	fanin, err := t.Submit(wasmtask.ChildSpec{Handler: req.FanIn, Input: fmt.Sprintf("fan-in after %d items", req.Items), After: ids})
	if err != nil {
		return fmt.Errorf("submit fan-in: %w", err)
	}
	t.Logf("submitted %d children and fan-in %s", len(ids), fanin)
	return t.OutputJSON(map[string]any{"children": len(ids), "fanin": fanin})
}

func main() {}
