package host

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental/sysfs"
)

// Command is what a module is granted beyond the bare sandbox, and how a
// command-mode module's exit code is read. The zero value is the sandbox:
// argv is just the plugin name, no environment, no files, input on stdin.
// Args, Env and Mounts reach handler-mode modules too (WASI is always
// present); Input and ExitCodes only matter in command mode.
type Command struct {
	// Args follow argv[0], which is always the plugin name (Zig, TinyGo,
	// Rust std and .NET programs index argv[0] and trap without it).
	Args []string
	// Env is the guest's whole environment: only these pairs, never the
	// host's. Passed sorted by key.
	Env map[string]string
	// Mounts are host directories the guest sees at their guest path.
	// Validate them with ValidateMounts before use.
	Mounts []Mount
	// Input is InputStdin (default) or InputFile: the input as a read-only
	// file whose guest path is appended as the last argument.
	Input InputMode
	// InputName is the file name of the input in InputFile mode (tools
	// that pick a parser by extension want "design.v", not "input").
	// Default "input". The file is InputDir + "/" + InputName.
	InputName string
	// ScratchBytes > 0 grants a writable ScratchDir ("/tmp"): a fresh host
	// temporary directory per attempt, removed afterwards, that accepts at
	// most this many bytes of writes (see quotaFS for what is counted).
	ScratchBytes int64
	// ExitCodes says which exit codes are ok, permanent or retryable
	// failures; codes it does not name follow DefaultExitAction.
	ExitCodes ExitCodes
}

// Mount is a host directory visible to the guest.
type Mount struct {
	Host     string `json:"host"`
	Guest    string `json:"guest"`
	ReadOnly bool   `json:"read_only"`
}

// InputMode is how a command-mode module receives the task input.
type InputMode string

const (
	InputStdin InputMode = "stdin"
	InputFile  InputMode = "file"
)

// Guest paths the host reserves for the scratch directory and the input
// file; a mount may not use them.
const (
	ScratchDir = "/tmp"
	InputDir   = "/wasmtask-input"
)

// needsFS reports whether c grants anything that needs a file system.
func (c *Command) needsFS() bool {
	return len(c.Mounts) > 0 || c.Input == InputFile || c.ScratchBytes > 0
}

// Validate checks the grants that do not depend on the operator: argument
// and environment syntax, input mode, mount paths (absolute, clean, not
// reserved, not twice). Host directories are checked by ValidateMounts.
// Errors name the field as the manifest spells it.
func (c *Command) Validate() error {
	for i, a := range c.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return &GrantError{Field: fmt.Sprintf("args[%d]", i), Reason: "contains a NUL byte"}
		}
	}
	for k, v := range c.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return &GrantError{Field: "env." + k, Reason: "a name must be non-empty without '=' or NUL, a value without NUL"}
		}
	}
	switch c.Input {
	case "", InputStdin, InputFile:
	default:
		return &GrantError{Field: "input", Reason: fmt.Sprintf("want \"stdin\" or \"file\", got %q", c.Input)}
	}
	if c.InputName != "" && (c.InputName != path.Base(c.InputName) || c.InputName == "." || c.InputName == "..") {
		return &GrantError{Field: "input_name", Reason: fmt.Sprintf("must be a plain file name, got %q", c.InputName)}
	}
	if c.ScratchBytes < 0 {
		return &GrantError{Field: "scratch_bytes", Reason: fmt.Sprintf("must not be negative, got %d", c.ScratchBytes)}
	}
	seen := map[string]bool{}
	for i, m := range c.Mounts {
		field := fmt.Sprintf("mounts[%d]", i)
		switch {
		case m.Host == "":
			return &GrantError{Field: field + ".host", Reason: "is empty"}
		case !path.IsAbs(m.Guest) || path.Clean(m.Guest) != m.Guest:
			return &GrantError{Field: field + ".guest", Reason: fmt.Sprintf("must be a clean absolute path such as \"/models\", got %q", m.Guest)}
		case m.Guest == "/":
			return &GrantError{Field: field + ".guest", Reason: "cannot be \"/\": mount a directory under it, such as \"/data\""}
		case within(m.Guest, ScratchDir) || within(m.Guest, InputDir):
			return &GrantError{Field: field + ".guest", Reason: fmt.Sprintf("%s and %s are reserved for the scratch directory and the input file", ScratchDir, InputDir)}
		case seen[m.Guest]:
			return &GrantError{Field: field + ".guest", Reason: fmt.Sprintf("%s is mounted twice", m.Guest)}
		}
		seen[m.Guest] = true
	}
	if err := c.ExitCodes.validate(); err != nil {
		return err
	}
	return nil
}

