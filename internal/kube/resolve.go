package kube

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// Resolved is a target resolved to one running container.
type Resolved struct {
	Spec        TargetSpec
	Namespace   string
	Pod         *corev1.Pod // nil for targetless
	Container   string
	ContainerID string // runtime://id
	// Chosen explains the choice for the user ("deployment/api: pod api-7d9f-x (1 of 3 ready)").
	Chosen string
}

// sidecars are containers a workload's own container is never: when a pod
// has one app container plus these, the app container is the default.
var sidecars = map[string]bool{
	"istio-proxy": true, "linkerd-proxy": true, "envoy": true, "envoy-sidecar": true,
	"cloudsql-proxy": true, "cloud-sql-proxy": true, "vault-agent": true, "datadog-agent": true,
}

// rolloutGVR is Argo Rollouts' resource.
var rolloutGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}

// Resolver resolves targets in a cluster.
type Resolver struct {
	Client  kubernetes.Interface
	Dynamic dynamic.Interface // for rollouts; may be nil
}

// Resolve turns spec into one ready pod and container in namespace ns.
func (r *Resolver) Resolve(ctx context.Context, ns string, spec TargetSpec) (*Resolved, error) {
	if spec.Kind == KindTargetless {
		return &Resolved{Spec: spec, Namespace: ns, Chosen: "targetless: no pod, outgoing network and DNS only"}, nil
	}
	var pod *corev1.Pod
	var chosen string
	if spec.Kind == KindPod {
		p, err := r.Client.CoreV1().Pods(ns).Get(ctx, spec.Name, metav1.GetOptions{})
		if err != nil {
			return nil, r.notFound(ctx, ns, spec, err)
		}
		if !podReady(p) {
			return nil, fmt.Errorf("pod %s/%s is not ready (%s): wait for it or pick another pod (tether ls -n %s)", ns, p.Name, podProblem(p), ns)
		}
		pod, chosen = p, "pod/"+p.Name
	} else {
		sel, err := r.selector(ctx, ns, spec)
		if err != nil {
			return nil, err
		}
		p, n, total, err := r.pickPod(ctx, ns, spec, sel)
		if err != nil {
			return nil, fmt.Errorf("%s in namespace %s: %w", spec, ns, err)
		}
		pod = p
		where := ""
		if spec.node != "" {
			where = " on node " + spec.node
		}
		chosen = fmt.Sprintf("%s: pod %s (%d of %d pods ready%s)", TargetSpec{Kind: spec.Kind, Name: spec.Name, Selector: spec.Selector}, p.Name, n, total, where)
	}
	container, id, err := pickContainer(pod, spec)
	if err != nil {
		return nil, err
	}
	return &Resolved{Spec: spec, Namespace: ns, Pod: pod, Container: container, ContainerID: id, Chosen: chosen + ", container " + container}, nil
}

// PodSelector returns the label selector of a workload target's pods.
func (r *Resolver) PodSelector(ctx context.Context, ns string, spec TargetSpec) (labels.Selector, error) {
	return r.selector(ctx, ns, spec)
}

// HasReplicas reports whether a target of kind k stands for pods that
// serve the same traffic side by side (a Deployment's replicas...), each
// of which a session's incoming subscriptions cover.
func HasReplicas(k Kind) bool {
	switch k {
	case KindDeployment, KindStatefulSet, KindReplicaSet, KindRollout, KindService, KindSelector:
		return true
	}
	return false
}

// PodReady reports whether p runs and is ready (not terminating).
func PodReady(p *corev1.Pod) bool { return podReady(p) }

