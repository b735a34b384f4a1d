package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wasmtask/wasmtask/api"
	"github.com/wasmtask/wasmtask/dispatch"
)

// clientFlags are the flags of every command that talks to a server.
func clientFlags(extra ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "server", Value: "http://127.0.0.1:7070", EnvVars: []string{"WASMTASK_SERVER"}, Usage: "server URL"},
		&cli.StringFlag{Name: "token", EnvVars: []string{"WASMTASK_TOKEN"}, Usage: "bearer token"},
		&cli.StringFlag{Name: "ca", EnvVars: []string{"WASMTASK_CA"}, Usage: "PEM file of the CA (or self-signed certificate) an https:// server's certificate must chain to; default: the system roots"},
	}, extra...)
}

var jsonFlag = &cli.BoolFlag{Name: "json", Usage: "print JSON"}

func clientFrom(c *cli.Context) *api.Client {
	cl := api.NewClient(c.String("server"), c.String("token"))
	if ca := c.String("ca"); ca != "" {
		if err := cl.TrustCA(ca); err != nil {
			// Every request then fails with this usage error (apiFail).
			cl.HTTP = &http.Client{Transport: failingTransport{&caError{err}}}
		}
	}
	return cl
}

// caError is a --ca that cannot be used; it is reported as a usage error.
type caError struct{ err error }

func (e *caError) Error() string { return "--ca: " + e.err.Error() }

type failingTransport struct{ err error }

func (t failingTransport) RoundTrip(*http.Request) (*http.Response, error) { return nil, t.err }

// apiFail maps a client error to an exit code: 3 unreachable, 2 invalid
// request, 1 otherwise.
func apiFail(err error) error {
	if ca := (*caError)(nil); errors.As(err, &ca) {
		return &exitError{code: exitUsage, err: ca}
	}
	if api.IsUnreachable(err) {
		return &exitError{code: exitUnreachable, err: err}
	}
	var e *api.Error
	if errors.As(err, &e) && (e.Status == 400 || e.Status == 401) {
		msg := e.Message
		if e.Field != "" && !strings.HasPrefix(msg, e.Field) {
			msg = e.Field + ": " + msg
		}
		code := exitFailed
		if e.Status == 400 {
			code = exitUsage // the request was invalid: fix the arguments
		}
		return &exitError{code: code, err: errors.New(msg)}
	}
	return &exitError{code: exitFailed, err: err}
}

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func submitCommand() *cli.Command {
	return &cli.Command{
		Name:      "submit",
		Usage:     "submit a task; prints its id (the task view with --wait)",
		ArgsUsage: "HANDLER",
		Flags: clientFlags(
			&cli.StringFlag{Name: "input", Usage: "input text"},
			&cli.StringFlag{Name: "input-file", Usage: "read the input from a file (- for stdin); binary is sent as input_b64"},
			&cli.StringFlag{Name: "id", Usage: "task id (default: generated); resubmitting the same spec is a no-op"},
			&cli.IntFlag{Name: "max-attempts", Value: 1, Usage: "attempts that end with a verdict before the run fails (attempts lost to a crash do not count)"},
			&cli.StringFlag{Name: "timeout", Usage: "attempt timeout, e.g. 30s"},
			&cli.IntFlag{Name: "priority", Usage: "higher runs first"},
			&cli.StringFlag{Name: "concurrency-key", Usage: "at most one run with this key executes at a time"},
			&cli.StringSliceFlag{Name: "after", Usage: "task id this task waits for (repeatable)"},
			&cli.StringFlag{Name: "at", Usage: "not before this time (RFC 3339, e.g. 2026-12-24T18:00:00Z): the spec's not_before"},
			&cli.DurationFlag{Name: "delay", Usage: "not before this long from now, e.g. 90s (sets not_before)"},
			&cli.IntFlag{Name: "repeat", Usage: "run N times"},
			&cli.StringFlag{Name: "every", Usage: "interval between repeated runs, e.g. 10s"},
			&cli.StringFlag{Name: "cron", Usage: "cron expression (6 fields with seconds, or 5)"},
			&cli.StringFlag{Name: "backoff", Usage: "retry backoff: fixed:1s or exponential:1s:1m"},
			&cli.StringSliceFlag{Name: "label", Usage: "label KEY=VALUE (repeatable)"},
			&cli.BoolFlag{Name: "wait", Usage: "wait until the task is final and print it; exit 1 unless it completed"},
			&cli.DurationFlag{Name: "wait-timeout", Value: 10 * time.Minute, Usage: "give up waiting after this long"},
			jsonFlag,
		),
		Action: runSubmit,
	}
}

