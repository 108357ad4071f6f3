package kube

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
)

func resolvedTarget() *Resolved {
	p := pod("api-1", map[string]string{"app": "api"}, true, time.Now(), "app")
	p.Spec.NodeName = "node-1"
	return &Resolved{Namespace: "demo", Pod: p, Container: "app", ContainerID: "containerd://" + strings.Repeat("ab", 32)}
}

// runJobPods plays the Job controller and kubelet: it gives every agent
// Job a pod whose agent container is in the given state.
func runJobPods(t *testing.T, cs *fake.Clientset, state corev1.ContainerState) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for ctx.Err() == nil {
			jobs, _ := cs.BatchV1().Jobs("demo").List(ctx, metav1.ListOptions{})
			for _, j := range jobs.Items {
				if len(j.Spec.Template.Spec.Containers) == 0 {
					continue
				}
				p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: j.Name + "-x", Namespace: "demo", Labels: map[string]string{"job-name": j.Name}},
					Spec: j.Spec.Template.Spec}
				p.Status.Phase = corev1.PodPending
				if state.Running != nil {
					p.Status.Phase = corev1.PodRunning
				}
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "agent", Image: j.Spec.Template.Spec.Containers[0].Image, State: state}}
				cs.CoreV1().Pods("demo").Create(ctx, p, metav1.CreateOptions{})
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
}

func TestEnsureJobAgentShared(t *testing.T) {
	cs := fake.NewClientset()
	runJobPods(t, cs, corev1.ContainerState{Running: &corev1.ContainerStateRunning{}})
	m := &AgentManager{Client: cs}
	target := resolvedTarget()
	opts := AgentOptions{Image: "tether.local/tether-agent:dev", StartupTimeout: 5 * time.Second}
	a, err := m.Ensure(context.Background(), target, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Created || a.Port != DefaultAgentPort || !strings.HasPrefix(a.Pod, "tether-agent-") {
		t.Fatalf("agent = %+v", a)
	}
	job, err := cs.BatchV1().Jobs("demo").Get(context.Background(), a.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := job.Spec.Template.Spec
	c := spec.Containers[0]
	if !spec.HostPID || spec.NodeName != "node-1" || !strings.Contains(strings.Join(c.Args, " "), "--target-container-id containerd://") ||
		c.SecurityContext.Capabilities.Drop[0] != "ALL" || !slices.Equal(c.SecurityContext.Capabilities.Add, []corev1.Capability{"NET_ADMIN", "NET_RAW", "SYS_ADMIN", "SYS_PTRACE"}) {
		t.Fatalf("job pod spec = %+v", spec)
	}
	// A second session shares the same agent.
	b, err := m.Ensure(context.Background(), target, opts)
	if err != nil {
		t.Fatal(err)
	}
	if b.Created || b.Name != a.Name {
		t.Fatalf("second Ensure = %+v, want the shared agent %s", b, a.Name)
	}
	if len(a.Token) < 32 || b.Token != a.Token {
		t.Fatalf("tokens %q and %q: want one shared random token", a.Token, b.Token)
	}
}

func TestEnsureJobImagePullFailsFast(t *testing.T) {
	cs := fake.NewClientset()
	runJobPods(t, cs, corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "not found"}})
	m := &AgentManager{Client: cs}
	start := time.Now()
	_, err := m.Ensure(context.Background(), resolvedTarget(), AgentOptions{Image: "nope/agent:none", StartupTimeout: 30 * time.Second})
	if err == nil || !strings.Contains(err.Error(), `agent image "nope/agent:none" cannot be pulled`) {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("did not fail fast")
	}
}

func TestEnsureJobPodSecurity(t *testing.T) {
	cs := fake.NewClientset()
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "x",
			errorString(`violates PodSecurity "baseline:latest": host namespaces (hostPID=true), non-default capabilities`))
	})
	m := &AgentManager{Client: cs}
	_, err := m.Ensure(context.Background(), resolvedTarget(), AgentOptions{Image: "a:b", StartupTimeout: 5 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "Pod Security Admission") || !strings.Contains(err.Error(), "--ephemeral") {
		t.Fatalf("err = %v", err)
	}
}

func TestEnsureJobRBAC(t *testing.T) {
	cs := fake.NewClientset()
	cs.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "batch", Resource: "jobs"}, "x", errorString("no"))
	})
	m := &AgentManager{Client: cs}
	_, err := m.Ensure(context.Background(), resolvedTarget(), AgentOptions{Image: "a:b", StartupTimeout: 5 * time.Second})
	if err == nil || !strings.Contains(err.Error(), `verb "create" on "jobs"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestEnsureJobReplacesFinished(t *testing.T) {
	target := resolvedTarget()
	name := agentName(target, false, "")
	old := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "demo"}, Status: batchv1.JobStatus{Succeeded: 1}}
	cs := fake.NewClientset(old)
	runJobPods(t, cs, corev1.ContainerState{Running: &corev1.ContainerStateRunning{}})
	m := &AgentManager{Client: cs}
	a, err := m.Ensure(context.Background(), target, AgentOptions{Image: "a:b", StartupTimeout: 5 * time.Second})
	if err != nil || !a.Created {
		t.Fatalf("Ensure = %+v, %v; want a new agent replacing the finished one", a, err)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

// TestEnsureStartupTimeoutRateLimited: client-go's rate limiter refuses
// a request whose wait would pass the start-up deadline before the
// deadline comes; that is still the start-up timeout, said as such.
func TestEnsureStartupTimeoutRateLimited(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}`)
	}))
	defer api.Close()
	// One request now, the next in 1000 s.
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: api.URL, QPS: 0.001, Burst: 1})
	if err != nil {
		t.Fatal(err)
	}
	m := &AgentManager{Client: cs}
	_, err = m.Ensure(context.Background(), resolvedTarget(), AgentOptions{Image: "tether.local/tether-agent:dev", StartupTimeout: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "the agent was not ready within agent.startup_timeout (2s)") || !strings.Contains(err.Error(), "raise agent.startup_timeout") {
		t.Fatalf("err = %v, want the start-up timeout", err)
	}
}

