// Package testguests is how tests build Go guests and where their hosts
// keep the guests' compiled code, shared by the host, sdk and examples
// tests: a Go guest takes a minute or more to compile under -race on a
// busy 2-core machine, and milliseconds to load from the cache.
package testguests

import (
	"os"
	"os/exec"
	"path/filepath"
)

// CacheDir is the compile cache folder the tests' hosts share
// (host.Config.CacheDir): wasmtask/test-guests under the user's cache
// folder, or "" (no cache) when there is none.
func CacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "wasmtask", "test-guests")
}

// GoBuild returns the command that builds the Go guest package pkg (as go
// build names it, relative to the command's Dir) into out: a wasip1
// c-shared reactor. -trimpath and -buildvcs=false: the module's bytes,
// hence its hash and its compiled code in CacheDir, do not depend on the
// checkout's path or state (every worktree and fresh clone compiled them
// anew), and the same package built by two tests is one module.
// goTool is the go command ("go" when empty).
func GoBuild(goTool, pkg, out string) *exec.Cmd {
	if goTool == "" {
		goTool = "go"
	}
	cmd := exec.Command(goTool, "build", "-trimpath", "-buildvcs=false", "-buildmode=c-shared", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOFLAGS=")
	return cmd
}
