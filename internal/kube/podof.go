package kube

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// ResolvePod resolves spec to one given pod of it (a workload's replica,
// or the pod itself), as tether-operator checks what a session names:
// the pod must belong to the target, run, and have the container.
func (r *Resolver) ResolvePod(ctx context.Context, ns string, spec TargetSpec, pod string) (*Resolved, error) {
	switch spec.Kind {
	case KindTargetless:
		return nil, fmt.Errorf("a targetless session names no pod")
	case KindPod:
		if pod != "" && pod != spec.Name {
			return nil, fmt.Errorf("pod %s is not the target pod/%s", pod, spec.Name)
		}
		pod = spec.Name
	}
	if pod == "" {
		return nil, fmt.Errorf("no pod named: connect to one pod of %s", spec)
	}
	p, err := r.Client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("pod %s/%s does not exist (any more): resolve %s again", ns, pod, spec)
	}
	if err != nil {
		return nil, forbiddenHint(err, "get", "pods", ns)
	}
	if spec.Kind != KindPod {
		sel, err := r.selector(ctx, ns, spec)
		if err != nil {
			return nil, err
		}
		if !sel.Matches(labels.Set(p.Labels)) {
			return nil, fmt.Errorf("pod %s is not a pod of %s in namespace %s (its selector %q does not match it)", pod, spec, ns, sel)
		}
	}
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return nil, fmt.Errorf("pod %s/%s does not run (%s): wait for it or pick another", ns, pod, podProblem(p))
	}
	container, id, err := pickContainer(p, spec)
	if err != nil {
		return nil, err
	}
	return &Resolved{Spec: spec, Namespace: ns, Pod: p, Container: container, ContainerID: id,
		Chosen: fmt.Sprintf("%s: pod %s, container %s", spec, p.Name, container)}, nil
}
