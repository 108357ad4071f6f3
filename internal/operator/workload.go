package operator

import (
	"context"
	"errors"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	queuesv1 "github.com/tether-dev/tether/api/queues/v1alpha1"
	"github.com/tether-dev/tether/internal/kube"
)

// AnnotationSplit marks a workload tether-operator points at fallback
// queues: the QueueSplit that did it.
const AnnotationSplit = "queues.tether.dev/split"

// workload is a Deployment or StatefulSet, as queue splitting patches it.
type workload struct {
	deploy *appsv1.Deployment
	sts    *appsv1.StatefulSet
}

func (w workload) meta() *metav1.ObjectMeta {
	if w.deploy != nil {
		return &w.deploy.ObjectMeta
	}
	return &w.sts.ObjectMeta
}

func (w workload) template() *corev1.PodTemplateSpec {
	if w.deploy != nil {
		return &w.deploy.Spec.Template
	}
	return &w.sts.Spec.Template
}

// container returns the template's container name ("": the first).
func (w workload) container(name string) (*corev1.Container, error) {
	cs := w.template().Spec.Containers
	if name == "" && len(cs) > 0 {
		return &cs[0], nil
	}
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i], nil
		}
	}
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return nil, fmt.Errorf("it has no container %q (it has %v): fix the QueueSplit's spec.container", name, names)
}

func (o *Operator) getWorkload(ctx context.Context, ns string, spec kube.TargetSpec) (workload, error) {
	switch spec.Kind {
	case kube.KindDeployment:
		d, err := o.Client.AppsV1().Deployments(ns).Get(ctx, spec.Name, metav1.GetOptions{})
		return workload{deploy: d}, err
	case kube.KindStatefulSet:
		s, err := o.Client.AppsV1().StatefulSets(ns).Get(ctx, spec.Name, metav1.GetOptions{})
		return workload{sts: s}, err
	}
	return workload{}, fmt.Errorf("queue splitting patches deployments and statefulsets, not %s", spec.Kind)
}

func (o *Operator) updateWorkload(ctx context.Context, ns string, w workload) error {
	var err error
	if w.deploy != nil {
		_, err = o.Client.AppsV1().Deployments(ns).Update(ctx, w.deploy, metav1.UpdateOptions{FieldManager: "tether-operator"})
	} else {
		_, err = o.Client.AppsV1().StatefulSets(ns).Update(ctx, w.sts, metav1.UpdateOptions{FieldManager: "tether-operator"})
	}
	return err
}

// editWorkload applies edit to the workload's current version, again if
// someone changed it meanwhile.
func (o *Operator) editWorkload(ctx context.Context, ns string, spec kube.TargetSpec, edit func(workload) error) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		w, err := o.getWorkload(ctx, ns, spec)
		if err != nil {
			return err
		}
		if err := edit(w); err != nil {
			return err
		}
		return o.updateWorkload(ctx, ns, w)
	})
}

// envValue is what variable name of container c is, resolved as the
// kubelet would (a literal, a ConfigMap or Secret key, envFrom), and the
// entry that sets it in c.Env (nil: envFrom, or not set).
func (o *Operator) envValue(ctx context.Context, ns string, c *corev1.Container, name string) (string, *corev1.EnvVar, error) {
	for i := range c.Env {
		e := &c.Env[i]
		if e.Name != name {
			continue
		}
		if e.ValueFrom == nil {
			return e.Value, e, nil
		}
		switch {
		case e.ValueFrom.ConfigMapKeyRef != nil:
			v, err := o.configMapKey(ctx, ns, e.ValueFrom.ConfigMapKeyRef.Name, e.ValueFrom.ConfigMapKeyRef.Key)
			return v, e, err
		case e.ValueFrom.SecretKeyRef != nil:
			v, err := o.secretKey(ctx, ns, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
			return v, e, err
		}
		return "", e, fmt.Errorf("variable %s of container %s comes from a field or resource: queue splitting needs a value, a ConfigMap or a Secret key", name, c.Name)
	}
	// envFrom: the last source that has it wins, as in the kubelet.
	var val string
	found := false
	for _, src := range c.EnvFrom {
		key, ok := cutPrefix(name, src.Prefix)
		if !ok {
			continue
		}
		var v string
		var err error
		switch {
		case src.ConfigMapRef != nil:
			v, err = o.configMapKey(ctx, ns, src.ConfigMapRef.Name, key)
		case src.SecretRef != nil:
			v, err = o.secretKey(ctx, ns, src.SecretRef.Name, key)
		}
		if errors.Is(err, errNoKey) {
			continue
		}
		if err != nil {
			return "", nil, err
		}
		val, found = v, true
	}
	if !found {
		return "", nil, fmt.Errorf("container %s has no variable %s (neither in env nor envFrom): fix the QueueSplit's env names", c.Name, name)
	}
	return val, nil, nil
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || s[:len(prefix)] != prefix {
		return "", false
	}
	return s[len(prefix):], true
}

var errNoKey = errors.New("no such key")

func (o *Operator) configMapKey(ctx context.Context, ns, name, key string) (string, error) {
	cm, err := o.Client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("configmap %s/%s: %w", ns, name, err)
	}
	v, ok := cm.Data[key]
	if !ok {
		return "", fmt.Errorf("configmap %s/%s has no key %s: %w", ns, name, key, errNoKey)
	}
	return v, nil
}

