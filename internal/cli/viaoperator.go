package cli

import (
	"context"
	"fmt"
	"net"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tether-dev/tether/api/v1alpha1"
	"github.com/tether-dev/tether/internal/kube"
)

// agentSource finds or starts a target's agent and removes one that
// cannot serve: tether itself (kube.AgentManager, with the user's own
// rights) or tether-operator (viaOperator).
type agentSource interface {
	Ensure(ctx context.Context, t *kube.Resolved, o kube.AgentOptions) (*kube.Agent, error)
	Remove(ctx context.Context, a *kube.Agent) error
}

// viaOperator is the agent source of a cluster with tether-operator: the
// operator starts, shares and replaces the agents (the user needs no
// right to); a session reaches its pod's agent through the API server
// (targets/connect). Its Agents name the target's pod, not an agent pod.
type viaOperator struct {
	// spec is the session's target: its replicas are reached as pods of
	// it (RBAC and the audit trail name the workload).
	spec kube.TargetSpec
}

// Ensure returns where target t's pod is reached through the operator.
func (v viaOperator) Ensure(_ context.Context, t *kube.Resolved, _ kube.AgentOptions) (*kube.Agent, error) {
	if t.Pod == nil {
		// The operator's targetless agent of t's namespace.
		return &kube.Agent{Namespace: t.Namespace, Pod: "targetless", Name: "tether-operator", Via: v.spec.ResourceName()}, nil
	}
	via := v.spec.ResourceName()
	if v.spec.Kind == kube.KindSelector || v.spec.Kind == "" {
		via = kube.TargetSpec{Kind: kube.KindPod, Name: t.Pod.Name}.ResourceName()
	}
	return &kube.Agent{Namespace: t.Namespace, Pod: t.Pod.Name, Name: "tether-operator", Target: t.ContainerID, Via: via, Container: t.Container}, nil
}

// Remove: the operator replaces agents that cannot serve.
func (viaOperator) Remove(context.Context, *kube.Agent) error { return nil }

// dialAgent opens a connection to agent ag: to its pod IP (the direct
// transport), a port-forward to its pod, or a targets/connect through the
// operator.
func (k *kubeClients) dialAgent(ctx context.Context, ag *kube.Agent) (net.Conn, error) {
	if ag.Via == "" {
		if c, ok, err := k.dialDirect(ctx, ag); ok {
			return c, err
		}
		return kube.DialPod(ctx, k.rest, k.client, ag.Namespace, ag.Pod, ag.Port)
	}
	opts := v1alpha1.TargetConnectOptions{Pod: ag.Pod, Container: ag.Container}
	what := "pod " + ag.Pod
	if ag.Via == (kube.TargetSpec{Kind: kube.KindTargetless}).ResourceName() {
		opts.Pod, what = "", "the targetless agent"
	}
	c, err := kube.DialOperator(ctx, k.rest, ag.Namespace, ag.Via, opts)
	if err != nil {
		return nil, fmt.Errorf("%s through tether-operator: %w", what, err)
	}
	return c, nil
}

// mayUse fails, with what to ask for, when the user may not use target
// spec in ns through the operator (RBAC verb use on targets.tether.dev):
// before tether reads the target, so that the refusal names what is
// missing rather than whatever read it fails on first.
func mayUse(ctx context.Context, k *kubeClients, spec kube.TargetSpec) error {
	name := ""
	if spec.Kind != kube.KindSelector {
		name = spec.ResourceName()
	}
	review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
		Namespace: k.namespace, Verb: v1alpha1.VerbUse, Group: v1alpha1.GroupName, Resource: v1alpha1.ResourceTargets, Name: name,
	}}}
	r, err := k.client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return nil // cannot tell: the operator decides
	}
	if r.Status.Allowed {
		return nil
	}
	return fmt.Errorf("you may not use target %s in namespace %s through tether-operator: that needs the RBAC verb %q on targets.tether.dev there; ask your platform team to bind the ClusterRole tether-user to you in %s (kubectl create rolebinding NAME --clusterrole=tether-user --user=YOU -n %s)",
		spec, k.namespace, v1alpha1.VerbUse, k.namespace, k.namespace)
}
