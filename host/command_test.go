package host

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmtask/wasmtask/dispatch"
)

// TestCommandMode runs a C WASI command (testdata/wasicmd.c, which indexes
// argv[0] like Zig, TinyGo and Rust std programs) with the grants of
// Command: argv, environment, mounts, the input as a file, scratch, and
// exit codes.
func TestCommandMode(t *testing.T) {
	models := t.TempDir()
	if err := os.WriteFile(filepath.Join(models, "weights.txt"), []byte("w=42\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	secret := t.TempDir()
	if err := os.WriteFile(filepath.Join(secret, "secret.txt"), []byte("do not read"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WASMTASK_HOST_SECRET", "leaked")
	ro := []Mount{{Host: models, Guest: "/models", ReadOnly: true}}

	cases := []struct {
		name          string
		cmd           Command
		input         string
		outcome       dispatch.Outcome
		retryable     bool
		output        []string // lines, in order, of the output
		notOutput     []string // substrings the output must not hold
		errorContains string
		logContains   []string
		check         func(t *testing.T)
	}{
		{name: "argv[0] is the plugin name, env is only what is granted",
			cmd:       Command{Args: []string{"--flag", "x"}, Env: map[string]string{"B": "2", "A": "1"}},
			outcome:   dispatch.OutcomeOK,
			output:    []string{"argv0=wasicmd", "arg=--flag", "arg=x", "env=A=1", "env=B=2"},
			notOutput: []string{"WASMTASK_HOST_SECRET", "PATH="}},
		{name: "stdin is the input by default",
			cmd: Command{Args: []string{"--stdin"}}, input: "hello stdin",
			outcome: dispatch.OutcomeOK, output: []string{"argv0=wasicmd", "arg=--stdin", "hello stdin"}},
		{name: "a read-only mount reaches the guest",
			cmd:     Command{Args: []string{"--cat", "/models/weights.txt"}, Mounts: ro},
			outcome: dispatch.OutcomeOK, output: []string{"w=42"}},
		{name: "a write to a read-only mount fails",
			cmd:     Command{Args: []string{"--write", "/models/new.txt"}, Mounts: ro},
			outcome: dispatch.OutcomeFailed, retryable: false,
			errorContains: "exited with code 73 (EX_CANTCREAT)",
			logContains:   []string{"cannot write /models/new.txt"},
			check: func(t *testing.T) {
				if _, err := os.Stat(filepath.Join(models, "new.txt")); err == nil {
					t.Error("the guest created a file in a read-only mount")
				}
			}},
		{name: "a file outside the mounts cannot be read",
			cmd:     Command{Args: []string{"--cat", secret + "/secret.txt"}, Mounts: ro},
			outcome: dispatch.OutcomeFailed, errorContains: "exited with code 66 (EX_NOINPUT)",
			notOutput: []string{"do not read"}},
		{name: "no grant: no file access at all",
			cmd:     Command{Args: []string{"--cat", "/models/weights.txt"}},
			outcome: dispatch.OutcomeFailed, errorContains: "code 66", notOutput: []string{"w=42"}},
		{name: "the input as a file, its path the last argument",
			cmd: Command{Args: []string{"--cat"}, Input: InputFile, InputName: "design.v"}, input: "module top; endmodule",
			outcome: dispatch.OutcomeOK,
			output:  []string{"arg=--cat", "arg=" + InputDir + "/design.v", "module top; endmodule"}},
		{name: "scratch: writable, within its quota",
			cmd:     Command{Args: []string{"--fill", "/tmp/a", "3000"}, ScratchBytes: 4096},
			outcome: dispatch.OutcomeOK, output: []string{"filled /tmp/a with 3000 bytes"}},
		{name: "scratch: a write past the quota fails",
			cmd:     Command{Args: []string{"--fill", "/tmp/a", "10000"}, ScratchBytes: 4096},
			outcome: dispatch.OutcomeFailed, errorContains: "exited with code 74 (EX_IOERR): a permanent failure",
			logContains: []string{"write /tmp/a failed after 4096 bytes", "scratch /tmp is full"}},
		{name: "exit 64 is permanent, stdout kept in the log",
			cmd:     Command{Args: []string{"--exit", "64"}},
			outcome: dispatch.OutcomeFailed, retryable: false,
			errorContains: "exited with code 64 (EX_USAGE): a permanent failure",
			logContains:   []string{"[stdout of the failed command]\nargv0=wasicmd\narg=--exit\narg=64\n"}},
		{name: "exit 2 is permanent",
			cmd:     Command{Args: []string{"--exit", "2"}},
			outcome: dispatch.OutcomeFailed, retryable: false, errorContains: "code 2: a permanent failure"},
		{name: "exit 1 is retryable",
			cmd:     Command{Args: []string{"--exit", "1"}},
			outcome: dispatch.OutcomeFailed, retryable: true, errorContains: "code 1: a retryable failure",
			logContains: []string{"argv0=wasicmd"}},
		{name: "exit_codes: 1 permanent, a range retryable, 3 ok",
			cmd:     Command{Args: []string{"--exit", "1"}, ExitCodes: ExitCodes{"1": ExitPermanent, "60-70": ExitRetryable, "3": ExitOK}},
			outcome: dispatch.OutcomeFailed, retryable: false, errorContains: "(manifest exit_codes)"},
		{name: "exit_codes: a range overrides the default",
			cmd:     Command{Args: []string{"--exit", "64"}, ExitCodes: ExitCodes{"60-70": ExitRetryable}},
			outcome: dispatch.OutcomeFailed, retryable: true},
		{name: "exit_codes: ok keeps the output",
			cmd:     Command{Args: []string{"--exit", "3"}, ExitCodes: ExitCodes{"3": ExitOK}},
			outcome: dispatch.OutcomeOK, output: []string{"arg=3"}},
	}
	h := newTestHost(t, Config{})
	m := mustLoad(t, h, readWasm(t, "wasicmd"), 0)
	if m.Mode != ModeCommand {
		t.Fatalf("mode = %s, want command", m.Mode)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cmd.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			before, _ := filepath.Glob(filepath.Join(os.TempDir(), "wasmtask-attempt-*"))
			res := h.Run(context.Background(), m, Attempt{Input: []byte(tc.input), Command: tc.cmd,
				Info: TaskInfo{TaskID: "t", RunID: "t#1", Handler: "wasicmd@sha256:abc"}})
			want, wantRetry := tc.outcome, tc.retryable
			if res.Outcome != want || res.Retryable != wantRetry {
				t.Fatalf("outcome = %s retryable=%v (%s), want %s retryable=%v\nlog:\n%s", res.Outcome, res.Retryable, res.Error, want, wantRetry, res.Log)
			}
			if !strings.Contains(res.Error, tc.errorContains) {
				t.Errorf("error = %q, want it to contain %q", res.Error, tc.errorContains)
			}
			out := string(res.Output)
			rest := out
			for _, line := range tc.output {
				i := strings.Index(rest, line+"\n")
				if i < 0 && strings.HasSuffix(rest, line) {
					i = len(rest) - len(line)
				}
				if i < 0 {
					t.Fatalf("output lacks %q (in order):\n%s", line, out)
				}
				rest = rest[i+len(line):]
			}
			for _, s := range tc.notOutput {
				if strings.Contains(out, s) || strings.Contains(string(res.Log), s) {
					t.Errorf("output or log contains %q:\n%s\n%s", s, out, res.Log)
				}
			}
			for _, s := range tc.logContains {
				if !strings.Contains(string(res.Log), s) {
					t.Errorf("log lacks %q:\n%s", s, res.Log)
				}
			}
			after, _ := filepath.Glob(filepath.Join(os.TempDir(), "wasmtask-attempt-*"))
			if len(after) > len(before) {
				t.Errorf("attempt directories left behind: %v (before: %v)", after, before)
			}
			if tc.check != nil {
				tc.check(t)
			}
		})
	}
}

// TestCommandArgv0 shows why argv[0] matters: the same module
// started as before (argc = 0) traps.
func TestCommandArgv0(t *testing.T) {
	h := newTestHost(t, Config{})
	m := mustLoad(t, h, readWasm(t, "wasicmd"), 0)
	res := h.Run(context.Background(), m, Attempt{Info: TaskInfo{Handler: "tool"}})
	if res.Outcome != dispatch.OutcomeOK || !strings.HasPrefix(string(res.Output), "argv0=tool\n") {
		t.Fatalf("with argv[0]: %s %q %s", res.Outcome, res.Output, res.Error)
	}
	cfg := m.cfg.WithArgs() // no argv at all, the old behaviour
	mod, err := m.rt.rt.InstantiateModule(context.Background(), m.compiled, cfg)
	if mod != nil {
		mod.Close(context.Background())
	}
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("without argv[0]: err = %v, want the unreachable trap the test module mimics", err)
	}
}

func TestCommandValidate(t *testing.T) {
	root := t.TempDir()
	inside := filepath.Join(root, "models")
	outside := t.TempDir()
	for _, d := range []string{inside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(root, "file")
	os.WriteFile(file, nil, 0o644)
	link := filepath.Join(root, "escape")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		cmd     Command
		roots   []string
		wantErr string // "" = valid
	}{
		{name: "nothing granted", cmd: Command{}, roots: []string{}},
		{name: "mount under an allowed root", cmd: Command{Mounts: []Mount{{Host: inside, Guest: "/models", ReadOnly: true}}}, roots: []string{root}},
		{name: "mount without --allow-dir", cmd: Command{Mounts: []Mount{{Host: inside, Guest: "/models"}}}, roots: []string{},
			wantErr: "mounts[0].host: mounting " + inside + " needs the operator to allow it: start the server with --allow-dir"},
		{name: "mount outside the roots", cmd: Command{Mounts: []Mount{{Host: outside, Guest: "/m"}}}, roots: []string{root},
			wantErr: "is not under a directory the operator allows (--allow-dir " + root + ")"},
		{name: "a symlink out of the root", cmd: Command{Mounts: []Mount{{Host: link, Guest: "/m"}}}, roots: []string{root},
			wantErr: "is not under a directory the operator allows"},
		{name: "missing host dir", cmd: Command{Mounts: []Mount{{Host: filepath.Join(root, "nope"), Guest: "/m"}}}, roots: []string{root},
			wantErr: "mounts[0].host: " + filepath.Join(root, "nope") + " does not exist"},
		{name: "host is a file", cmd: Command{Mounts: []Mount{{Host: file, Guest: "/m"}}}, roots: []string{root},
			wantErr: "is not a directory"},
		{name: "relative host", cmd: Command{Mounts: []Mount{{Host: "models", Guest: "/m"}}}, roots: nil,
			wantErr: "mounts[0].host: must be an absolute path"},
		{name: "call: no roots needed", cmd: Command{Mounts: []Mount{{Host: outside, Guest: "/m"}}}, roots: nil},
		{name: "guest not absolute", cmd: Command{Mounts: []Mount{{Host: inside, Guest: "models"}}},
			wantErr: "mounts[0].guest: must be a clean absolute path"},
		{name: "guest /", cmd: Command{Mounts: []Mount{{Host: inside, Guest: "/"}}}, wantErr: "cannot be \"/\""},
		{name: "guest reserved", cmd: Command{Mounts: []Mount{{Host: inside, Guest: "/tmp/x"}}}, wantErr: "reserved"},
		{name: "guest twice", cmd: Command{Mounts: []Mount{{Host: inside, Guest: "/a"}, {Host: inside, Guest: "/a"}}}, wantErr: "mounts[1].guest: /a is mounted twice"},
		{name: "env name with =", cmd: Command{Env: map[string]string{"A=B": "1"}}, wantErr: "env.A=B"},
		{name: "bad input", cmd: Command{Input: "pipe"}, wantErr: `input: want "stdin" or "file", got "pipe"`},
		{name: "input name with a slash", cmd: Command{Input: InputFile, InputName: "../x"}, wantErr: "input_name: must be a plain file name"},
		{name: "negative scratch", cmd: Command{ScratchBytes: -1}, wantErr: "scratch_bytes: must not be negative"},
		{name: "exit code not a number", cmd: Command{ExitCodes: ExitCodes{"x": ExitOK}}, wantErr: "exit_codes.x: want an exit code"},
		{name: "exit code above 255", cmd: Command{ExitCodes: ExitCodes{"256": ExitOK}}, wantErr: "exit_codes.256"},
		{name: "exit range reversed", cmd: Command{ExitCodes: ExitCodes{"9-3": ExitOK}}, wantErr: "exit_codes.9-3"},
		{name: "exit action unknown", cmd: Command{ExitCodes: ExitCodes{"3": "fatal"}}, wantErr: `exit_codes.3: want "ok", "permanent" or "retryable", got "fatal"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cmd.Validate()
			if err == nil {
				err = ValidateMounts(tc.cmd.Mounts, tc.roots)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("err = %v, want none", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestExitCodesDefault(t *testing.T) {
	for code, want := range map[uint32]ExitAction{0: ExitOK, 1: ExitRetryable, 2: ExitPermanent, 3: ExitRetryable,
		63: ExitRetryable, 64: ExitPermanent, 78: ExitPermanent, 79: ExitRetryable, 137: ExitRetryable} {
		if got := ExitCodes(nil).Action(code); got != want {
			t.Errorf("default action of %d = %s, want %s", code, got, want)
		}
	}
}

func TestParseDirFlag(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Mount
		wantErr bool
	}{
		{in: "/srv/models:/models:ro", want: Mount{Host: "/srv/models", Guest: "/models", ReadOnly: true}},
		{in: "/srv/models:/models", want: Mount{Host: "/srv/models", Guest: "/models"}},
		{in: "/srv/models:/models:rw", want: Mount{Host: "/srv/models", Guest: "/models"}},
		{in: "/srv/models", wantErr: true},
		{in: "/a:/b:x", wantErr: true},
		{in: ":/b", wantErr: true},
	} {
		got, err := ParseDirFlag(tc.in)
		if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
			t.Errorf("ParseDirFlag(%q) = %+v, %v; want %+v (error %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}
