package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// deployKinds deploys one ip-info workload of each kind in ns, each with
// its own MARKER: pod/bare, deployment/web (and its service),
// statefulset/db, replicaset/rs, cronjob/nightly with two jobs of its own
// (nightly-old, then nightly-new), job/worker (created last: newer than
// the cronjob's jobs but not owned by it) and pod/duo (containers a and b).
func deployKinds(t *testing.T, ns string) {
	t.Helper()
	app := func(marker string) string { return ipInfoContainer("app", marker, 8080) }
	apply(t, []byte(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: bare, namespace: %[1]s, labels: {app: bare}}
spec:%[2]s
---
apiVersion: v1
kind: Pod
metadata: {name: duo, namespace: %[1]s, labels: {app: duo}}
spec:%[3]s
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: %[1]s}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:%[4]s
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs, namespace: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: rs}}
  template:
    metadata: {labels: {app: rs}}
    spec:%[5]s
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: %[1]s}
spec:
  schedule: "0 3 1 1 *"
  suspend: true
  jobTemplate:
    spec:
      template:
        spec:%[6]s
---
%[7]s`, ns,
		podSpec("Always", app("pod")),
		podSpec("Always", ipInfoContainer("a", "duo-a", 8080), ipInfoContainer("b", "duo-b", 8081)),
		podSpec("Always", app("statefulset")),
		podSpec("Always", app("replicaset")),
		indent(podSpec("Never", app("cronjob-template")), 4),
		deploymentYAML(ns, "web", "deployment", false))))

	// The cronjob's jobs, as `kubectl create job --from=cronjob/nightly`
	// makes them (owned by the cronjob); one second apart, so that their
	// creation times differ.
	cj, err := client.BatchV1().CronJobs(ns).Get(context.Background(), "nightly", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	job := func(name, marker, owner string) string {
		return fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata:
  name: %s
  namespace: %s%s
spec:
  backoffLimit: 0
  template:
    spec:%s
`, name, ns, owner, podSpec("Never", app(marker)))
	}
	owned := fmt.Sprintf(`
  ownerReferences:
  - {apiVersion: batch/v1, kind: CronJob, name: nightly, uid: %s, controller: true}`, cj.UID)
	apply(t, []byte(job("nightly-old", "cronjob-old", owned)))
	time.Sleep(1100 * time.Millisecond)
	apply(t, []byte(job("nightly-new", "cronjob", owned)))
	time.Sleep(1100 * time.Millisecond)
	apply(t, []byte(job("worker", "job", "")))

	waitDeployments(t, ns, 2*time.Minute)
	for _, sel := range []string{"app=bare", "app=duo", "app=db", "app=rs", "job-name=nightly-old", "job-name=nightly-new", "job-name=worker"} {
		waitPodsReady(t, ns, sel, 1, 2*time.Minute)
	}
}

