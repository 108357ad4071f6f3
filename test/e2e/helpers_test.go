package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// agentSelector selects tether's agent pods and jobs.
const agentSelector = "app.kubernetes.io/name=tether-agent"

// newNamespace creates namespace name (removing a stale one left by an
// interrupted run first) with labels. At the end of the test it checks that
// no agent is left in it (unless the test has already failed), then deletes
// it and waits until it is gone.
func newNamespace(t *testing.T, name string, labels map[string]string) string {
	t.Helper()
	if !strings.HasPrefix(name, "e2e-") {
		t.Fatalf("test namespaces are named e2e-*, not %q", name)
	}
	ctx := context.Background()
	deleteNamespace(t, name)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	// The default ServiceAccount appears a moment after the namespace;
	// pods are refused until it does.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("namespace %s has no default ServiceAccount after 30s", name)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Cleanup(func() { deleteNamespace(t, name) })
	t.Cleanup(func() {
		if t.Failed() {
			// Not waiting: just say what is there, for the diagnosis.
			if left := append(leftovers(t, name, 0), runningEphemeral(t, name)...); len(left) > 0 {
				t.Logf("agents in %s at the end of the failed test: %v", name, left)
			}
			return
		}
		noLeftovers(t, name, 60*time.Second)
		noRunningEphemeral(t, name, 30*time.Second)
	})
	return name
}

