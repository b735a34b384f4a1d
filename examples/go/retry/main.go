// Command retry fails retryably on its first attempts and succeeds on the
// third (or on the attempt named by the plugin config "succeed_on"): the
// example of wasmtask's retries. Submit it with --max-attempts 3 or more.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o retry.wasm ./examples/go/retry
//	wasmtask call retry.wasm --attempt 1     # outcome: failed [retryable]
//	wasmtask call retry.wasm --attempt 3     # succeeded on attempt 3
package main

import (
	"fmt"
	"strconv"

	wasmtask "github.com/wasmtask/wasmtask/sdk/go"
)

func init() { wasmtask.Handle(flaky) }

func flaky(t *wasmtask.Task) error {
	succeedOn := 3
	if v, ok := t.Config("succeed_on"); ok {
		if n, err := strconv.Atoi(v); err == nil {
			succeedOn = n
		}
	}
	info := t.Info()
	if info.Attempt < succeedOn {
		t.Logf("attempt %d of %d: failing on purpose", info.Attempt, info.MaxAttempts)
		return wasmtask.Retryable(fmt.Errorf("transient failure on attempt %d (succeeds on attempt %d)", info.Attempt, succeedOn))
	}
	return t.OutputString(fmt.Sprintf("succeeded on attempt %d", info.Attempt))
}

func main() {}
