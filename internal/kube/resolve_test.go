package kube

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func pod(name string, lbl map[string]string, ready bool, created time.Time, containers ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "demo", Labels: lbl, UID: types.UID("uid-" + k8sUID(name)), CreationTimestamp: metav1.NewTime(created)}}
	p.Status.Phase = corev1.PodRunning
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c})
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c, ContainerID: "containerd://" + name + "-" + c, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}})
	}
	return p
}

func k8sUID(s string) string { return strings.ReplaceAll(s, "-", "") }

func fixture() *fake.Clientset {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	app := map[string]string{"app": "ip-visit-counter"}
	sel := &metav1.LabelSelector{MatchLabels: app}
	cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "nightly", Namespace: "demo", UID: "cj-uid"}}
	jobOld := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "nightly-1", Namespace: "demo", CreationTimestamp: metav1.NewTime(t0),
		OwnerReferences: []metav1.OwnerReference{{UID: "cj-uid", Kind: "CronJob", Name: "nightly"}}},
		Spec: batchv1.JobSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"job-name": "nightly-1"}}}}
	jobNew := jobOld.DeepCopy()
	jobNew.Name, jobNew.CreationTimestamp = "nightly-2", metav1.NewTime(t0.Add(time.Hour))
	jobNew.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"job-name": "nightly-2"}}
	return fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "ip-visit-counter", Namespace: "demo"}, Spec: appsv1.DeploymentSpec{Selector: sel}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "scaled-down", Namespace: "demo"}, Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "none"}}}},
		&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "redis", Namespace: "demo"}, Spec: appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "redis"}}}},
		cj, jobOld, jobNew,
		pod("ip-visit-counter-b", app, true, t0.Add(2*time.Minute), "app"),
		pod("ip-visit-counter-a", app, true, t0.Add(time.Minute), "app", "istio-proxy"),
		pod("ip-visit-counter-c", app, false, t0, "app"),
		pod("redis-0", map[string]string{"app": "redis"}, true, t0, "redis", "exporter"),
		pod("nightly-2-xyz", map[string]string{"job-name": "nightly-2"}, true, t0, "job"),
		pod("nightly-1-abc", map[string]string{"job-name": "nightly-1"}, true, t0, "job"),
		pod("not-ready", nil, false, t0, "app"),
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "counter", Namespace: "demo"}, Spec: corev1.ServiceSpec{Selector: app}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "external", Namespace: "demo"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName}},
	)
}

func TestResolve(t *testing.T) {
	r := &Resolver{Client: fixture()}
	tests := []struct {
		target        string
		wantPod       string
		wantContainer string
		wantErr       string
	}{
		{"deployment/ip-visit-counter", "ip-visit-counter-a", "app", ""}, // oldest ready; istio-proxy skipped
		{"deployment/ip-visit-counter/container/istio-proxy", "ip-visit-counter-a", "istio-proxy", ""},
		{"pod/ip-visit-counter-b", "ip-visit-counter-b", "app", ""},
		{"cronjob/nightly", "nightly-2-xyz", "job", ""}, // its newest job
		{"job/nightly-1", "nightly-1-abc", "job", ""},
		{"job/missing", "", "", `job "missing" not found in namespace demo`},
		{"statefulset/redis", "", "", "several containers (redis, exporter)"},
		{"statefulset/redis/container/redis", "redis-0", "redis", ""},
		{"deployment/ip-visit-countr", "", "", "Did you mean deployment/ip-visit-counter?"},
		{"deployment/scaled-down", "", "", "no pods match its selector"},
		{"pod/not-ready", "", "", "is not ready"},
		{"pod/ip-visit-counter-b/container/sidecar", "", "", `has no container "sidecar" (it has app): fix the container in the target, e.g. pod/ip-visit-counter-b/container/app`},
		{"deployment/ip-visit-counter/container/sidecar", "", "", `(it has app, istio-proxy): fix the container in the target, e.g. deployment/ip-visit-counter/container/app`},
		{"statefulset/redis", "", "", "choose one, e.g. statefulset/redis/container/redis"},
		{"deployment/scaled-down", "", "", "scale it up (kubectl scale deployment/scaled-down -n demo --replicas=1)"},
		{"service/counter", "ip-visit-counter-a", "app", ""}, // the pods it selects
		{"service/external", "", "", "service/external has no pod selector"},
		{"service/countr", "", "", "Did you mean service/counter?"},
		{"-l app=redis", "", "", "several containers (redis, exporter)"},
		{"-l app=ip-visit-counter", "ip-visit-counter-a", "app", ""},
		{"-l app=none", "", "", `pods -l app=none in namespace demo: no pods match its selector "app=none"`},
	}
	for _, tt := range tests {
		spec, err := ParseTarget(tt.target)
		if sel, ok := strings.CutPrefix(tt.target, "-l "); ok {
			spec, err = SelectorTarget(sel)
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.Resolve(context.Background(), "demo", spec)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Resolve(%s) = %v, want error containing %q", tt.target, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Resolve(%s): %v", tt.target, err)
			continue
		}
		if got.Pod.Name != tt.wantPod || got.Container != tt.wantContainer || got.ContainerID == "" {
			t.Errorf("Resolve(%s) = pod %s container %s id %q; want %s/%s", tt.target, got.Pod.Name, got.Container, got.ContainerID, tt.wantPod, tt.wantContainer)
		}
	}
}