// deleteNamespace deletes ns and waits until it is gone.
func deleteNamespace(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	err := client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		t.Errorf("deleting namespace %s: %v", ns, err)
		return
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		_, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("namespace %s still exists 3 minutes after its deletion", ns)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// leftovers waits up to timeout until no agent pod runs (or waits) and no
// agent Job exists in ns, and returns what remains.
func leftovers(t *testing.T, ns string, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var live []string
		for _, p := range agentPods(t, ns) {
			live = append(live, "pod/"+p.Name+" ("+string(p.Status.Phase)+")")
		}
		for _, j := range agentJobs(t, ns) {
			live = append(live, "job/"+j)
		}
		if len(live) == 0 || time.Now().After(deadline) {
			return live
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// noRunningEphemeral waits until no tether ephemeral container runs in ns.
func noRunningEphemeral(t *testing.T, ns string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		running := runningEphemeral(t, ns)
		if len(running) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ephemeral agents still running in %s after %v: %v", ns, timeout, running)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// runningEphemeral lists the running tether ephemeral containers of ns as
// POD/CONTAINER.
func runningEphemeral(t *testing.T, ns string) []string {
	t.Helper()
	pods, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range pods.Items {
		for _, st := range p.Status.EphemeralContainerStatuses {
			if strings.HasPrefix(st.Name, "tether-agent") && st.State.Running != nil {
				out = append(out, p.Name+"/"+st.Name)
			}
		}
	}
	return out
}

// waitPodsReady waits until want pods match selector in ns and all are
// ready, and returns them.
func waitPodsReady(t *testing.T, ns, selector string, want int, timeout time.Duration) []corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pods, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err == nil && len(pods.Items) == want {
			ready := 0
			for i := range pods.Items {
				if isReady(&pods.Items[i]) {
					ready++
				}
			}
			if ready == want {
				return pods.Items
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d ready pods %q in %s not there within %v:\n%s", want, selector, ns, timeout, describePods(ns))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func isReady(p *corev1.Pod) bool {
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

// onePod returns the only pod matching selector in ns.
func onePod(t *testing.T, ns, selector string) *corev1.Pod {
	t.Helper()
	pods := waitPodsReady(t, ns, selector, 1, 2*time.Minute)
	return &pods[0]
}

// agentPods returns the running or pending agent pods of ns.
func agentPods(t *testing.T, ns string) []corev1.Pod {
	t.Helper()
	pods, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: agentSelector})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning || p.Status.Phase == corev1.PodPending {
			out = append(out, p)
		}
	}
	return out
}

// runningAgentPods waits until ns has want agent pods and the API shows
// each one's agent container running (a session may start on a new agent
// before the kubelet has reported that: it dials the agent early).
func runningAgentPods(t *testing.T, ns string, want int, timeout time.Duration) []corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pods := agentPods(t, ns)
		running := 0
		for _, p := range pods {
			for _, cs := range p.Status.ContainerStatuses {
				if cs.Name == "agent" && cs.State.Running != nil && p.Status.PodIP != "" {
					running++
				}
			}
		}
		if len(pods) == want && running == want {
			return pods
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent pods %v (%d with a running agent), want %d running within %v", podNames(pods), running, want, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// agentJobs returns the names of the agent jobs of ns.
func agentJobs(t *testing.T, ns string) []string {
	t.Helper()
	jobs, err := client.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{LabelSelector: agentSelector})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, j := range jobs.Items {
		out = append(out, j.Name)
	}
	return out
}

// waitStdout waits until the command's stdout contains s.
func (p *tetherProc) waitStdout(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.Stdout(), s) {
		select {
		case <-p.done:
			t.Fatalf("tether exited (%v) before the command printed %q\nstdout:\n%s\nstderr:\n%s", p.cmd.ProcessState, s, p.Stdout(), p.Stderr())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the command did not print %q within %v\nstdout:\n%s\nstderr:\n%s", s, timeout, p.Stdout(), p.Stderr())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runTetherEnv is runTether with env as the whole environment added to
// the test's (no KUBECONFIG of the local cluster unless env has one).
func runTetherEnv(t *testing.T, dir string, timeout time.Duration, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, tetherBin, args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KUBECONFIG=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return out.String(), errb.String(), code
}

// agentConfig writes a config with the local agent image and a short
// linger (so agents are gone soon after the test's sessions), plus extra
// YAML lines.
func agentConfig(t *testing.T, dir string, extra ...string) string {
	t.Helper()
	return writeConfig(t, dir, "agent:\n  image: "+agentImage+"\n  linger: 2s\n  startup_timeout: 90s\n"+strings.Join(extra, "\n")+"\n")
}

// ipInfoContainer is a container running ip-info with MARKER=marker, ready
// once it answers on port (a YAML list item indented for a pod spec).
func ipInfoContainer(name, marker string, port int) string {
	return fmt.Sprintf(`
      - name: %s
        image: tether.local/ip-info:dev
        imagePullPolicy: IfNotPresent
        env:
        - {name: MARKER, value: %q}
        - {name: PORT, value: "%d"}
        readinessProbe:
          httpGet: {path: /1.2.3.4, port: %d}
          periodSeconds: 1`, name, marker, port, port)
}

// podSpec is a pod spec (indented for a pod template) with ip-info
// containers and the extra lines (volumes...).
func podSpec(restart string, containers ...string) string {
	return fmt.Sprintf(`
      restartPolicy: %s
      terminationGracePeriodSeconds: 1
      containers:%s`, restart, strings.Join(containers, ""))
}

// indent adds n spaces to the lines of a YAML fragment made by podSpec.
func indent(fragment string, n int) string {
	return strings.ReplaceAll(fragment, "\n", "\n"+strings.Repeat(" ", n))
}

// deploymentYAML is a one-replica deployment of ip-info with label app=name
// and the marker, mounting ConfigMap files (with marker.txt) at /app when
// withFiles.
func deploymentYAML(ns, name, marker string, withFiles bool) string {
	c := ipInfoContainer("app", marker, 8080)
	vols := ""
	cm := ""
	if withFiles {
		c += `
        volumeMounts:
        - {name: files, mountPath: /app}`
		vols = `
      volumes:
      - name: files
        configMap: {name: ` + name + `-files}`
		cm = fmt.Sprintf(`
---
apiVersion: v1
kind: ConfigMap
metadata: {name: %s-files, namespace: %s}
data:
  marker.txt: "file of %s/%s"
`, name, ns, ns, name)
	}
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %s, namespace: %s}
spec:
  replicas: 1
  selector: {matchLabels: {app: %s}}
  template:
    metadata: {labels: {app: %s}}
    spec:%s%s
---
apiVersion: v1
kind: Service
metadata: {name: %s, namespace: %s}
spec:
  selector: {app: %s}
  ports:
  - {port: 80, targetPort: 8080}
%s`, name, ns, name, name, podSpec("Always", c), vols, name, ns, name, cm)
}

// limitedKubeconfig writes a kubeconfig for ServiceAccount sa of ns (with a
// token from the TokenRequest API) and the local cluster's server and CA.
func limitedKubeconfig(t *testing.T, dir, ns, sa string) string {
	t.Helper()
	admin, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	ctxName := admin.CurrentContext
	kctx, ok := admin.Contexts[ctxName]
	if !ok {
		t.Fatalf("kubeconfig %s: no current context", kubeconfig)
	}
	cluster := admin.Clusters[kctx.Cluster].DeepCopy()
	if cluster.CertificateAuthority != "" && len(cluster.CertificateAuthorityData) == 0 {
		ca := cluster.CertificateAuthority
		if !filepath.IsAbs(ca) {
			ca = filepath.Join(filepath.Dir(kubeconfig), ca)
		}
		if cluster.CertificateAuthorityData, err = os.ReadFile(ca); err != nil {
			t.Fatal(err)
		}
		cluster.CertificateAuthority = ""
	}
	token := serviceAccountToken(t, ns, sa)
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = cluster
	cfg.AuthInfos[sa] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: sa, Namespace: ns}
	cfg.CurrentContext = "e2e"
	path := filepath.Join(dir, sa+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// serviceAccountToken gets a short-lived token for ServiceAccount sa of ns.
func serviceAccountToken(t *testing.T, ns, sa string) string {
	t.Helper()
	tr := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptrTo[int64](3600)}}
	got, err := client.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa, tr, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, sa, err)
	}
	return got.Status.Token
}

func ptrTo[T any](v T) *T { return &v }

// touch creates an empty file.
func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}
