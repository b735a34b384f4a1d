package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/host"
	"github.com/wasmtask/wasmtask/plugins"
)

func callCommand() *cli.Command {
	return &cli.Command{
		Name:      "call",
		Usage:     "run a module once, locally, without a server",
		ArgsUsage: "FILE.wasm",
		Description: "Runs one attempt of the module the way the server would: output to stdout, logs to\n" +
			"stderr, then the outcome. Exits 0 when the outcome is ok, 1 otherwise.\n\n" +
			"A manifest beside the module (NAME.json for NAME.wasm) or given with --manifest is read as\n" +
			"serve reads it; --arg and --dir add to its args and mounts, --env and --config override its\n" +
			"keys, --memory-pages and --timeout its limits. argv[0] is NAME. Compiled code is cached in\n" +
			"--cache-dir, so a second call of a large module does not compile it again.\n\n" +
			"An Extism plugin (a module importing extism:host/env) runs the export named by the\n" +
			"manifest's \"extism\": {\"function\": NAME}, or by --function.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "input", Usage: "input text handed to the handler"},
			&cli.StringFlag{Name: "input-file", Usage: "read the input from this file (- for stdin)"},
			&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "attempt timeout"},
			&cli.UintFlag{Name: "memory-pages", Value: uint(host.DefaultLimits().MemoryPages), Usage: "memory limit in 64 KiB pages"},
			&cli.UintFlag{Name: "table-elements", Value: uint(host.DefaultLimits().TableElements), Usage: "limit of the module's table elements (all tables together)"},
			&cli.IntFlag{Name: "attempt", Value: 1, Usage: "attempt number reported by task_info"},
			&cli.IntFlag{Name: "max-attempts", Value: 1, Usage: "max_attempts reported by task_info"},
			&cli.StringSliceFlag{Name: "config", Usage: "plugin config value KEY=VALUE (repeatable)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "do not print logs and the outcome"},
			&cli.GenericFlag{Name: "arg", Value: &repeated{}, Usage: "argument after argv[0] (repeatable, kept as given: no comma splitting)"},
			&cli.GenericFlag{Name: "env", Value: &repeated{}, Usage: "environment variable K=V (repeatable); the guest sees no other"},
			&cli.GenericFlag{Name: "dir", Value: &repeated{}, Usage: "mount HOST:GUEST (read-write) or HOST:GUEST:ro (repeatable)"},
			&cli.StringFlag{Name: "manifest", Usage: "manifest file (default: NAME.json beside the module, when present)"},
			&cli.StringFlag{Name: "function", Usage: "Extism plugins: the export to call (overrides the manifest's extism.function)"},
			&cli.StringFlag{Name: "cache-dir", Value: defaultCacheDir(), DefaultText: "wasmtask/wazero in the user's cache directory", Usage: "compiled-code cache (\"\" for none)"},
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
	name := strings.TrimSuffix(baseName(path), ".wasm")
	man, err := callManifest(c, path)
	if err != nil {
		return err
	}
	lim, cmd, config, err := callSettings(c, man)
	if err != nil {
		return err
	}
	ctx := c.Context
	h, err := host.New(ctx, host.Config{CacheDir: c.String("cache-dir"), Max: host.Limits{MemoryPages: lim.MemoryPages, Timeout: lim.Timeout, TableElements: lim.TableElements}})
	if err != nil {
		return fail(exitFailed, "%v", err)
	}
	defer h.Close(context.Background())
	m, err := h.LoadFile(ctx, path, lim)
	var pathErr *os.PathError
	if errors.As(err, &pathErr) {
		return fail(exitFailed, "read module: %v", err)
	}
	if err != nil {
		return fail(exitFailed, "%s: %v", path, err)
	}
	if cmd.Input == host.InputFile && m.Mode != host.ModeCommand {
		return fail(exitUsage, "manifest input \"file\" is for WASI commands (_start); %s is a handler module", path)
	}
	ext, err := callExtism(c, man, m)
	if err != nil {
		return err
	}
	res := h.Run(ctx, m, host.Attempt{
		Input: input, Config: config, Limits: lim, Command: cmd, Extism: ext,
		Info: host.TaskInfo{TaskID: "call", RunID: "call#1", Attempt: c.Int("attempt"),
			MaxAttempts: max(c.Int("max-attempts"), c.Int("attempt")), Handler: name},
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

// callManifest reads --manifest, or NAME.json beside the module when it
// exists, as serve reads a plugin's manifest.
func callManifest(c *cli.Context, modulePath string) (*plugins.Manifest, error) {
	file := c.String("manifest")
	if file == "" {
		file = strings.TrimSuffix(modulePath, ".wasm") + ".json"
		if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) || !strings.HasSuffix(modulePath, ".wasm") {
			return nil, nil
		}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fail(exitFailed, "manifest: %v", err)
	}
	m, err := plugins.ParseManifest(b)
	if err != nil {
		return nil, fail(exitUsage, "%s: %v", file, err)
	}
	return m, nil
}

// callSettings merges the manifest and the flags: flags add arguments and
// mounts, and override environment, config and limits.
func callSettings(c *cli.Context, man *plugins.Manifest) (host.Limits, host.Command, map[string]string, error) {
	var none host.Limits
	lim, err := man.HostLimits()
	if err != nil {
		return none, host.Command{}, nil, fail(exitUsage, "manifest: %v", err)
	}
	if c.IsSet("memory-pages") || lim.MemoryPages == 0 {
		pages := c.Uint("memory-pages")
		if pages == 0 || pages > 65536 {
			return none, host.Command{}, nil, fail(exitUsage, "--memory-pages must be between 1 and 65536, got %d", pages)
		}
		lim.MemoryPages = uint32(pages)
	}
	if c.IsSet("table-elements") || lim.TableElements == 0 {
		tables := c.Uint("table-elements")
		if tables == 0 || tables > 1<<27 {
			return none, host.Command{}, nil, fail(exitUsage, "--table-elements must be between 1 and 134217728, got %d", tables)
		}
		lim.TableElements = uint32(tables)
	}
	if c.IsSet("timeout") || lim.Timeout == 0 {
		lim.Timeout = c.Duration("timeout")
	}
	lim = lim.Clamp(host.Limits{MemoryPages: lim.MemoryPages, Timeout: lim.Timeout, TableElements: lim.TableElements})
	cmd, err := man.Command()
	if err != nil {
		return none, cmd, nil, fail(exitUsage, "manifest: %v", err)
	}
	cmd.Args = append(slices.Clone(cmd.Args), c.Generic("arg").(*repeated).values...)
	cmd.Env = maps.Clone(cmd.Env)
	for _, kv := range c.Generic("env").(*repeated).values {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return none, cmd, nil, fail(exitUsage, "--env %q: want KEY=VALUE", kv)
		}
		if cmd.Env == nil {
			cmd.Env = map[string]string{}
		}
		cmd.Env[k] = v
	}
	cmd.Mounts = slices.Clone(cmd.Mounts)
	for _, d := range c.Generic("dir").(*repeated).values {
		mt, err := host.ParseDirFlag(d)
		if err != nil {
			return none, cmd, nil, fail(exitUsage, "%v", err)
		}
		cmd.Mounts = append(cmd.Mounts, mt)
	}
	if err := cmd.Validate(); err != nil {
		return none, cmd, nil, fail(exitUsage, "%v", err)
	}
	// The user grants their own directories: no --allow-dir roots here.
	if err := host.ValidateMounts(cmd.Mounts, nil); err != nil {
		return none, cmd, nil, fail(exitUsage, "%v", err)
	}
	config := map[string]string{}
	if man != nil {
		maps.Copy(config, man.Config)
	}
	for _, kv := range c.StringSlice("config") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return none, cmd, nil, fail(exitUsage, "--config %q: want KEY=VALUE", kv)
		}
		config[k] = v
	}
	return lim, cmd, config, nil
}

// callExtism returns the Extism settings of the manifest, with --function
// overriding its function, checked against the module.
func callExtism(c *cli.Context, man *plugins.Manifest, m *host.Module) (*host.ExtismOptions, error) {
	ext, err := man.ExtismOptions()
	if err != nil {
		return nil, fail(exitUsage, "manifest: %v", err)
	}
	if f := c.String("function"); f != "" {
		if ext == nil {
			ext = &host.ExtismOptions{}
		}
		ext.Function = f
	}
	if err := m.CheckExtism(ext); err != nil {
		hint := ""
		if m.Mode == host.ModeExtism {
			hint = " (or give --function NAME)"
		}
		return nil, fail(exitUsage, "extism: %v%s", err, hint)
	}
	return ext, nil
}

// defaultCacheDir is where call keeps compiled code: the user cache dir.
func defaultCacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "wasmtask", "wazero")
}

// repeated is a repeatable string flag that keeps each value whole
// (urfave's StringSlice splits on commas, which would break "--arg a,b").
type repeated struct{ values []string }

func (r *repeated) Set(v string) error { r.values = append(r.values, v); return nil }
func (r *repeated) String() string     { return strings.Join(r.values, " ") }