// ValidateMounts checks that every mount's host directory exists and, when
// roots is not nil, lies under one of them after resolving symbolic links
// (serve --allow-dir). It resolves each Host path in place, so an attempt
// mounts the directory that was checked. roots == nil means no check of
// the location (wasmtask call, where the user grants their own files);
// an empty non-nil roots rejects every mount.
func ValidateMounts(mounts []Mount, roots []string) error {
	for i := range mounts {
		m := &mounts[i]
		field := fmt.Sprintf("mounts[%d].host", i)
		if !filepath.IsAbs(m.Host) {
			return &GrantError{Field: field, Reason: fmt.Sprintf("must be an absolute path, got %q", m.Host)}
		}
		real, err := filepath.EvalSymlinks(m.Host)
		if err != nil {
			return &GrantError{Field: field, Reason: fmt.Sprintf("%s does not exist or cannot be read: %v", m.Host, unwrapPath(err))}
		}
		if fi, err := os.Stat(real); err != nil || !fi.IsDir() {
			return &GrantError{Field: field, Reason: fmt.Sprintf("%s is not a directory", m.Host)}
		}
		if roots != nil {
			if len(roots) == 0 {
				return &GrantError{Field: field, Reason: fmt.Sprintf("mounting %s needs the operator to allow it: start the server with --allow-dir %s (or a directory above it)", m.Host, m.Host)}
			}
			ok := false
			for _, r := range roots {
				if rr, err := filepath.EvalSymlinks(r); err == nil && within(real, rr) {
					ok = true
					break
				}
			}
			if !ok {
				return &GrantError{Field: field, Reason: fmt.Sprintf("%s is not under a directory the operator allows (--allow-dir %s)", m.Host, strings.Join(roots, ", --allow-dir "))}
			}
		}
		m.Host = real
	}
	return nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// within reports whether p is dir or below it (both clean).
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// GrantError names the manifest field of a bad grant.
type GrantError struct {
	Field  string
	Reason string
}

func (e *GrantError) Error() string { return e.Field + ": " + e.Reason }

// ParseDirFlag parses wasmtask call's --dir HOST:GUEST[:ro|:rw] (read-write
// unless :ro).
func ParseDirFlag(s string) (Mount, error) {
	parts := strings.Split(s, ":")
	m := Mount{}
	switch {
	case len(parts) == 3 && parts[2] == "ro":
		m.ReadOnly = true
	case len(parts) == 3 && parts[2] == "rw":
	case len(parts) == 2:
	default:
		return m, fmt.Errorf("--dir %q: want HOST:GUEST or HOST:GUEST:ro", s)
	}
	m.Host, m.Guest = parts[0], parts[1]
	if m.Host == "" || m.Guest == "" {
		return m, fmt.Errorf("--dir %q: want HOST:GUEST or HOST:GUEST:ro", s)
	}
	if abs, err := filepath.Abs(m.Host); err == nil {
		m.Host = abs
	}
	return m, nil
}

// ExitAction is what an exit code of a command means.
type ExitAction string

const (
	ExitOK        ExitAction = "ok"
	ExitPermanent ExitAction = "permanent"
	ExitRetryable ExitAction = "retryable"
)

// ExitCodes maps exit codes (or ranges) to actions: the manifest's
// "exit_codes": {"1": "permanent", "75": "retryable", "100-110": "ok"}.
type ExitCodes map[string]ExitAction

// DefaultExitAction is the meaning of an exit code the manifest does not
// map: 0 ok; 2 (usage error) and the sysexits codes 64-78 (EX_USAGE ..
// EX_CONFIG) permanent; anything else retryable.
func DefaultExitAction(code uint32) ExitAction {
	switch {
	case code == 0:
		return ExitOK
	case code == 2, code >= 64 && code <= 78:
		return ExitPermanent
	}
	return ExitRetryable
}

// Action returns the action for code: a single code in the mapping wins
// over a range, a range over the default.
func (e ExitCodes) Action(code uint32) ExitAction {
	a, _ := e.lookup(code)
	return a
}

// lookup returns the action for code and whether the mapping named it.
func (e ExitCodes) lookup(code uint32) (ExitAction, bool) {
	if a, ok := e[strconv.FormatUint(uint64(code), 10)]; ok {
		return a, true
	}
	for k, a := range e {
		if lo, hi, ok := parseCodeRange(k); ok && lo != hi && code >= lo && code <= hi {
			return a, true
		}
	}
	return DefaultExitAction(code), false
}

func (e ExitCodes) validate() error {
	for _, k := range slices.Sorted(maps.Keys(e)) {
		if _, _, ok := parseCodeRange(k); !ok {
			return &GrantError{Field: "exit_codes." + k, Reason: "want an exit code (\"64\") or a range (\"64-78\") of codes 0-255"}
		}
		switch e[k] {
		case ExitOK, ExitPermanent, ExitRetryable:
		default:
			return &GrantError{Field: "exit_codes." + k, Reason: fmt.Sprintf("want \"ok\", \"permanent\" or \"retryable\", got %q", e[k])}
		}
	}
	return nil
}

func parseCodeRange(k string) (lo, hi uint32, ok bool) {
	a, b, isRange := strings.Cut(k, "-")
	l, err := strconv.ParseUint(a, 10, 8)
	if err != nil {
		return 0, 0, false
	}
	if !isRange {
		return uint32(l), uint32(l), true
	}
	h, err := strconv.ParseUint(b, 10, 8)
	if err != nil || h < l {
		return 0, 0, false
	}
	return uint32(l), uint32(h), true
}

// sysexitsName names the sysexits codes, for messages.
func sysexitsName(code uint32) string {
	names := []string{"EX_USAGE", "EX_DATAERR", "EX_NOINPUT", "EX_NOUSER", "EX_NOHOST", "EX_UNAVAILABLE",
		"EX_SOFTWARE", "EX_OSERR", "EX_OSFILE", "EX_CANTCREAT", "EX_IOERR", "EX_TEMPFAIL", "EX_PROTOCOL",
		"EX_NOPERM", "EX_CONFIG"}
	if code >= 64 && code <= 78 {
		return " (" + names[code-64] + ")"
	}
	return ""
}

// attemptFS is the per-attempt file system of a module: the mounts, the
// input file and the scratch directory. close removes the temporary
// directories.
type attemptFS struct {
	dir string // host temporary directory holding input/ and scratch/
}

func (a *attemptFS) close() {
	if a != nil && a.dir != "" {
		os.RemoveAll(a.dir)
	}
}

// commandConfig adds argv, the environment and the file system of the
// attempt to cfg: input is written to the input file, hostLog gets the
// line saying the scratch is full. It returns the attemptFS to close after
// the instance.
func commandConfig(cfg wazero.ModuleConfig, c *Command, mode Mode, name string, input []byte, hostLog func(string)) (wazero.ModuleConfig, *attemptFS, error) {
	args := append([]string{name}, c.Args...)
	var afs *attemptFS
	if c.needsFS() {
		fsc := wazero.NewFSConfig()
		for _, m := range c.Mounts {
			if m.ReadOnly {
				fsc = fsc.WithReadOnlyDirMount(m.Host, m.Guest)
			} else {
				fsc = fsc.WithDirMount(m.Host, m.Guest)
			}
		}
		needInput := c.Input == InputFile && mode == ModeCommand
		if needInput || c.ScratchBytes > 0 {
			dir, err := os.MkdirTemp("", "wasmtask-attempt-")
			if err != nil {
				return cfg, nil, fmt.Errorf("attempt directory: %w", err)
			}
			afs = &attemptFS{dir: dir}
			if needInput {
				in := filepath.Join(dir, "input")
				inName := c.InputName
				if inName == "" {
					inName = "input"
				}
				if err := os.Mkdir(in, 0o700); err != nil {
					afs.close()
					return cfg, nil, fmt.Errorf("attempt directory: %w", err)
				}
				if err := os.WriteFile(filepath.Join(in, inName), input, 0o600); err != nil {
					afs.close()
					return cfg, nil, fmt.Errorf("input file: %w", err)
				}
				fsc = fsc.WithReadOnlyDirMount(in, InputDir)
				args = append(args, InputDir+"/"+inName)
			}
			if c.ScratchBytes > 0 {
				scratch := filepath.Join(dir, "scratch")
				if err := os.Mkdir(scratch, 0o700); err != nil {
					afs.close()
					return cfg, nil, fmt.Errorf("attempt directory: %w", err)
				}
				q := &quotaFS{FS: sysfs.DirFS(scratch), quota: &quota{max: c.ScratchBytes, onFull: func(n int64) {
					hostLog(fmt.Sprintf("scratch %s is full: a write of %d bytes was refused (limit %d bytes, manifest scratch_bytes)", ScratchDir, n, c.ScratchBytes))
				}}}
				fsc = fsc.(sysfs.FSConfig).WithSysFSMount(q, ScratchDir)
			}
		}
		cfg = cfg.WithFSConfig(fsc)
	}
	cfg = cfg.WithArgs(args...)
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		cfg = cfg.WithEnv(k, c.Env[k])
	}
	return cfg, afs, nil
}

// hostLog writes a line of the host's own into the attempt's log.
func (st *attemptState) hostLog(msg string) { st.log.line("host", []byte(msg)) }

// pluginName is argv[0]: the handler without a pinned version.
func pluginName(handler string) string {
	name, _, _ := strings.Cut(handler, "@")
	if name == "" {
		return "main"
	}
	return name
}