// selector returns the label selector of a workload.
func (r *Resolver) selector(ctx context.Context, ns string, spec TargetSpec) (labels.Selector, error) {
	var ls *metav1.LabelSelector
	var err error
	switch spec.Kind {
	case KindDeployment:
		obj, e := r.Client.AppsV1().Deployments(ns).Get(ctx, spec.Name, metav1.GetOptions{})
		err = e
		if err == nil {
			ls = obj.Spec.Selector
		}
	case KindStatefulSet:
		obj, e := r.Client.AppsV1().StatefulSets(ns).Get(ctx, spec.Name, metav1.GetOptions{})
		err = e
		if err == nil {
			ls = obj.Spec.Selector
		}
	case KindReplicaSet:
		obj, e := r.Client.AppsV1().ReplicaSets(ns).Get(ctx, spec.Name, metav1.GetOptions{})
		err = e
		if err == nil {
			ls = obj.Spec.Selector
		}
	case KindJob:
		obj, e := r.Client.BatchV1().Jobs(ns).Get(ctx, spec.Name, metav1.GetOptions{})
		err = e
		if err == nil {
			ls = obj.Spec.Selector
		}
	case KindDaemonSet:
		obj, e := r.Client.AppsV1().DaemonSets(ns).Get(ctx, spec.Name, metav1.GetOptions{})
		err = e
		if err == nil {
			ls = obj.Spec.Selector
		}
	case KindCronJob:
		return r.cronJobSelector(ctx, ns, spec)
	case KindService:
		return r.serviceSelector(ctx, ns, spec)
	case KindSelector:
		return labels.Parse(spec.Selector)
	case KindRollout:
		if r.Dynamic == nil {
			return nil, fmt.Errorf("rollout targets need the dynamic client")
		}
		u, e := r.Dynamic.Resource(rolloutGVR).Namespace(ns).Get(ctx, spec.Name, metav1.GetOptions{})
		err = e
		if err == nil {
			m, _, _ := unstructuredMap(u.Object, "spec", "selector", "matchLabels")
			ls = &metav1.LabelSelector{MatchLabels: m}
		} else if isNoKind(err) {
			return nil, fmt.Errorf("rollout/%s: this cluster has no Argo Rollouts (argoproj.io/v1alpha1 rollouts): target the deployment or pods instead", spec.Name)
		}
	default:
		return nil, fmt.Errorf("target kind %q cannot be resolved", spec.Kind)
	}
	if err != nil {
		return nil, r.notFound(ctx, ns, spec, err)
	}
	if ls == nil {
		return nil, fmt.Errorf("%s/%s has no pod selector", spec.Kind, spec.Name)
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: bad selector: %w", spec.Kind, spec.Name, err)
	}
	return sel, nil
}

// cronJobSelector targets the CronJob's most recent Job.
func (r *Resolver) cronJobSelector(ctx context.Context, ns string, spec TargetSpec) (labels.Selector, error) {
	cj, err := r.Client.BatchV1().CronJobs(ns).Get(ctx, spec.Name, metav1.GetOptions{})
	if err != nil {
		return nil, r.notFound(ctx, ns, spec, err)
	}
	jobs, err := r.Client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, forbiddenHint(err, "list", "jobs", ns)
	}
	var last *metav1.ObjectMeta
	var lastSel *metav1.LabelSelector
	for i := range jobs.Items {
		j := &jobs.Items[i]
		for _, o := range j.OwnerReferences {
			if o.UID == cj.UID && (last == nil || j.CreationTimestamp.After(last.CreationTimestamp.Time)) {
				last, lastSel = &j.ObjectMeta, j.Spec.Selector
			}
		}
	}
	if last == nil {
		return nil, fmt.Errorf("cronjob/%s has no job yet: wait for its next run, or create one with kubectl create job --from=cronjob/%s", spec.Name, spec.Name)
	}
	if lastSel == nil {
		return labels.SelectorFromSet(labels.Set{"job-name": last.Name}), nil
	}
	return metav1.LabelSelectorAsSelector(lastSel)
}

