// Package kube is tether's Kubernetes side: target parsing and resolution
// (a workload to one ready pod and container), agent spawning and reuse,
// readiness with fail-fast errors, the port-forward dialer, and mapping
// API errors (RBAC, Pod Security Admission) to what the user should do.
package kube

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// Kind is a target kind.
type Kind string

// Target kinds.
const (
	KindTargetless  Kind = "targetless"
	KindPod         Kind = "pod"
	KindDeployment  Kind = "deployment"
	KindStatefulSet Kind = "statefulset"
	KindReplicaSet  Kind = "replicaset"
	KindJob         Kind = "job"
	KindCronJob     Kind = "cronjob"
	KindRollout     Kind = "rollout"
	// KindService is the pods a Service selects.
	KindService Kind = "service"
	// KindSelector is the pods a label selector picks (SelectorTarget).
	KindSelector Kind = "pods"
	// KindDaemonSet is only ever a pod's owner followed with --follow-owner
	// (OwnerTarget): ParseTarget does not take it, since which of a
	// DaemonSet's pods (one per node) is meant depends on the node.
	KindDaemonSet Kind = "daemonset"
)

// kindAliases maps what users type (kubectl's names and short names) to kinds.
var kindAliases = map[string]Kind{
	"pod": KindPod, "pods": KindPod, "po": KindPod,
	"deployment": KindDeployment, "deployments": KindDeployment, "deploy": KindDeployment,
	"statefulset": KindStatefulSet, "statefulsets": KindStatefulSet, "sts": KindStatefulSet,
	"replicaset": KindReplicaSet, "replicasets": KindReplicaSet, "rs": KindReplicaSet,
	"job": KindJob, "jobs": KindJob,
	"cronjob": KindCronJob, "cronjobs": KindCronJob, "cj": KindCronJob,
	"rollout": KindRollout, "rollouts": KindRollout, "ro": KindRollout,
	"service": KindService, "services": KindService, "svc": KindService,
}

// TargetSpec is a parsed target: what the user asked for, not yet resolved.
type TargetSpec struct {
	Kind      Kind
	Name      string
	Container string // "" = the pod's default container
	// Selector is a KindSelector target's label selector.
	Selector string
	// node restricts a workload's pods to those on this node: a
	// DaemonSet's pod replacing one on that node (OwnerTarget).
	node string
}

func (t TargetSpec) String() string {
	if t.Kind == KindTargetless {
		return "targetless"
	}
	if t.Kind == KindSelector {
		return "pods -l " + t.Selector
	}
	s := string(t.Kind) + "/" + t.Name
	if t.Container != "" {
		s += "/container/" + t.Container
	}
	if t.node != "" {
		s += " (its pod on node " + t.node + ")"
	}
	return s
}

// ParseTarget parses "targetless", "KIND/NAME", "KIND/NAME/container/C" or
// a bare pod name.
func ParseTarget(s string) (TargetSpec, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return TargetSpec{}, fmt.Errorf("empty target: give one such as deployment/NAME, pod/NAME or targetless")
	}
	if s == "targetless" {
		return TargetSpec{Kind: KindTargetless}, nil
	}
	parts := strings.Split(s, "/")
	if len(parts) == 1 {
		parts = []string{"pod", parts[0]}
	}
	kind, ok := kindAliases[strings.ToLower(parts[0])]
	if !ok {
		return TargetSpec{}, fmt.Errorf("target %q: unknown kind %q (want targetless, pod, deployment, statefulset, replicaset, job, cronjob, rollout or service)", s, parts[0])
	}
	t := TargetSpec{Kind: kind}
	switch {
	case len(parts) == 2:
	case len(parts) == 4 && parts[2] == "container":
		t.Container = parts[3]
		if err := validName(t.Container); err != nil {
			return TargetSpec{}, fmt.Errorf("target %q: container: %w: write KIND/NAME/container/CONTAINER, e.g. deployment/web/container/app", s, err)
		}
	default:
		return TargetSpec{}, fmt.Errorf("target %q: want KIND/NAME or KIND/NAME/container/CONTAINER, e.g. deployment/web or pod/web-0/container/app", s)
	}
	t.Name = parts[1]
	if err := validName(t.Name); err != nil {
		return TargetSpec{}, fmt.Errorf("target %q: %w: write KIND/NAME with the object's name, e.g. deployment/web (tether ls lists the targets)", s, err)
	}
	return t, nil
}

