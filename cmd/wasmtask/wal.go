package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/segwal"
)

func walCommand() *cli.Command {
	dataDir := &cli.StringFlag{Name: "data-dir", Value: "wasmtask-data", EnvVars: []string{"WASMTASK_DATA_DIR"}, Usage: "data directory of a stopped server"}
	return &cli.Command{
		Name:  "wal",
		Usage: "check and inspect a data directory offline (the server must be stopped)",
		Subcommands: []*cli.Command{
			{
				Name:  "verify",
				Usage: "check every WAL frame; exit 0 when the log is intact",
				Description: "Reports what the server would do at start: cut a torn tail (an interrupted write past\n" +
					"the last fsynced record, never acknowledged), or refuse damage: anywhere else, or below the\n" +
					"last fsynced record (recorded in wal/DURABLE), which a crash cannot cause. Changes nothing.",
				Flags: []cli.Flag{dataDir, jsonFlag},
				Action: func(c *cli.Context) error {
					dir := walDir(c)
					rep, err := segwal.Verify(dir)
					if err != nil {
						return walFail(err)
					}
					if c.Bool("json") {
						out := map[string]any{"dir": dir, "segments": rep.Segments, "first": rep.First, "last": rep.Last,
							"bytes": rep.Bytes, "ok": rep.OK(), "temp_files": rep.TempFiles, "durable": rep.Durable}
						if rep.DurableErr != nil {
							out["durable_error"] = rep.DurableErr.Error()
						}
						if rep.TornTail != nil {
							out["torn_tail"] = map[string]any{"segment": rep.TornTail.Segment, "offset": rep.TornTail.Offset, "bytes": rep.TornTail.Bytes, "reason": rep.TornTail.Reason.Error()}
						}
						if rep.Damage != nil {
							out["damage"] = rep.Damage.Error()
							out["bytes_after_damage"] = rep.DamageSize
							out["repair_command"] = repairCommand(c.String("data-dir"))
						}
						printJSON(c.App.Writer, out)
					} else {
						w := c.App.Writer
						fmt.Fprintf(w, "%s: %d segments, records %d..%d, %d bytes\n", dir, rep.Segments, rep.First, rep.Last, rep.Bytes)
						switch {
						case rep.DurableErr != nil:
							fmt.Fprintf(w, "warning: %v\n", rep.DurableErr)
						case rep.Durable > 0:
							fmt.Fprintf(w, "fsynced up to record %d (per wal/DURABLE)\n", rep.Durable)
						}
						for _, t := range rep.TempFiles {
							fmt.Fprintf(w, "leftover temporary file %s (removed at the next start)\n", t)
						}
						if t := rep.TornTail; t != nil && rep.Durable > 0 {
							fmt.Fprintf(w, "torn tail: %d bytes at %s offset %d (%v), after the last fsynced record %d; the next start cuts it: those records were never acknowledged\n", t.Bytes, t.Segment, t.Offset, t.Reason, rep.Durable)
						} else if t != nil {
							fmt.Fprintf(w, "torn tail: %d bytes at %s offset %d (%v); the next start cuts it. No fsynced record is on file (wal/DURABLE is missing or damaged), so this cannot be told apart from a truncation\n", t.Bytes, t.Segment, t.Offset, t.Reason)
						}
						if rep.Damage != nil {
							fmt.Fprintf(w, "DAMAGE: %v\n%d bytes follow the damage. The server refuses to start (not repaired automatically: records after the damage may have been acknowledged).\n", rep.Damage, rep.DamageSize)
							fmt.Fprintf(w, "To keep the longest valid prefix and drop those bytes, start the server once with:\n  %s\n", repairCommand(c.String("data-dir")))
						}
						if rep.OK() {
							fmt.Fprintln(w, "ok")
						}
					}
					if rep.Damage != nil {
						return &exitError{code: exitFailed, err: errors.New("the WAL is damaged")}
					}
					return nil
				},
			},
			{
				Name:  "dump",
				Usage: "print every WAL record as JSON lines",
				Flags: []cli.Flag{dataDir, &cli.Uint64Flag{Name: "from", Usage: "first sequence to print"}},
				Action: func(c *cli.Context) error {
					enc := json.NewEncoder(c.App.Writer)
					from := c.Uint64("from")
					err := segwal.ReadDir(walDir(c), func(seq uint64, rec []byte) error {
						if seq < from {
							return nil
						}
						ev, err := dispatch.DecodeEvent(rec)
						if err != nil {
							return enc.Encode(map[string]any{"seq": seq, "error": err.Error(), "bytes": len(rec)})
						}
						return enc.Encode(map[string]any{"seq": seq, "type": ev.Type.String(), "event": ev})
					})
					if err != nil {
						return walFail(err)
					}
					return nil
				},
			},
		},
	}
}

// repairCommand is the command line that keeps the longest valid prefix of
// the WAL in dataDir, as the user can paste it: this binary, as it was
// invoked, and the data dir quoted for a POSIX shell.
func repairCommand(dataDir string) string {
	return shellQuote(os.Args[0]) + " serve --data-dir " + shellQuote(dataDir) + " --repair"
}

// shellQuote returns s as one POSIX shell word.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func walDir(c *cli.Context) string {
	return dispatch.WALDir(filepath.Clean(c.String("data-dir")) + "/engine")
}

func walFail(err error) error {
	if errors.Is(err, segwal.ErrLocked) {
		return &exitError{code: exitFailed, err: fmt.Errorf("%v", err)}
	}
	return &exitError{code: exitFailed, err: err}
}
