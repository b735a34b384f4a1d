package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/wasmtask/wasmtask/plugins"
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
				Name: "list", Usage: "list plugins and their active versions (NAME: only that one); (loading) or (failed) for one that has none, with its error", ArgsUsage: "[NAME]",
				Flags: clientFlags(jsonFlag),
				Action: func(c *cli.Context) error {
					var list []plugins.Info
					switch c.NArg() {
					case 0:
						all, err := clientFrom(c).PluginList(c.Context)
						if err != nil {
							return apiFail(err)
						}
						list = all
					case 1:
						one, err := clientFrom(c).PluginGet(c.Context, c.Args().First())
						if err != nil {
							return apiFail(err)
						}
						if c.Bool("json") {
							printJSON(c.App.Writer, one)
							return nil
						}
						list = []plugins.Info{one}
					default:
						return fail(exitUsage, "plugin list takes at most one plugin NAME")
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
						fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", p.Name, orDash(active), orDash(string(p.Mode)), distinctVersions(p.History), notes)
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

// distinctVersions counts the module versions in a plugin's history: a
// rollback or a manifest change activates a version again without adding
// one.
func distinctVersions(history []plugins.Activation) int {
	seen := map[string]bool{}
	for _, a := range history {
		seen[a.Version] = true
	}
	return len(seen)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
