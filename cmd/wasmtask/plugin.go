package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
)

func pluginCommand() *cli.Command {
	return &cli.Command{
		Name:  "plugin",
		Usage: "manage handler modules",
		Subcommands: []*cli.Command{
			{
				Name: "deploy", Usage: "validate, store and activate a module", ArgsUsage: "NAME FILE.wasm",
				Flags: clientFlags(&cli.StringFlag{Name: "manifest", Usage: "manifest JSON file (default: FILE.json beside the module, if present)"}, jsonFlag),
				Action: func(c *cli.Context) error {
					if c.NArg() != 2 {
						return fail(exitUsage, "plugin deploy needs NAME and FILE.wasm")
					}
					name, path := c.Args().Get(0), c.Args().Get(1)
					wasm, err := os.ReadFile(path)
					if err != nil {
						return fail(exitFailed, "read module: %v", err)
					}
					mpath := c.String("manifest")
					if mpath == "" {
						if guess := strings.TrimSuffix(path, ".wasm") + ".json"; fileExists(guess) {
							mpath = guess
						}
					}
					var manifest []byte
					if mpath != "" {
						if manifest, err = os.ReadFile(mpath); err != nil {
							return fail(exitFailed, "read manifest: %v", err)
						}
					}
					res, err := clientFrom(c).PluginDeploy(c.Context, name, wasm, manifest)
					if err != nil {
						return apiFail(err)
					}
					if c.Bool("json") {
						printJSON(c.App.Writer, res)
					} else if res.Changed {
						fmt.Fprintf(c.App.Writer, "%s %s (activated)\n", res.Name, res.Version)
					} else {
						fmt.Fprintf(c.App.Writer, "%s %s (already active)\n", res.Name, res.Version)
					}
					return nil
				},
			},
			{
				Name: "list", Usage: "list plugins and their active versions; (loading) or (failed) for one that has none, with its error",
				Flags: clientFlags(jsonFlag),
				Action: func(c *cli.Context) error {
					list, err := clientFrom(c).PluginList(c.Context)
					if err != nil {
						return apiFail(err)
					}
					if c.Bool("json") {
						printJSON(c.App.Writer, list)
						return nil
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tACTIVE\tMODE\tVERSIONS\tLAST ERROR")
					for _, p := range list {
						notes := p.LastError
						if p.Conflict != "" {
							notes = strings.TrimPrefix(notes+"; conflict: "+p.Conflict, "; ")
						}
						active := p.Active
						if p.State != "active" {
							active = "(" + p.State + ")" // never activated, still loading, or not loaded at start
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", p.Name, orDash(active), orDash(string(p.Mode)), len(p.History), notes)
					}
					return tw.Flush()
				},
			},
			{
				Name: "rollback", Usage: "re-activate the previous version (or --version)", ArgsUsage: "NAME",
				Flags: clientFlags(&cli.StringFlag{Name: "version", Usage: "sha256:<hex> to activate"}, jsonFlag),
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return fail(exitUsage, "plugin rollback needs a plugin NAME")
					}
					res, err := clientFrom(c).PluginRollback(c.Context, c.Args().First(), c.String("version"))
					if err != nil {
						return apiFail(err)
					}
					if c.Bool("json") {
						printJSON(c.App.Writer, res)
					} else {
						fmt.Fprintf(c.App.Writer, "%s %s (active; was %s)\n", res.Name, res.Version, orDash(res.Previous))
					}
					return nil
				},
			},
		},
	}
}

func engineCommand() *cli.Command {
	status := func(c *cli.Context, pick string) error {
		cl := clientFrom(c)
		var err error
		st, err := func() (any, error) {
			switch pick {
			case "pause":
				return cl.EnginePause(c.Context)
			case "resume":
				return cl.EngineResume(c.Context)
			}
			return cl.EngineStatus(c.Context)
		}()
		if err != nil {
			return apiFail(err)
		}
		printJSON(c.App.Writer, st)
		return nil
	}
	return &cli.Command{
		Name:  "engine",
		Usage: "pause, resume or inspect the engine",
		Subcommands: []*cli.Command{
			{Name: "pause", Usage: "stop starting attempts (durable)", Flags: clientFlags(), Action: func(c *cli.Context) error { return status(c, "pause") }},
			{Name: "resume", Usage: "start attempts again", Flags: clientFlags(), Action: func(c *cli.Context) error { return status(c, "resume") }},
			{Name: "status", Usage: "engine status and counters", Flags: clientFlags(), Action: func(c *cli.Context) error { return status(c, "status") }},
		},
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
