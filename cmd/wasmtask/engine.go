package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/wasmtask/wasmtask/api"
)

func engineCommand() *cli.Command {
	status := func(c *cli.Context, pick string) error {
		cl := clientFrom(c)
		var st api.EngineStatus
		var err error
		switch pick {
		case "pause":
			st, err = cl.EnginePause(c.Context)
		case "resume":
			st, err = cl.EngineResume(c.Context)
		default:
			st, err = cl.EngineStatus(c.Context)
		}
		if err != nil {
			return apiFail(err)
		}
		if c.Bool("json") {
			printJSON(c.App.Writer, st)
			return nil
		}
		writeEngineStatus(c.App.Writer, st)
		return nil
	}
	return &cli.Command{
		Name:  "engine",
		Usage: "pause, resume or inspect the engine",
		Subcommands: []*cli.Command{
			{Name: "pause", Usage: "stop starting attempts (durable); prints the status", Flags: clientFlags(jsonFlag), Action: func(c *cli.Context) error { return status(c, "pause") }},
			{Name: "resume", Usage: "start attempts again; prints the status", Flags: clientFlags(jsonFlag), Action: func(c *cli.Context) error { return status(c, "resume") }},
			{Name: "status", Usage: "engine status and counters", Flags: clientFlags(jsonFlag), Action: func(c *cli.Context) error { return status(c, "status") }},
		},
	}
}

// runStateOrder lists run states in their lifecycle order for the text view.
var runStateOrder = []string{"scheduled", "ready", "leased", "running", "retry_wait", "completed", "failed", "canceled", "suspended"}

// writeEngineStatus is the text view of GET /v1/engine.
func writeEngineStatus(w io.Writer, st api.EngineStatus) {
	state := "running"
	if st.Paused {
		state = "paused (no attempt starts; wasmtask engine resume)"
	}
	fmt.Fprintf(w, "engine: %s\n", state)
	if st.Version != "" {
		fmt.Fprintf(w, "version: %s\n", st.Version)
	}
	fmt.Fprintf(w, "tasks: %d  attempts in flight: %d  open waits: %d\n", st.Tasks, st.InFlight, st.OpenWaits)
	var runs []string
	for _, k := range runStateOrder {
		if n := st.Runs[k]; n > 0 {
			runs = append(runs, fmt.Sprintf("%s=%d", k, n))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(st.Runs)) { // states this client does not know
		if n := st.Runs[k]; !slices.Contains(runStateOrder, k) && n > 0 {
			runs = append(runs, fmt.Sprintf("%s=%d", k, n))
		}
	}
	if len(runs) == 0 {
		runs = []string{"none"}
	}
	fmt.Fprintf(w, "runs: %s\n", strings.Join(runs, " "))
	fmt.Fprintf(w, "wal: seq %d, %d events\n", st.WALSeq, st.Events)
	rec := st.Recovery
	fmt.Fprintf(w, "recovery: %d events replayed after snapshot seq %d in %.3fs", rec.EventsReplayed, rec.SnapshotSeq, rec.Seconds)
	if rec.TornTailBytes > 0 {
		fmt.Fprintf(w, ", a torn tail of %d bytes cut", rec.TornTailBytes)
	}
	fmt.Fprintln(w)
	if d := st.Disk; d != nil {
		fmt.Fprintf(w, "disk: wal %s, snapshots %s, plugins %s\n", sizeText(d.WALBytes), sizeText(d.SnapshotBytes), sizeText(d.PluginBytes))
	}
}

// sizeText is n bytes in the largest binary unit that keeps it at least 1.
func sizeText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), 0
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGT"[i-1])
}
