package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tether-dev/tether/internal/config"
	"github.com/tether-dev/tether/internal/kube"
	"github.com/tether-dev/tether/internal/progress"
	"github.com/tether-dev/tether/internal/session"
	"github.com/tether-dev/tether/internal/version"
)

// kubeClients is what commands need to talk to the cluster.
type kubeClients struct {
	rest      *rest.Config
	client    kubernetes.Interface
	dynamic   dynamic.Interface
	namespace string
	transport transportState
}

// kubeFlags are kubectl's flags for choosing a cluster, with kubectl's
// semantics (KUBECONFIG, the current context, exec credential plugins).
// They are wired to clientcmd directly: cli-runtime's genericclioptions
// would bring kustomize and kubectl's printers along for the same flags.
type kubeFlags struct {
	kubeconfig, context, namespace string
}

func (f *kubeFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	fs.StringVar(&f.context, "context", "", "the kubeconfig context to use")
	fs.StringVarP(&f.namespace, "namespace", "n", "", "namespace of the target (default: the context's namespace)")
}

// newKubeClients builds clients from the flags. ns is the config file's
// namespace; the -n flag wins over it, and both over the context's.
func newKubeClients(flags kubeFlags, ns string) (*kubeClients, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = flags.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: flags.context}
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	cfg, err := loader.ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return nil, &UsageError{Err: errors.New("no Kubernetes context: set KUBECONFIG or pass --kubeconfig/--context (or run against an agent directly with --agent-addr)")}
		}
		return nil, &UsageError{Err: kubeconfigError(flags, err)}
	}
	cfg.UserAgent = "tether/" + version.Version
	cfg.QPS, cfg.Burst = 50, 100
	switch {
	case flags.namespace != "":
		ns = flags.namespace
	case ns == "":
		ns, _, err = loader.Namespace()
		if err != nil {
			return nil, fmt.Errorf("reading the namespace from the Kubernetes configuration: %w", err)
		}
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	return &kubeClients{rest: cfg, client: cs, dynamic: dyn, namespace: ns}, nil
}

// kubeconfigError explains a kubeconfig that cannot be used, with what to
// do about it.
func kubeconfigError(flags kubeFlags, err error) error {
	msg := err.Error()
	switch {
	case flags.kubeconfig != "" && errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("--kubeconfig %s: no such file: check --kubeconfig (or KUBECONFIG)", flags.kubeconfig)
	case strings.Contains(msg, "context was not found") || strings.Contains(msg, "does not exist"):
		return fmt.Errorf("loading the Kubernetes configuration: %w: kubectl config get-contexts lists the contexts", err)
	case strings.Contains(msg, "error loading config file") || strings.Contains(msg, "yaml:") || strings.Contains(msg, "json:"):
		return fmt.Errorf("loading the Kubernetes configuration: %w: fix the kubeconfig, or point --kubeconfig/KUBECONFIG at another", err)
	}
	return fmt.Errorf("loading the Kubernetes configuration: %w", err)
}

// checkReachable fails fast, with what to do, when the API server does not
// answer.
func (k *kubeClients) checkReachable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := k.client.Discovery().ServerVersion()
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			return nil
		}
		if strings.Contains(err.Error(), "Unauthorized") || strings.Contains(err.Error(), "credentials") {
			return fmt.Errorf("the Kubernetes API server at %s refused your credentials (%v): log in again or refresh your kubeconfig", k.rest.Host, err)
		}
		return fmt.Errorf("the Kubernetes API server at %s does not answer (%v): check the context (kubectl config current-context) and your network", k.rest.Host, err)
	case <-ctx.Done():
		return fmt.Errorf("the Kubernetes API server at %s does not answer within 10s: check the context (kubectl config current-context) and your network", k.rest.Host)
	}
}

// DefaultAgentImage is the public agent image of this release.
func DefaultAgentImage() string {
	v := version.Version
	if v == "" || v == "dev" || strings.Contains(v, "dirty") {
		v = "latest"
	}
	return "ghcr.io/tether-dev/tether-agent:" + v
}

// credentials is what a session presents to agent ag.
func credentials(ag *kube.Agent) session.Credentials {
	return session.Credentials{Token: ag.Token, Target: ag.Target}
}

// agentDialer opens a new connection to the agent each time it is called
// and returns it with the agent's token.
type agentDialer func(ctx context.Context) (net.Conn, session.Credentials, error)