// TestTargetKinds runs `tether exec -- printenv MARKER` against each kind
// of target and checks the command got that target's environment; a pod
// with two containers needs /container/NAME; targetless resolves and
// reaches cluster names but has no pod environment.
func TestTargetKinds(t *testing.T) {
	requireE2E(t)
	ns := newNamespace(t, "e2e-kinds", nil)
	deployKinds(t, ns)
	dir := t.TempDir()
	cfg := agentConfig(t, dir)

	for _, c := range []struct{ target, want string }{
		{"pod/bare", "pod"},
		{"bare", "pod"}, // a bare name is a pod
		{"deployment/web", "deployment"},
		{"deploy/web/container/app", "deployment"},
		{"statefulset/db", "statefulset"},
		{"replicaset/rs", "replicaset"},
		{"job/worker", "job"},
		{"cronjob/nightly", "cronjob"}, // its newest job, not nightly-old nor the newer job/worker it does not own
		{"pod/duo/container/a", "duo-a"},
		{"pod/duo/container/b", "duo-b"},
	} {
		t.Run(strings.ReplaceAll(c.target, "/", "_"), func(t *testing.T) {
			out, errOut, code := runTether(t, dir, 2*time.Minute, "exec", "-f", cfg, "-n", ns, "-t", c.target, "--progress", "plain", "--", "printenv", "MARKER")
			if code != 0 || out != c.want+"\n" {
				t.Fatalf("tether exec -t %s -- printenv MARKER: exit %d, stdout %q, want %q\nstderr:\n%s", c.target, code, out, c.want+"\n", errOut)
			}
		})
	}

	t.Run("pod_duo_without_container", func(t *testing.T) {
		out, errOut, code := runTether(t, dir, time.Minute, "exec", "-f", cfg, "-n", ns, "-t", "pod/duo", "--", "printenv", "MARKER")
		if code != 1 || out != "" {
			t.Fatalf("exit %d, stdout %q, want exit 1 and no output\nstderr:\n%s", code, out, errOut)
		}
		for _, want := range []string{"several containers (a, b)", "pod/duo/container/a"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("stderr does not say %q:\n%s", want, errOut)
			}
		}
	})

	t.Run("pod_duo_unknown_container", func(t *testing.T) {
		_, errOut, code := runTether(t, dir, time.Minute, "exec", "-f", cfg, "-n", ns, "-t", "pod/duo/container/c", "--", "printenv", "MARKER")
		if code != 1 || !strings.Contains(errOut, `has no container "c" (it has a, b)`) {
			t.Fatalf("exit %d, want 1 and the containers named\nstderr:\n%s", code, errOut)
		}
	})

	t.Run("targetless", func(t *testing.T) {
		if os.Getenv("MARKER") != "" {
			t.Skip("MARKER is set in the test's environment")
		}
		svc, err := client.CoreV1().Services(ns).Get(context.Background(), "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		dns, err := client.CoreV1().Services("kube-system").Get(context.Background(), "kube-dns", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		script := `getent hosts kube-dns.kube-system.svc.cluster.local || echo "no kube-dns"
getent hosts web || echo "no web"
curl -sS -m 10 http://web.` + ns + `.svc.cluster.local/10.1.2.3 || echo "no curl"
printenv MARKER || echo "no MARKER"`
		out, errOut, code := runTether(t, dir, 2*time.Minute, "exec", "-f", cfg, "-n", ns, "-t", "targetless", "--progress", "plain", "--", "sh", "-c", script)
		if code != 0 {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		got := lines(out)
		want := []string{
			dns.Spec.ClusterIP + " kube-dns.kube-system.svc.cluster.local", // cluster DNS
			svc.Spec.ClusterIP + " web." + ns + ".svc.cluster.local",       // the agent's namespace is searched
			"10.1.2.3: private network (cluster)",                          // outgoing to a cluster name
			"no MARKER",                                                    // no pod environment
		}
		if len(got) != len(want) {
			t.Fatalf("output:\n%s\nwant:\n%s\nstderr:\n%s", out, strings.Join(want, "\n"), errOut)
		}
		for i := range want {
			if strings.Join(strings.Fields(got[i]), " ") != want[i] {
				t.Errorf("line %d: %q, want %q", i+1, got[i], want[i])
			}
		}
		if !strings.Contains(errOut, "targetless: no pod, outgoing network and DNS only") {
			t.Errorf("stderr does not say the session is targetless:\n%s", errOut)
		}
	})

	t.Run("ls_json", func(t *testing.T) {
		// With an agent running: ls must not offer tether's own objects.
		// (Let the earlier agents go first: a new session just after an
		// agent lingered out is TestAgentRestartAfterLinger's subject.)
		noLeftovers(t, ns, time.Minute)
		p := startTether(t, dir, "exec", "-f", cfg, "-n", ns, "-t", "deployment/web", "--progress", "plain", "--", "sleep", "300")
		p.waitStderr(t, "session ", 2*time.Minute)
		if len(agentPods(t, ns)) == 0 {
			t.Fatalf("no agent pod while a session runs")
		}
		out, errOut, code := runTether(t, dir, time.Minute, "ls", "-n", ns, "-o", "json")
		if code != 0 {
			t.Fatalf("tether ls -o json: exit %d\nstderr:\n%s", code, errOut)
		}
		var got struct {
			Namespace string `json:"namespace"`
			Targets   []struct {
				Target string `json:"target"`
				Ready  bool   `json:"ready"`
				Pods   int    `json:"pods"`
				Info   string `json:"info"`
			} `json:"targets"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("tether ls -o json: %v\n%s", err, out)
		}
		if got.Namespace != ns {
			t.Errorf("namespace %q, want %q", got.Namespace, ns)
		}
		ready := map[string]bool{}
		podsOf := map[string]int{}
		var names []string
		webPods := 0
		for _, tg := range got.Targets {
			ready[tg.Target] = tg.Ready
			podsOf[tg.Target] = tg.Pods
			names = append(names, tg.Target)
			if strings.HasPrefix(tg.Target, "pod/web-") {
				webPods++
			}
			if strings.Contains(tg.Target, "tether-agent") || strings.HasPrefix(tg.Target, "replicaset/web-") {
				t.Errorf("ls lists %s (tether's agent or a deployment's replicaset)", tg.Target)
			}
		}
		sort.Strings(names)
		for _, want := range []string{"deployment/web", "statefulset/db", "replicaset/rs", "job/worker", "job/nightly-old", "job/nightly-new", "cronjob/nightly",
			"pod/bare", "pod/db-0", "pod/duo/container/a", "pod/duo/container/b"} {
			r, ok := ready[want]
			switch {
			case !ok:
				t.Errorf("ls does not list %s; it lists %v", want, names)
			case !r && want != "cronjob/nightly":
				t.Errorf("ls says %s is not ready", want)
			}
		}
		for _, want := range []string{"deployment/web", "service/web", "pod/bare"} {
			if podsOf[want] != 1 {
				t.Errorf("ls says %s covers %d pods, want 1", want, podsOf[want])
			}
		}
		if webPods != 1 {
			t.Errorf("ls lists %d pods of deployment/web, want 1: %v", webPods, names)
		}
		if _, ok := ready["pod/duo"]; ok {
			t.Errorf("ls lists pod/duo, which needs a container: %v", names)
		}
		p.stop(t)
	})
}