// TestResolveMissingNamespace: a target in a namespace that does not exist
// names the namespace, not just the target.
func TestResolveMissingNamespace(t *testing.T) {
	r := &Resolver{Client: fixture()}
	for _, target := range []string{"deployment/ip-visit-counter", "pod/ip-visit-counter-b"} {
		spec, _ := ParseTarget(target)
		_, err := r.Resolve(context.Background(), "dmeo", spec)
		if want := `namespace "dmeo" does not exist: fix -n (or namespace in the config, or the context's namespace). Did you mean -n demo?`; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Resolve(%s) in namespace dmeo = %v, want %q", target, err, want)
		}
	}
}

func TestResolveForbidden(t *testing.T) {
	cs := fixture()
	cs.PrependReactor("get", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments"}, "ip-visit-counter", nil)
	})
	r := &Resolver{Client: cs}
	spec, _ := ParseTarget("deployment/ip-visit-counter")
	_, err := r.Resolve(context.Background(), "demo", spec)
	var fe *ForbiddenError
	if err == nil || !strings.Contains(err.Error(), `verb "get" on "deployments"`) || !asForbidden(err, &fe) {
		t.Fatalf("err = %v", err)
	}
}

func asForbidden(err error, fe **ForbiddenError) bool {
	e, ok := err.(*ForbiddenError)
	if ok {
		*fe = e
	}
	return ok
}

func TestList(t *testing.T) {
	r := &Resolver{Client: fixture()}
	got, err := r.List(context.Background(), "demo")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ti := range got {
		names = append(names, ti.Target)
	}
	all := strings.Join(names, " ")
	for _, ti := range got {
		if ti.Target == "service/counter" && (ti.Pods != 2 || ti.Info != "2/3 ready") {
			t.Errorf("ls: service/counter covers %d pods (%s), want 2 (2/3 ready)", ti.Pods, ti.Info)
		}
		if ti.Target == "service/external" {
			t.Errorf("ls lists service/external, which selects no pods")
		}
	}
	for _, want := range []string{"deployment/ip-visit-counter", "service/counter", "statefulset/redis", "cronjob/nightly", "job/nightly-2",
		"pod/ip-visit-counter-a/container/app", "pod/ip-visit-counter-a/container/istio-proxy", "pod/not-ready"} {
		if !strings.Contains(all, want) {
			t.Errorf("ls lacks %s: %v", want, names)
		}
	}
}

func TestResolveRollout(t *testing.T) {
	ro := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
		"metadata": map[string]any{"name": "web", "namespace": "demo"},
		"spec":     map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"app": "ip-visit-counter"}}},
	}}
	scheme := runtime.NewScheme()
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{rolloutGVR: "RolloutList"}, ro)
	r := &Resolver{Client: fixture(), Dynamic: dyn}
	got, err := r.Resolve(context.Background(), "demo", TargetSpec{Kind: KindRollout, Name: "web"})
	if err != nil || got.Pod.Name != "ip-visit-counter-a" {
		t.Fatalf("Resolve(rollout/web) = %+v, %v", got, err)
	}
	_, err = r.Resolve(context.Background(), "demo", TargetSpec{Kind: KindRollout, Name: "wbe"})
	if err == nil || !strings.Contains(err.Error(), "rollout/web") {
		t.Fatalf("missing rollout: %v", err)
	}
}