// attachment is a session's way to its agent on the cluster: the target,
// the agent pod, and how to find both again when the agent goes away
// (deleted, OOM-killed, ended with its target) or the target pod is
// replaced (a restart, a rollout, a reschedule).
type attachment struct {
	k    *kubeClients
	spec kube.TargetSpec
	mgr  agentSource
	opts kube.AgentOptions
	// viaOperator: tether-operator starts the agents; sessions reach them
	// through the API server.
	viaOperator bool
	// run is the run's ID when it was chosen before its session (split
	// holds its queues); "" otherwise.
	run   string
	split *queueSplit

	mu       sync.Mutex
	resolved *kube.Resolved
	agent    *kube.Agent
	// warn tells the user what happened (set once the session exists).
	warn func(format string, args ...any)
	// failingSince is when dials to a running agent pod began to fail.
	failingSince time.Time

	// owner, for a pod target with --follow-owner, is the target of the
	// pod's owner (deployment/X...): what the session re-attaches to once
	// its pod is gone. Without it, the session ends then: gone is closed
	// and goneErr says why and what to do.
	owner *kube.TargetSpec
	// replicas, for a workload target, covers its other ready pods.
	replicas *replicaWatch
	goneOnce sync.Once
	gone     chan struct{}
	goneErr  error
}

// ExitTargetGone is tether exec's exit code when its target pod is gone
// for good (deleted, ended) and the session does not follow a new pod: a
// pod target without --follow-owner.
const ExitTargetGone = 69

// ExitSessionEnded is tether exec's exit code when an administrator ended
// its session (tether sessions kill).
const ExitSessionEnded = 70

// targetGone is closed when the session's target pod is gone for good and
// the session ends (a pod target without --follow-owner).
func (a *attachment) targetGone() <-chan struct{} {
	if a == nil {
		return nil // --agent-addr: no target to lose
	}
	return a.gone
}

// goneError is why the session ends, once targetGone is closed.
func (a *attachment) goneError() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.goneErr
}

// end marks the target pod p gone for good (why: "was deleted", ...) and
// returns the error that says so, with what the user can do. Only the
// first call counts.
func (a *attachment) end(ctx context.Context, p *corev1.Pod, why string) error {
	a.goneOnce.Do(func() {
		// Which owner would have replaced it, for the hint: the pod's
		// ReplicaSet outlives it.
		octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		owner, oerr := a.resolver().OwnerTarget(octx, p, a.spec.Container)
		cancel()
		a.mu.Lock()
		a.goneErr = errors.New(podGoneMessage(p.Namespace, p.Name, why, owner, oerr))
		a.mu.Unlock()
		close(a.gone)
	})
	return a.goneError()
}

// podGoneMessage says that the target pod ns/name is gone (why: "was
// deleted", "has ended (...)"), that the session ends with
// ExitTargetGone, and what to do: target the owner (ownerErr nil), or
// another target when nothing replaces the pod.
func podGoneMessage(ns, name, why string, owner kube.TargetSpec, ownerErr error) string {
	head := fmt.Sprintf("the target pod %s/%s %s", ns, name, why)
	ends := fmt.Sprintf("the session ends (exit code %d)", ExitTargetGone)
	var noOwner *kube.NoOwnerError
	switch {
	case errors.As(ownerErr, &noOwner) && noOwner.Controller == "":
		return fmt.Sprintf("%s and it has no owner that replaces it: %s; run tether again with another target (tether ls -n %s lists them)", head, ends, ns)
	case ownerErr != nil:
		return fmt.Sprintf("%s: %s; run tether again with another target (tether ls -n %s lists them) (%v)", head, ends, ns, ownerErr)
	case owner.Kind == kube.KindDaemonSet:
		return fmt.Sprintf("%s: %s without following its replacement: pass --follow-owner to re-attach to the new pod of daemonset/%s on the same node", head, ends, owner.Name)
	}
	return fmt.Sprintf("%s: %s without following its replacement: target its owner (-t %s) or pass --follow-owner", head, ends, owner)
}

func (a *attachment) resolver() *kube.Resolver {
	return &kube.Resolver{Client: a.k.client, Dynamic: a.k.dynamic}
}

