package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"
)

// Exit codes (docs/cli.md).
const (
	exitOK          = 0
	exitFailed      = 1 // the task or operation failed
	exitUsage       = 2
	exitUnreachable = 3 // cannot reach the server
)

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func fail(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

// run builds the app and runs it with args; it returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin, stdout, stderr)
	if len(args) == 0 || args[len(args)-1] != "--generate-bash-completion" {
		// Completion needs its flag last, where urfave/cli looks for it.
		args = reorderArgs(app, args)
	}
	err := app.RunContext(ctx, args)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(stderr, "wasmtask:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "wasmtask:", err)
	return exitUsage
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                 "wasmtask",
		Usage:                "a durable task host for WebAssembly handlers",
		Version:              buildVersion(),
		EnableBashCompletion: true,
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		HideHelpCommand:      true,
		ExitErrHandler:       func(*cli.Context, error) {}, // run maps errors to exit codes
		OnUsageError:         usageError,
		Commands: []*cli.Command{
			serveCommand(),
			workerCommand(),
			workersCommand(),
			submitCommand(),
			getCommand(),
			listCommand(),
			waitCommand(),
			cancelCommand(),
			retryCommand(),
			deleteCommand(),
			purgeCommand(),
			afterCommand(),
			pluginCommand(),
			engineCommand(),
			clusterCommand(),
			callCommand(),
			walCommand(),
			benchCommand(),
			completionCommand(),
		},
	}
	app.Action = func(c *cli.Context) error { return unknownCommand(c, "wasmtask", cli.ShowAppHelp) }
	for _, c := range app.Commands {
		onUsageError(c)
	}
	return app
}

// usageError is one line on stderr and exit 2 for a bad flag, instead of
// urfave/cli's "Incorrect Usage" and the whole help on stdout.
func usageError(c *cli.Context, err error, _ bool) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		msg = "unknown flag --" + strings.TrimLeft(name, "-")
	}
	help := "wasmtask"
	if c.Command != nil && c.Command.HelpName != "" {
		help = c.Command.HelpName
	}
	return fail(exitUsage, "%s (see %s --help)", msg, help)
}

// onUsageError sets usageError on c and its subcommands: urfave/cli reads
// the App's OnUsageError only for the global flags.
func onUsageError(c *cli.Command) {
	if c.OnUsageError == nil {
		c.OnUsageError = usageError
	}
	if c.Action == nil && len(c.Subcommands) > 0 {
		name := c.Name
		c.Action = func(ctx *cli.Context) error { return unknownCommand(ctx, "wasmtask "+name, cli.ShowSubcommandHelp) }
	}
	for _, s := range c.Subcommands {
		onUsageError(s)
	}
}

// unknownCommand answers arguments that name no command with one line and
// exit 2 (urfave/cli printed "No help topic for ..."), and no arguments
// with the help.
func unknownCommand(c *cli.Context, path string, help func(*cli.Context) error) error {
	if c.NArg() == 0 {
		return help(c)
	}
	return fail(exitUsage, "unknown command %q (see %s --help)", path+" "+c.Args().First(), path)
}