// pickPod returns the oldest ready pod of workload spec matching sel, the
// number ready and total.
func (r *Resolver) pickPod(ctx context.Context, ns string, spec TargetSpec, sel labels.Selector) (*corev1.Pod, int, int, error) {
	pods, err := r.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, 0, 0, forbiddenHint(err, "list", "pods", ns)
	}
	if spec.node != "" {
		// A DaemonSet's pod replacing one on that node: only that node's.
		pods.Items = slices.DeleteFunc(pods.Items, func(p corev1.Pod) bool { return p.Spec.NodeName != spec.node })
	}
	var ready []*corev1.Pod
	var problems []string
	for i := range pods.Items {
		p := &pods.Items[i]
		if podReady(p) {
			ready = append(ready, p)
		} else {
			problems = append(problems, p.Name+": "+podProblem(p))
		}
	}
	if len(ready) == 0 {
		if len(pods.Items) == 0 {
			fix := "wait for its pods, or choose another target"
			if spec.node != "" {
				return nil, 0, 0, fmt.Errorf("no pod of it runs on node %s: wait for the DaemonSet to start one there, or choose another target (tether ls -n %s lists the targets)", spec.node, ns)
			}
			switch spec.Kind {
			case KindDeployment, KindStatefulSet, KindReplicaSet:
				fix = fmt.Sprintf("scale it up (kubectl scale %s/%s -n %s --replicas=1), or choose another target", spec.Kind, spec.Name, ns)
			case KindRollout:
				fix = "scale it up, or choose another target"
			}
			return nil, 0, 0, fmt.Errorf("no pods match its selector %q (is it scaled to zero?): %s (tether ls -n %s lists the targets)", sel.String(), fix, ns)
		}
		return nil, 0, len(pods.Items), fmt.Errorf("none of its %d pods is ready (%s): wait for them, or see why with kubectl describe pod -n %s %s",
			len(pods.Items), strings.Join(problems, "; "), ns, pods.Items[0].Name)
	}
	sort.Slice(ready, func(i, j int) bool {
		a, b := ready[i].CreationTimestamp, ready[j].CreationTimestamp
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return ready[i].Name < ready[j].Name
	})
	return ready[0], len(ready), len(pods.Items), nil
}

func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podProblem says briefly why a pod is not ready.
func podProblem(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return "terminating"
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			return fmt.Sprintf("container %s %s", cs.Name, w.Reason)
		}
	}
	if p.Status.Phase != corev1.PodRunning {
		return "phase " + string(p.Status.Phase)
	}
	return "not ready"
}

// PodGone reports whether the pod with UID uid is gone for good, seen as p
// now (nil: the API server has no pod of that name): deleted or being
// deleted, replaced by a new pod of the same name, or ended (phase
// Succeeded or Failed: its containers are not restarted). A container
// restarting in place is not gone. why says which, for the user.
func PodGone(p *corev1.Pod, uid types.UID) (gone bool, why string) {
	switch {
	case p == nil:
		return true, "was deleted"
	case p.UID != uid:
		return true, "was deleted (a new pod of the same name has replaced it)"
	case p.DeletionTimestamp != nil:
		return true, "was deleted"
	case p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed:
		why := "has ended (phase " + string(p.Status.Phase)
		if p.Status.Reason != "" {
			why += ": " + p.Status.Reason
		}
		return true, why + ")"
	}
	return false, ""
}

// NoOwnerError is a pod that no controller tether can follow replaces: it
// has no controller, or one of a kind tether does not know.
type NoOwnerError struct {
	Namespace, Pod string
	// Controller is "KIND NAME" of an unknown controller; "" for none.
	Controller string
}

func (e *NoOwnerError) Error() string {
	if e.Controller == "" {
		return fmt.Sprintf("pod %s/%s has no owner (no Deployment, ReplicaSet, StatefulSet, DaemonSet or Job controls it): no new pod replaces it when it goes", e.Namespace, e.Pod)
	}
	return fmt.Sprintf("pod %s/%s is controlled by %s, which tether cannot follow (it follows Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs and Argo Rollouts)", e.Namespace, e.Pod, e.Controller)
}