// resolveAgain finds the target again after its agent was lost. A
// workload resolves as at the start (its pod may be a new one). A pod
// target stays on its pod while that pod lives; once the pod is gone, the
// session re-attaches to the owner's new pod (--follow-owner), or ends.
func (a *attachment) resolveAgain(ctx context.Context, old *kube.Resolved) (*kube.Resolved, error) {
	r := a.resolver()
	if a.spec.Kind != kube.KindPod || old.Pod == nil {
		return r.Resolve(ctx, a.k.namespace, a.spec)
	}
	select {
	case <-a.gone:
		return nil, a.goneError()
	default:
	}
	p, err := a.k.client.CoreV1().Pods(old.Pod.Namespace).Get(ctx, old.Pod.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		p = nil
	case err != nil:
		return nil, fmt.Errorf("checking the target pod %s/%s: %w", old.Pod.Namespace, old.Pod.Name, err) // the caller retries
	}
	gone, why := kube.PodGone(p, old.Pod.UID)
	if !gone {
		// The same pod (its container may have restarted).
		return r.Resolve(ctx, a.k.namespace, kube.TargetSpec{Kind: kube.KindPod, Name: old.Pod.Name, Container: a.spec.Container})
	}
	if a.owner == nil {
		return nil, a.end(ctx, old.Pod, why)
	}
	return r.Resolve(ctx, a.k.namespace, *a.owner)
}

// Watching the target pod (a pod target without --follow-owner): a watch
// reports its deletion at once; when the watch breaks (or RBAC forbids
// it), the pod is read again after a backoff of up to PodWatchRetryMax.
const (
	podWatchRetryMin = 200 * time.Millisecond
	PodWatchRetryMax = 5 * time.Second
)

// watchTarget ends the session (end) as soon as the target pod p is gone
// for good, until ctx ends.
func (a *attachment) watchTarget(ctx context.Context, p *corev1.Pod) {
	pods := a.k.client.CoreV1().Pods(p.Namespace)
	backoff := podWatchRetryMin
	for ctx.Err() == nil {
		cur, err := pods.Get(ctx, p.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			cur, err = nil, nil
		}
		if err == nil {
			if gone, why := kube.PodGone(cur, p.UID); gone {
				a.end(ctx, p, why)
				return
			}
			w, werr := pods.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + p.Name, ResourceVersion: cur.ResourceVersion})
			if werr == nil {
				if a.watchEvents(ctx, w, p) {
					return
				}
				backoff = podWatchRetryMin // it worked: the watch expired or the connection dropped
				continue
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, PodWatchRetryMax)
	}
}

// watchEvents reads w until the pod is gone (it calls end and returns
// true), ctx ends, or the watch does.
func (a *attachment) watchEvents(ctx context.Context, w watch.Interface, p *corev1.Pod) bool {
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return true
		case ev, ok := <-w.ResultChan():
			if !ok {
				return false
			}
			cur, isPod := ev.Object.(*corev1.Pod)
			switch {
			case ev.Type == watch.Error:
				return false // e.g. "too old resource version": read it again
			case !isPod || ev.Type == watch.Bookmark || cur.Name != p.Name:
				continue
			case ev.Type == watch.Deleted && cur.UID == p.UID:
				cur = nil
			}
			if gone, why := kube.PodGone(cur, p.UID); gone {
				a.end(ctx, p, why)
				return true
			}
		}
	}
}

// targetSpec parses the config's target (after the flags).
func targetSpec(t config.Target) (kube.TargetSpec, error) {
	if t.Selector != "" {
		return kube.SelectorTarget(t.Selector)
	}
	return kube.ParseTarget(t.Path)
}

// mapServicePorts makes a local listener on a port of a service/NAME
// target's Service receive the pods' port it targets (incoming.port_mapping
// entries, unless the config maps that local port already).
func mapServicePorts(ctx context.Context, att *attachment, cfg *config.Config, pw *progress.Writer) error {
	maps, err := att.resolver().ServicePorts(ctx, att.k.namespace, att.spec.Name, att.resolved.Pod)
	if err != nil {
		return err
	}
next:
	for _, m := range maps {
		for _, pm := range cfg.Incoming.PortMapping {
			if pm[0] == m.Service {
				continue next
			}
		}
		cfg.Incoming.PortMapping = append(cfg.Incoming.PortMapping, [2]uint16{m.Service, m.Pod})
		pw.Info("service/%s: a local listener on port %d receives the pods' port %d (the Service's targetPort); one on port %d receives it too", att.spec.Name, m.Service, m.Pod, m.Pod)
	}
	return nil
}

