package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	policiesv1 "github.com/tether-dev/tether/api/policies/v1alpha1"
	queuesv1 "github.com/tether-dev/tether/api/queues/v1alpha1"
	"github.com/tether-dev/tether/internal/deploy"
	"github.com/tether-dev/tether/internal/operator"
)

// testQueueSplit is the seed demo's queue splitting through the operator
// (Kafka), then its bad input.
func testQueueSplit(t *testing.T) {
	dir := t.TempDir()
	devEnv := splitterUser(t, dir, demoNS)
	manifest, err := os.ReadFile(filepath.Join(root, "examples/ip-visit-counter/deploy/queuesplit.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	adm := demoKafka(t)
	if tmp := tempTopics(t, adm); len(tmp) > 0 {
		t.Fatalf("temporary topics before the test: %v", tmp)
	}
	url := serviceURL(t, demoNS, "ip-visit-counter")
	waitHTTP(t, url, 30*time.Second)
	runSplitScenario(t, splitScenario{
		ns: demoNS, deployment: "ip-visit-consumer", manifest: manifest, source: "ip-visits",
		nameKey: "KAFKA_TOPIC", restored: []string{"KAFKA_TOPIC", "KAFKA_GROUP", "KAFKA_BROKERS"},
		dir: dir, devEnv: devEnv,
		send:      func(t *testing.T, user, id string) { visit(t, url, user, id) },
		leftovers: func(t *testing.T, _ []string) []string { return tempTopics(t, adm) },
	})
	t.Run("bad_input", func(t *testing.T) { testQueueSplitBadInput(t, dir, devEnv) })
}

// splitterUser is a developer with only tether-user in ns: the env that
// makes tether act as them.
func splitterUser(t *testing.T, dir, ns string) []string {
	ctx := context.Background()
	subject, kc := serviceAccountUser(t, dir, ns, "e2e-splitter")
	t.Cleanup(func() { client.CoreV1().ServiceAccounts(ns).Delete(ctx, "e2e-splitter", metav1.DeleteOptions{}) })
	bindTetherUser(t, ns, "e2e-splitter", deploy.UserRole, subject)
	t.Cleanup(func() { client.RbacV1().RoleBindings(ns).Delete(ctx, "e2e-splitter", metav1.DeleteOptions{}) })
	return []string{"KUBECONFIG=" + kc}
}

// splitScenario is a consumer Deployment (ip-visit-consumer) whose queue
// (id "visits") a QueueSplit splits, on one kind of broker.
type splitScenario struct {
	ns, deployment string
	manifest       []byte // the QueueSplit
	source         string // the queue's name
	// nameKey is the variable with the queue's name; restored are the
	// variables the split changes and its end gives back.
	nameKey  string
	restored []string
	dir      string
	devEnv   []string
	// send publishes visit id from user ("": no x-tether-user).
	send func(t *testing.T, user, id string)
	// leftovers are the split's temporary queues still on the broker;
	// seen are those the sessions were given.
	leftovers func(t *testing.T, seen []string) []string
}

var splitQueueName = regexp.MustCompile(`visits → (\S+)`)

// runSplitScenario: by developers with only tether-user, each local
// ip-visit-consumer gets exactly the visits its filter matches, the
// deployed one the others; a session that ends, or whose tether is killed,
// gives its undelivered visits back; the operator's pod deleted
// mid-stream loses none; once the last session ends the workload and the
// broker's queues are as before.
func runSplitScenario(t *testing.T, sc splitScenario) {
	ctx := context.Background()
	// The platform team's QueueSplit, with a short TTL for the test.
	var obj map[string]any
	if err := yaml.Unmarshal(sc.manifest, &obj); err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: obj}
	unstructured.SetNestedField(u.Object, int64(15), "spec", "sessionTTLSeconds")
	splits := dyn.Resource(queuesv1.GroupVersionResource).Namespace(sc.ns)
	if _, err := splits.Create(ctx, u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the QueueSplit: %v", err)
	}
	t.Cleanup(func() {
		splits.Delete(ctx, u.GetName(), metav1.DeleteOptions{})
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
			if _, err := splits.Get(ctx, u.GetName(), metav1.GetOptions{}); err != nil {
				return
			}
		}
		t.Errorf("the QueueSplit was not gone 2 minutes after its deletion\n%s", operatorLogs())
	})
	origEnv, _ := deploymentEnv(t, sc.ns, sc.deployment)
	deployed := followPodLogs(t, sc.ns, "app="+sc.deployment)
	run := fmt.Sprintf("e2e%d", time.Now().Unix()%100000)
	var seenMu sync.Mutex
	var seen []string

	// split starts a session whose program is prog, taking the visits of user.
	split := func(t *testing.T, user string, prog ...string) *tetherProc {
		t.Helper()
		d := filepath.Join(sc.dir, user)
		os.MkdirAll(d, 0o755)
		cfg := writeConfig(t, d, fmt.Sprintf(`target: deployment/%s
namespace: %s
split_queues:
  visits:
    message_filter:
      x-tether-user: "^%s$"
`, sc.deployment, sc.ns, user))
		p := startTetherEnv(t, d, sc.devEnv, append([]string{"exec", "-f", cfg, "--progress", "plain", "--"}, prog...)...)
		p.waitStderr(t, "visits → "+sc.source+"-tether-", 3*time.Minute)
		if m := splitQueueName.FindStringSubmatch(p.Stderr()); m != nil {
			seenMu.Lock()
			seen = append(seen, strings.TrimRight(m[1], ",;)"))
			seenMu.Unlock()
		}
		return p
	}
	consume := func(t *testing.T, user string) *tetherProc {
		p := split(t, user, consumerBin)
		p.waitStderr(t, "consuming "+sc.source+"-tether-", time.Minute)
		return p
	}
	send := func(t *testing.T, user string, idList []string) {
		for _, id := range idList {
			sc.send(t, user, id)
		}
	}
	only := func(t *testing.T, what string, got map[string]int, want []string) {
		t.Helper()
		allowed := map[string]bool{}
		for _, id := range want {
			allowed[id] = true
		}
		var wrong []string
		for id, n := range got {
			if strings.HasPrefix(id, run) && !allowed[id] {
				wrong = append(wrong, fmt.Sprintf("%s (x%d)", id, n))
			}
		}
		if len(wrong) > 0 {
			// One line: the diagnostics after it must fit in CI's excerpt.
			slices.Sort(wrong)
			t.Errorf("%s got %d visits that are not its: %s", what, len(wrong), strings.Join(wrong[:min(len(wrong), 8)], ", "))
		}
	}

	me := consume(t, "me")
	you := consume(t, "you")
	procs := map[string]*tetherProc{"me": me, "you": you}
	env, ann := deploymentEnv(t, sc.ns, sc.deployment)
	// The name is all of the variable, or its end (SQS: the queue's URL).
	if !strings.HasSuffix(env[sc.nameKey], sc.source+"-tether-fallback") || ann[operator.AnnotationSplit] == "" {
		t.Errorf("the deployed consumer was not pointed at the fallback queue: env %v, annotations %v", env, ann)
	}

	t.Run("queues_status", func(t *testing.T) {
		// What a developer with only tether-user sees of the split.
		out, errOut, code := runTetherEnv(t, sc.dir, time.Minute, sc.devEnv, "queues", "status", "-n", sc.ns)
		if code != 0 {
			t.Fatalf("tether queues status: exit %d\n%s", code, errOut)
		}
		for _, want := range []string{
			sc.ns + "/" + u.GetName() + ": deployment/" + sc.deployment + ", Active",
			sc.source + "-tether-fallback", "x-tether-user=^me$", "x-tether-user=^you$", "splitting",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("tether queues status does not say %q:\n%s", want, out)
			}
		}
		js, errOut, code := runTetherEnv(t, sc.dir, time.Minute, sc.devEnv, "queues", "status", "-n", sc.ns, "-o", "json")
		var list []queuesv1.QueueSplit
		if code != 0 || json.Unmarshal([]byte(js), &list) != nil || len(list) != 1 || len(list[0].Status.Sessions) != 2 {
			t.Errorf("tether queues status -o json: exit %d, want the QueueSplit with 2 sessions:\n%s%s", code, js, errOut)
		}
	})

	t.Run("filters", func(t *testing.T) {
		splitDiagnostics(t, sc.ns, u.GetName(), sc.deployment, procs)
		mine, yours, others := ids(run+"-me", 100), ids(run+"-you", 100), ids(run+"-other", 300)
		for i := range 100 {
			send(t, "me", mine[i:i+1])
			send(t, "you", yours[i:i+1])
			send(t, "", others[3*i:3*i+3])
		}
		waitIDs(t, "the local consumer of me", mine, time.Minute, func() map[string]int { return visitIDs(me.Stderr()) })
		waitIDs(t, "the local consumer of you", yours, time.Minute, func() map[string]int { return visitIDs(you.Stderr()) })
		waitIDs(t, "the deployed consumer", others, time.Minute, func() map[string]int { return visitIDs(deployed.text()) })
		time.Sleep(2 * time.Second) // anything misrouted has arrived by now
		only(t, "the local consumer of me", visitIDs(me.Stderr()), mine)
		only(t, "the local consumer of you", visitIDs(you.Stderr()), yours)
		only(t, "the deployed consumer", visitIDs(deployed.text()), others)
	})

	t.Run("session_end_drains", func(t *testing.T) {
		// A session whose program reads nothing: its visits wait on its
		// queue, and go to the deployed consumer when it ends.
		idle := split(t, "idle", "sleep", "3600")
		splitDiagnostics(t, sc.ns, u.GetName(), sc.deployment, map[string]*tetherProc{"idle": idle})
		idleIDs := ids(run+"-idle", 50)
		send(t, "idle", idleIDs)
		time.Sleep(3 * time.Second)
		if got := visitIDs(deployed.text()); got[idleIDs[0]] > 0 {
			t.Fatalf("the deployed consumer got an idle session's visit while it ran")
		}
		idle.stop(t)
		got := waitIDs(t, "the deployed consumer, after the idle session ended", idleIDs, time.Minute, func() map[string]int { return visitIDs(deployed.text()) })
		for _, id := range idleIDs {
			if got[id] != 1 {
				t.Errorf("visit %s reached the deployed consumer %d times", id, got[id])
			}
		}
	})

	t.Run("operator_restart", func(t *testing.T) {
		splitDiagnostics(t, sc.ns, u.GetName(), sc.deployment, procs)
		mine := ids(run+"-restart", 100)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, id := range mine {
				sc.send(t, "me", id)
				time.Sleep(30 * time.Millisecond)
			}
		}()
		time.Sleep(time.Second)
		pods, err := client.CoreV1().Pods(deploy.DefaultNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + deploy.Name})
		if err != nil || len(pods.Items) == 0 {
			t.Fatalf("the operator's pods: %v", err)
		}
		for _, p := range pods.Items {
			client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
		}
		wg.Wait()
		waitIDs(t, "the local consumer of me, across the operator's restart", mine, 2*time.Minute, func() map[string]int { return visitIDs(me.Stderr()) })
		only(t, "the deployed consumer", visitIDs(deployed.text()), append(append(ids(run+"-other", 300), ids(run+"-idle", 50)...), ids(run+"-after", 20)...))
	})

	t.Run("sigkill_then_restore", func(t *testing.T) {
		crash := split(t, "crash", "sleep", "3600")
		splitDiagnostics(t, sc.ns, u.GetName(), sc.deployment, map[string]*tetherProc{"crash": crash})
		crashIDs := ids(run+"-crash", 30)
		send(t, "crash", crashIDs)
		// The developer's tether and its program die at once.
		syscall.Kill(-crash.cmd.Process.Pid, syscall.SIGKILL)
		<-crash.done
		me.stop(t)
		you.stop(t)
		// After the TTL (15 s) the crashed session ends too: the workload
		// is restored, the temporary queues deleted.
		var qs *queuesv1.QueueSplit
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
			qs = getSplit(t, sc.ns, u.GetName())
			if qs.Status.Phase == queuesv1.PhaseIdle && len(qs.Status.Sessions) == 0 && qs.Status.Patch == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the split did not end 2 minutes after its last session: status %+v\n%s", qs.Status, operatorLogs())
			}
		}
		env, ann := deploymentEnv(t, sc.ns, sc.deployment)
		for _, k := range sc.restored {
			if env[k] != origEnv[k] {
				t.Errorf("after the split, the deployed consumer's %s is %q, want %q", k, env[k], origEnv[k])
			}
		}
		if ann[operator.AnnotationSplit] != "" {
			t.Errorf("after the split the deployment is still annotated %s", operator.AnnotationSplit)
		}
		seenMu.Lock()
		names := append([]string{sc.source + "-tether-fallback"}, seen...)
		seenMu.Unlock()
		if tmp := sc.leftovers(t, names); len(tmp) > 0 {
			t.Errorf("temporary queues left after the split: %v", tmp)
		}
		waitIDs(t, "the deployed consumer, the crashed session's visits", crashIDs, time.Minute, func() map[string]int { return visitIDs(deployed.text()) })
		// Visits now are the deployed consumer's, whoever they are from.
		after := ids(run+"-after", 20)
		send(t, "me", after)
		waitIDs(t, "the deployed consumer, after the split", after, time.Minute, func() map[string]int { return visitIDs(deployed.text()) })
	})
}

