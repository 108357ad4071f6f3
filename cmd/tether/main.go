// Command tether runs a local process in the context of a Kubernetes pod.
// See `tether --help`.
package main

import (
	"context"
	"os"

	"github.com/tether-dev/tether/internal/cli"
	"github.com/tether-dev/tether/internal/layer"
)

func main() {
	layer.MaybeTrampoline() // the re-executed launcher never returns from here
	os.Exit(cli.Run(context.Background(), os.Args[1:], cli.StdStreams()))
}
