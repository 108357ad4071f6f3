package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tether-dev/tether/internal/deploy"
)

// testOperatorFeatures: what a session does in the direct mode, through
// the operator, by a developer with only tether-user: the pod's
// environment and files, DNS and outgoing connections in its namespace,
// a mirror of its incoming traffic, and re-attaching when its pod is
// replaced.
func testOperatorFeatures(t *testing.T) {
	dir := t.TempDir()
	ns := newNamespace(t, "e2e-operator-features", nil)
	apply(t, []byte(replicasYAML(ns, "web", 1)))
	waitDeployments(t, ns, 2*time.Minute)
	sub, kc := serviceAccountUser(t, dir, ns, "e2e-dev")
	bindTetherUser(t, ns, "e2e-dev", deploy.UserRole, sub)
	env := []string{"KUBECONFIG=" + kc}
	url := serviceURL(t, ns, "web")
	webPod := func(t *testing.T) *corev1.Pod {
		t.Helper()
		pods, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			t.Fatal(err)
		}
		for i := range pods.Items {
			if p := &pods.Items[i]; p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
				return p
			}
		}
		t.Fatalf("no running pod of deployment/web in %s", ns)
		return nil
	}

	t.Run("env_files_dns_outgoing", func(t *testing.T) {
		svc, err := client.CoreV1().Services(ns).Get(context.Background(), "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		script := `printenv MARKER || echo "no MARKER"
cat /podinfo/name; echo
getent hosts web || echo "no web"
curl -sS -m 10 http://web/10.1.2.3 || echo "no curl"`
		out, errOut, code := runTetherEnv(t, dir, 3*time.Minute, env, "exec", "-n", ns, "-t", "deployment/web", "--progress", "plain", "--", "sh", "-c", script)
		if code != 0 {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		want := []string{
			"replicas",     // the pod's environment
			webPod(t).Name, // its files (a downward API volume)
			svc.Spec.ClusterIP + " web." + ns + ".svc.cluster.local", // its DNS
			"10.1.2.3: private network (cluster)",                    // outgoing, to a cluster name
		}
		got := lines(out)
		if len(got) != len(want) {
			t.Fatalf("output:\n%s\nwant:\n%s\nstderr:\n%s", out, strings.Join(want, "\n"), errOut)
		}
		for i := range want {
			if strings.Join(strings.Fields(got[i]), " ") != want[i] {
				t.Errorf("line %d: %q, want %q", i+1, got[i], want[i])
			}
		}
	})

	t.Run("mirror", func(t *testing.T) {
		cfg := writeConfig(t, dir, "incoming:\n  mode: mirror\n")
		p := startTetherEnv(t, dir, append([]string{localServerEnv + "=8080", localLogEnv + "=1"}, env...),
			"exec", "-f", cfg, "-n", ns, "-t", "deployment/web", "--progress", "plain", "--", os.Args[0])
		p.waitStderr(t, "traffic to the target's port 8080 is mirrored", 3*time.Minute)
		// The pod answers; the local server gets a copy (a moment later:
		// copies are taken from a packet capture, beside the app's path).
		for i := 0; ; i++ {
			path := fmt.Sprintf("/10.9.9.%d", i)
			a := ask(url+path, "")
			if a.err != nil || !strings.Contains(a.body, "10.9.9.") {
				t.Fatalf("GET %s while mirrored: %q %v, want the pod's answer", path, a.body, a.err)
			}
			if strings.Contains(p.Stdout(), "local server got GET /10.9.9.") {
				break
			}
			if i == 50 {
				t.Fatalf("50 requests, none mirrored to the local server\nstdout:\n%s\nstderr:\n%s", p.Stdout(), p.Stderr())
			}
			time.Sleep(100 * time.Millisecond)
		}
		p.stop(t)
	})

	t.Run("reattach", func(t *testing.T) {
		cfg := writeConfig(t, dir, "incoming:\n  mode: steal\n  http_filter:\n    header_filter: \"^x-tether-user: e2e$\"\n")
		p := startTetherEnv(t, dir, append([]string{localServerEnv + "=8080", localNameEnv + "=features"}, env...),
			"exec", "-f", cfg, "-n", ns, "-t", "deployment/web", "--progress", "plain", "--", os.Args[0])
		p.waitStderr(t, "traffic to the target's port 8080 is stolen", 3*time.Minute)
		waitAnswer(t, url, "e2e", "local features", 30*time.Second, p)
		old := webPod(t)
		if err := client.CoreV1().Pods(ns).Delete(context.Background(), old.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		p.waitStderr(t, "the target pod "+old.Name+" is gone; re-attaching", 2*time.Minute)
		deadline := time.Now().Add(2 * time.Minute)
		for webPod(t).Name == old.Name {
			if time.Now().After(deadline) {
				t.Fatalf("deployment/web did not replace pod %s", old.Name)
			}
			time.Sleep(200 * time.Millisecond)
		}
		waitAnswer(t, url, "e2e", "local features", 2*time.Minute, p)
		if a := ask(url+"/10.1.2.3", ""); a.err != nil || !strings.Contains(a.body, "private network") {
			t.Errorf("an unmatched request after the re-attach: %q %v, want the new pod's answer", a.body, a.err)
		}
		p.stop(t)
	})
}