// owned is pod name owned by the controller kind/name (uid "uid-NAME").
func owned(p *corev1.Pod, apiVersion, kind, name string) *corev1.Pod {
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: types.UID("uid-" + name), Controller: ptrTo(true)}}
	return p
}

func ptrTo[T any](v T) *T { return &v }

// ownerFixture: pods of a Deployment's ReplicaSet, of a ReplicaSet of its
// own, of a Rollout's ReplicaSet, of a StatefulSet, of a DaemonSet (on two
// nodes), of a Job, of an unknown controller, of a ReplicaSet that is
// gone, and a bare pod.
func ownerFixture() *fake.Clientset {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	rs := func(name string, owner ...metav1.OwnerReference) *appsv1.ReplicaSet {
		return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "demo", UID: types.UID("uid-" + name), OwnerReferences: owner}}
	}
	ds := map[string]string{"app": "node-agent"}
	onNode := func(p *corev1.Pod, node string) *corev1.Pod { p.Spec.NodeName = node; return p }
	return fake.NewClientset(
		rs("web-7d9f", metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", Controller: ptrTo(true)}),
		rs("plain"),
		rs("canary-5c4b", metav1.OwnerReference{APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: "canary", Controller: ptrTo(true)}),
		&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "node-agent", Namespace: "demo"}, Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: ds}}},
		owned(pod("web-7d9f-a", nil, true, t0, "app"), "apps/v1", "ReplicaSet", "web-7d9f"),
		owned(pod("plain-b", nil, true, t0, "app"), "apps/v1", "ReplicaSet", "plain"),
		owned(pod("canary-5c4b-c", nil, true, t0, "app"), "apps/v1", "ReplicaSet", "canary-5c4b"),
		owned(pod("db-0", nil, true, t0, "db"), "apps/v1", "StatefulSet", "db"),
		onNode(owned(pod("node-agent-n1", ds, true, t0, "agent"), "apps/v1", "DaemonSet", "node-agent"), "n1"),
		onNode(owned(pod("node-agent-n2", ds, true, t0.Add(-time.Hour), "agent"), "apps/v1", "DaemonSet", "node-agent"), "n2"),
		owned(pod("worker-x", nil, true, t0, "job"), "batch/v1", "Job", "worker"),
		owned(pod("vm-launcher", nil, true, t0, "compute"), "kubevirt.io/v1", "VirtualMachineInstance", "vm"),
		owned(pod("orphan-d", nil, true, t0, "app"), "apps/v1", "ReplicaSet", "deleted-rs"),
		pod("bare", nil, true, t0, "app"),
	)
}

