package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wasmtask/wasmtask/api"
)

// defaultRuns is how many runs the text view of a task shows: a cron task
// gathers a run per occurrence, and its view would grow without end.
const defaultRuns = 10

var runsFlag = &cli.IntFlag{Name: "runs", Value: defaultRuns, Usage: "show the latest N runs of the task (0: all of them)"}

// printTask prints v as JSON (--json) or as text.
func printTask(c *cli.Context, v api.TaskView) {
	if c.Bool("json") {
		printJSON(c.App.Writer, v)
		return
	}
	runs := defaultRuns
	if hasFlag(c, "runs") {
		runs = c.Int("runs")
	}
	writeTask(c.App.Writer, v, runs, time.Now())
}

func hasFlag(c *cli.Context, name string) bool {
	for _, f := range c.Command.Flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

// maxListed bounds the ids printed on one line (children, prerequisites).
const maxListed = 10

// writeTask is the text view of a task: a header, its timeout, workflow
// links, the latest maxRuns runs (0: all) with their attempts, the output.
func writeTask(w io.Writer, v api.TaskView, maxRuns int, now time.Time) {
	fmt.Fprintf(w, "task %s  %s  handler=%s  submitted=%s", v.ID, v.State, v.Handler, v.SubmittedAt)
	if v.FinishedAt != "" {
		fmt.Fprintf(w, "  finished=%s", v.FinishedAt)
	}
	fmt.Fprintln(w)
	if v.CancelNote != "" {
		fmt.Fprintf(w, "  canceled: %s\n", v.CancelNote)
	}
	if v.Timeout != "" {
		fmt.Fprintf(w, "  timeout: %s", v.Timeout)
		if v.EffectiveTimeout != "" && v.EffectiveTimeout != v.Timeout {
			fmt.Fprintf(w, ", attempts get %s (%s)", v.EffectiveTimeout, v.TimeoutNote)
		}
		fmt.Fprintln(w)
	}
	if v.Parent != "" {
		fmt.Fprintf(w, "  parent: %s\n", v.Parent)
	}
	if len(v.After) > 0 {
		fmt.Fprintf(w, "  after: %s", listIDs(v.After))
		if len(v.WaitingFor) > 0 {
			fmt.Fprintf(w, "  (blocked: waiting for %s)", listIDs(v.WaitingFor))
		}
		fmt.Fprintln(w)
	}
	if len(v.Children) > 0 {
		fmt.Fprintf(w, "  children: %s\n", listIDs(v.Children))
	}
	if v.PrunedRuns > 0 {
		fmt.Fprintf(w, "  ... %d older final runs pruned by the server\n", v.PrunedRuns)
	}
	shown := v.Runs
	if maxRuns > 0 && len(shown) > maxRuns {
		hidden := len(shown) - maxRuns
		shown = shown[hidden:]
		fmt.Fprintf(w, "  ... %d earlier runs not shown (--runs 0 shows them)\n", hidden)
	}
	for _, r := range shown {
		state := r.State
		if len(v.WaitingFor) > 0 && r.State == "scheduled" {
			state = "blocked"
		}
		fmt.Fprintf(w, "  run %s  %s", r.ID, state)
		if due, err := time.Parse(time.RFC3339Nano, r.DueAt); err == nil && (state != "blocked" || due.After(now)) {
			fmt.Fprintf(w, "  due=%s", r.DueAt)
		}
		if r.Reason != "" {
			fmt.Fprintf(w, "  reason=%q", r.Reason)
		}
		fmt.Fprintln(w)
		for _, a := range r.Attempts {
			fmt.Fprintf(w, "    attempt %d  %s  module=%s  started=%s", a.Number, orDash(a.Outcome), shortHash(a.Module), a.StartedAt)
			if a.Worker != "" {
				fmt.Fprintf(w, "  worker=%s", a.Worker)
			}
			if a.Error != "" {
				first, _, _ := strings.Cut(a.Error, "\n")
				fmt.Fprintf(w, "  error=%q", first)
			}
			fmt.Fprintln(w)
			for _, line := range strings.Split(strings.TrimRight(a.Log, "\n"), "\n") {
				if line != "" {
					fmt.Fprintf(w, "      | %s\n", line)
				}
			}
		}
	}
	if v.Output != nil {
		fmt.Fprintf(w, "output: %s\n", *v.Output)
	} else if v.OutputB64 != nil {
		fmt.Fprintf(w, "output_b64: %s\n", *v.OutputB64)
	}
}

// listIDs joins ids, at most maxListed of them.
func listIDs(ids []string) string {
	if len(ids) <= maxListed {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ids[:maxListed], ", "), len(ids)-maxListed)
}
