package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/tether-dev/tether/internal/config"
	"github.com/tether-dev/tether/internal/httpfilter"
	"github.com/tether-dev/tether/internal/kube"
	"github.com/tether-dev/tether/internal/layer"
	"github.com/tether-dev/tether/internal/progress"
	"github.com/tether-dev/tether/internal/session"
)

type execFlags struct {
	agentAddr  string
	configFile string
	target     string
	selector   string
	kube       kubeFlags
	ephemeral  bool
	progress   string
	quiet      bool
	verbose    bool
	// followOwner is --follow-owner; followOwnerSet says it was given (it
	// overrides the config's follow_owner either way).
	followOwner, followOwnerSet bool
	noOperator                  bool
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
			f.followOwnerSet = cmd.Flags().Changed("follow-owner")
			return runExec(cmd.Context(), streams, f, args)
		},
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	fl.StringVar(&f.agentAddr, "agent-addr", "", "address (host:port) of a tether-agent started by other means")
	fl.StringVarP(&f.configFile, "config-file", "f", "", "config file (JSON, YAML or TOML; default .tether/config.* when present)")
	fl.StringVarP(&f.target, "target", "t", "", "target in Kubernetes: deployment/NAME, pod/NAME[/container/C], statefulset/, replicaset/, job/, cronjob/, rollout/, service/ or targetless (overrides the config's target)")
	fl.StringVarP(&f.selector, "selector", "l", "", "target the ready pods this label selector picks (app=web), as a workload's (overrides the config's target; config: target.selector)")
	fl.BoolVar(&f.ephemeral, "ephemeral", false, "run the agent as an ephemeral container in the target pod (no hostPID Job; for namespaces whose Pod Security forbids it)")
	fl.BoolVar(&f.followOwner, "follow-owner", false, fmt.Sprintf("with -t pod/NAME: when the pod goes away, re-attach to its owner's new pod (Deployment, StatefulSet, DaemonSet, Job...) as a workload target does; without it the session ends with exit code %d (config: follow_owner)", ExitTargetGone))
	fl.BoolVar(&f.noOperator, "no-operator", false, "start the agents with your own rights even when the cluster has tether-operator (config: operator: false)")
	fl.StringVar(&f.progress, "progress", "", "start-up output: tty, plain, json or off (default: tty on a terminal, else plain)")
	f.kube.add(fl)
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print nothing but the command's own output")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "log tether's decisions to stderr")
	return cmd
}

