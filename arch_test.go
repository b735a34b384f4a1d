package wasmtask_test

import (
	"os/exec"
	"strings"
	"testing"
)

// allowedImports is the dependency graph of docs/architecture.md: for each
// package, the project packages it may import (directly or not).
var allowedImports = map[string][]string{
	"segwal":           {},
	"dispatch/machine": {},
	"dispatch":         {"dispatch/machine", "dispatch/payload", "segwal"},
	"dispatch/payload": {"dispatch/machine", "segwal"},
	"host/extism":      {},
	"host":             {"host/extism", "dispatch", "dispatch/machine", "dispatch/payload", "segwal"},
	"plugins":          {"host", "host/extism", "dispatch", "dispatch/machine", "dispatch/payload", "segwal"},
	"cluster":          {"dispatch", "dispatch/machine", "dispatch/payload", "segwal"},
	"api":              {"api/ui", "cluster", "plugins", "host", "host/extism", "dispatch", "dispatch/machine", "dispatch/payload", "segwal"},
	"api/ui":           {},
	"worker":           {"api", "api/ui", "cluster", "plugins", "host", "host/extism", "dispatch", "dispatch/machine", "dispatch/payload", "segwal"},
	"cmd/wasmtask":     {"api", "api/ui", "worker", "cluster", "plugins", "host", "host/extism", "dispatch", "dispatch/machine", "dispatch/payload", "segwal"},
}

// externalAllowed lists third-party modules a package may reach, where the
// architecture restricts them.
var externalAllowed = map[string][]string{
	// golang.org/x/sys: only for per-OS calls syscall lacks (F_FULLFSYNC on macOS, LockFileEx on Windows).
	"segwal":           {"github.com/klauspost/compress", "golang.org/x/sys"},
	"dispatch":         {"github.com/klauspost/compress", "golang.org/x/sys", "github.com/fxamacker/cbor", "github.com/x448/float16", "github.com/robfig/cron", "github.com/oklog/ulid"},
	"dispatch/machine": {"github.com/fxamacker/cbor", "github.com/x448/float16", "github.com/robfig/cron", "github.com/oklog/ulid"},
	// hashicorp/raft and raft-boltdb/v2 with what they pull in (bbolt, msgpack, metrics, hclog).
	"cluster": {"github.com/klauspost/compress", "github.com/fxamacker/cbor", "github.com/x448/float16", "github.com/robfig/cron", "github.com/oklog/ulid",
		"github.com/hashicorp/", "github.com/armon/go-metrics", "github.com/boltdb/bolt", "go.etcd.io/bbolt", "github.com/fatih/color", "github.com/mattn/", "golang.org/x/sys"},
}

// pureForbidden lists what a pure package must not import directly: no
// file system, process, network or system calls, so that it stays a
// deterministic function of its inputs (the standard library reaches os
// through fmt, so only direct imports are checked).
var pureForbidden = map[string][]string{
	"dispatch/machine": {"os", "os/exec", "os/signal", "io/fs", "io/ioutil", "path/filepath", "net", "net/http", "syscall", "unsafe", "runtime", "log", "log/slog", "math/rand", "math/rand/v2", "crypto/rand", "github.com/wasmtask/wasmtask/segwal", "github.com/wasmtask/wasmtask/dispatch"},
}

// TestPurePackages checks the direct imports (tests aside) of packages
// that must do no I/O: dispatch/machine is fed inputs and a clock, and is
// applied alike by the single-node loop and a replicated log.
func TestPurePackages(t *testing.T) {
	const module = "github.com/wasmtask/wasmtask/"
	for pkg, forbidden := range pureForbidden {
		t.Run(pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-f", "{{join .Imports \"\\n\"}}", "./"+pkg).Output()
			if err != nil {
				t.Fatalf("go list ./%s: %v", pkg, err)
			}
			imports := strings.Fields(string(out))
			if len(imports) == 0 {
				t.Fatalf("go list ./%s lists no imports", pkg)
			}
			for _, imp := range imports {
				if contains(forbidden, imp) {
					t.Errorf("%s imports %s: it must stay pure (no I/O, no clock, no randomness of its own; see its doc.go)", pkg, imp)
				}
				if strings.HasPrefix(imp, module) {
					t.Errorf("%s imports %s: it imports no other package of this module", pkg, imp)
				}
			}
		})
	}
}

func TestArchitecture(t *testing.T) {
	const module = "github.com/wasmtask/wasmtask/"
	for pkg, allowed := range allowedImports {
		t.Run(pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", "./"+pkg).Output()
			if err != nil {
				t.Fatalf("go list -deps ./%s: %v", pkg, err)
			}
			for _, dep := range strings.Fields(string(out)) {
				if dep == module+pkg {
					continue
				}
				if rest, ok := strings.CutPrefix(dep, module); ok {
					if !contains(allowed, rest) {
						t.Errorf("%s imports %s; docs/architecture.md allows only %v", pkg, rest, allowed)
					}
					continue
				}
				ext, restricted := externalAllowed[pkg]
				if !restricted || !strings.Contains(strings.SplitN(dep, "/", 2)[0], ".") {
					continue // unrestricted package, or standard library
				}
				ok := false
				for _, prefix := range ext {
					ok = ok || strings.HasPrefix(dep, prefix)
				}
				if !ok {
					t.Errorf("%s depends on %s, which docs/architecture.md does not allow there", pkg, dep)
				}
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