// TestOwnerTarget: the target that follows a pod's controller, the
// container kept; a DaemonSet's pod is followed on its node; a pod
// without a controller tether knows is a *NoOwnerError.
func TestOwnerTarget(t *testing.T) {
	cs := ownerFixture()
	r := &Resolver{Client: cs}
	tests := []struct {
		pod, container string
		want           string // the target's String()
		wantNoOwner    bool
		wantErr        string
	}{
		{pod: "web-7d9f-a", want: "deployment/web"},
		{pod: "web-7d9f-a", container: "app", want: "deployment/web/container/app"},
		{pod: "plain-b", want: "replicaset/plain"},
		{pod: "canary-5c4b-c", want: "rollout/canary"},
		{pod: "db-0", want: "statefulset/db"},
		{pod: "node-agent-n1", want: "daemonset/node-agent (its pod on node n1)"},
		{pod: "worker-x", want: "job/worker"},
		{pod: "bare", wantNoOwner: true, wantErr: "pod demo/bare has no owner"},
		{pod: "vm-launcher", wantNoOwner: true, wantErr: "controlled by VirtualMachineInstance vm, which tether cannot follow"},
		{pod: "orphan-d", wantErr: "its ReplicaSet deleted-rs is gone"},
	}
	for _, tt := range tests {
		p, err := cs.CoreV1().Pods("demo").Get(context.Background(), tt.pod, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.OwnerTarget(context.Background(), p, tt.container)
		var noOwner *NoOwnerError
		if errors.As(err, &noOwner) != tt.wantNoOwner {
			t.Errorf("OwnerTarget(%s): error %v, want a NoOwnerError: %v", tt.pod, err, tt.wantNoOwner)
		}
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("OwnerTarget(%s) = %v, %v; want error %q", tt.pod, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("OwnerTarget(%s) = %q, %v; want %q", tt.pod, got, err, tt.want)
		}
	}
}

// TestOwnerTargetForbidden: a user who may not read ReplicaSets is told
// which verb and resource to ask for.
func TestOwnerTargetForbidden(t *testing.T) {
	cs := ownerFixture()
	cs.PrependReactor("get", "replicasets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "replicasets"}, "web-7d9f", nil)
	})
	p, _ := cs.CoreV1().Pods("demo").Get(context.Background(), "web-7d9f-a", metav1.GetOptions{})
	_, err := (&Resolver{Client: cs}).OwnerTarget(context.Background(), p, "")
	var fe *ForbiddenError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), `verb "get" on "replicasets"`) {
		t.Fatalf("err = %v", err)
	}
}

// TestResolveDaemonSetOwner: a DaemonSet's pod is followed to its pod on
// the same node, not to the oldest one; none there is an error that says
// so.
func TestResolveDaemonSetOwner(t *testing.T) {
	cs := ownerFixture()
	r := &Resolver{Client: cs}
	p, _ := cs.CoreV1().Pods("demo").Get(context.Background(), "node-agent-n1", metav1.GetOptions{})
	spec, err := r.OwnerTarget(context.Background(), p, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Resolve(context.Background(), "demo", spec)
	if err != nil || got.Pod.Name != "node-agent-n1" || !strings.Contains(got.Chosen, "on node n1") {
		t.Fatalf("Resolve(%s) = %+v, %v; want pod node-agent-n1 (the older node-agent-n2 runs on n2)", spec, got, err)
	}
	if err := cs.CoreV1().Pods("demo").Delete(context.Background(), "node-agent-n1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = r.Resolve(context.Background(), "demo", spec)
	if err == nil || !strings.Contains(err.Error(), "no pod of it runs on node n1: wait for the DaemonSet to start one there") {
		t.Fatalf("Resolve(%s) with no pod on n1: %v", spec, err)
	}
}

// TestPodGone: what counts as the pod gone for good (deleted, being
// deleted, replaced under its name, ended) and what does not (running,
// not ready, a container restarting in place).
func TestPodGone(t *testing.T) {
	const uid = "uid-1"
	p := func(edit func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", UID: uid}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
		edit(p)
		return p
	}
	now := metav1.Now()
	tests := []struct {
		name    string
		pod     *corev1.Pod
		want    bool
		wantWhy string
	}{
		{"not found", nil, true, "was deleted"},
		{"being deleted", p(func(p *corev1.Pod) { p.DeletionTimestamp = &now }), true, "was deleted"},
		{"replaced under its name", p(func(p *corev1.Pod) { p.UID = "uid-2" }), true, "was deleted (a new pod of the same name has replaced it)"},
		{"succeeded", p(func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }), true, "has ended (phase Succeeded)"},
		{"evicted", p(func(p *corev1.Pod) { p.Status.Phase, p.Status.Reason = corev1.PodFailed, "Evicted" }), true, "has ended (phase Failed: Evicted)"},
		{"running", p(func(*corev1.Pod) {}), false, ""},
		{"pending", p(func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending }), false, ""},
		{"container restarting", p(func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", RestartCount: 3, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}
		}), false, ""},
	}
	for _, tt := range tests {
		gone, why := PodGone(tt.pod, uid)
		if gone != tt.want || why != tt.wantWhy {
			t.Errorf("%s: PodGone = %v, %q; want %v, %q", tt.name, gone, why, tt.want, tt.wantWhy)
		}
	}
}
