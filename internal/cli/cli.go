// Package cli is tether's command line: thin cobra commands that parse
// flags, call the library packages and print results. main only calls Run.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/version"
)

// Streams are the process's standard streams (a seam for tests).
type Streams struct {
	In       *os.File
	Out, Err io.Writer
}

// StdStreams returns the real standard streams.
func StdStreams() Streams { return Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr} }

// ExitCode carries a process exit code through cobra without printing.
type ExitCode int

func (e ExitCode) Error() string { return fmt.Sprintf("exit code %d", int(e)) }

// UsageError is a mistake in flags, arguments or config: exit code 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usageErrorf(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// Run executes the tether command line and returns the process exit code:
// the command's own code for exec, 2 for usage and config errors,
// ExitTargetGone (69) when exec's target pod is gone and the session does
// not follow it, 1 for other failures.
func Run(ctx context.Context, args []string, streams Streams) int {
	root := newRoot(streams)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var code ExitCode
	if errors.As(err, &code) {
		return int(code)
	}
	fmt.Fprintf(streams.Err, "tether: %v\n", err)
	if strings.HasPrefix(err.Error(), "unknown command ") {
		fmt.Fprintf(streams.Err, "Run 'tether --help' for the list of commands.\n")
	}
	var ue *UsageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return 2
	}
	return 1
}

// isCobraUsage recognises cobra's own flag and argument errors.
func isCobraUsage(err error) bool {
	var fe *flagError
	return errors.As(err, &fe) || strings.HasPrefix(err.Error(), "unknown command ")
}

type flagError struct{ err error }

func (e *flagError) Error() string { return e.err.Error() + " (see --help)" }

func newRoot(streams Streams) *cobra.Command {
	root := &cobra.Command{
		Use:   "tether",
		Short: "Run a local process in the context of a Kubernetes pod",
		Long: `tether runs a local command as if it were inside a pod: it gets the pod's
environment variables, files, DNS, hostname and outgoing network.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Version,
	}
	root.SetOut(streams.Out)
	root.SetErr(streams.Err)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &flagError{err} })
	root.AddCommand(newExec(streams), newLs(streams), newConfigCmd(streams), newDoctor(streams), newVersion(streams), newOperatorCmd(streams), newSessions(streams), newQueuesCmd(streams), newPolicyCmd(streams))
	return root
}

// noArgs is cobra.NoArgs with a message that names the command and where
// to read its usage.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("%s takes no arguments, got %q (see %s --help)", cmd.CommandPath(), args[0], cmd.CommandPath())
	}
	return nil
}

func newVersion(streams Streams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintf(streams.Out, "tether %s\n", version.Version)
			return nil
		},
	}
}

// isTerminal reports whether f is a terminal (not merely a character
// device: /dev/null is one too).
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
