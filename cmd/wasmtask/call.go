package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/host"
)

func callCommand() *cli.Command {
	return &cli.Command{
		Name:      "call",
		Usage:     "run a module once, locally, without a server",
		ArgsUsage: "FILE.wasm",
		Description: "Runs one attempt of the module the way the server would: output to stdout, logs to\n" +
			"stderr, then the outcome. Exits 0 when the outcome is ok, 1 otherwise.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "input", Usage: "input text handed to the handler"},
			&cli.StringFlag{Name: "input-file", Usage: "read the input from this file (- for stdin)"},
			&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "attempt timeout"},
			&cli.UintFlag{Name: "memory-pages", Value: 256, Usage: "memory limit in 64 KiB pages"},
			&cli.UintFlag{Name: "table-elements", Value: uint(host.DefaultLimits().TableElements), Usage: "limit of the module's table elements (all tables together)"},
			&cli.IntFlag{Name: "attempt", Value: 1, Usage: "attempt number reported by task_info"},
			&cli.IntFlag{Name: "max-attempts", Value: 1, Usage: "max_attempts reported by task_info"},
			&cli.StringSliceFlag{Name: "config", Usage: "plugin config value KEY=VALUE (repeatable)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "do not print logs and the outcome"},
		},
		Action: runCall,
	}
}

func runCall(c *cli.Context) error {
	if c.NArg() != 1 {
		return fail(exitUsage, "call needs exactly one FILE.wasm argument (see wasmtask call --help)")
	}
	path := c.Args().First()
	input, err := readInput(c)
	if err != nil {
		return err
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		return fail(exitFailed, "read module: %v", err)
	}
	config := map[string]string{}
	for _, kv := range c.StringSlice("config") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fail(exitUsage, "--config %q: want KEY=VALUE", kv)
		}
		config[k] = v
	}
	pages := c.Uint("memory-pages")
	if pages == 0 || pages > 65536 {
		return fail(exitUsage, "--memory-pages must be between 1 and 65536, got %d", pages)
	}
	ctx := c.Context
	tables := c.Uint("table-elements")
	if tables == 0 || tables > 1<<27 {
		return fail(exitUsage, "--table-elements must be between 1 and 134217728, got %d", tables)
	}
	h, err := host.New(ctx, host.Config{Max: host.Limits{MemoryPages: uint32(pages), Timeout: c.Duration("timeout"), TableElements: uint32(tables)}})
	if err != nil {
		return fail(exitFailed, "%v", err)
	}
	defer h.Close(context.Background())
	m, err := h.LoadLimits(ctx, wasm, host.Limits{MemoryPages: uint32(pages), TableElements: uint32(tables)})
	if err != nil {
		return fail(exitFailed, "%s: %v", path, err)
	}
	lim := host.DefaultLimits().WithMemoryPages(uint32(pages)).WithTimeout(c.Duration("timeout"))
	res := h.Run(ctx, m, host.Attempt{
		Input: input, Config: config, Limits: lim,
		Info: host.TaskInfo{TaskID: "call", RunID: "call#1", Attempt: c.Int("attempt"),
			MaxAttempts: max(c.Int("max-attempts"), c.Int("attempt")), Handler: strings.TrimSuffix(baseName(path), ".wasm")},
	})
	out := c.App.Writer
	out.Write(res.Output)
	if !c.Bool("quiet") {
		errw := c.App.ErrWriter
		errw.Write(res.Log)
		if res.LogDropped > 0 {
			fmt.Fprintf(errw, "[%d bytes of log dropped past the quota]\n", res.LogDropped)
		}
		for _, ch := range res.Children {
			fmt.Fprintf(errw, "child %s: %s\n", ch.ID, ch.Spec)
		}
		line := fmt.Sprintf("outcome: %s (%s, %s)", res.Outcome, res.Duration.Round(time.Microsecond), res.Module)
		if res.Error != "" {
			kind := ""
			if res.Outcome == dispatch.OutcomeFailed {
				kind = map[bool]string{true: " [retryable]", false: " [permanent]"}[res.Retryable]
			}
			line += kind + ": " + res.Error
		}
		fmt.Fprintln(errw, line)
	}
	if res.Outcome != dispatch.OutcomeOK {
		return &exitError{code: exitFailed, err: fmt.Errorf("")}
	}
	return nil
}

func readInput(c *cli.Context) ([]byte, error) {
	if c.IsSet("input") && c.IsSet("input-file") {
		return nil, fail(exitUsage, "give --input or --input-file, not both")
	}
	switch f := c.String("input-file"); {
	case f == "-":
		b, err := readAll(c.App.Reader)
		if err != nil {
			return nil, fail(exitFailed, "read stdin: %v", err)
		}
		return b, nil
	case f != "":
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fail(exitFailed, "--input-file: %v", err)
		}
		return b, nil
	}
	return []byte(c.String("input")), nil
}