func runSubmit(c *cli.Context) error {
	if c.NArg() != 1 {
		return fail(exitUsage, "submit needs exactly one HANDLER argument (see wasmtask submit --help)")
	}
	spec := api.TaskSpec{ID: c.String("id"), Handler: c.Args().First(), MaxAttempts: c.Int("max-attempts"),
		Timeout: c.String("timeout"), Priority: c.Int("priority"), ConcurrencyKey: c.String("concurrency-key"),
		After: c.StringSlice("after")}
	switch {
	case c.IsSet("max-attempts") && spec.MaxAttempts < 1:
		return fail(exitUsage, "--max-attempts must be between 1 and %d, got %d (omit it for the default, 1)", dispatch.MaxMaxAttempts, spec.MaxAttempts)
	case c.IsSet("at") && c.IsSet("delay"):
		return fail(exitUsage, "give --at or --delay, not both")
	case c.IsSet("at"):
		at, err := time.Parse(time.RFC3339Nano, c.String("at"))
		if err != nil {
			return fail(exitUsage, "--at %q: want an RFC 3339 time such as 2026-12-24T18:00:00Z", c.String("at"))
		}
		spec.NotBefore = at.UTC().Format(time.RFC3339Nano)
	case c.IsSet("delay"):
		if c.Duration("delay") < 0 {
			return fail(exitUsage, "--delay must not be negative, got %v", c.Duration("delay"))
		}
		spec.NotBefore = time.Now().Add(c.Duration("delay")).UTC().Format(time.RFC3339Nano)
	}
	input, err := readInput(c)
	if err != nil {
		return err
	}
	if c.IsSet("input") || c.IsSet("input-file") {
		if s := string(input); isText(input) {
			spec.Input = &s
		} else {
			b := base64Std(input)
			spec.InputB64 = &b
		}
	}
	switch {
	case c.IsSet("cron") && c.IsSet("repeat"):
		return fail(exitUsage, "give --repeat or --cron, not both")
	case c.IsSet("cron"):
		spec.RunPolicy = &api.RunPolicy{Cron: &api.CronSpec{Expr: c.String("cron")}}
	case c.IsSet("repeat"):
		spec.RunPolicy = &api.RunPolicy{Repeat: &api.RepeatSpec{Count: c.Int("repeat"), Every: c.String("every")}}
	case c.IsSet("every"):
		return fail(exitUsage, "--every needs --repeat")
	}
	if b := c.String("backoff"); b != "" {
		parts := strings.Split(b, ":")
		spec.Backoff = &api.Backoff{Kind: parts[0]}
		if len(parts) > 1 {
			spec.Backoff.Base = parts[1]
		}
		if len(parts) > 2 {
			spec.Backoff.Max = parts[2]
		}
	}
	for _, kv := range c.StringSlice("label") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fail(exitUsage, "--label %q: want KEY=VALUE", kv)
		}
		if spec.Labels == nil {
			spec.Labels = map[string]string{}
		}
		spec.Labels[k] = v
	}
	cl := clientFrom(c)
	var res *api.SubmitResult
	if c.Bool("wait") {
		// One request for a short task: submitted, then waited for on the
		// server (waitAndPrint goes on waiting if it is not final yet).
		res, err = cl.SubmitWait(c.Context, spec, min(c.Duration("wait-timeout"), 30*time.Second))
	} else {
		res, err = cl.Submit(c.Context, spec)
	}
	if err != nil {
		return apiFail(err)
	}
	if n := res.Task.TimeoutNote; n != "" && !c.Bool("json") {
		fmt.Fprintf(c.App.ErrWriter, "wasmtask: note: timeout %s: %s\n", res.Task.Timeout, n)
	}
	if !c.Bool("wait") {
		if c.Bool("json") {
			printJSON(c.App.Writer, res.Task)
		} else {
			fmt.Fprintln(c.App.Writer, res.Task.ID)
		}
		return nil
	}
	if isFinal(res.Task.State) {
		return printFinal(c, []api.TaskView{res.Task})
	}
	return waitAndPrint(c, cl, []string{res.Task.ID})
}

func getCommand() *cli.Command {
	return &cli.Command{
		Name: "get", Usage: "show a task", ArgsUsage: "ID",
		Flags: clientFlags(runsFlag, jsonFlag),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fail(exitUsage, "get needs exactly one task ID")
			}
			v, err := clientFrom(c).TaskGet(c.Context, c.Args().First())
			if err != nil {
				return apiFail(err)
			}
			printTask(c, v)
			return nil
		},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func shortHash(h string) string {
	if len(h) > 19 {
		return h[:19] + "…"
	}
	return orDash(h)
}

