package operator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apiserver/pkg/authentication/user"
	"sigs.k8s.io/controller-runtime/pkg/client"

	policiesv1 "github.com/tether-dev/tether/api/policies/v1alpha1"
	"github.com/tether-dev/tether/api/v1alpha1"
	"github.com/tether-dev/tether/internal/kube"
	"github.com/tether-dev/tether/internal/policy"
)

// policyTarget is one thing a session's target is, as policies select:
// the target as the user named it, its pod, the workload that owns the
// pod. A policy selects the session when it selects any of them, so a
// policy on deployment/payments holds for pod/payments-7d9-x too.
type policyTarget struct {
	Kind, Name string
	Labels     map[string]string
}

// kindAliases are the short kinds targetPath may use.
var kindAliases = map[string]string{
	"deploy": "deployment", "sts": "statefulset", "po": "pod", "ds": "daemonset",
	"rs": "replicaset", "svc": "service", "cj": "cronjob",
}

// selects reports whether spec selects t: its targetPath glob (if set)
// matches KIND/NAME and its selector (if set) the labels.
func selects(spec policiesv1.PolicySpec, t policyTarget) (bool, error) {
	if spec.TargetPath != "" {
		glob := spec.TargetPath
		if k, rest, ok := strings.Cut(glob, "/"); ok {
			k = strings.ToLower(k)
			if full, ok := kindAliases[k]; ok {
				k = full
			}
			glob = k + "/" + rest
		}
		ok, err := path.Match(glob, strings.ToLower(t.Kind)+"/"+t.Name)
		if err != nil {
			return false, fmt.Errorf("targetPath %q is not a glob (deployment/payments-*): %w", spec.TargetPath, err)
		}
		if !ok {
			return false, nil
		}
	}
	if spec.Selector != nil {
		sel, err := metav1.LabelSelectorAsSelector(spec.Selector)
		if err != nil {
			return false, fmt.Errorf("selector: %w", err)
		}
		if !sel.Matches(labels.Set(t.Labels)) {
			return false, nil
		}
	}
	return true, nil
}

// rulesOf is what policy name says, for the agent.
func rulesOf(name string, spec policiesv1.PolicySpec) policy.Rules {
	r := policy.Rules{Name: name}
	for _, b := range spec.Block {
		r.Block = append(r.Block, string(b))
	}
	if in := spec.Incoming; in != nil {
		r.RequireHeaderFilter = in.RequireHeaderFilter
	}
	if e := spec.Env; e != nil {
		r.EnvExclude, r.EnvMask = e.Exclude, e.Mask
	}
	if f := spec.FS; f != nil {
		r.FSReadOnly, r.FSLocal, r.FSNotFound = f.ReadOnly, f.Local, f.NotFound
	}
	if o := spec.Outgoing; o != nil {
		conv := func(in []policiesv1.OutgoingRule) []policy.OutgoingRule {
			var out []policy.OutgoingRule
			for _, x := range in {
				out = append(out, policy.OutgoingRule{CIDR: x.CIDR, Except: x.Except, Hostname: x.Hostname, Port: x.Port, Protocol: x.Protocol})
			}
			return out
		}
		r.OutgoingAllow, r.OutgoingBlock = conv(o.Allow), conv(o.Block)
	}
	return r
}

// sessionPolicies are the rules of the policies that select a session of
// target spec in ns on pod (nil for a targetless session), ClusterPolicies
// first, each kind by name; and, when a rule matches on hostname, the
// cluster DNS names of the addresses behind the Services. A policy that
// cannot be compiled is an error naming it: the session is refused
// rather than run without it.
func (o *Operator) sessionPolicies(ctx context.Context, ns string, spec kube.TargetSpec, pod *corev1.Pod) ([]policy.Rules, map[string][]string, error) {
	if o.Policies == nil {
		return nil, nil, nil
	}
	ts, err := o.policyTargets(ctx, ns, spec, pod)
	if err != nil {
		return nil, nil, err
	}
	rules, err := o.selectPolicies(ctx, ns, ts)
	if err != nil || len(rules) == 0 {
		return nil, nil, err
	}
	if !policy.HasHostnameRules(rules) {
		return rules, nil, nil
	}
	names, err := o.serviceNames(ctx, ns, rules)
	return rules, names, err
}

