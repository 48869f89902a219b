// Command vers is the command line of vers: run virtual machines and branch
// them while they run. See `vers --help`.
package main

import (
	"context"
	"os"

	"vers/internal/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), cli.NewFactory(), os.Args[1:]))
}
