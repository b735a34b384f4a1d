package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wasmtask/wasmtask/api"
)

// Commands on final tasks: retry, delete, purge.

func retryCommand() *cli.Command {
	return &cli.Command{
		Name: "retry", Usage: "start a failed or canceled task again (a new run for each run that did not complete)", ArgsUsage: "ID",
		Flags: clientFlags(
			&cli.BoolFlag{Name: "wait", Usage: "wait until the task is final and print it; exit 1 unless it completed"},
			&cli.DurationFlag{Name: "wait-timeout", Value: 10 * time.Minute, Usage: "give up waiting after this long"},
			jsonFlag),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fail(exitUsage, "retry needs exactly one task ID")
			}
			cl := clientFrom(c)
			v, err := cl.TaskRetry(c.Context, c.Args().First())
			if err != nil {
				return apiFail(err)
			}
			if c.Bool("wait") {
				return waitAndPrint(c, cl, []string{v.ID})
			}
			if c.Bool("json") {
				printJSON(c.App.Writer, v)
			} else {
				fmt.Fprintf(c.App.Writer, "%s\t%s\tretry %d\n", v.ID, v.State, v.Retries)
			}
			return nil
		},
	}
}

func deleteCommand() *cli.Command {
	return &cli.Command{
		Name: "delete", Usage: "delete final tasks (and their subtrees)", ArgsUsage: "ID...",
		Flags: clientFlags(jsonFlag),
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return fail(exitUsage, "delete needs at least one task ID")
			}
			cl := clientFrom(c)
			var results []api.DeleteResult
			for _, id := range c.Args().Slice() {
				res, err := cl.TaskDelete(c.Context, id)
				if err != nil {
					return apiFail(err)
				}
				results = append(results, res)
				if !c.Bool("json") {
					fmt.Fprintf(c.App.Writer, "%s\tdeleted\t%d task(s)\n", res.ID, res.Deleted)
				}
			}
			if c.Bool("json") {
				printJSON(c.App.Writer, results)
			}
			return nil
		},
	}
}

func purgeCommand() *cli.Command {
	return &cli.Command{
		Name:  "purge",
		Usage: "delete every final task that matches the filters (all final tasks without any: needs --all)",
		Flags: clientFlags(
			&cli.StringSliceFlag{Name: "state", Usage: "completed, failed or canceled (repeatable; default: all three)"},
			&cli.StringFlag{Name: "handler", Usage: "only this handler"},
			&cli.StringSliceFlag{Name: "label", Usage: "only tasks with label KEY=VALUE (repeatable; all must match)"},
			&cli.DurationFlag{Name: "older-than", Usage: "only tasks final for at least this long, e.g. 24h"},
			&cli.BoolFlag{Name: "all", Usage: "purge every final task when no filter is given"},
			jsonFlag),
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return fail(exitUsage, "purge takes no arguments, only filters (--state, --handler, --label, --older-than)")
			}
			labels, err := labelPairs(c.StringSlice("label"))
			if err != nil {
				return err
			}
			req := api.PurgeRequest{States: c.StringSlice("state"), Handler: c.String("handler"), Labels: labels}
			if d := c.Duration("older-than"); d > 0 {
				req.OlderThan = d.String()
			}
			if len(req.States) == 0 && req.Handler == "" && len(labels) == 0 && req.OlderThan == "" && !c.Bool("all") {
				return fail(exitUsage, "purge without a filter deletes every final task: give --all to mean it, or a filter")
			}
			res, err := clientFrom(c).TaskPurge(c.Context, req)
			if err != nil {
				return apiFail(err)
			}
			if c.Bool("json") {
				printJSON(c.App.Writer, res)
			} else {
				fmt.Fprintf(c.App.Writer, "purged %d task(s)\n", res.Purged)
			}
			return nil
		},
	}
}

// labelPairs parses KEY=VALUE flags.
func labelPairs(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fail(exitUsage, "--label: want KEY=VALUE, got %q", p)
		}
		m[k] = v
	}
	return m, nil
}
