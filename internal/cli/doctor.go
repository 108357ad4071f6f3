package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/tether-dev/tether/internal/layer"
)

func newDoctor(streams Streams) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check that this machine can run tether",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintf(streams.Out, "platform: %s/%s\n", runtime.GOOS, runtime.GOARCH)
			if err := layer.Check(); err != nil {
				fmt.Fprintf(streams.Out, "seccomp supervisor: FAIL: %v\n", err)
				return ExitCode(1)
			}
			fmt.Fprintf(streams.Out, "seccomp supervisor: ok (kernel has user notification with WAIT_KILLABLE_RECV)\n")
			return nil
		},
	}
}