// stopReplicas ends the replicas' watch (abort: the session never
// started, so the agents they created go too).
func (a *attachment) stopReplicas(abort bool) {
	if a != nil {
		a.replicas.stop(abort)
	}
}

func (a *attachment) current() (*kube.Resolved, *kube.Agent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.resolved, a.agent
}

// currentOrNil is current for an attachment that may be nil (--agent-addr).
func (a *attachment) currentOrNil() (*kube.Resolved, *kube.Agent) {
	if a == nil {
		return nil, nil
	}
	return a.current()
}

// dial opens a port-forward stream to the current agent.
func (a *attachment) dial(ctx context.Context) (net.Conn, session.Credentials, error) {
	_, ag := a.current()
	conn, err := a.k.dialAgent(ctx, ag)
	return conn, credentials(ag), err
}

// brokenAgentAfter is how long a running agent pod may refuse the
// port-forward before tether replaces it.
const brokenAgentAfter = 15 * time.Second

// errAgentEnded marks a dial failure whose agent has ended: retrying
// cannot help.
var errAgentEnded = errors.New("the agent has ended")

// dialFirst is dial for the first connection: when it fails because the
// agent's pod has ended (it crashed, ran out of memory), it says so at once
// instead of retrying until agent.startup_timeout.
func (a *attachment) dialFirst(ctx context.Context) (net.Conn, session.Credentials, error) {
	conn, cred, err := a.dial(ctx)
	if err == nil {
		return conn, cred, nil
	}
	_, ag := a.current()
	if alive, why := a.agentServes(ctx, ag); !alive {
		return nil, session.Credentials{}, fmt.Errorf("%w: agent pod %s/%s %s", errAgentEnded, ag.Namespace, ag.Pod, why)
	}
	return nil, session.Credentials{}, err
}

// checkStarting is err, a failed first connection to an agent that was
// starting, or errAgentEnded with why when its pod says it never will
// run (its image cannot be pulled, it ran out of memory...).
func (a *attachment) checkStarting(ctx context.Context, err error) error {
	_, ag := a.current()
	if alive, why := a.agentServes(ctx, ag); !alive {
		return fmt.Errorf("%w: agent pod %s/%s %s", errAgentEnded, ag.Namespace, ag.Pod, why)
	}
	return err
}

// redial is dial for reconnects: when the agent pod no longer serves, it
// resolves the target again (a workload may have a new pod by now) and
// finds or starts its agent.
func (a *attachment) redial(ctx context.Context) (net.Conn, session.Credentials, error) {
	if old, ag := a.current(); ag.Target != "" && containerChanged(ctx, a.k.client, old) {
		// A node's agent outlives the containers it serves: it would
		// refuse the session for this one, which is gone. Re-attach.
		return a.reattach(ctx, old)
	}
	conn, cred, err := a.dial(ctx)
	if err == nil {
		a.mu.Lock()
		a.failingSince = time.Time{} // a later outage counts from its own start
		a.mu.Unlock()
		return conn, cred, nil
	}
	old, ag := a.current()
	if alive, why := a.agentServes(ctx, ag); alive {
		a.mu.Lock()
		if why == cannotTell {
			// The API server does not answer either (it restarts, the
			// network is down): that says nothing about the agent.
			a.failingSince = time.Time{}
			a.mu.Unlock()
			return nil, session.Credentials{}, err
		}
		if a.failingSince.IsZero() {
			a.failingSince = time.Now()
		}
		broken := time.Since(a.failingSince) > brokenAgentAfter
		a.mu.Unlock()
		if !broken {
			return nil, session.Credentials{}, err // a tunnel problem: the caller retries
		}
		// Its pod runs but nobody answers (a worker that died without its
		// parent, e.g. by the OOM killer): replace it.
		a.say("the agent pod %s/%s runs but has not answered for %v (%v); replacing it", ag.Namespace, ag.Pod, brokenAgentAfter, err)
		if rerr := a.mgr.Remove(ctx, ag); rerr != nil {
			return nil, session.Credentials{}, fmt.Errorf("removing the agent that does not answer: %w", rerr)
		}
	} else if why != "" {
		a.say("the agent pod %s/%s %s", ag.Namespace, ag.Pod, why)
	}
	return a.reattach(ctx, old)
}

