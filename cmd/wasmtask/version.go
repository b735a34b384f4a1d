package main

import (
	"fmt"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// version is set at link time: make build passes
// -ldflags "-X main.version=$(git describe --tags --always --dirty)".
var version string

// buildVersion is the version this binary reports: the linked one, else
// the module version go install recorded, else the VCS revision go build
// recorded (with "-dirty" for uncommitted changes), else "devel".
func buildVersion() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	return versionFrom(info)
}

func versionFrom(info *debug.BuildInfo) string {
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		return "devel"
	}
	return "devel-" + rev[:min(12, len(rev))] + dirty
}

// Completion scripts. They call wasmtask with --generate-bash-completion
// (urfave/cli's EnableBashCompletion), so commands, subcommands and flags
// complete from the binary itself and never go stale.
const bashCompletion = `# bash completion for wasmtask: source <(wasmtask completion bash)
_wasmtask_complete() {
  local cur="${COMP_WORDS[COMP_CWORD]}" opts
  if [[ "$cur" == -* ]]; then
    opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -o bashdefault -o default -F _wasmtask_complete wasmtask
`

const zshCompletion = `#compdef wasmtask
# zsh completion for wasmtask: source <(wasmtask completion zsh)
_wasmtask() {
  local -a opts
  local cur=${words[-1]}
  if [[ "$cur" == -* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _wasmtask wasmtask
`

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: source <(wasmtask completion bash)",
		ArgsUsage: "bash|zsh",
		BashComplete: func(c *cli.Context) {
			fmt.Fprintln(c.App.Writer, "bash")
			fmt.Fprintln(c.App.Writer, "zsh")
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return fail(exitUsage, "completion takes one shell: bash or zsh")
			}
			switch c.Args().First() {
			case "bash":
				fmt.Fprint(c.App.Writer, bashCompletion)
			case "zsh":
				fmt.Fprint(c.App.Writer, zshCompletion)
			default:
				return fail(exitUsage, "completion needs a shell: bash or zsh, got %q", c.Args().First())
			}
			return nil
		},
	}
}