// OwnerTarget returns the target that resolves to the pods of p's
// controller, the pods that replace p when it goes away: deployment/D for
// a pod of a ReplicaSet of Deployment D, rollout/R for one of an Argo
// Rollout, replicaset/RS for a ReplicaSet of its own, statefulset/S and
// job/J, and for a DaemonSet its pod on p's node. The target keeps
// container (the container the user asked for, if any). It returns a
// *NoOwnerError when no controller it can follow owns p.
func (r *Resolver) OwnerTarget(ctx context.Context, p *corev1.Pod, container string) (TargetSpec, error) {
	ref := metav1.GetControllerOf(p)
	if ref == nil {
		return TargetSpec{}, &NoOwnerError{Namespace: p.Namespace, Pod: p.Name}
	}
	spec := TargetSpec{Name: ref.Name, Container: container}
	group := apiGroup(ref.APIVersion)
	switch {
	case group == "apps" && ref.Kind == "ReplicaSet":
		rs, err := r.Client.AppsV1().ReplicaSets(p.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return TargetSpec{}, fmt.Errorf("finding the owner of pod %s/%s: its ReplicaSet %s is gone, so no new pod replaces it", p.Namespace, p.Name, ref.Name)
		case err != nil:
			return TargetSpec{}, fmt.Errorf("finding the owner of pod %s/%s: %w", p.Namespace, p.Name, forbiddenHint(err, "get", "replicasets", p.Namespace))
		}
		spec.Kind = KindReplicaSet
		// A ReplicaSet of a Deployment (or a Rollout) is replaced by a new
		// one at the next rollout: follow what owns it.
		if top := metav1.GetControllerOf(rs); top != nil {
			switch g := apiGroup(top.APIVersion); {
			case g == "apps" && top.Kind == "Deployment":
				spec.Kind, spec.Name = KindDeployment, top.Name
			case g == "argoproj.io" && top.Kind == "Rollout":
				spec.Kind, spec.Name = KindRollout, top.Name
			}
		}
	case group == "apps" && ref.Kind == "StatefulSet":
		spec.Kind = KindStatefulSet
	case group == "apps" && ref.Kind == "DaemonSet":
		spec.Kind, spec.node = KindDaemonSet, p.Spec.NodeName
	case group == "batch" && ref.Kind == "Job":
		spec.Kind = KindJob
	default:
		return TargetSpec{}, &NoOwnerError{Namespace: p.Namespace, Pod: p.Name, Controller: ref.Kind + " " + ref.Name}
	}
	return spec, nil
}

// apiGroup is the group of an apiVersion ("apps/v1": "apps"; "v1": "").
func apiGroup(apiVersion string) string {
	g, _, ok := strings.Cut(apiVersion, "/")
	if !ok {
		return ""
	}
	return g
}

// pickContainer chooses the container: the one spec asks for, the pod's
// default (kubectl.kubernetes.io/default-container), or its only app
// container.
func pickContainer(p *corev1.Pod, spec TargetSpec) (string, string, error) {
	want := spec.Container
	// withContainer is the target naming container c.
	withContainer := func(c string) string {
		if spec.Kind == KindPod || spec.Name == "" {
			return "pod/" + p.Name + "/container/" + c
		}
		return string(spec.Kind) + "/" + spec.Name + "/container/" + c
	}
	var names, apps []string
	for _, c := range p.Spec.Containers {
		names = append(names, c.Name)
		if !sidecars[c.Name] {
			apps = append(apps, c.Name)
		}
	}
	name := want
	switch {
	case want != "":
		if !contains(names, want) {
			return "", "", fmt.Errorf("pod %s has no container %q (it has %s): fix the container in the target, e.g. %s",
				p.Name, want, strings.Join(names, ", "), withContainer(names[0]))
		}
	case p.Annotations["kubectl.kubernetes.io/default-container"] != "" && contains(names, p.Annotations["kubectl.kubernetes.io/default-container"]):
		name = p.Annotations["kubectl.kubernetes.io/default-container"]
	case len(names) == 1:
		name = names[0]
	case len(apps) == 1:
		name = apps[0]
	default:
		return "", "", fmt.Errorf("pod %s has several containers (%s) and no default: choose one, e.g. %s",
			p.Name, strings.Join(names, ", "), withContainer(names[0]))
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == name {
			if cs.State.Running == nil || cs.ContainerID == "" {
				return "", "", fmt.Errorf("container %s of pod %s is not running: wait for it, or see why with kubectl describe pod -n %s %s", name, p.Name, p.Namespace, p.Name)
			}
			return name, cs.ContainerID, nil
		}
	}
	return "", "", fmt.Errorf("container %s of pod %s has no status yet: wait for it to start and try again", name, p.Name)
}

func contains(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}

// notFound turns a Get error into what to do: close matches for a missing
// name, the RBAC verb and resource for forbidden.
func (r *Resolver) notFound(ctx context.Context, ns string, spec TargetSpec, err error) error {
	resource := string(spec.Kind) + "s"
	if apierrors.IsForbidden(err) {
		return forbiddenHint(err, "get", resource, ns)
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("getting %s/%s in namespace %s: %w", spec.Kind, spec.Name, ns, err)
	}
	names, _ := r.names(ctx, ns, spec.Kind)
	if len(names) == 0 {
		if err := r.missingNamespace(ctx, ns); err != nil {
			return err
		}
	}
	hint := ""
	if m := closest(spec.Name, names); len(m) > 0 {
		hint = fmt.Sprintf(" Did you mean %s?", strings.Join(prefixAll(string(spec.Kind)+"/", m), " or "))
	}
	return fmt.Errorf("%s %q not found in namespace %s.%s List the targets with: tether ls -n %s", spec.Kind, spec.Name, ns, hint, ns)
}