// reattach resolves the target again (a workload may have a new pod by
// now), finds or starts its agent and dials it.
func (a *attachment) reattach(ctx context.Context, old *kube.Resolved) (net.Conn, session.Credentials, error) {
	a.mu.Lock()
	a.failingSince = time.Time{}
	a.mu.Unlock()
	resolved, rerr := a.resolveAgain(ctx, old)
	if rerr != nil {
		return nil, session.Credentials{}, fmt.Errorf("finding the target %s again: %w", a.spec, rerr)
	}
	if old.Pod != nil && resolved.Pod != nil && old.Pod.UID != resolved.Pod.UID {
		a.say("the target pod %s is gone; re-attaching to %s (the program keeps the environment it started with)", old.Pod.Name, resolved.Chosen)
	} else if old.ContainerID != resolved.ContainerID {
		a.say("the target container %s restarted; re-attaching", resolved.Container)
	}
	agent, err := a.mgr.Ensure(ctx, resolved, a.opts)
	if err != nil {
		return nil, session.Credentials{}, fmt.Errorf("starting a new agent: %w", err)
	}
	a.mu.Lock()
	a.resolved, a.agent = resolved, agent
	a.mu.Unlock()
	if resolved.Pod != nil {
		// Its pod is no replica any more: the session takes over the
		// replica's agent session there; the old pod may become one.
		a.replicas.representative(resolved.Pod.UID)
	}
	return a.dial(ctx)
}

// cannotTell is agentServes's why when the API server does not answer.
const cannotTell = "cannot tell"

// agentServes reports whether the agent's pod still runs its agent; if not,
// why (for the user; "" when it is simply gone).
func (a *attachment) agentServes(ctx context.Context, ag *kube.Agent) (bool, string) {
	if a.viaOperator {
		return true, cannotTell // the operator's to know and to fix
	}
	p, err := a.k.client.CoreV1().Pods(ag.Namespace).Get(ctx, ag.Pod, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return false, "is gone"
	case err != nil:
		return true, cannotTell // the API server may be restarting: retry
	case p.DeletionTimestamp != nil:
		return false, "is being deleted"
	}
	if err := kube.AgentPodState(p); err != nil {
		return false, "has ended: " + err.Error()
	}
	return true, ""
}

func (a *attachment) say(format string, args ...any) {
	a.mu.Lock()
	warn := a.warn
	a.mu.Unlock()
	if warn != nil {
		warn(format, args...)
	}
}

// tell sends later messages to the session's warnings.
func (a *attachment) tell(warn func(format string, args ...any)) {
	a.mu.Lock()
	a.warn = warn
	a.mu.Unlock()
}

