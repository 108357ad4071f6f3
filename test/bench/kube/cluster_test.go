package kube

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/tether-dev/tether/internal/cri"
)

// cluster is what the benchmarks run against, in namespace ns:
//   - deployment/benchsrv (one pod running benchserver on :8080, "X-Who: pod"),
//     behind service benchsrv (port 80), the target of every tether session;
//   - pod benchclient, whose network namespace is "inside the cluster" for
//     the clients (nsenter -t ClientPID -n).
type cluster struct {
	ServerPod string
	ServerCID string // the serving pod's container (its processes' CPU)
	ServerIP  string
	ServiceIP string
	ClientPID int
}

var (
	clusterOnce sync.Once
	theCluster  *cluster
	clusterErr  error
)

// benchCluster returns the benchmarks' objects, creating them the first time.
func benchCluster(t *testing.T) *cluster {
	t.Helper()
	clusterOnce.Do(func() { theCluster, clusterErr = createCluster() })
	if clusterErr != nil {
		t.Fatal(clusterErr)
	}
	return theCluster
}

func createCluster() (*cluster, error) {
	ctx := context.Background()
	if err := deleteNamespace(ns); err != nil { // left by an interrupted run
		return nil, err
	}
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	// Pods are refused until the default ServiceAccount exists.
	if err := waitFor(30*time.Second, func() error {
		_, err := client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return nil, fmt.Errorf("namespace %s has no default ServiceAccount: %w", ns, err)
	}
	labels := map[string]string{"app": "benchsrv"}
	dep := benchDeployment("benchsrv", 1)
	if _, err := client.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating deployment benchsrv: %w", err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "benchsrv", Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	svc, err := client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating service benchsrv: %w", err)
	}
	cl := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "benchclient", Namespace: ns, Labels: map[string]string{"app": "benchclient"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers:                    []corev1.Container{benchContainer("client", "-listen", ":8080", "-who", "client")},
		},
	}
	if _, err := client.CoreV1().Pods(ns).Create(ctx, cl, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating pod benchclient: %w", err)
	}
	server, err := readyPod("app=benchsrv", 2*time.Minute)
	if err != nil {
		return nil, err
	}
	clientPod, err := readyPod("app=benchclient", 2*time.Minute)
	if err != nil {
		return nil, err
	}
	c := &cluster{ServerPod: server.Name, ServerIP: server.Status.PodIP, ServiceIP: svc.Spec.ClusterIP}
	if c.ServerCID, err = serverCID(server.Name); err != nil {
		return nil, fmt.Errorf("the benchsrv pod's container: %w", err)
	}
	if c.ClientPID, err = cri.FindPID("/proc", clientPod.Status.ContainerStatuses[0].ContainerID); err != nil {
		return nil, fmt.Errorf("the benchclient pod's process on this node: %w (the benchmarks need a single-node cluster on this machine)", err)
	}
	// kube-proxy programs a new Service a moment after its pod is ready.
	if err := waitFor(time.Minute, func() error {
		_, _, err := run(10*time.Second, nil, c.inCluster(clientBin, "lat", "-n", "1", "-warmup", "0", "-expect", "pod", "http://"+c.ServiceIP+"/small")...)
		return err
	}); err != nil {
		return nil, fmt.Errorf("service benchsrv does not answer from the cluster: %w", err)
	}
	return c, nil
}

// benchDeployment is deployment name of n pods running benchserver on
// :8080 ("X-Who: pod"), ready once it answers /healthz.
func benchDeployment(name string, n int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(n),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					Containers:                    []corev1.Container{benchContainer("app", "-listen", ":8080", "-who", "pod")},
				},
			},
		},
	}
}

// benchContainer runs benchserver with args, ready once it answers
// /healthz on 8080.
func benchContainer(name string, args ...string) corev1.Container {
	return corev1.Container{
		Name: name, Image: benchImage, ImagePullPolicy: corev1.PullIfNotPresent, Args: args,
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
			PeriodSeconds: 1,
		},
	}
}

// inCluster is argv run in the benchclient pod's network namespace.
func (c *cluster) inCluster(argv ...string) []string {
	return append([]string{"nsenter", "-t", strconv.Itoa(c.ClientPID), "-n", "--"}, argv...)
}

// readyPod waits until one pod matches selector in ns and is ready.
func readyPod(selector string, timeout time.Duration) (*corev1.Pod, error) {
	return readyPodIn(ns, selector, timeout)
}

// readyPodIn waits until one pod matches selector in namespace and is
// ready.
func readyPodIn(ns, selector string, timeout time.Duration) (*corev1.Pod, error) {
	var pod *corev1.Pod
	err := waitFor(timeout, func() error {
		pods, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return err
		}
		var ready []corev1.Pod
		for _, p := range pods.Items {
			if isReady(&p) {
				ready = append(ready, p)
			}
		}
		if len(ready) != 1 || len(pods.Items) != 1 {
			return fmt.Errorf("%d pods, %d ready, want one", len(pods.Items), len(ready))
		}
		pod = &ready[0]
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pod %s in %s: %w", selector, ns, err)
	}
	return pod, nil
}

func isReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) == 0 {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitFor retries cond until it returns nil or timeout passes.
func waitFor(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v: %w", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// agentPods returns the running or pending agent pods of ns.
func agentPods(t *testing.T) []corev1.Pod {
	t.Helper()
	pods, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: agentSelector})
	if err != nil {
		t.Fatalf("listing agent pods: %v", err)
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning || p.Status.Phase == corev1.PodPending {
			out = append(out, p)
		}
	}
	return out
}

// waitNoAgent waits until no agent pod runs in ns, and with jobs until no
// agent Job is left either (a session then creates its agent from scratch).
func waitNoAgent(t *testing.T, jobs bool) {
	t.Helper()
	err := waitFor(2*time.Minute, func() error {
		if pods := agentPods(t); len(pods) > 0 {
			return fmt.Errorf("agent pod %s still %s", pods[0].Name, pods[0].Status.Phase)
		}
		if !jobs {
			return nil
		}
		js, err := client.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{LabelSelector: agentSelector})
		if err != nil {
			return err
		}
		if len(js.Items) > 0 {
			return fmt.Errorf("agent job %s still there", js.Items[0].Name)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("waiting for the agents of %s to end: %v", ns, err)
	}
}

// deleteAgents deletes the agent Jobs of ns (their pods stop: SIGTERM, the
// agent removes its rules and exits) and waits until no agent is left.
func deleteAgents(t *testing.T) {
	t.Helper()
	bg := metav1.DeletePropagationBackground
	err := client.BatchV1().Jobs(ns).DeleteCollection(context.Background(),
		metav1.DeleteOptions{PropagationPolicy: &bg}, metav1.ListOptions{LabelSelector: agentSelector})
	if err != nil {
		t.Fatalf("deleting the agent jobs of %s: %v", ns, err)
	}
	waitNoAgent(t, true)
}

// agentRSS is the resident memory (MiB) of every process of the running
// agent's container on this node, and their number.
func agentRSS(t *testing.T) (float64, int) {
	t.Helper()
	pods := agentPods(t)
	if len(pods) != 1 || len(pods[0].Status.ContainerStatuses) == 0 {
		t.Fatalf("%d agent pods, want one running", len(pods))
	}
	_, id, err := cri.ParseContainerID(pods[0].Status.ContainerStatuses[0].ContainerID)
	if err != nil {
		t.Fatalf("agent pod %s: %v", pods[0].Name, err)
	}
	pids := containerPIDs(id)
	if len(pids) == 0 {
		t.Fatalf("no process of agent pod %s on this node", pods[0].Name)
	}
	total := 0.0
	for _, p := range pids {
		total += rssMiB(p)
	}
	return total, len(pids)
}

// containerPIDs lists the processes whose cgroup names container id.
func containerPIDs(id string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err == nil && strings.Contains(string(b), id) {
			out = append(out, pid)
		}
	}
	return out
}

// rssMiB is VmRSS of pid in MiB (0 if it is gone).
func rssMiB(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// children lists the direct children of pid.
func children(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if c, err := strconv.Atoi(f); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// writeConfig writes a tether config file named name.yaml: the local
// agent image, a startup timeout for a busy machine, linger, plus extra
// YAML.
func writeConfig(t *testing.T, name, linger, extra string) string {
	t.Helper()
	p := filepath.Join(binDir, name+".yaml")
	content := "agent:\n  image: " + agentImage + "\n  linger: " + linger + "\n  startup_timeout: 120s\n" + extra
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// tetherExec is the command line of a session on deployment/benchsrv.
func tetherExec(cfg, progress string, argv ...string) []string {
	return append([]string{tetherBin, "exec", "-f", cfg, "-n", ns, "-t", "deployment/benchsrv", "--progress", progress, "--"}, argv...)
}

// holdAgent starts a session that keeps the agent running (created if
// needed) until the end of the test, and returns once it is connected.
func holdAgent(t *testing.T, cfg string) *proc {
	t.Helper()
	p := start(t, binDir, tetherExec(cfg, "plain", "sleep", "3600")...)
	p.wait(t, "tether: session ", 3*time.Minute)
	return p
}

// portForward starts `kubectl port-forward pod/POD :8080` and returns it
// with its local port.
func portForward(t *testing.T, pod string) (*proc, string) {
	t.Helper()
	p := start(t, binDir, kubectl, "-n", ns, "port-forward", "pod/"+pod, ":8080")
	p.wait(t, "Forwarding from 127.0.0.1:", time.Minute)
	out := p.Stdout()
	i := strings.Index(out, "127.0.0.1:")
	port, _, _ := strings.Cut(out[i+len("127.0.0.1:"):], " ")
	return p, port
}
