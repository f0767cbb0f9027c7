// Command skiff is a small cloud in one binary; see internal/cli.
package main

import (
	"os"

	"github.com/skiff-sh/skiff/internal/cli"
)

func main() { os.Exit(cli.Main()) }
