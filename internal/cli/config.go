package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tether-dev/tether/internal/config"
)

func newConfigCmd(streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Inspect and check tether config files",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "schema",
		Short: "Print the JSON schema of the config file",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := streams.Out.Write(config.Schema())
			return err
		},
	})
	var file string
	verify := &cobra.Command{
		Use:   "verify -f FILE",
		Short: "Check a config file: syntax, unknown keys, types and values",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 && file == "" {
				return usageErrorf("config verify takes the file with -f: tether config verify -f %s", args[0])
			}
			return noArgs(cmd, args)
		},
		RunE: func(*cobra.Command, []string) error {
			if file == "" {
				return usageErrorf("config verify needs a file: tether config verify -f FILE")
			}
			if _, err := config.Load(file); err != nil {
				return &UsageError{Err: err}
			}
			fmt.Fprintf(streams.Out, "%s: ok\n", file)
			return nil
		},
	}
	verify.Flags().StringVarP(&file, "config-file", "f", "", "config file to check")
	cmd.AddCommand(verify)
	return cmd
}