// override applies the flags that stand for config keys: -t (target),
// -l (target.selector) and --follow-owner (follow_owner), when given.
func (f execFlags) override(cfg *config.Config) {
	if f.target != "" {
		cfg.Target = config.Target{Path: f.target}
	}
	if f.selector != "" {
		cfg.Target = config.Target{Selector: f.selector}
	}
	if f.followOwnerSet {
		cfg.FollowOwner = f.followOwner
	}
	if f.noOperator {
		off := false
		cfg.Operator = &off
	}
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
	f.override(cfg)
	mode, err := progress.ParseMode(f.progress)
	if err != nil {
		return &UsageError{Err: err}
	}
	if f.quiet {
		mode = progress.ModeOff
	}
	// Animate only when stderr itself is a terminal (not 2>log).
	errFile, ok := streams.Err.(*os.File)
	pw := progress.New(streams.Err, mode, ok && isTerminal(errFile))
	defer pw.Close()
	addr := f.agentAddr
	if addr == "" {
		addr = cfg.Agent.Address
	}
	if f.target != "" && f.selector != "" {
		return usageErrorf("-t %s and -l %s both name the target: drop one", f.target, f.selector)
	}
	if addr == "" && cfg.Target.IsZero() {
		return usageErrorf("nothing to run against: give a target (-t deployment/NAME, -l app=NAME, or target in the config) or --agent-addr HOST:PORT")
	}
	if f.agentAddr != "" {
		if host, port, err := net.SplitHostPort(f.agentAddr); err != nil || host == "" || port == "" {
			return usageErrorf("--agent-addr %q: want HOST:PORT such as 10.0.0.5:7777", f.agentAddr)
		}
		if f.target != "" || f.selector != "" || f.ephemeral {
			return usageErrorf("--agent-addr and -t/-l/--ephemeral cannot be used together: --agent-addr skips Kubernetes and uses that agent; drop one")
		}
		if f.followOwnerSet && f.followOwner {
			return usageErrorf("--follow-owner needs a pod target in Kubernetes (-t pod/NAME), and --agent-addr skips Kubernetes: drop one")
		}
	}
	if err := layer.Check(); err != nil {
		return err
	}
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(streams.Err, &slog.HandlerOptions{Level: level}))

	var dial, redial agentDialer
	var att *attachment
	var where string
	var deadline time.Time
	var starting bool // the agent's container was not seen running yet
	if addr != "" {
		token := os.Getenv(kube.TokenEnv) // for an agent started by hand
		dial = func(ctx context.Context) (net.Conn, session.Credentials, error) {
			c, err := session.DialAgent(ctx, addr)
			return c, session.Credentials{Token: token}, err
		}
		redial = dial
		where = "agent " + addr
		deadline = time.Now() // no retries: the agent is up or it is not
	} else {
		k, err := newKubeClients(f.kube, cfg.Namespace)
		if err != nil {
			return err
		}
		agentMode := kube.ModeJob
		if f.ephemeral {
			agentMode = kube.ModeEphemeral
		}
		att, err = connectTarget(ctx, k, cfg, agentMode, pw)
		if err != nil {
			return err
		}
		resolved, agent := att.current()
		if resolved.Pod == nil {
			// Targetless: the agent's own pod has nothing of the user's.
			cfg.FS.Mode = "local"
			off := false
			cfg.Env.Enabled, cfg.Hostname = &off, &off
			cfg.Incoming.Mode = "off"
		}
		dial, redial, where = att.dialFirst, att.redial, fmt.Sprintf("agent pod %s/%s", agent.Namespace, agent.Pod)
		switch {
		case att.viaOperator && resolved.Pod == nil:
			where = fmt.Sprintf("targetless agent of %s (through tether-operator)", agent.Namespace)
		case att.viaOperator:
			where = fmt.Sprintf("agent of pod %s/%s (through tether-operator)", agent.Namespace, agent.Pod)
		}
		deadline = time.Now().Add(cfg.AgentStartupTimeout())
		starting = agent.Starting
	}
	step := pw.Start("connecting to the agent")
	opts := session.Options{Config: cfg, Log: log, LocalDirs: session.LocalDirs(args[0]), Messages: streams.Err, Quiet: f.quiet, Redial: redial}
	if att != nil {
		opts.Run = att.run
		// However the run ends, its split's undelivered messages go back
		// to the deployed workload.
		defer att.split.end(context.WithoutCancel(ctx))
	}
	var sess *session.Session
	for attempt := 0; ; attempt++ {
		conn, cred, err := dial(ctx)
		if err == nil {
			opts.Agent = cred
			sess, err = session.New(ctx, conn, opts)
		}
		if err == nil {
			break
		}
		if starting {
			// Whether it can still come up (its image, its memory...).
			err = att.checkStarting(ctx, err)
		}
		var ue *UsageError
		var refused *kube.ConnectError
		final := errors.As(err, &refused) && refused.Final
		if final || errors.As(err, &ue) || errors.Is(err, errAgentEnded) || time.Now().After(deadline) || ctx.Err() != nil {
			err = fmt.Errorf("starting the session with the %s: %w", where, err)
			if starting && time.Now().After(deadline) {
				err = fmt.Errorf("the agent was not ready within agent.startup_timeout (%v): %w; raise agent.startup_timeout if the cluster is slow to pull images or schedule pods", cfg.AgentStartupTimeout(), err)
			}
			if lim := cfg.Agent.MemoryLimit; lim != "" && !strings.Contains(err.Error(), "agent.memory_limit") {
				// Short of memory, an agent can also stall instead of
				// being killed: say what may be wrong.
				err = fmt.Errorf("%w (the agent runs with agent.memory_limit %s: if that is too low it stalls or is OOM-killed; raise agent.memory_limit)", err, lim)
			}
			step.Fail(err)
			att.stopReplicas(true)
			if _, agent := att.currentOrNil(); agent != nil && agent.Created {
				// Never leave an agent this run created and could not use.
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
				att.mgr.Remove(rctx, agent)
				cancel()
			}
			return err
		}
		// A new agent's listener may need a moment after its container
		// starts; a starting one is tried often (it answers as soon as it
		// listens).
		if starting {
			time.Sleep(100 * time.Millisecond)
		} else {
			time.Sleep(time.Duration(min(attempt+1, 5)) * 100 * time.Millisecond)
		}
	}
	if att != nil {
		att.tell(sess.Warnf)
		if att.split != nil {
			att.split.warnVia(sess.Warnf)
		}
	}
	defer sess.Close()
	step.Done("session " + sess.ID())
	if att != nil && att.replicas != nil {
		// The workload's other pods: the session starts on all that can.
		rctx, cancel := context.WithTimeout(ctx, cfg.AgentStartupTimeout())
		att.replicas.attach(rctx, sess)
		cancel()
		defer att.stopReplicas(false)
	}
	env, err := sess.Env(os.Environ())
	if err != nil {
		return &UsageError{Err: fmt.Errorf("env.env_file: %w", err)}
	}
	printSummary(pw, sess, att, cfg, cfgFile, where)
	pw.Close()
	if resolved, _ := att.currentOrNil(); resolved != nil && resolved.Pod != nil && resolved.Spec.Kind == kube.KindPod && att.owner == nil {
		// A pod target that nothing follows: the session ends as soon as
		// the pod is gone, instead of reconnecting in vain.
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go att.watchTarget(wctx, resolved.Pod)
	}
	// When the target is gone, say so at once and stop the command; the
	// session closes when it has exited, as after Ctrl-C.
	sayGone := sync.OnceFunc(func() { fmt.Fprintf(streams.Err, "tether: %v\n", att.goneError()) })
	sayEnded := sync.OnceFunc(func() { fmt.Fprintf(streams.Err, "tether: %s; stopping the command\n", sess.EndedReason()) })
	ran := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-att.targetGone():
			sayGone()
			stopCommand(ran, commandStopGrace)
		case <-sess.Ended():
			sayEnded()
			stopCommand(ran, commandStopGrace)
		case <-ran:
		}
	}()
	err = layer.Run(ctx, layer.Options{
		Args: args, Env: env,
		Stdin: streams.In, Stdout: streams.Out, Stderr: streams.Err,
		Session: sess, Log: log,
		Writes: cfg.FS.Mode == "write" || len(cfg.FS.ReadWrite) > 0,
	})
	close(ran)
	<-stopped
	select {
	case <-att.targetGone():
		// Whatever the command's own ending: it ended with its target.
		sayGone()
		return ExitCode(ExitTargetGone)
	case <-sess.Ended():
		sayEnded()
		return ExitCode(ExitSessionEnded)
	default:
	}
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

func printSummary(pw *progress.Writer, sess *session.Session, att *attachment, cfg *config.Config, cfgFile, where string) {
	t := sess.Target()
	src := "defaults"
	if cfgFile != "" {
		src = cfgFile
	}
	incoming := cfg.IncomingMode()
	if incoming == "steal" && httpfilter.ToWire(cfg.Incoming.HTTPFilter) != nil {
		incoming = "steal (HTTP filter)"
	}
	pw.Info("session %s · %s · target pid %d (%s)", sess.ID(), where, t.PID, t.Hostname)
	if att != nil && att.replicas != nil {
		r, _ := att.current()
		n := att.replicas.count()
		pods := "pods"
		if n == 1 {
			pods = "pod"
		}
		pw.Info("incoming: %d %s; context: pod %s", n, pods, r.Pod.Name)
	}
	pw.Info("config %s · env %s · fs %s · dns %s · outgoing tcp %s udp %s · incoming %s",
		src, onOff(cfg.EnvEnabled()), cfg.FSMode(), onOff(cfg.DNSEnabled()), onOff(cfg.OutgoingTCP()), onOff(cfg.OutgoingUDP()), incoming)
}

func onOff(b bool) string {
	if b {
		return "remote"
	}
	return "local"
}
