package main

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/urfave/cli/v2"
)

// cpuProfileFlag is serve's and worker's --cpuprofile: a Go CPU profile of
// the whole run, written when the process stops (SIGTERM or SIGINT), to
// read with go tool pprof. It is how the speed work measures where a
// server's or a worker's CPU goes under `wasmtask bench` with a fixed
// number of tasks; off by default, and no HTTP endpoint, so nothing is
// exposed that the operator did not ask for.
var cpuProfileFlag = &cli.StringFlag{Name: "cpuprofile", Usage: "write a Go CPU profile of this run to FILE when the process stops (go tool pprof FILE)"}

// startCPUProfile starts the profile --cpuprofile asks for; the returned
// stop writes it (a no-op without the flag).
func startCPUProfile(c *cli.Context) (stop func(), err error) {
	path := c.String(cpuProfileFlag.Name)
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fail(exitUsage, "--cpuprofile: %v", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fail(exitFailed, "--cpuprofile %s: %v", path, err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintf(c.App.ErrWriter, "--cpuprofile %s: %v\n", path, err)
		}
	}, nil
}
