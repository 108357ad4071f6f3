package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// replicasYAML is a Deployment of n ip-info pods behind a Service (port 80
// to the container port named http, 8080), each with its own name in /podinfo/name (downward API), and a
// preStop pause so that a pod scaled away serves until the Service has
// dropped it, as production Deployments do: without tether, scaling down
// fails no request.
func replicasYAML(ns, name string, n int) string {
	c := ipInfoContainer("app", "replicas", 8080) + `
        ports:
        - {name: http, containerPort: 8080}
        lifecycle:
          preStop: {sleep: {seconds: 3}}
        volumeMounts:
        - {name: podinfo, mountPath: /podinfo}`
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %s, namespace: %s}
spec:
  replicas: %d
  selector: {matchLabels: {app: %s}}
  template:
    metadata: {labels: {app: %s}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:%s
      volumes:
      - name: podinfo
        downwardAPI:
          items:
          - {path: name, fieldRef: {fieldPath: metadata.name}}
---
apiVersion: v1
kind: Service
metadata: {name: %s, namespace: %s}
spec:
  selector: {app: %s}
  ports:
  - {port: 80, targetPort: http}
`, name, ns, n, name, name, c, name, ns, name)
}

// answer is one request's outcome: the body, and which pod served it
// (X-Served-By; none when the local process answered).
type answer struct {
	body, pod string
	err       error
}

// ask sends one GET on a new connection (so kube-proxy picks a pod for
// each), with the filter header when user is set.
func ask(url, user string) answer {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, _ := http.NewRequest("GET", url, nil)
	if user != "" {
		req.Header.Set("x-tether-user", user)
	}
	resp, err := c.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{body: string(b), pod: resp.Header.Get("X-Served-By"), err: err}
}

// podURL is pod p's app, straight to its address (no Service).
func podURL(p *corev1.Pod, path string) string {
	return fmt.Sprintf("http://%s:8080%s", p.Status.PodIP, path)
}

// TestReplicas: a filtered steal on a 3-replica Deployment covers every
// pod, follows scaling up and down and a rollout restart, and leaves
// nothing on any pod.
func TestReplicas(t *testing.T) {
	requireE2E(t)
	ns := newNamespace(t, "e2e-replicas", nil)
	apply(t, []byte(replicasYAML(ns, "web", 3)))
	waitDeployments(t, ns, 2*time.Minute)
	pods := waitPodsReady(t, ns, "app=web", 3, 2*time.Minute)
	svc := serviceURL(t, ns, "web")
	url := svc + "/10.1.2.3"
	const remote = "private network (cluster)"
	// kube-proxy programs a new Service some seconds after its pods are
	// ready: the requests through the Service below measure tether, not that.
	waitServed(t, url, "", remote)
	dir := t.TempDir()
	cfg := agentConfig(t, dir, `incoming:
  mode: steal
  http_filter:
    header_filter: "^x-tether-user: me$"`)
	p := startTetherEnv(t, dir, []string{localServerEnv + "=8080"}, "exec", "-f", cfg, "-n", ns, "-t", "deployment/web", "--progress", "plain", "--", os.Args[0])
	p.waitStderr(t, "traffic to the target's port 8080 is stolen", 3*time.Minute)
	if !strings.Contains(p.Stderr(), "incoming: 3 pods; context: pod ") {
		t.Errorf("the start-up summary does not say \"incoming: 3 pods; context: pod ...\":\n%s", p.Stderr())
	}
	// stolenEverywhere checks that each pod's own address gives matching
	// requests to the local process and the rest to the pod.
	stolenEverywhere := func(t *testing.T, pods []corev1.Pod) {
		t.Helper()
		for i := range pods {
			if a := ask(podURL(&pods[i], "/10.1.2.3"), "me"); a.err != nil || !strings.Contains(a.body, "local") {
				t.Errorf("pod %s: a request with the header got %q %v, want the local process's answer", pods[i].Name, a.body, a.err)
			}
			if a := ask(podURL(&pods[i], "/10.1.2.3"), ""); a.err != nil || !strings.Contains(a.body, remote) || a.pod != pods[i].Name {
				t.Errorf("pod %s: a request without the header got %q from %q %v, want the pod's own answer", pods[i].Name, a.body, a.pod, a.err)
			}
		}
	}

	t.Run("three_replicas", func(t *testing.T) {
		stolenEverywhere(t, pods)
		// One agent per node (agent.per_node, the default) serves them all.
		nodes := map[string]bool{}
		for _, p := range pods {
			nodes[p.Spec.NodeName] = true
		}
		runningAgentPods(t, ns, len(nodes), 30*time.Second)
		local, servedBy, failed := 0, map[string]int{}, []string{}
		start := time.Now()
		for i := range 300 {
			if a := ask(url, "me"); a.err == nil && strings.Contains(a.body, "local") {
				local++
			} else {
				failed = append(failed, fmt.Sprintf("#%d at %v with header: %q from %q %v", i, time.Since(start).Round(time.Millisecond), a.body, a.pod, a.err))
			}
			if a := ask(url, ""); a.err == nil && strings.Contains(a.body, remote) {
				servedBy[a.pod]++
			} else {
				failed = append(failed, fmt.Sprintf("#%d at %v without: %q from %q %v", i, time.Since(start).Round(time.Millisecond), a.body, a.pod, a.err))
			}
		}
		if local != 300 || len(failed) > 0 {
			t.Errorf("%d of 300 requests with the header answered locally; failures: %v", local, failed[:min(len(failed), 10)])
		}
		if len(servedBy) != 3 {
			t.Errorf("the requests without the header were served by %v, want all 3 pods", servedBy)
		}
		t.Logf("300 with the header: %d local; 300 without, by pod: %v", local, servedBy)
	})

	scale := func(t *testing.T, n int32) {
		t.Helper()
		deploys := client.AppsV1().Deployments(ns)
		if _, err := deploys.UpdateScale(context.Background(), "web", &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: n}}, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("scale_up", func(t *testing.T) {
		old := map[types.UID]bool{}
		for _, p := range pods {
			old[p.UID] = true
		}
		scale(t, 5)
		all := waitPodsReady(t, ns, "app=web", 5, 2*time.Minute)
		// Each new pod steals within 5 s of being ready.
		for i := range all {
			np := &all[i]
			if old[np.UID] {
				continue
			}
			ready := readySince(np)
			var took time.Duration
			for {
				if a := ask(podURL(np, "/10.1.2.3"), "me"); a.err == nil && strings.Contains(a.body, "local") {
					took = time.Since(ready)
					break
				}
				if time.Since(ready) > 30*time.Second {
					t.Fatalf("new pod %s: requests with the header are not stolen 30s after it was ready\n%s", np.Name, p.Stderr())
				}
				time.Sleep(100 * time.Millisecond)
			}
			if took > 5*time.Second {
				t.Errorf("new pod %s: stolen %v after it was ready, want within 5s", np.Name, took.Round(100*time.Millisecond))
			}
			t.Logf("new pod %s: stolen %v after it was ready", np.Name, took.Round(100*time.Millisecond))
		}
		stolenEverywhere(t, all)
	})

	t.Run("scale_down", func(t *testing.T) {
		// Both kinds of user under load while 3 of the 5 pods go.
		mine := startLoadUser(t, url, "me", "local")
		others := startLoad(t, url, remote)
		time.Sleep(time.Second)
		mine.setPhase("during")
		others.setPhase("during")
		scale(t, 2)
		deadline := time.Now().Add(2 * time.Minute)
		for n := -1; n != 2; time.Sleep(200 * time.Millisecond) {
			list, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				t.Fatal(err)
			}
			n = len(list.Items)
			if time.Now().After(deadline) {
				t.Fatalf("still %d pods 2 minutes after scaling to 2", n)
			}
		}
		time.Sleep(2 * time.Second)
		for name, l := range map[string]*load{"with the header": mine, "without": others} {
			res := l.result()
			if res.failed() > 0 || res.sent() < 50 {
				t.Errorf("requests %s while scaling 5 → 2: %v; first failures: %v", name, res, res.samples())
			} else {
				t.Logf("requests %s while scaling 5 → 2: %v", name, res)
			}
		}
		stolenEverywhere(t, waitPodsReady(t, ns, "app=web", 2, time.Minute))
	})

	t.Run("rollout_restart", func(t *testing.T) {
		before := waitPodsReady(t, ns, "app=web", 2, time.Minute)
		patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339))
		if _, err := client.AppsV1().Deployments(ns).Patch(context.Background(), "web", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		var after []corev1.Pod
		for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
			list, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				t.Fatal(err)
			}
			after = after[:0]
			fresh := true
			for _, np := range list.Items {
				for _, op := range before {
					if np.UID == op.UID {
						fresh = false
					}
				}
				if isReady(&np) {
					after = append(after, np)
				}
			}
			if fresh && len(after) == 2 && len(list.Items) == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the rollout did not end within 3 minutes: %s", describePods(ns))
			}
		}
		// The new pods steal (within 5 s of the rollout's end), and the
		// session's files come from one of them.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			ok := true
			for i := range after {
				if a := ask(podURL(&after[i], "/10.1.2.3"), "me"); a.err != nil || !strings.Contains(a.body, "local") {
					ok = false
				}
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the rollout's new pods do not all steal 5s after it ended\n%s", p.Stderr())
			}
		}
		stolenEverywhere(t, after)
		var names []string
		for _, np := range after {
			names = append(names, np.Name)
		}
		sort.Strings(names)
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
			a := ask(svc+"/podname", "me")
			got := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(a.body), "local pod "))
			if a.err == nil && (got == names[0] || got == names[1]) {
				t.Logf("after the rollout the session's files come from pod %s", got)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after the rollout the session's files come from %q %v, want one of the live pods %v\n%s", a.body, a.err, names, p.Stderr())
			}
		}
	})

	t.Run("leftovers", func(t *testing.T) {
		p.stop(t)
		var warned []string
		for _, l := range lines(p.Stderr()) {
			if strings.Contains(l, "warning: ") || strings.Contains(l, "error: ") {
				warned = append(warned, l)
			}
		}
		t.Logf("tether's warnings over the scaling and the rollout: %d\n%s", len(warned), strings.Join(warned, "\n"))
		final := waitPodsReady(t, ns, "app=web", 2, time.Minute)
		left := leftovers(t, ns, 90*time.Second)
		for i := range final {
			left = append(left, netfilterLeftovers(t, containerPID(t, &final[i], "app"))...)
		}
		if len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
	})
}

// TestReplicasOne: incoming.replicas: one keeps the subscriptions on the
// pod whose context the session has.
func TestReplicasOne(t *testing.T) {
	ns, pods, dir, cfg := twoReplicas(t, "e2e-replicas-one", "  replicas: one")
	p := startTetherEnv(t, dir, []string{localServerEnv + "=8080"}, "exec", "-f", cfg, "-n", ns, "-t", "deployment/web", "--progress", "plain", "--", os.Args[0])
	p.waitStderr(t, "traffic to the target's port 8080 is stolen", 3*time.Minute)
	var stolen []string
	for i := range pods {
		if a := ask(podURL(&pods[i], "/10.1.2.3"), "me"); a.err == nil && strings.Contains(a.body, "local") {
			stolen = append(stolen, pods[i].Name)
		}
	}
	if len(stolen) != 1 || !strings.Contains(p.Stderr(), "pod "+stolen[0]) {
		t.Errorf("with incoming.replicas: one, stolen on %v, want the session's own pod only\n%s", stolen, p.Stderr())
	}
	p.stop(t)
	noLeftovers(t, ns, 90*time.Second)
}

// twoReplicas is a namespace named after name with a 2-replica
// replicasYAML Deployment, ready, and a config for a filtered steal of
// "x-tether-user: me" with the extra incoming lines.
func twoReplicas(t *testing.T, name, extra string) (ns string, pods []corev1.Pod, dir, cfg string) {
	t.Helper()
	requireE2E(t)
	ns = newNamespace(t, name, nil)
	apply(t, []byte(replicasYAML(ns, "web", 2)))
	waitDeployments(t, ns, 2*time.Minute)
	pods = waitPodsReady(t, ns, "app=web", 2, 2*time.Minute)
	dir = t.TempDir()
	if extra != "" {
		extra += "\n"
	}
	cfg = agentConfig(t, dir, "incoming:\n  mode: steal\n"+extra+"  http_filter:\n    header_filter: \"^x-tether-user: me$\"")
	return ns, pods, dir, cfg
}

// readySince is when pod p became ready.
func readySince(p *corev1.Pod) time.Time {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return c.LastTransitionTime.Time
		}
	}
	return time.Now()
}

// TestServiceAndSelectorTargets: service/NAME covers the Service's pods,
// and a program listening on the Service's port gets the pods' targetPort;
// -l SELECTOR covers the pods it picks.
func TestServiceAndSelectorTargets(t *testing.T) {
	ns, pods, dir, cfg := twoReplicas(t, "e2e-svc-target", "")
	for _, tc := range []struct {
		name, listen string
		target       []string
		progress     string
		said         []string
	}{
		{"service", "80", []string{"-t", "service/web"}, "plain", []string{"a local listener on port 80 receives the pods' port 8080"}},
		// With --progress json, the other pod's agent events too (the
		// context pod's agent is the start-up's own step).
		{"selector", "8080", []string{"-l", "app=web"}, "json", []string{`"type":"pod","pod":"web-`, `"event":"agent-ready"`, `"event":"connected"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"exec", "-f", cfg, "-n", ns}, tc.target...)
			args = append(args, "--progress", tc.progress, "--", os.Args[0])
			p := startTetherEnv(t, dir, []string{localServerEnv + "=" + tc.listen}, args...)
			p.waitStderr(t, "traffic to the target's port 8080 is stolen", 3*time.Minute)
			for _, want := range append(tc.said, "incoming: 2 pods; context: pod ") {
				if !strings.Contains(p.Stderr(), want) {
					t.Errorf("tether does not say %q:\n%s", want, p.Stderr())
				}
			}
			for i := range pods {
				if a := ask(podURL(&pods[i], "/10.1.2.3"), "me"); a.err != nil || !strings.Contains(a.body, "local") {
					t.Errorf("pod %s: a request with the header got %q %v, want the local process's answer", pods[i].Name, a.body, a.err)
				}
				if a := ask(podURL(&pods[i], "/10.1.2.3"), ""); a.err != nil || a.pod != pods[i].Name {
					t.Errorf("pod %s: a request without the header got %q from %q %v, want the pod's own answer", pods[i].Name, a.body, a.pod, a.err)
				}
			}
			p.stop(t)
			noLeftovers(t, ns, 90*time.Second)
			for i := range pods {
				if left := netfilterLeftovers(t, containerPID(t, &pods[i], "app")); len(left) > 0 {
					t.Errorf("left behind in pod %s: %v", pods[i].Name, left)
				}
			}
		})
	}
}
