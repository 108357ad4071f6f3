package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tether-dev/tether/internal/config"
	"github.com/tether-dev/tether/internal/layer"
	"github.com/tether-dev/tether/internal/session"
)

type execFlags struct {
	agentAddr  string
	configFile string
	target     string
	namespace  string
	quiet      bool
	verbose    bool
}

func newExec(streams Streams) *cobra.Command {
	var f execFlags
	cmd := &cobra.Command{
		Use:   "exec [flags] -- COMMAND [ARGS...]",
		Short: "Run COMMAND with the target's environment, files, DNS and network",
		Example: `  tether exec --agent-addr 127.0.0.1:7000 -- curl http://api.default.svc.cluster.local/
  tether exec -f .tether/config.yaml --agent-addr 127.0.0.1:7000 -- go run ./cmd/server`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf("exec needs a command to run: tether exec [flags] -- COMMAND [ARGS...]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExec(cmd.Context(), streams, f, args)
		},
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	fl.StringVar(&f.agentAddr, "agent-addr", "", "address (host:port) of a tether-agent started by other means")
	fl.StringVarP(&f.configFile, "config-file", "f", "", "config file (JSON, YAML or TOML; default .tether/config.* when present)")
	fl.StringVarP(&f.target, "target", "t", "", "target in Kubernetes: pod/NAME, deployment/NAME, ... (overrides the config's target)")
	fl.StringVarP(&f.namespace, "namespace", "n", "", "namespace of the target")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print nothing but the command's own output")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "log tether's decisions to stderr")
	return cmd
}

// loadConfig reads -f FILE or the default .tether/config.* file.
func loadConfig(file string) (*config.Config, string, error) {
	if file != "" {
		cfg, err := config.Load(file)
		if err != nil {
			return nil, "", &UsageError{Err: err}
		}
		return cfg, file, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil, "", err
	}
	cfg, used, err := config.LoadDefault(wd)
	if err != nil {
		return nil, "", &UsageError{Err: err}
	}
	return cfg, used, nil
}

func runExec(ctx context.Context, streams Streams, f execFlags, args []string) error {
	cfg, cfgFile, err := loadConfig(f.configFile)
	if err != nil {
		return err
	}
	if f.target != "" {
		cfg.Target = f.target
	}
	addr := f.agentAddr
	if addr == "" {
		addr = cfg.Agent.Address
	}
	if addr == "" {
		if cfg.Target != "" {
			return usageErrorf("target %q: Kubernetes targets are not available in this build yet; start tether-agent next to the target and pass --agent-addr HOST:PORT", cfg.Target)
		}
		return usageErrorf("no agent to connect to: pass --agent-addr HOST:PORT (or set agent.address in the config)")
	}
	if err := layer.Check(); err != nil {
		return err
	}
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(streams.Err, &slog.HandlerOptions{Level: level}))

	conn, err := session.DialAgent(ctx, addr)
	if err != nil {
		return err
	}
	sess, err := session.New(ctx, conn, session.Options{Config: cfg, Log: log, LocalDirs: session.LocalDirs(args[0]), Messages: streams.Err, Quiet: f.quiet})
	if err != nil {
		return fmt.Errorf("starting the session with the agent at %s: %w", addr, err)
	}
	defer sess.Close()
	env, err := sess.Env(os.Environ())
	if err != nil {
		return &UsageError{Err: fmt.Errorf("env.env_file: %w", err)}
	}
	if !f.quiet {
		printSummary(streams, sess, cfg, cfgFile, addr)
	}
	finished := make(chan struct{})
	go func() {
		select {
		case <-sess.Done():
			fmt.Fprintln(streams.Err, "tether: warning: the connection to the agent was lost: remote files, DNS and connections fail until the command ends")
		case <-finished:
		}
	}()
	err = layer.Run(ctx, layer.Options{
		Args: args, Env: env,
		Stdin: streams.In, Stdout: streams.Out, Stderr: streams.Err,
		Session: sess, Log: log,
	})
	close(finished)
	var ee *layer.ExitError
	var le *layer.LaunchError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee):
		return ExitCode(ee.Code)
	case errors.As(err, &le):
		if strings.Contains(le.Msg, "command not found") {
			fmt.Fprintf(streams.Err, "tether: %s\n", le.Msg)
			return ExitCode(127)
		}
		return fmt.Errorf("starting %s: %s", args[0], le.Msg)
	}
	return err
}

func printSummary(streams Streams, sess *session.Session, cfg *config.Config, cfgFile, addr string) {
	t := sess.Target()
	src := "defaults"
	if cfgFile != "" {
		src = cfgFile
	}
	fmt.Fprintf(streams.Err, "tether: session %s · agent %s · target pid %d (%s)\n", sess.ID(), addr, t.PID, t.Hostname)
	fmt.Fprintf(streams.Err, "tether: config %s · env %s · fs %s · dns %s · outgoing tcp %s udp %s\n",
		src, onOff(cfg.EnvEnabled()), cfg.FSMode(), onOff(cfg.DNSEnabled()), onOff(cfg.OutgoingTCP()), onOff(cfg.OutgoingUDP()))
}

func onOff(b bool) string {
	if b {
		return "remote"
	}
	return "local"
}
