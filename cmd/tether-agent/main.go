// Command tether-agent serves tether sessions from the context of a target
// process: its environment, files, hostname, network namespace and
// incoming traffic.
//
//	tether-agent --listen 127.0.0.1:0 --target-pid PID
//
// The first line on stdout is "tether-agent listening on ADDR".
//
// It ends when the target process exits, and after --linger without a
// session. With --node (and --target-container-id) it also serves the
// other containers of its node that sessions name in their hello, each
// from its own context; then a target that exits ends its own sessions,
// and the agent ends after --linger without a session.
//
// It runs as two processes: a small parent that only waits, and the worker
// that does the work. If the worker dies, even by SIGKILL, the parent
// removes the worker's redirect rules from every target's network
// namespace (the worker reports each target it opens on a pipe), so a
// crash never leaves a target's traffic pointing at a dead agent.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/tether-dev/tether/internal/agent"
	"github.com/tether-dev/tether/internal/agenttls"
	"github.com/tether-dev/tether/internal/cri"
	"github.com/tether-dev/tether/internal/netfilter"
	"github.com/tether-dev/tether/internal/version"
)

// roleEnv marks the worker process.
const roleEnv = "TETHER_AGENT_ROLE"

// tokenEnv holds the token clients must present (none when unset).
const tokenEnv = "TETHER_AGENT_TOKEN"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	listen      string
	pid         int
	containerID string
	self        bool
	node        bool
	grace       time.Duration
	linger      time.Duration
	audited     bool
	logLevel    slog.Level
}

func parse(args []string, stderr io.Writer) (options, int) {
	var o options
	fs := flag.NewFlagSet("tether-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:0", "address to accept tether sessions on")
	fs.IntVar(&o.pid, "target-pid", 0, "PID of the target process (its env, files, hostname, network and incoming traffic are served)")
	fs.StringVar(&o.containerID, "target-container-id", "", "target container as in the pod status (containerd://ID): its main process is found on this node (needs hostPID)")
	fs.DurationVar(&o.linger, "linger", 0, "exit this long after the last session ends (0: never)")
	fs.DurationVar(&o.grace, "session-grace", 60*time.Second, "keep a session whose connection died this long, with its subscriptions, for its client to reconnect")
	fs.BoolVar(&o.self, "target-self", false, "serve this process's own context (a targetless agent: outgoing traffic and DNS of its pod)")
	fs.BoolVar(&o.audited, "audited", false, "tether-operator's agent: once idle, wait up to 10s more for the operator's audit trail to read how the last sessions ended")
	fs.BoolVar(&o.node, "node", false, "also serve the other containers of this node that sessions name (with --target-container-id; needs hostPID)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return o, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tether-agent: unexpected arguments %q (see -h)\n", fs.Args())
		return o, 2
	}
	given := 0
	for _, set := range []bool{o.pid != 0, o.containerID != "", o.self} {
		if set {
			given++
		}
	}
	if given != 1 {
		fmt.Fprintln(stderr, "tether-agent: give exactly one of --target-pid, --target-container-id and --target-self")
		return o, 2
	}
	if o.node && o.containerID == "" {
		fmt.Fprintln(stderr, "tether-agent: --node needs --target-container-id (the containers it serves are found on this node by their IDs)")
		return o, 2
	}
	if err := o.logLevel.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "tether-agent: --log-level %q: want debug, info, warn or error\n", *level)
		return o, 2
	}
	return o, 0
}

func run(args []string, stdout, stderr io.Writer) int {
	o, code := parse(args, stderr)
	if code != 0 {
		return code
	}
	if os.Getenv(roleEnv) == "worker" {
		return worker(o, stdout, stderr)
	}
	return parent(o, args, stderr)
}

// parent starts the worker, passes signals on, and cleans up after it.
func parent(o options, args []string, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.logLevel})).With("role", "parent")
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "tether-agent: %v\n", err)
		return 1
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), roleEnv+"=worker", targetsFDEnv+"=3")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	pr, pw, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(stderr, "tether-agent: %v\n", err)
		return 1
	}
	cmd.ExtraFiles = []*os.File{pw}
	var opened targetPIDs
	// If the parent is killed, the worker shuts down cleanly by itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "tether-agent: starting the worker: %v\n", err)
		return 1
	}
	pw.Close()
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		opened.read(pr)
	}()
	table := agent.TableFor(cmd.Process.Pid)
	go func() {
		for sig := range sigc {
			cmd.Process.Signal(sig)
		}
	}()
	werr := cmd.Wait()
	signal.Stop(sigc)
	<-reported
	// Whatever happened to the worker, its rules must not outlive it: in
	// its own target's namespace and in those of the others it opened.
	for _, pid := range append([]int{targetPID(o)}, opened.list()...) {
		if pid <= 0 {
			continue
		}
		ns := fmt.Sprintf("/proc/%d/ns/net", pid)
		removed, err := netfilter.RemoveTables(ns, func(name string) bool { return name == table || name == netfilter.RulesTable(table) })
		switch {
		case err != nil:
			log.Warn("removing the worker's redirect rules failed", "table", table, "err", err)
		case len(removed) > 0:
			log.Warn("the worker ended without removing its redirect rules; removed them", "table", table, "worker_exit", fmt.Sprint(werr))
		}
	}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if werr != nil {
		return 1
	}
	return 0
}

