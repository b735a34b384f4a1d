package wasmtask_test

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestCrossBuild keeps wasmtask building off Linux: macOS (where developers
// run serve and call) and Windows are vetted with their tests, so a
// Linux-only (or unix-only) syscall in any file, test or not, fails here
// (unix-only tests sit behind build tags or per-OS helpers); Windows must
// also build. Cold, this costs about 2.5 minutes per target on a shared
// 2-core machine (go vet does not link); with a warm cache a few seconds.
// Skipped under -short.
func TestCrossBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles the tree")
	}
	for _, tc := range []struct {
		goos, goarch string
		cmds         [][]string
	}{
		{"darwin", "arm64", [][]string{{"vet", "./..."}}},
		{"windows", "amd64", [][]string{{"vet", "./..."}, {"build", "./..."}}},
	} {
		t.Run(tc.goos+"_"+tc.goarch, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
			defer cancel()
			for _, args := range tc.cmds {
				cmd := exec.CommandContext(ctx, "go", args...)
				cmd.Env = append(os.Environ(), "GOOS="+tc.goos, "GOARCH="+tc.goarch, "CGO_ENABLED=0")
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("GOOS=%s GOARCH=%s go %v: %v\n%s", tc.goos, tc.goarch, args, err, out)
				}
			}
		})
	}
}