// selectPolicies lists the policies and keeps the rules of those that
// select any of ts.
func (o *Operator) selectPolicies(ctx context.Context, ns string, ts []policyTarget) ([]policy.Rules, error) {
	cps, ps, err := o.listPolicies(ctx, ns)
	if err != nil {
		return nil, err
	}
	type named struct {
		name string
		spec policiesv1.PolicySpec
	}
	var all []named
	slices.SortFunc(cps.Items, func(a, b policiesv1.ClusterPolicy) int { return strings.Compare(a.Name, b.Name) })
	for _, p := range cps.Items {
		all = append(all, named{"ClusterPolicy " + p.Name, p.Spec})
	}
	slices.SortFunc(ps.Items, func(a, b policiesv1.Policy) int { return strings.Compare(a.Name, b.Name) })
	for _, p := range ps.Items {
		all = append(all, named{"Policy " + p.Namespace + "/" + p.Name, p.Spec})
	}
	var rules []policy.Rules
	for _, p := range all {
		hit := false
		for _, t := range ts {
			ok, err := selects(p.spec, t)
			if err != nil {
				return nil, fmt.Errorf("%s: %w (the platform team must fix it; until then its targets refuse sessions)", p.name, err)
			}
			hit = hit || ok
		}
		if hit {
			rules = append(rules, rulesOf(p.name, p.spec))
		}
	}
	if _, err := policy.Compile(rules); err != nil {
		return nil, fmt.Errorf("%w (the platform team must fix it; until then its targets refuse sessions)", err)
	}
	return rules, nil
}

// listPolicies lists the ClusterPolicies and ns's Policies. Without
// their CustomResourceDefinitions (an operator installed before them)
// there are none.
func (o *Operator) listPolicies(ctx context.Context, ns string) (policiesv1.ClusterPolicyList, policiesv1.PolicyList, error) {
	var cps policiesv1.ClusterPolicyList
	var ps policiesv1.PolicyList
	if err := o.Policies.List(ctx, &cps); err != nil {
		if meta.IsNoMatchError(err) {
			return cps, ps, nil
		}
		return cps, ps, fmt.Errorf("listing ClusterPolicies: %w", err)
	}
	if err := o.Policies.List(ctx, &ps, client.InNamespace(ns)); err != nil {
		if meta.IsNoMatchError(err) {
			return cps, ps, nil
		}
		return cps, ps, fmt.Errorf("listing the Policies of %s: %w", ns, err)
	}
	return cps, ps, nil
}

// policyTargets is what policies may select a session by: the target as
// named, its pod and the pod's owning workload, with their labels.
func (o *Operator) policyTargets(ctx context.Context, ns string, spec kube.TargetSpec, pod *corev1.Pod) ([]policyTarget, error) {
	named := policyTarget{Kind: string(spec.Kind), Name: spec.Name}
	if spec.Kind == kube.KindTargetless || spec.Kind == kube.KindSelector {
		named.Name = cmp.Or(spec.Name, "*")
	}
	ts := []policyTarget{named}
	if pod == nil {
		return ts, nil
	}
	ts = append(ts, policyTarget{Kind: string(kube.KindPod), Name: pod.Name, Labels: pod.Labels})
	owner, err := o.resolver().OwnerTarget(ctx, pod, "")
	var noOwner *kube.NoOwnerError
	switch {
	case errors.As(err, &noOwner):
	case err != nil:
		return nil, fmt.Errorf("finding the workload of pod %s/%s for its policies: %w", ns, pod.Name, err)
	default:
		l, err := o.workloadLabels(ctx, ns, owner)
		if err != nil {
			return nil, fmt.Errorf("reading the labels of %s in %s for its policies: %w", owner, ns, err)
		}
		ts = append(ts, policyTarget{Kind: string(owner.Kind), Name: owner.Name, Labels: l})
	}
	for i := range ts {
		if ts[i].Kind == named.Kind && ts[i].Name == named.Name && i > 0 {
			ts[0].Labels = ts[i].Labels
		}
	}
	return ts, nil
}