func (o *Operator) secretKey(ctx context.Context, ns, name, key string) (string, error) {
	s, err := o.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("secret %s/%s: %w", ns, name, err)
	}
	v, ok := s.Data[key]
	if !ok {
		return "", fmt.Errorf("secret %s/%s has no key %s: %w", ns, name, key, errNoKey)
	}
	return string(v), nil
}

// setEnv sets literal values in container c, replacing what set them.
func setEnv(c *corev1.Container, vars []corev1.EnvVar) {
	for _, v := range vars {
		i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == v.Name })
		if i < 0 {
			c.Env = append(c.Env, v)
		} else {
			c.Env[i] = v
		}
	}
}

// restoreEnv puts back the entries of container c the patch replaced
// (original) and takes out those it added.
func restoreEnv(c *corev1.Container, original []corev1.EnvVar, added []string) {
	c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return slices.Contains(added, e.Name) })
	for _, v := range original {
		i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == v.Name })
		if i < 0 {
			c.Env = append(c.Env, v)
		} else {
			c.Env[i] = v
		}
	}
}

// isPatched says whether container c still has every value of patched.
func isPatched(c *corev1.Container, patched []corev1.EnvVar) bool {
	for _, p := range patched {
		i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == p.Name })
		if i < 0 || c.Env[i].Value != p.Value || c.Env[i].ValueFrom != nil {
			return false
		}
	}
	return true
}

// rolledOut says whether every pod of workload w runs its current
// template and none of an older one is left, and if not, what it waits for.
func rolledOut(w workload) (bool, string) {
	if d := w.deploy; d != nil {
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		st := d.Status
		switch {
		case st.ObservedGeneration < d.Generation:
			return false, "the deployment controller has not seen the change yet"
		case st.UpdatedReplicas < want:
			return false, fmt.Sprintf("%d of %d pods updated", st.UpdatedReplicas, want)
		case st.Replicas > st.UpdatedReplicas:
			return false, fmt.Sprintf("%d old pods still run", st.Replicas-st.UpdatedReplicas)
		case st.AvailableReplicas < want:
			return false, fmt.Sprintf("%d of %d pods available", st.AvailableReplicas, want)
		}
		return true, ""
	}
	s := w.sts
	want := int32(1)
	if s.Spec.Replicas != nil {
		want = *s.Spec.Replicas
	}
	st := s.Status
	switch {
	case st.ObservedGeneration < s.Generation:
		return false, "the statefulset controller has not seen the change yet"
	case st.UpdateRevision != st.CurrentRevision || st.UpdatedReplicas < want:
		return false, fmt.Sprintf("%d of %d pods updated", st.UpdatedReplicas, want)
	case st.ReadyReplicas < want:
		return false, fmt.Sprintf("%d of %d pods ready", st.ReadyReplicas, want)
	}
	return true, ""
}

// gitOps names the GitOps controller that manages w, if its labels or
// annotations say one does ("" if none): it may undo the patch.
func gitOps(w workload) string {
	m := w.meta()
	for k, v := range m.Annotations {
		switch k {
		case "argocd.argoproj.io/tracking-id":
			return "Argo CD (" + v + ")"
		}
	}
	for k, v := range m.Labels {
		switch k {
		case "app.kubernetes.io/instance":
			if _, ok := m.Annotations["argocd.argoproj.io/sync-options"]; ok {
				return "Argo CD (application " + v + ")"
			}
		case "argocd.argoproj.io/instance":
			return "Argo CD (application " + v + ")"
		case "kustomize.toolkit.fluxcd.io/name":
			return "Flux (kustomization " + m.Labels["kustomize.toolkit.fluxcd.io/namespace"] + "/" + v + ")"
		case "helm.toolkit.fluxcd.io/name":
			return "Flux (helm release " + m.Labels["helm.toolkit.fluxcd.io/namespace"] + "/" + v + ")"
		}
	}
	return ""
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

// deletePatchedReplicaSets deletes the ReplicaSets of deployment w (none
// for a StatefulSet) whose pods had the patch p and run no more: the
// rollout back to the original template reused its own, and the split
// leaves nothing behind.
func (o *Operator) deletePatchedReplicaSets(ctx context.Context, w workload, p *queuesv1.WorkloadPatch) error {
	d := w.deploy
	if d == nil || d.Spec.Selector == nil {
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil
	}
	list, err := o.Client.AppsV1().ReplicaSets(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return fmt.Errorf("listing the ReplicaSets of deployment %s: %w", d.Name, err)
	}
	for i := range list.Items {
		r := &list.Items[i]
		owner := metav1.GetControllerOf(r)
		if owner == nil || owner.UID != d.UID || (r.Spec.Replicas != nil && *r.Spec.Replicas != 0) || r.Status.Replicas != 0 {
			continue
		}
		c := containerNamed(r.Spec.Template.Spec.Containers, p.Container)
		if c == nil || !isPatched(c, p.Patched) {
			continue
		}
		err := o.Client.AppsV1().ReplicaSets(d.Namespace).Delete(ctx, r.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting ReplicaSet %s of the split: %w", r.Name, err)
		}
	}
	return nil
}

func containerNamed(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}
