package main

import (
	"context"
	"errors"
	"fmt"
	"io"

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
	return &cli.App{
		Name:                 "wasmtask",
		Usage:                "a durable task host for WebAssembly handlers",
		Version:              buildVersion(),
		EnableBashCompletion: true,
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		HideHelpCommand:      true,
		ExitErrHandler:       func(*cli.Context, error) {}, // run maps errors to exit codes
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return fail(exitUsage, "%v (see %s --help)", err, c.Command.HelpName)
		},
		Commands: []*cli.Command{
			serveCommand(),
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
			callCommand(),
			walCommand(),
			benchCommand(),
			completionCommand(),
		},
	}
}