// connectTarget resolves the target and finds or starts its agent; the
// attachment dials it (a port-forward stream per call).
func connectTarget(ctx context.Context, k *kubeClients, cfg *config.Config, mode kube.AgentMode, pw *progress.Writer) (_ *attachment, err error) {
	// The agent's token travels in its pod spec: whoever may read pods (and
	// port-forward to them) may use the agent; processes in other pods may not.
	spec, err := targetSpec(cfg.Target)
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	step := pw.Start("checking the cluster")
	if err := k.checkReachable(ctx); err != nil {
		step.Fail(err)
		return nil, err
	}
	step.Done(k.rest.Host)
	useOperator := false
	if cfg.OperatorEnabled() {
		installed, err := kube.OperatorServes(ctx, k.client)
		if err != nil {
			return nil, err
		}
		useOperator = installed
		if installed {
			if err := mayUse(ctx, k, spec); err != nil {
				return nil, err
			}
			pw.Info("tether-operator serves this cluster: the session goes through it (--no-operator to start agents yourself)")
		}
	}
	// Queue splitting first: the workload may roll out to its fallback
	// queues, and the session is for its new pods.
	var split *queueSplit
	run := ""
	if len(cfg.SplitQueues) > 0 {
		if !useOperator {
			why := "this cluster has no tether-operator (tether operator install)"
			if !cfg.OperatorEnabled() {
				why = "--no-operator (operator: false) is set"
			}
			return nil, usageErrorf("split_queues needs tether-operator, and %s: remove split_queues, or use the operator", why)
		}
		run = session.NewRunID()
		if split, err = startSplit(ctx, k, spec, cfg, run, pw); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				split.end(context.WithoutCancel(ctx))
			}
		}()
	}
	step = pw.Start("resolving " + spec.String())
	resolved, err := (&kube.Resolver{Client: k.client, Dynamic: k.dynamic}).Resolve(ctx, k.namespace, spec)
	if err != nil {
		step.Fail(err)
		return nil, err
	}
	step.Done(resolved.Chosen)
	att := &attachment{k: k, spec: spec, resolved: resolved, gone: make(chan struct{}), run: run, split: split}
	if spec.Kind == kube.KindService {
		if err := mapServicePorts(ctx, att, cfg, pw); err != nil {
			return nil, err
		}
	}
	if cfg.FollowOwner && spec.Kind == kube.KindPod {
		// Before any agent starts: a pod nothing replaces cannot be followed.
		owner, err := att.resolver().OwnerTarget(ctx, resolved.Pod, spec.Container)
		var noOwner *kube.NoOwnerError
		if errors.As(err, &noOwner) {
			return nil, usageErrorf("--follow-owner (follow_owner): %v: drop --follow-owner (the session then ends with exit code %d when the pod goes), or target a workload (tether ls -n %s lists them)", err, ExitTargetGone, k.namespace)
		}
		if err != nil {
			return nil, fmt.Errorf("--follow-owner (follow_owner): %w", err)
		}
		att.owner = &owner
		pw.Info("following the owner of pod %s: when it goes, re-attaching to %s", resolved.Pod.Name, owner)
	}
	image := cfg.Agent.Image
	if image == "" {
		image = DefaultAgentImage()
	}
	opts := kube.AgentOptions{Image: image, Mode: mode, Linger: cfg.AgentLinger(), StartupTimeout: cfg.AgentStartupTimeout(), SessionGrace: cfg.AgentSessionGrace(), PerNode: cfg.AgentPerNode()}
	k.transport.mode = cfg.AgentTransport()
	// A Job agent listens on its pod's IP too (TLS there) unless only
	// port-forwards will reach it.
	opts.ListenAll = mode == kube.ModeJob && listenOnPodIP(k.transport.mode)
	if cfg.Agent.MemoryLimit != "" {
		// Validated with the config.
		opts.MemoryLimit = resource.MustParse(cfg.Agent.MemoryLimit)
	}
	mgr := &kube.AgentManager{Client: k.client}
	att.mgr, att.opts = mgr, opts
	if att.viaOperator = useOperator; useOperator {
		att.mgr = viaOperator{spec: spec}
	}
	// A workload's other ready pods get their agents meanwhile.
	if att.replicas, err = newReplicaWatch(ctx, att, cfg, resolved, pw); err != nil {
		return nil, err
	}
	step = pw.Start("starting the agent")
	mgr.Progress = func(msg string) { step.Detail("%s", msg) }
	// Dialled until it answers, from the moment its pod is on its node.
	first := opts
	first.Early = true
	agent, err := att.mgr.Ensure(ctx, resolved, first)
	if err != nil {
		step.Fail(err)
		att.replicas.stop(true)
		return nil, err
	}
	how := "shared with other sessions"
	switch {
	case att.viaOperator && resolved.Pod == nil:
		how = "tether-operator starts or shares the namespace's targetless agent"
	case att.viaOperator:
		how = "tether-operator starts or shares its node's agent"
	case agent.Created && agent.Starting:
		how = "new, starting"
	case agent.Created:
		how = "new"
	}
	step.Done(fmt.Sprintf("%s/%s (%s)", agent.Namespace, agent.Pod, how))
	// Later agents (after a loss) start without the progress display.
	mgr.Progress = nil
	att.mu.Lock()
	att.agent = agent
	att.mu.Unlock()
	return att, nil
}

// containerChanged reports whether the target's pod is gone or its
// container is not the one t was resolved to any more (it restarted).
// False when the API server cannot tell.
func containerChanged(ctx context.Context, client kubernetes.Interface, t *kube.Resolved) bool {
	if t == nil || t.Pod == nil {
		return false
	}
	p, err := client.CoreV1().Pods(t.Pod.Namespace).Get(ctx, t.Pod.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true
	}
	if err != nil {
		return false
	}
	if p.UID != t.Pod.UID {
		return true
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == t.Container {
			return cs.ContainerID != t.ContainerID
		}
	}
	return true
}
