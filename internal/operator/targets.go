package operator

import (
	"cmp"
	"context"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tether-dev/tether/api/v1alpha1"
	"github.com/tether-dev/tether/internal/kube"
)

// Targets lists the targets of namespace ns (tether ls, as an API).
func (o *Operator) Targets(ctx context.Context, ns string) ([]v1alpha1.Target, error) {
	infos, err := o.resolver().List(ctx, ns)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	var out []v1alpha1.Target
	seen := map[string]bool{}
	for _, info := range infos {
		spec, err := kube.ParseTarget(info.Target)
		if err != nil {
			continue
		}
		name := spec.ResourceName()
		if seen[name] {
			continue // a pod's containers: one target
		}
		seen[name] = true
		out = append(out, newTarget(ns, spec))
	}
	return out, nil
}

// Target returns target name of ns with its pods.
func (o *Operator) Target(ctx context.Context, ns, name string) (*v1alpha1.Target, error) {
	spec, err := kube.ParseResourceName(name)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	t := newTarget(ns, spec)
	var pods []corev1.Pod
	if spec.Kind == kube.KindPod {
		p, err := o.Client.CoreV1().Pods(ns).Get(ctx, spec.Name, metav1.GetOptions{})
		if err != nil {
			return nil, notFound(err, name)
		}
		pods = []corev1.Pod{*p}
	} else if spec.Kind != kube.KindTargetless {
		sel, err := o.resolver().PodSelector(ctx, ns, spec)
		if err != nil {
			return nil, apierrors.NewNotFound(targetsResource, name)
		}
		list, err := o.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		pods = list.Items
	}
	for _, p := range pods {
		tp := v1alpha1.TargetPod{Name: p.Name, Node: p.Spec.NodeName, Ready: kube.PodReady(&p)}
		for _, c := range p.Spec.Containers {
			tp.Containers = append(tp.Containers, c.Name)
		}
		t.Status.Pods = append(t.Status.Pods, tp)
	}
	slices.SortFunc(t.Status.Pods, func(a, b v1alpha1.TargetPod) int { return cmp.Compare(a.Name, b.Name) })
	return &t, nil
}

func newTarget(ns string, spec kube.TargetSpec) v1alpha1.Target {
	return v1alpha1.Target{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Target"},
		ObjectMeta: metav1.ObjectMeta{Name: spec.ResourceName(), Namespace: ns},
		Spec:       v1alpha1.TargetSpec{Kind: string(spec.Kind), Name: spec.Name},
	}
}

func notFound(err error, name string) error {
	if apierrors.IsNotFound(err) {
		return apierrors.NewNotFound(targetsResource, name)
	}
	return apierrors.NewInternalError(err)
}
