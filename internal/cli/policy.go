package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/tether-dev/tether/api/v1alpha1"
	"github.com/tether-dev/tether/internal/config"
	"github.com/tether-dev/tether/internal/httpfilter"
	"github.com/tether-dev/tether/internal/kube"
	"github.com/tether-dev/tether/internal/policy"
)

// ExitPolicyRefused is tether policy check's exit code when the policies
// would refuse part of the config.
const ExitPolicyRefused = 3

func newPolicyCmd(streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "The platform team's policies (policies.tether.dev)",
		Args:  noArgs,
	}
	cmd.AddCommand(newPolicyCheck(streams))
	return cmd
}

func newPolicyCheck(streams Streams) *cobra.Command {
	var kf kubeFlags
	var target, file, output string
	cmd := &cobra.Command{
		Use:   "check [-t TARGET] [-f CONFIG] [-o json]",
		Short: "What the policies allow me on a target, and what of my config they would refuse",
		Long: `Asks tether-operator which Policies and ClusterPolicies apply to a session
on the target, prints what they refuse, and checks the config (-f, or the
default .tether/config.*) against them. Exit code 0: nothing of the config
is refused; 3: something is (each refusal is printed).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := loadConfig(file)
			if err != nil {
				return err
			}
			if target != "" {
				cfg.Target = config.Target{Path: target}
			}
			if cfg.Target.IsZero() {
				return usageErrorf("name a target: -t deployment/NAME (or target: in the config)")
			}
			spec, err := targetSpec(cfg.Target)
			if err != nil {
				return &UsageError{Err: err}
			}
			k, err := newKubeClients(kf, cfg.Namespace)
			if err != nil {
				return err
			}
			tp, err := getTargetPolicy(cmd.Context(), k, spec)
			if err != nil {
				return err
			}
			var rules []policy.Rules
			for _, r := range tp.Policies {
				rules = append(rules, r.Rules())
			}
			refusals, err := checkConfig(rules, cfg)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(streams.Out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(struct {
					*v1alpha1.TargetPolicy
					Refused []policy.Refusal `json:"refused"`
				}{tp, refusals}); err != nil {
					return err
				}
			} else {
				printPolicies(streams.Out, k.namespace, spec, tp, rules, refusals)
			}
			if len(refusals) > 0 {
				return ExitCode(ExitPolicyRefused)
			}
			return nil
		},
	}
	kf.add(cmd.Flags())
	cmd.Flags().StringVarP(&target, "target", "t", "", "the target (deployment/NAME, pod/NAME...; default: the config's)")
	cmd.Flags().StringVarP(&file, "config", "f", "", "the config to check (default: .tether/config.* here or above)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "json for the policies and the refusals")
	return cmd
}

// getTargetPolicy reads targets/policy of spec from tether-operator.
func getTargetPolicy(ctx context.Context, k *kubeClients, spec kube.TargetSpec) (*v1alpha1.TargetPolicy, error) {
	path := "/apis/" + v1alpha1.SchemeGroupVersion.String() + "/namespaces/" + k.namespace + "/" + v1alpha1.ResourceTargets
	raw, err := k.client.Discovery().RESTClient().Get().AbsPath(path, spec.ResourceName(), v1alpha1.SubresourcePolicy).DoRaw(ctx)
	if err != nil {
		switch {
		case apierrors.IsNotFound(err) && !strings.Contains(string(raw), spec.Name):
			return nil, fmt.Errorf("this cluster's tether-operator has no policies (targets/policy): install or upgrade it (tether operator install): %w", err)
		case apierrors.IsForbidden(err):
			return nil, fmt.Errorf("%w: reading the policies of %s in %s needs get on targets.tether.dev (the ClusterRole tether-user has it: ask your platform team)", err, spec, k.namespace)
		case apierrors.IsServiceUnavailable(err) || apierrors.IsNotFound(err) || apierrors.IsBadRequest(err):
			var st struct{ Message string }
			if json.Unmarshal(raw, &st) == nil && st.Message != "" {
				return nil, errors.New(st.Message)
			}
		}
		return nil, fmt.Errorf("reading the policies of %s in %s from tether-operator: %w", spec, k.namespace, err)
	}
	var tp v1alpha1.TargetPolicy
	if err := json.Unmarshal(raw, &tp); err != nil {
		return nil, fmt.Errorf("decoding tether-operator's targets/policy: %w", err)
	}
	return &tp, nil
}

// checkConfig is what rules would refuse of cfg: its incoming mode and
// filter, its queue split, the variables env.include names, its fs mode
// write. (Outgoing rules depend on where the program connects: they are
// printed, and each refused connection is told once while it runs.)
func checkConfig(rules []policy.Rules, cfg *config.Config) ([]policy.Refusal, error) {
	set, err := policy.Compile(rules)
	if err != nil {
		return nil, fmt.Errorf("the operator sent a policy that cannot be compiled: %w", err)
	}
	var out []policy.Refusal
	add := func(r *policy.Refusal) {
		if r != nil {
			out = append(out, *r)
		}
	}
	switch cfg.IncomingMode() {
	case "steal":
		f := cfg.Incoming.HTTPFilter
		add(set.Steal(httpfilter.PolicyView(httpfilter.ToWire(f))))
		if len(f.Ports) > 0 && httpfilter.ToWire(f) != nil {
			// The other ports are stolen without the filter.
			r := set.Steal(nil)
			if r != nil {
				r.What += " (the ports outside incoming.http_filter.ports)"
			}
			add(r)
		}
	case "mirror":
		add(set.Mirror())
	}
	if len(cfg.SplitQueues) > 0 {
		add(set.QueueSplit())
	}
	for _, name := range cfg.Env.Include {
		if strings.ContainsAny(name, "*?[") {
			continue
		}
		if mode, r := set.Env(name); mode == policy.EnvExcluded {
			r.What = "variable " + name + " (env.include)"
			add(r)
		}
	}
	if cfg.FSMode() == "write" {
		add(set.Write("/"))
	}
	return dedupe(out), nil
}

func dedupe(rs []policy.Refusal) []policy.Refusal {
	var out []policy.Refusal
	for _, r := range rs {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// printPolicies says what applies to the target and what of the config
// is refused.
func printPolicies(w io.Writer, ns string, spec kube.TargetSpec, tp *v1alpha1.TargetPolicy, rules []policy.Rules, refused []policy.Refusal) {
	on := spec.String() + " in " + ns
	if tp.Pod != "" {
		on += " (pod " + tp.Pod + ")"
	}
	if len(rules) == 0 {
		fmt.Fprintf(w, "No policy applies to %s.\n", on)
	} else {
		fmt.Fprintf(w, "Policies that apply to %s:\n", on)
		for _, r := range rules {
			fmt.Fprintf(w, "  %s\n", r.Name)
			for _, l := range describeRules(r) {
				fmt.Fprintf(w, "    %s\n", l)
			}
		}
	}
	if len(refused) == 0 {
		fmt.Fprintln(w, "Your config: nothing of it is refused.")
		return
	}
	fmt.Fprintln(w, "Your config would be refused:")
	for _, r := range refused {
		fmt.Fprintf(w, "  %s\n", r.Error())
	}
}

// describeRules is r in lines, as policy check prints it.
func describeRules(r policy.Rules) []string {
	var out []string
	if len(r.Block) > 0 {
		out = append(out, "block: "+strings.Join(r.Block, ", "))
	}
	if r.RequireHeaderFilter != "" {
		out = append(out, "incoming: a steal's HTTP filter must match "+r.RequireHeaderFilter)
	}
	for _, l := range []struct {
		what string
		list []string
	}{
		{"env.exclude (left out)", r.EnvExclude}, {"env.mask (masked)", r.EnvMask},
		{"fs.readOnly", r.FSReadOnly}, {"fs.local (this machine's)", r.FSLocal}, {"fs.notFound", r.FSNotFound},
	} {
		if len(l.list) > 0 {
			out = append(out, l.what+": "+strings.Join(l.list, ", "))
		}
	}
	rule := func(o policy.OutgoingRule) string {
		var parts []string
		if o.CIDR != "" {
			parts = append(parts, o.CIDR)
		}
		if len(o.Except) > 0 {
			parts = append(parts, "except "+strings.Join(o.Except, ","))
		}
		if o.Hostname != "" {
			parts = append(parts, "hostname "+o.Hostname)
		}
		if o.Port != 0 {
			parts = append(parts, fmt.Sprintf("port %d", o.Port))
		}
		if o.Protocol != "" {
			parts = append(parts, o.Protocol)
		}
		if len(parts) == 0 {
			return "everything"
		}
		return strings.Join(parts, " ")
	}
	for _, o := range r.OutgoingAllow {
		out = append(out, "outgoing.allow (all else refused): "+rule(o))
	}
	for _, o := range r.OutgoingBlock {
		out = append(out, "outgoing.block: "+rule(o))
	}
	return out
}