// TestEnsureJobEarly: with Early, Ensure returns a new agent whose pod is
// on its node while its container is still being created (Starting);
// without, it waits for the container to run. A failing container fails
// either way.
func TestEnsureJobEarly(t *testing.T) {
	creating := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	for _, tc := range []struct {
		name    string
		state   corev1.ContainerState
		early   bool
		want    string // "starting", "timeout" or an error's text
		timeout time.Duration
	}{
		{"early, being created", creating, true, "starting", 5 * time.Second},
		{"not early, being created", creating, false, "not ready within agent.startup_timeout", time.Second},
		{"early, image cannot be pulled", corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull"}}, true, "cannot be pulled", 5 * time.Second},
		{"early, running", corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}, true, "running", 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset()
			runJobPods(t, cs, tc.state)
			m := &AgentManager{Client: cs}
			a, err := m.Ensure(context.Background(), resolvedTarget(), AgentOptions{Image: "tether.local/tether-agent:dev", StartupTimeout: tc.timeout, Early: tc.early})
			switch {
			case tc.want == "starting" || tc.want == "running":
				if err != nil {
					t.Fatal(err)
				}
				if a.Starting != (tc.want == "starting") {
					t.Errorf("Starting = %v, want %v", a.Starting, tc.want == "starting")
				}
			case err == nil || !strings.Contains(err.Error(), tc.want):
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestEnsurePerNode: with PerNode, the pods of a namespace on one node
// share one agent Job (tether-agent --node), each session naming its own
// container; a pod on another node gets its own agent.
func TestEnsurePerNode(t *testing.T) {
	cs := fake.NewClientset()
	runJobPods(t, cs, corev1.ContainerState{Running: &corev1.ContainerStateRunning{}})
	m := &AgentManager{Client: cs}
	opts := AgentOptions{Image: "a:b", StartupTimeout: 5 * time.Second, PerNode: true}
	target := func(name, node, id string) *Resolved {
		p := pod(name, map[string]string{"app": "api"}, true, time.Now(), "app")
		p.UID = types.UID("uid-" + name)
		p.Spec.NodeName = node
		return &Resolved{Namespace: "demo", Pod: p, Container: "app", ContainerID: "containerd://" + id}
	}
	a1, err := m.Ensure(context.Background(), target("api-1", "node-1", "aa"), opts)
	if err != nil || !a1.Created || a1.Target != "containerd://aa" {
		t.Fatalf("first pod: %+v, %v; want a new agent for containerd://aa", a1, err)
	}
	a2, err := m.Ensure(context.Background(), target("api-2", "node-1", "bb"), opts)
	if err != nil || a2.Created || a2.Name != a1.Name || a2.Target != "containerd://bb" || a2.Token != a1.Token {
		t.Fatalf("second pod on the same node: %+v, %v; want agent %s shared, for containerd://bb", a2, err, a1.Name)
	}
	a3, err := m.Ensure(context.Background(), target("api-3", "node-2", "cc"), opts)
	if err != nil || !a3.Created || a3.Name == a1.Name {
		t.Fatalf("pod on another node: %+v, %v; want an agent of its own", a3, err)
	}
	job, err := cs.BatchV1().Jobs("demo").Get(context.Background(), a1.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if args := job.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--node") || !slices.Contains(args, "containerd://aa") {
		t.Errorf("agent args %q, want --node and its first container", args)
	}
}

// TestJobPodTargetless: a targetless agent keeps its pod's own DNS,
// unless it serves another namespace (tether-operator's), whose DNS it
// then gets; a target's agent never takes that DNS.
func TestJobPodTargetless(t *testing.T) {
	dns := &corev1.PodDNSConfig{Nameservers: []string{"10.96.0.10"}, Searches: []string{"demo.svc.cluster.local"}}
	own := jobPod(&Resolved{Namespace: "demo"}, AgentOptions{}, "a")
	if own.DNSPolicy != "" || own.DNSConfig != nil || own.HostPID {
		t.Fatalf("targetless agent: dnsPolicy %q, dnsConfig %v, hostPID %v; want the pod's defaults", own.DNSPolicy, own.DNSConfig, own.HostPID)
	}
	other := jobPod(&Resolved{Namespace: "demo"}, AgentOptions{Namespace: "tether-system", TargetlessDNS: dns}, "a")
	if other.DNSPolicy != corev1.DNSNone || other.DNSConfig == nil || other.DNSConfig.Searches[0] != "demo.svc.cluster.local" {
		t.Fatalf("operator's targetless agent: dnsPolicy %q, dnsConfig %+v; want None with demo's search list", other.DNSPolicy, other.DNSConfig)
	}
	target := jobPod(resolvedTarget(), AgentOptions{TargetlessDNS: dns}, "a")
	if target.DNSConfig != nil {
		t.Fatalf("a target's agent got dnsConfig %+v", target.DNSConfig)
	}
}