// missingNamespace returns an error naming ns when it does not exist (and
// close names of namespaces that do), or nil when it exists or cannot be
// checked (a user may not be allowed to read namespaces).
func (r *Resolver) missingNamespace(ctx context.Context, ns string) error {
	_, err := r.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		return nil
	}
	hint := ""
	if l, err := r.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil {
		var all []string
		for _, n := range l.Items {
			all = append(all, n.Name)
		}
		if m := closest(ns, all); len(m) > 0 {
			hint = fmt.Sprintf(" Did you mean -n %s?", strings.Join(m, " or -n "))
		}
	}
	return fmt.Errorf("namespace %q does not exist: fix -n (or namespace in the config, or the context's namespace).%s kubectl get namespaces lists them", ns, hint)
}

func prefixAll(p string, xs []string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = p + x
	}
	return out
}

// names lists the object names of a kind in ns.
func (r *Resolver) names(ctx context.Context, ns string, kind Kind) ([]string, error) {
	var out []string
	opts := metav1.ListOptions{}
	switch kind {
	case KindPod:
		l, err := r.Client.CoreV1().Pods(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, o := range l.Items {
			out = append(out, o.Name)
		}
	case KindDeployment:
		l, err := r.Client.AppsV1().Deployments(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, o := range l.Items {
			out = append(out, o.Name)
		}
	case KindStatefulSet:
		l, err := r.Client.AppsV1().StatefulSets(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, o := range l.Items {
			out = append(out, o.Name)
		}
	case KindReplicaSet:
		l, err := r.Client.AppsV1().ReplicaSets(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, o := range l.Items {
			out = append(out, o.Name)
		}
	case KindJob:
		l, err := r.Client.BatchV1().Jobs(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, o := range l.Items {
			out = append(out, o.Name)
		}
	case KindCronJob:
		l, err := r.Client.BatchV1().CronJobs(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, o := range l.Items {
			out = append(out, o.Name)
		}
	case KindService:
		l, err := r.Client.CoreV1().Services(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, o := range l.Items {
			out = append(out, o.Name)
		}
	case KindRollout:
		if r.Dynamic == nil {
			return nil, nil
		}
		l, err := r.Dynamic.Resource(rolloutGVR).Namespace(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, o := range l.Items {
			out = append(out, o.GetName())
		}
	}
	return out, nil
}

// forbiddenHint explains an RBAC refusal: which verb on which resource.
func forbiddenHint(err error, verb, resource, ns string) error {
	if !apierrors.IsForbidden(err) {
		return err
	}
	return &ForbiddenError{Verb: verb, Resource: resource, Namespace: ns, Err: err}
}

// ForbiddenError is an RBAC refusal, said in the terms the user can act on.
type ForbiddenError struct {
	Verb, Resource, Namespace string
	Err                       error
}

func (e *ForbiddenError) Error() string {
	return fmt.Sprintf("your Kubernetes user may not %s %s in namespace %s (RBAC forbidden): ask a cluster admin for a Role with verb %q on %q, or use a kubeconfig/context that has it (%v)",
		e.Verb, e.Resource, e.Namespace, e.Verb, e.Resource, e.Err)
}

func (e *ForbiddenError) Unwrap() error { return e.Err }

func isNoKind(err error) bool {
	return apierrors.IsNotFound(err) && strings.Contains(err.Error(), "the server could not find the requested resource")
}

// unstructuredMap reads a map[string]string at path in an unstructured object.
func unstructuredMap(obj map[string]any, path ...string) (map[string]string, bool, error) {
	var cur any = obj
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false, errors.New("not a map")
		}
		cur = m[p]
	}
	m, ok := cur.(map[string]any)
	if !ok {
		return nil, false, nil
	}
	out := map[string]string{}
	for k, v := range m {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out, true, nil
}