// workloadLabels are the labels of workload spec.
func (o *Operator) workloadLabels(ctx context.Context, ns string, spec kube.TargetSpec) (map[string]string, error) {
	var m metav1.Object
	var err error
	apps := o.Client.AppsV1()
	switch spec.Kind {
	case kube.KindDeployment:
		var d *appsv1.Deployment
		d, err = apps.Deployments(ns).Get(ctx, spec.Name, metav1.GetOptions{})
		m = d
	case kube.KindStatefulSet:
		var s *appsv1.StatefulSet
		s, err = apps.StatefulSets(ns).Get(ctx, spec.Name, metav1.GetOptions{})
		m = s
	case kube.KindDaemonSet:
		var d *appsv1.DaemonSet
		d, err = apps.DaemonSets(ns).Get(ctx, spec.Name, metav1.GetOptions{})
		m = d
	case kube.KindReplicaSet:
		var r *appsv1.ReplicaSet
		r, err = apps.ReplicaSets(ns).Get(ctx, spec.Name, metav1.GetOptions{})
		m = r
	default:
		return nil, nil // a job, a rollout...: selected by targetPath
	}
	if err != nil {
		return nil, err
	}
	return m.GetLabels(), nil
}

// serviceNames maps the addresses of the Services a hostname rule of
// rules names (their ClusterIPs and their endpoints' addresses) to the
// Services' DNS names, as pods of ns resolve them.
func (o *Operator) serviceNames(ctx context.Context, ns string, rules []policy.Rules) (map[string][]string, error) {
	var hosts []*regexp.Regexp
	for _, r := range rules {
		for _, x := range append(slices.Clone(r.OutgoingAllow), r.OutgoingBlock...) {
			if x.Hostname != "" {
				hosts = append(hosts, regexp.MustCompile(x.Hostname)) // compiled by selectPolicies already
			}
		}
	}
	var svcs corev1.ServiceList
	if err := o.Policies.List(ctx, &svcs); err != nil {
		return nil, fmt.Errorf("listing Services for the policies' hostname rules: %w", err)
	}
	domain := "cluster.local"
	if o.DNS != nil && o.DNS.Domain != "" {
		domain = o.DNS.Domain
	}
	out := map[string][]string{}
	for _, s := range svcs.Items {
		names := []string{s.Name + "." + s.Namespace + ".svc." + domain, s.Name + "." + s.Namespace + ".svc", s.Name + "." + s.Namespace}
		if s.Namespace == ns {
			names = append(names, s.Name)
		}
		if !slices.ContainsFunc(hosts, func(re *regexp.Regexp) bool {
			return slices.ContainsFunc(names, re.MatchString)
		}) {
			continue
		}
		var addrs []string
		for _, ip := range s.Spec.ClusterIPs {
			if ip != "" && ip != corev1.ClusterIPNone {
				addrs = append(addrs, ip)
			}
		}
		var eps discoveryv1.EndpointSliceList
		if err := o.Policies.List(ctx, &eps, client.InNamespace(s.Namespace), client.MatchingLabels{discoveryv1.LabelServiceName: s.Name}); err != nil {
			return nil, fmt.Errorf("listing the endpoints of Service %s/%s for the policies' hostname rules: %w", s.Namespace, s.Name, err)
		}
		for _, es := range eps.Items {
			for _, e := range es.Endpoints {
				addrs = append(addrs, e.Addresses...)
			}
		}
		for _, a := range addrs {
			out[a] = append(out[a], names...)
		}
	}
	for a, ns := range out {
		slices.Sort(ns)
		out[a] = slices.Compact(ns)
	}
	return out, nil
}

// Policy serves targets/policy: the policies a session of u on target
// name in ns would get now, for tether policy check. It needs what a
// look at the target needs (get on targets).
func (o *Operator) Policy(ctx context.Context, u user.Info, ns, name string) (*v1alpha1.TargetPolicy, error) {
	spec, err := kube.ParseResourceName(name)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	ok, err := o.may(ctx, u, "get", ns, name)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	if !ok {
		return nil, apierrors.NewForbidden(targetsResource, name, errors.New(refusal(u, "get", ns, name)))
	}
	// The pod a session would get (the first ready one).
	resolved, err := o.resolver().Resolve(ctx, ns, spec)
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("targets/%s in %s: %v", spec.ResourceName(), ns, err))
	}
	rules, _, err := o.sessionPolicies(ctx, ns, spec, resolved.Pod)
	if err != nil {
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("the policies of %s in %s: %v", spec, ns, err))
	}
	out := &v1alpha1.TargetPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	if resolved.Pod != nil {
		out.Pod = resolved.Pod.Name
	}
	for _, r := range rules {
		out.Policies = append(out.Policies, v1alpha1.PolicyRulesOf(r))
	}
	return out, nil
}