// SelectorTarget is the target of the ready pods label selector sel picks
// (kubectl -l syntax).
func SelectorTarget(sel string) (TargetSpec, error) {
	sel = strings.TrimSpace(sel)
	if sel == "" {
		return TargetSpec{}, fmt.Errorf("empty label selector: give one such as -l app=web")
	}
	if _, err := labels.Parse(sel); err != nil {
		return TargetSpec{}, fmt.Errorf("label selector %q: %v: write it as kubectl -l takes it, e.g. app=web or app=web,tier!=db", sel, err)
	}
	return TargetSpec{Kind: KindSelector, Selector: sel}, nil
}

// validName checks a Kubernetes object name (RFC 1123 subdomain).
func validName(n string) error {
	if n == "" {
		return fmt.Errorf("empty name")
	}
	if len(n) > 253 {
		return fmt.Errorf("name %q is longer than 253 characters", n)
	}
	for i, c := range n {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.'
		if !ok || ((i == 0 || i == len(n)-1) && (c == '-' || c == '.')) {
			return fmt.Errorf("%q is not a valid Kubernetes name (lowercase letters, digits, '-' and '.')", n)
		}
	}
	return nil
}

// closest returns up to three candidates nearest to name (edit distance),
// for "did you mean" hints.
func closest(name string, candidates []string) []string {
	type scored struct {
		s string
		d int
	}
	var best []scored
	for _, c := range candidates {
		d := editDistance(name, c)
		if strings.Contains(c, name) || strings.Contains(name, c) {
			d = min(d, 2)
		}
		if d > max(3, len(name)/2) {
			continue
		}
		best = append(best, scored{c, d})
	}
	for i := 1; i < len(best); i++ {
		for j := i; j > 0 && (best[j].d < best[j-1].d || best[j].d == best[j-1].d && best[j].s < best[j-1].s); j-- {
			best[j], best[j-1] = best[j-1], best[j]
		}
	}
	var out []string
	for i := 0; i < len(best) && i < 3; i++ {
		out = append(out, best[i].s)
	}
	return out
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// ResourceName is the target's name in tether's API (targets.tether.dev):
// KIND.NAME, e.g. deployment.api; "targetless" for a targetless one. A
// selector target has none (its pods are named one by one).
func (t TargetSpec) ResourceName() string {
	if t.Kind == KindTargetless || t.Kind == KindSelector {
		return string(t.Kind)
	}
	return string(t.Kind) + "." + t.Name
}

// ParseResourceName parses a targets.tether.dev name (ResourceName).
func ParseResourceName(name string) (TargetSpec, error) {
	if name == string(KindTargetless) {
		return TargetSpec{Kind: KindTargetless}, nil
	}
	kind, rest, ok := strings.Cut(name, ".")
	if !ok || rest == "" {
		return TargetSpec{}, fmt.Errorf("target name %q: want KIND.NAME, e.g. deployment.api or pod.api-0", name)
	}
	k, known := kindAliases[kind]
	if !known || string(k) != kind {
		return TargetSpec{}, fmt.Errorf("target name %q: unknown kind %q (want pod, deployment, statefulset, replicaset, job, cronjob, rollout or service)", name, kind)
	}
	if err := validName(rest); err != nil {
		return TargetSpec{}, fmt.Errorf("target name %q: %w", name, err)
	}
	return TargetSpec{Kind: k, Name: rest}, nil
}
