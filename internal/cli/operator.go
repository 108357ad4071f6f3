package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/tether-dev/tether/internal/deploy"
	"github.com/tether-dev/tether/internal/kube"
	"github.com/tether-dev/tether/internal/version"
)

// DefaultOperatorImage is the public operator image of this release.
func DefaultOperatorImage() string {
	return strings.Replace(DefaultAgentImage(), "/tether-agent:", "/tether-operator:", 1)
}

var apiServicesGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

func newOperatorCmd(streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Install, check or remove tether-operator (sessions for a team, without privileged rights)",
		Long: `tether-operator lets developers run sessions on a shared cluster with their own
Kubernetes identity: RBAC on targets.tether.dev (the ClusterRole tether-user,
bound in a namespace) is all they need; the operator starts the agents.`,
	}
	cmd.AddCommand(newOperatorInstall(streams), newOperatorStatus(streams), newOperatorUninstall(streams))
	return cmd
}

// operatorFlags are the cluster flags of the operator commands; their
// --namespace is the operator's.
type operatorFlags struct {
	kube kubeFlags
}

func (f *operatorFlags) add(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.kube.kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	fs.StringVar(&f.kube.context, "context", "", "the kubeconfig context to use")
	fs.StringVarP(&f.kube.namespace, "namespace", "n", deploy.DefaultNamespace, "the operator's namespace")
}

func newOperatorInstall(streams Streams) *cobra.Command {
	var f operatorFlags
	o := deploy.Options{}
	var dryRun bool
	var output string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install tether-operator (needs cluster-admin rights once)",
		Example: `  tether operator install
  tether operator install --dry-run -o yaml > tether-operator.yaml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Namespace = f.kube.namespace
			if output != "" && output != "yaml" {
				return usageErrorf("-o %q: the only output is yaml", output)
			}
			objs, err := deploy.Objects(o)
			if err != nil {
				return err
			}
			if dryRun {
				if output == "" {
					us, err := deploy.Unstructured(objs)
					if err != nil {
						return err
					}
					for _, u := range us {
						fmt.Fprintf(streams.Out, "%s (dry run)\n", deploy.Describe(u))
					}
					return nil
				}
				b, err := deploy.YAML(objs)
				if err != nil {
					return err
				}
				_, err = streams.Out.Write(b)
				return err
			}
			k, err := newKubeClients(f.kube, "")
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if err := k.checkReachable(ctx); err != nil {
				return err
			}
			if err := deploy.Apply(ctx, k.dynamic, objs, func(s string) { fmt.Fprintf(streams.Err, "tether: applied %s\n", s) }); err != nil {
				return err
			}
			fmt.Fprintf(streams.Err, "tether: waiting for the API server to serve tether.dev through the operator (up to %v)\n", timeout)
			if err := waitAvailable(ctx, k, timeout); err != nil {
				return fmt.Errorf("%w: see tether operator status -n %s, and kubectl -n %s logs deploy/%s", err, o.Namespace, o.Namespace, deploy.Name)
			}
			fmt.Fprintf(streams.Out, "tether-operator is installed in %s: grant developers the ClusterRole %s in their namespaces, e.g.\n  kubectl create rolebinding tether-user --clusterrole=%s --user=USER -n NAMESPACE\n", o.Namespace, deploy.UserRole, deploy.UserRole)
			return nil
		},
	}
	f.add(cmd)
	fs := cmd.Flags()
	fs.StringVar(&o.Image, "image", DefaultOperatorImage(), "the operator's image")
	fs.StringVar(&o.AgentImage, "agent-image", DefaultAgentImage(), "the image of the agents it starts")
	fs.Int32Var(&o.Replicas, "replicas", 2, "operator replicas (one leader records Events; all serve sessions)")
	fs.StringVar(&o.AgentLinger, "agent-linger", "", "how long an agent stays after its last session (default 30s)")
	fs.StringVar(&o.SessionGrace, "session-grace", "", "how long an agent keeps a disconnected session (default 60s)")
	fs.BoolVar(&dryRun, "dry-run", false, "print what would be applied, change nothing")
	fs.StringVarP(&output, "output", "o", "", "with --dry-run: yaml prints the manifests")
	fs.DurationVar(&timeout, "timeout", 3*time.Minute, "how long to wait for the operator to serve")
	return cmd
}

func newOperatorUninstall(streams Streams) *cobra.Command {
	var f operatorFlags
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove tether-operator and everything it made (its agents end their sessions)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := newKubeClients(f.kube, "")
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if err := k.checkReachable(ctx); err != nil {
				return err
			}
			if err := deploy.Remove(ctx, k.dynamic, deploy.Options{Namespace: f.kube.namespace}, func(s string) { fmt.Fprintf(streams.Err, "tether: deleted %s\n", s) }); err != nil {
				return err
			}
			fmt.Fprintf(streams.Out, "tether-operator is uninstalled: nothing of it is left\n")
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

func newOperatorStatus(streams Streams) *cobra.Command {
	var f operatorFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show whether tether-operator serves, its replicas and agents",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := newKubeClients(f.kube, "")
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if err := k.checkReachable(ctx); err != nil {
				return err
			}
			ns := f.kube.namespace
			ok, why := apiAvailable(ctx, k)
			if apierrors.IsNotFound(why) {
				fmt.Fprintf(streams.Out, "tether-operator is not installed (no APIService %s): tether operator install\n", deploy.APIServiceName)
				return ExitCode(1)
			}
			state := "serving"
			if !ok {
				state = "NOT serving: " + why.Error()
			}
			fmt.Fprintf(streams.Out, "api       %s: %s\n", deploy.APIServiceName, state)
			if d, err := k.client.AppsV1().Deployments(ns).Get(ctx, deploy.Name, metav1.GetOptions{}); err == nil {
				img := ""
				if cs := d.Spec.Template.Spec.Containers; len(cs) > 0 {
					img = cs[0].Image
				}
				fmt.Fprintf(streams.Out, "operator  %s/%s: %d of %d replicas ready, image %s\n", ns, deploy.Name, d.Status.ReadyReplicas, ptrOr(d.Spec.Replicas), img)
			} else {
				fmt.Fprintf(streams.Out, "operator  %s/%s: %v\n", ns, deploy.Name, err)
			}
			if pods, err := k.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: kube.LabelApp + "=" + kube.AppAgent}); err == nil {
				nodes := map[string]bool{}
				for _, p := range pods.Items {
					nodes[p.Spec.NodeName] = true
				}
				fmt.Fprintf(streams.Out, "agents    %d (on %d nodes)\n", len(pods.Items), len(nodes))
			}
			fmt.Fprintf(streams.Out, "client    tether %s\n", version.Version)
			if !ok {
				return ExitCode(1)
			}
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

func ptrOr(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

// apiAvailable reports the APIService's Available condition.
func apiAvailable(ctx context.Context, k *kubeClients) (bool, error) {
	as, err := k.dynamic.Resource(apiServicesGVR).Get(ctx, deploy.APIServiceName, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	conds, _, _ := unstructured.NestedSlice(as.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Available" {
			if m["status"] == "True" {
				return true, nil
			}
			return false, fmt.Errorf("%v: %v", m["reason"], m["message"])
		}
	}
	return false, fmt.Errorf("the API server has not checked it yet")
}

func waitAvailable(ctx context.Context, k *kubeClients, timeout time.Duration) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ok, why := apiAvailable(ctx, k)
		last = why
		return ok, nil
	})
	if err != nil && last != nil {
		return fmt.Errorf("the operator's API is not available: %v", last)
	}
	return err
}
