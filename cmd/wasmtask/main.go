// Command wasmtask is the wasmtask binary: the server and its client commands.
//
// Only a placeholder so far; the CLI (urfave/cli/v2) arrives with issues 4
// ("wasmtask call") and 6 ("wasmtask serve").
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "wasmtask: no commands yet; see README.md")
	os.Exit(2)
}