func listCommand() *cli.Command {
	return &cli.Command{
		Name: "list", Usage: "list tasks, newest first",
		Flags: clientFlags(
			&cli.StringFlag{Name: "state", Usage: "pending, running, waiting_children, completed, failed or canceled"},
			&cli.StringFlag{Name: "handler", Usage: "only this handler"},
			&cli.IntFlag{Name: "limit", Value: 50, Usage: "tasks per page (1-1000)"},
			&cli.StringFlag{Name: "cursor", Usage: "continue after this task id (printed at the end of a page)"},
			&cli.StringSliceFlag{Name: "label", Usage: "only tasks with label KEY=VALUE (repeatable; all must match)"},
			jsonFlag),
		Action: func(c *cli.Context) error {
			labels, err := labelPairs(c.StringSlice("label"))
			if err != nil {
				return err
			}
			out, err := clientFrom(c).TaskList(c.Context, &api.TaskListParams{State: c.String("state"),
				Handler: c.String("handler"), Limit: c.Int("limit"), Cursor: c.String("cursor"), Labels: labels})
			if err != nil {
				return apiFail(err)
			}
			if c.Bool("json") {
				printJSON(c.App.Writer, out)
				return nil
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tHANDLER\tRUNS\tATTEMPTS\tSUBMITTED")
			for _, v := range out.Tasks {
				attempts := 0
				for _, r := range v.Runs {
					attempts += len(r.Attempts)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", v.ID, v.State, v.Handler, len(v.Runs), attempts, v.SubmittedAt)
			}
			tw.Flush()
			if out.NextCursor != "" {
				fmt.Fprintf(c.App.Writer, "more: wasmtask list --cursor %s\n", out.NextCursor)
			}
			return nil
		},
	}
}

func waitCommand() *cli.Command {
	return &cli.Command{
		Name: "wait", Usage: "wait until tasks are final; exit 1 unless all completed", ArgsUsage: "ID...",
		Flags: clientFlags(&cli.DurationFlag{Name: "wait-timeout", Aliases: []string{"timeout"}, Value: 10 * time.Minute, Usage: "give up after this long"}, jsonFlag),
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return fail(exitUsage, "wait needs at least one task ID")
			}
			return waitAndPrint(c, clientFrom(c), c.Args().Slice())
		},
	}
}

// waitAndPrint waits for ids (showing progress on stderr when there are
// several), prints them and fails unless all completed.
func waitAndPrint(c *cli.Context, cl *api.Client, ids []string) error {
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("wait-timeout"))
	defer cancel()
	views := make([]api.TaskView, len(ids))
	progress := len(ids) > 1 && isTerminal(c.App.ErrWriter)
	done := 0
	for i, id := range ids {
		for {
			v, err := cl.TaskWait(ctx, id, 30*time.Second)
			if err != nil {
				if ctx.Err() != nil {
					return fail(exitFailed, "timed out waiting for %s (%d of %d final)", id, done, len(ids))
				}
				return apiFail(err)
			}
			if isFinal(v.State) {
				views[i] = v
				break
			}
		}
		done++
		if progress {
			fmt.Fprintf(c.App.ErrWriter, "\rwaiting: %d/%d final", done, len(ids))
		}
	}
	if progress {
		fmt.Fprintln(c.App.ErrWriter)
	}
	return printFinal(c, views)
}

// printFinal prints final task views and fails unless all completed.
func printFinal(c *cli.Context, views []api.TaskView) error {
	failed := 0
	for _, v := range views {
		if v.State != "completed" {
			failed++
		}
		if len(views) == 1 {
			printTask(c, v)
		} else if c.Bool("json") {
			printJSON(c.App.Writer, v)
		} else {
			fmt.Fprintf(c.App.Writer, "%s\t%s\n", v.ID, v.State)
		}
	}
	if failed > 0 {
		return &exitError{code: exitFailed, err: fmt.Errorf("%d of %d tasks did not complete", failed, len(views))}
	}
	return nil
}

func isFinal(state string) bool {
	return state == "completed" || state == "failed" || state == "canceled"
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func cancelCommand() *cli.Command {
	return &cli.Command{
		Name: "cancel", Usage: "cancel a task and its subtree", ArgsUsage: "ID",
		Flags: clientFlags(jsonFlag),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fail(exitUsage, "cancel needs exactly one task ID")
			}
			v, err := clientFrom(c).TaskCancel(c.Context, c.Args().First())
			if err != nil {
				return apiFail(err)
			}
			if c.Bool("json") {
				printJSON(c.App.Writer, v)
			} else {
				fmt.Fprintf(c.App.Writer, "%s\t%s\n", v.ID, v.State)
			}
			return nil
		},
	}
}

func afterCommand() *cli.Command {
	return &cli.Command{
		Name: "after", Usage: "add prerequisites to a task that has not started", ArgsUsage: "ID PREREQ...",
		Flags: clientFlags(jsonFlag),
		Action: func(c *cli.Context) error {
			if c.NArg() < 2 {
				return fail(exitUsage, "after needs a task ID and at least one prerequisite ID")
			}
			v, err := clientFrom(c).TaskAfter(c.Context, c.Args().First(), c.Args().Tail())
			if err != nil {
				return apiFail(err)
			}
			printTask(c, v)
			return nil
		},
	}
}
