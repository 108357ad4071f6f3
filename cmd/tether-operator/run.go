package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	policiesv1 "github.com/tether-dev/tether/api/policies/v1alpha1"
	queuesv1 "github.com/tether-dev/tether/api/queues/v1alpha1"
	"github.com/tether-dev/tether/internal/deploy"
	"github.com/tether-dev/tether/internal/kube"
	"github.com/tether-dev/tether/internal/operator"
	"github.com/tether-dev/tether/internal/operator/apiserver"
	"github.com/tether-dev/tether/internal/version"
)

// options are tether-operator's flags.
type options struct {
	api         *apiserver.Options
	kubeconfig  string
	namespace   string
	agentImage  string
	agentLinger time.Duration
	agentGrace  time.Duration
	leaderElect bool
	logLevel    string
	qps         float32
	burst       int
}

// Run runs tether-operator with args and returns its exit code.
func Run(ctx context.Context, args []string) int {
	o := options{api: apiserver.NewOptions()}
	cmd := &cobra.Command{
		Use:           "tether-operator",
		Short:         "tether's cluster component: sessions through the Kubernetes API, agents on users' behalf",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          func(cmd *cobra.Command, _ []string) error { return run(cmd.Context(), o) },
	}
	fs := cmd.Flags()
	o.api.AddFlags(fs)
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (default: in-cluster)")
	fs.StringVar(&o.namespace, "namespace", envOr("POD_NAMESPACE", "tether-system"), "the operator's namespace: its agents and its leader lease live there")
	fs.StringVar(&o.agentImage, "agent-image", "", "image of the agents it starts (required)")
	fs.DurationVar(&o.agentLinger, "agent-linger", 30*time.Second, "how long an agent stays after its last session")
	fs.DurationVar(&o.agentGrace, "session-grace", 0, "how long an agent keeps a disconnected session for its client to resume (0: the agent's default)")
	fs.BoolVar(&o.leaderElect, "leader-elect", true, "elect a leader among replicas (it records the sessions' Events)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	// Every session's connect reads its target and its agent: client-go's
	// default (5/s, burst 10) made the 11th connect in a row wait.
	fs.Float32Var(&o.qps, "kube-api-qps", 100, "requests per second to the Kubernetes API (the API server's priority and fairness still applies)")
	fs.IntVar(&o.burst, "kube-api-burst", 200, "burst of requests to the Kubernetes API")
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "tether-operator: %v\n", err)
		return 1
	}
	return 0
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, o options) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel)
	}
	if o.agentImage == "" {
		return errors.New("--agent-image is required: the image of tether-agent the operator starts (tether operator install sets it)")
	}
	// Structured logs are the audit trail: JSON, one line per event.
	handler := slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	log := slog.New(handler).With("component", "tether-operator")
	ctrl.SetLogger(logr.FromSlogHandler(handler))
	klog.SetLogger(logr.FromSlogHandler(handler))

	cfg, err := restConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = o.qps, o.burst
	if o.api.Authentication.RemoteKubeConfigFile == "" && o.kubeconfig != "" {
		o.api.Authentication.RemoteKubeConfigFile = o.kubeconfig
	}
	if o.api.Authorization.RemoteKubeConfigFile == "" && o.kubeconfig != "" {
		o.api.Authorization.RemoteKubeConfigFile = o.kubeconfig
	}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	if len(o.api.SecureServing.ServerCert.CertKey.CertFile) == 0 {
		// Its own certificate, whose CA its APIService is made to trust.
		o.api.CertPEM, o.api.KeyPEM, err = operator.ServingCert(ctx, kc, dyn, o.namespace, deploy.TLSSecret, deploy.Name, deploy.APIServiceName)
		if err != nil {
			return err
		}
	}
	serverConfig, err := o.api.Config()
	if err != nil {
		return err
	}
	broadcaster := eventBroadcaster(ctx)
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kc.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	scheme := runtime.NewScheme()
	if err := errors.Join(clientgoscheme.AddToScheme(scheme), queuesv1.AddToScheme(scheme), policiesv1.AddToScheme(scheme)); err != nil {
		return fmt.Errorf("scheme: %w", err)
	}
	// QueueSplits are read uncached: a split's state moves between the
	// replicas that serve targets/split and the leader that runs it.
	splits, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	op := &operator.Operator{
		Splits: splits,
		Client: kc, Dynamic: dyn, Namespace: o.namespace, Log: log,
		Authorizer: serverConfig.Authorization.Authorizer,
		Events:     broadcaster.NewRecorder(clientgoscheme.Scheme, corev1.EventSource{Component: "tether-operator"}),
		Agent:      kube.AgentOptions{Image: o.agentImage, Linger: o.agentLinger, SessionGrace: o.agentGrace},
	}
	if dns, err := operator.ReadClusterDNS("/etc/resolv.conf", o.namespace); err != nil {
		log.Warn("targetless sessions are refused: the cluster's DNS is unknown", "err", err)
	} else {
		op.DNS = &dns
	}
	server, err := apiserver.New(serverConfig, op)
	if err != nil {
		return err
	}
	agentPods := labels.SelectorFromSet(labels.Set{kube.LabelApp: kube.AppAgent})
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              "tether-operator",
		LeaderElectionNamespace:       o.namespace,
		LeaderElectionReleaseOnCancel: true,
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        "0",
		Cache: cache.Options{
			DefaultNamespaces: map[string]cache.Config{o.namespace: {}},
			ByObject: map[client.Object]cache.ByObject{
				&corev1.Pod{}:          {Label: agentPods},
				&queuesv1.QueueSplit{}: {Namespaces: map[string]cache.Config{cache.AllNamespaces: {}}},
				// The policies, and for their hostname rules the
				// Services' addresses.
				&policiesv1.Policy{}:         {Namespaces: map[string]cache.Config{cache.AllNamespaces: {}}},
				&policiesv1.ClusterPolicy{}:  {},
				&corev1.Service{}:            {Namespaces: map[string]cache.Config{cache.AllNamespaces: {}}},
				&discoveryv1.EndpointSlice{}: {Namespaces: map[string]cache.Config{cache.AllNamespaces: {}}},
			},
		},
	})
	if err != nil {
		return fmt.Errorf("controller manager: %w", err)
	}
	op.Policies = mgr.GetCache()
	if err := (&operator.AgentReconciler{Client: mgr.GetClient(), Watcher: &operator.Watcher{O: op, Since: time.Now()}}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("agent controller: %w", err)
	}
	// The splits run on the leader (it owns the forwarders).
	splitter := &operator.SplitReconciler{O: op}
	if err := splitter.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("queue split controller: %w", err)
	}
	// The forwarders stop with the leadership (or the process): the next
	// leader's resume from the last acknowledged message.
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		<-ctx.Done()
		splitter.StopAll()
		return nil
	})); err != nil {
		return err
	}
	// Every replica serves the API (the Service spreads sessions over
	// them); only the leader records the sessions' Events.
	if err := mgr.Add(everyReplica(func(ctx context.Context) error {
		return server.PrepareRun().RunWithContext(ctx)
	})); err != nil {
		return err
	}
	log.Info("starting", "version", version.Version, "namespace", o.namespace, "agent_image", o.agentImage)
	return mgr.Start(ctx)
}

// everyReplica is a runnable that runs on every replica, leader or not.
type everyReplica func(ctx context.Context) error

func (f everyReplica) Start(ctx context.Context) error { return f(ctx) }
func (f everyReplica) NeedLeaderElection() bool        { return false }

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config: %w (outside a cluster, pass --kubeconfig)", err)
		}
		return c, nil
	}
	c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
	}
	return c, nil
}

// eventBroadcaster records the operator's Events. They are the audit
// trail: client-go's default spam filter (25 per object and type, then
// one per 5 minutes) would drop the 26th session's start on a busy
// target, so it is keyed by reason too, with room for a team's sessions.
func eventBroadcaster(ctx context.Context) record.EventBroadcaster {
	return record.NewBroadcaster(record.WithContext(ctx), record.WithCorrelatorOptions(record.CorrelatorOptions{
		BurstSize: 500, QPS: 5,
		SpamKeyFunc: func(e *corev1.Event) string {
			o := e.InvolvedObject
			return strings.Join([]string{e.Source.Component, o.Kind, o.Namespace, o.Name, string(o.UID), e.Type, e.Reason}, "/")
		},
	}))
}