// reportWait bounds how much longer than linger an idle agent waits for
// the operator to read the ends of its last sessions (their audit trail).
const reportWait = 10 * time.Second

// idleServer is what exitWhenIdle watches (an agent.Node).
type idleServer interface {
	Sessions() int
	Unreported() int
}

// exitWhenIdle stops the agent once it has had no session for linger (also
// right after start: an agent nobody connects to goes away too), and, when
// tether-operator polls it, once the operator has read how its last
// sessions ended (at most reportWait later): a session shorter than the
// operator's poll still gets its end and refusals recorded.
func exitWhenIdle(srv idleServer, linger time.Duration, stop func(), log *slog.Logger) {
	last := time.Now()
	tick := time.NewTicker(min(linger/4, time.Second))
	defer tick.Stop()
	for now := range tick.C {
		if srv.Sessions() > 0 {
			last = now
			continue
		}
		idle := now.Sub(last)
		if idle < linger || (srv.Unreported() > 0 && idle < linger+reportWait) {
			continue
		}
		log.Info("no session for a while; exiting", "linger", linger.String(), "unreported_ends", srv.Unreported())
		stop()
		return
	}
}

// targetPID is --target-pid, or the main process of --target-container-id.
func targetPID(o options) int {
	if o.pid > 0 {
		return o.pid
	}
	if o.self {
		return os.Getpid() // the parent shares the worker's namespaces
	}
	pid, err := cri.FindPID("/proc", o.containerID)
	if err != nil {
		return 0
	}
	return pid
}

func worker(o options, stdout, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.logLevel}))
	pid := o.pid
	if o.self {
		pid = os.Getpid()
	}
	if o.containerID != "" {
		var err error
		if pid, err = cri.FindPID("/proc", o.containerID); err != nil {
			fmt.Fprintf(stderr, "tether-agent: finding the target container: %v\n", err)
			return 1
		}
		log.Info("found the target container's process", "container", o.containerID, "pid", pid)
	}
	target, err := agent.NewProcessTarget(pid)
	if err != nil {
		fmt.Fprintf(stderr, "tether-agent: %v\n", err)
		return 1
	}
	defer target.Close()
	if removed, err := agent.RemoveStaleTables(target.NetNS()); err != nil {
		log.Warn("looking for redirect rules left by a dead agent", "err", err)
	} else if len(removed) > 0 {
		log.Warn("removed redirect rules left by a dead agent", "tables", removed)
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		fmt.Fprintf(stderr, "tether-agent: listening on %s: %v (pick a free address with --listen)\n", o.listen, err)
		return 1
	}
	if token := os.Getenv(tokenEnv); token != "" {
		// Sessions that do not come through a port-forward (the direct
		// transport, tether-operator) are TLS, keyed by the token.
		cfg, err := agenttls.ServerConfig(token)
		if err != nil {
			fmt.Fprintf(stderr, "tether-agent: %v\n", err)
			return 1
		}
		ln = &agenttls.Listener{Listener: ln, Config: cfg, RequireTLS: true}
	}
	fmt.Fprintf(stdout, "tether-agent listening on %s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// The token comes from the environment, never from the command line
	// (visible in ps) nor the logs.
	// Every target's server alike; the table name is the worker's, in each
	// target's own namespace.
	newServer := func(t agent.Target) *agent.Server {
		return &agent.Server{Target: t, Log: log, Version: version.Version, Table: agent.TableFor(os.Getpid()), Token: os.Getenv(tokenEnv), Grace: o.grace}
	}
	node := &agent.Node{Default: newServer(target), DefaultID: o.containerID, Log: log, Token: os.Getenv(tokenEnv), Audited: o.audited}
	if o.node {
		node.Open = opener(node, newServer, log)
	}
	log.Info("serving", "target_pid", pid, "version", version.Version, "node", o.node)
	if o.linger > 0 {
		go exitWhenIdle(node, o.linger, stop, log)
	}
	if !o.self {
		// A target that exits (its container restarts, its pod is deleted)
		// ends its sessions: tether re-attaches to what replaces it. An
		// agent for that target alone ends with it; a node's agent lingers
		// (the replacement is often on the same node).
		go func() {
			if err := agent.WaitExit(pid); err != nil {
				log.Warn("cannot watch the target process; the agent will not notice its end", "err", err)
				return
			}
			log.Warn("the target process exited; ending the sessions", "pid", pid)
			if node.Exited("") == 0 && !lingers(o) {
				stop()
			}
		}()
	}
	go func() {
		// Whatever holds up the orderly shutdown (a namespace being torn
		// down under a netlink call, a client that does not read), the
		// agent goes: its redirect table is owned by its netlink socket
		// and goes with it, and its clients see their connections reset.
		<-ctx.Done()
		time.Sleep(agent.ShutdownLimit)
		log.Warn("the shutdown takes too long; exiting now", "limit", agent.ShutdownLimit.String())
		os.Exit(0)
	}()
	if err := node.Serve(ctx, ln); err != nil {
		fmt.Fprintf(stderr, "tether-agent: %v\n", err)
		return 1
	}
	return 0
}