// testQueueSplitBadInput: what a user gets wrong is a clear error, and
// nothing is patched.
func testQueueSplitBadInput(t *testing.T, dir string, devEnv []string) {
	ctx := context.Background()
	// A workload whose QueueSplit names a broker nobody can reach.
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "e2e-unreachable", Namespace: demoNS}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](1),
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "e2e-unreachable"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "e2e-unreachable"}}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "consumer", Image: "tether.local/ip-visit-consumer:dev", ImagePullPolicy: corev1.PullIfNotPresent,
				Env: []corev1.EnvVar{{Name: "KAFKA_BROKERS", Value: "127.0.0.1:1"}, {Name: "KAFKA_TOPIC", Value: "t"}, {Name: "KAFKA_GROUP", Value: "g"}}}},
		}},
	}}
	if _, err := client.AppsV1().Deployments(demoNS).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.AppsV1().Deployments(demoNS).Delete(ctx, d.Name, metav1.DeleteOptions{}) })
	qs := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": queuesv1.SchemeGroupVersion.String(), "kind": "QueueSplit",
		"metadata": map[string]any{"name": "e2e-unreachable", "namespace": demoNS},
		"spec": map[string]any{"target": "deployment/e2e-unreachable", "queues": []any{map[string]any{
			"id": "visits", "kind": "kafka", "nameFrom": map[string]any{"env": "KAFKA_TOPIC"}, "groupFrom": map[string]any{"env": "KAFKA_GROUP"},
			"kafka": map[string]any{"brokers": map[string]any{"fromEnv": "KAFKA_BROKERS"}}}}},
	}}
	splits := dyn.Resource(queuesv1.GroupVersionResource).Namespace(demoNS)
	if _, err := splits.Create(ctx, qs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { splits.Delete(ctx, "e2e-unreachable", metav1.DeleteOptions{}) })
	waitDeployments(t, demoNS, 2*time.Minute)
	generation := func(name string) int64 {
		d, err := client.AppsV1().Deployments(demoNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d.Generation
	}
	before := map[string]int64{"ip-visit-consumer": generation("ip-visit-consumer"), "e2e-unreachable": generation("e2e-unreachable"), "ip-visit-counter": generation("ip-visit-counter")}
	for _, tc := range []struct {
		name, target, queues string
		want                 []string
		policy               string // a Policy there while the case runs
	}{
		{"unknown queue id", "deployment/ip-visit-consumer", `{visitz: {message_filter: {x-tether-user: "^me$"}}}`, []string{`"visitz" is not a queue of QueueSplit tether-demo/ip-visit-consumer`, "its queues: visits"}, ""},
		{"bad regex", "deployment/ip-visit-consumer", `{visits: {message_filter: {x-tether-user: "^(me"}}}`, []string{`"split_queues.visits.message_filter.x-tether-user": bad regex`}, ""},
		{"no QueueSplit", "deployment/ip-visit-counter", `{visits: {message_filter: {x-tether-user: "^me$"}}}`, []string{"deployment/ip-visit-counter in tether-demo has no QueueSplit", "kubectl get queuesplits"}, ""},
		{"unreachable broker", "deployment/e2e-unreachable", `{visits: {message_filter: {x-tether-user: "^me$"}}}`, []string{"127.0.0.1:1", "nothing was changed"}, ""},
		{"blocked by a policy", "deployment/ip-visit-consumer", `{visits: {message_filter: {x-tether-user: "^me$"}}}`,
			[]string{"Policy " + demoNS + "/e2e-no-split refuses splitting its queues (block: queue-split)"},
			"apiVersion: policies.tether.dev/v1alpha1\nkind: Policy\nmetadata: {name: e2e-no-split, namespace: " + demoNS + "}\nspec:\n  targetPath: deployment/ip-visit-consumer\n  block: [queue-split]\n"},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			if tc.policy != "" {
				apply(t, []byte(tc.policy))
				t.Cleanup(func() {
					dyn.Resource(policiesv1.PoliciesResource).Namespace(demoNS).Delete(ctx, "e2e-no-split", metav1.DeleteOptions{})
				})
			}
			d := filepath.Join(dir, "bad-"+strings.ReplaceAll(tc.name, " ", "-"))
			os.MkdirAll(d, 0o755)
			cfg := writeConfig(t, d, fmt.Sprintf("target: %s\nnamespace: %s\nsplit_queues: %s\n", tc.target, demoNS, tc.queues))
			_, errOut, code := runTetherEnv(t, d, 2*time.Minute, devEnv, "exec", "-f", cfg, "--progress", "plain", "--", "true")
			if code == 0 {
				t.Fatalf("tether exec succeeded:\n%s", errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("the error does not say %q:\n%s", w, errOut)
				}
			}
		})
	}
	time.Sleep(2 * time.Second)
	for name, g := range before {
		if got := generation(name); got != g {
			t.Errorf("deployment %s changed (generation %d → %d) by a refused split", name, g, got)
		}
	}
	if s := getSplit(t, demoNS, "e2e-unreachable"); s.Status.Patch != nil || len(s.Finalizers) > 0 {
		t.Errorf("the unreachable broker's QueueSplit was patched: %+v", s.Status)
	}
}
