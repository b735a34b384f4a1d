package dispatch

import (
	"context"
	"errors"
	"testing"
	"unicode/utf8"
)

// An executor's error text is guest-controlled and may be invalid UTF-8;
// the WAL stores text as CBOR text strings, so it must be cleaned before it
// is written or the next Open could not decode the record.
func TestInvalidUTF8SurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ex := ExecutorFunc(func(context.Context, Job) Result {
		return Result{Outcome: OutcomeFailed, Error: "bad \xff\xfe bytes", Module: "sha256:\xc3"}
	})
	ctx := context.Background()
	e, err := Open(Config{Dir: dir, Executor: ex, Workers: 1, SnapshotEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Submit(ctx, TaskSpec{ID: "t", Handler: "h"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Wait(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if err := e.Cancel(ctx, "t", "reason \xff"); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = Open(Config{Dir: dir, Executor: ex, Workers: 1, SnapshotEvery: -1})
	if err != nil {
		t.Fatalf("reopen after an attempt with invalid UTF-8: %v", err)
	}
	defer e.Close()
	v, _ := e.Task("t")
	a := v.Runs[0].Attempts[0]
	if !utf8.ValidString(a.Error) || a.Error != "bad \uFFFD bytes" {
		t.Errorf("error %q, want the invalid bytes replaced", a.Error)
	}
	var ve *ValidationError
	_, err = e.Submit(ctx, TaskSpec{ID: "l", Handler: "h", Labels: map[string]string{"k": "\xff"}})
	if !errors.As(err, &ve) || ve.Field != "labels" {
		t.Errorf("a label with invalid UTF-8: %v, want a ValidationError on labels", err)
	}
}

// A cron expression that never fires again would leave a task with no run
// that is never final: it is rejected at submission instead.
func TestCronWithoutFutureOccurrence(t *testing.T) {
	ctx := context.Background()
	e, err := Open(Config{Dir: t.TempDir(), Executor: ExecutorFunc(func(context.Context, Job) Result { return Result{Outcome: OutcomeOK} })})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// February 30th never happens.
	_, err = e.Submit(ctx, TaskSpec{ID: "never", Handler: "h", Policy: RunPolicy{Kind: PolicyCron, CronExpr: "0 0 0 30 2 *"}})
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "run_policy.cron.expr" {
		t.Fatalf("submit: %v, want a ValidationError on run_policy.cron.expr", err)
	}
	if _, ok := e.Task("never"); ok {
		t.Fatal("the rejected task was stored")
	}
}
