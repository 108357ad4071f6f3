// Command tether runs a local process in the context of a Kubernetes pod.
// See `tether --help`.
package main

import (
	"context"
	"os"
	"runtime/pprof"

	"github.com/tether-dev/tether/internal/cli"
	"github.com/tether-dev/tether/internal/layer"
)

func main() {
	layer.MaybeTrampoline() // the re-executed launcher never returns from here
	// TETHER_CPUPROFILE=FILE writes a CPU profile of tether itself (the
	// supervisor and session), for performance work.
	if f := os.Getenv("TETHER_CPUPROFILE"); f != "" {
		if out, err := os.Create(f); err == nil {
			pprof.StartCPUProfile(out)
			code := cli.Run(context.Background(), os.Args[1:], cli.StdStreams())
			pprof.StopCPUProfile()
			out.Close()
			os.Exit(code)
		}
	}
	os.Exit(cli.Run(context.Background(), os.Args[1:], cli.StdStreams()))
}
