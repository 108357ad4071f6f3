package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tether-dev/tether/internal/config"
	"github.com/tether-dev/tether/internal/kube"
	"github.com/tether-dev/tether/internal/progress"
	"github.com/tether-dev/tether/internal/version"
)

// kubeClients is what commands need to talk to the cluster.
type kubeClients struct {
	rest      *rest.Config
	client    kubernetes.Interface
	dynamic   dynamic.Interface
	namespace string
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
		return nil, &UsageError{Err: fmt.Errorf("loading the Kubernetes configuration: %w", err)}
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

// agentDialer opens a new connection to the agent each time it is called.
type agentDialer func(ctx context.Context) (net.Conn, error)

// connectTarget resolves the target and finds or starts its agent; it
// returns how to reach it (a port-forward stream per call).
func connectTarget(ctx context.Context, k *kubeClients, cfg *config.Config, mode kube.AgentMode, pw *progress.Writer) (agentDialer, *kube.Resolved, *kube.Agent, error) {
	// The agent's token travels in its pod spec: whoever may read pods (and
	// port-forward to them) may use the agent; processes in other pods may not.
	spec, err := kube.ParseTarget(cfg.Target)
	if err != nil {
		return nil, nil, nil, &UsageError{Err: err}
	}
	step := pw.Start("checking the cluster")
	if err := k.checkReachable(ctx); err != nil {
		step.Fail(err)
		return nil, nil, nil, err
	}
	step.Done(k.rest.Host)
	step = pw.Start("resolving " + spec.String())
	resolved, err := (&kube.Resolver{Client: k.client, Dynamic: k.dynamic}).Resolve(ctx, k.namespace, spec)
	if err != nil {
		step.Fail(err)
		return nil, nil, nil, err
	}
	step.Done(resolved.Chosen)
	image := cfg.Agent.Image
	if image == "" {
		image = DefaultAgentImage()
	}
	opts := kube.AgentOptions{Image: image, Mode: mode, Linger: cfg.AgentLinger(), StartupTimeout: cfg.AgentStartupTimeout()}
	step = pw.Start("starting the agent")
	mgr := &kube.AgentManager{Client: k.client, Progress: func(msg string) { step.Detail("%s", msg) }}
	agent, err := mgr.Ensure(ctx, resolved, opts)
	if err != nil {
		step.Fail(err)
		return nil, nil, nil, err
	}
	how := "shared with other sessions"
	if agent.Created {
		how = "new"
	}
	step.Done(fmt.Sprintf("%s/%s (%s)", agent.Namespace, agent.Pod, how))
	dial := func(ctx context.Context) (net.Conn, error) {
		return kube.DialPod(ctx, k.rest, k.client, agent.Namespace, agent.Pod, agent.Port)
	}
	return dial, resolved, agent, nil
}
