// Command tether-agent serves tether sessions from the context of a target
// process: its environment, files, hostname and network namespace.
//
//	tether-agent --listen 127.0.0.1:0 --target-pid PID
//
// The first line on stdout is "tether-agent listening on ADDR".
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/tether-dev/tether/internal/agent"
	"github.com/tether-dev/tether/internal/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tether-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "address to accept tether sessions on")
	pid := fs.Int("target-pid", 0, "PID of the target process (its env, files, hostname and network are served)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "tether-agent: --log-level %q: want debug, info, warn or error\n", *logLevel)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	target, err := agent.NewProcessTarget(*pid)
	if err != nil {
		fmt.Fprintf(stderr, "tether-agent: %v\n", err)
		return 1
	}
	defer target.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "tether-agent: listening on %s: %v (pick a free address with --listen)\n", *listen, err)
		return 1
	}
	fmt.Fprintf(stdout, "tether-agent listening on %s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	srv := &agent.Server{Target: target, Log: log, Version: version.Version}
	log.Info("serving", "target_pid", *pid, "version", version.Version)
	if err := srv.Serve(ctx, ln); err != nil {
		fmt.Fprintf(stderr, "tether-agent: %v\n", err)
		return 1
	}
	return 0
}
