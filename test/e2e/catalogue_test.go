package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/clientcmd"
)

// e2eRow is one user error of the catalogue in docs/errors.md that needs a
// cluster: the tether command line and what it must answer.
type e2eRow struct {
	id, name string
	args     []string
	// kubeconfig is the KUBECONFIG tether gets (default: the test
	// cluster's admin); env is added to the environment.
	kubeconfig string
	env        []string
	code       int
	// problem says what went wrong; fix what to do. Every string must be
	// in stderr.
	problem, fix []string
	// skip, when set, says why the row cannot run on this cluster.
	skip string
}

// TestCatalogue runs tether against the real cluster for the errors of the
// catalogue (docs/errors.md) that need one: a misspelt target or
// namespace, a missing or ambiguous container, a workload scaled to zero or
// not ready, a CronJob that never ran, a cluster without Argo Rollouts, an
// RBAC refusal, no Kubernetes context, a refused token. Each row checks the
// exit code, that stderr names the problem and the fix, that stdout is
// empty and that nothing panics; at the end no agent was started. The
// errors that need no cluster are in internal/cli/catalogue_test.go.
func TestCatalogue(t *testing.T) {
	requireE2E(t)
	ns := newNamespace(t, "e2e-catalogue", nil)
	// Workloads: ip-info is fine; duo has two app containers; idle is
	// scaled to zero; nightly is a CronJob that has not run.
	duo := fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: duo, namespace: %s}
spec:
  replicas: 1
  selector: {matchLabels: {app: duo}}
  template:
    metadata: {labels: {app: duo}}
    spec:%s
`, ns, podSpec("Always", ipInfoContainer("a", "duo-a", 8080), ipInfoContainer("b", "duo-b", 8081)))
	apply(t, []byte(deploymentYAML(ns, "ip-info", "catalogue", false)+"\n---\n"+duo+"\n---\n"+
		strings.Replace(deploymentYAML(ns, "idle", "idle", false), "replicas: 1", "replicas: 0", 1)+
		fmt.Sprintf(`
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: %s}
spec:
  schedule: "0 0 1 1 *"
  suspend: true
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - {name: job, image: tether.local/ip-info:dev, imagePullPolicy: IfNotPresent}
`, ns)))
	waitDeployments(t, ns, 2*time.Minute)
	// broken's image does not exist: its pod never becomes ready.
	apply(t, []byte(strings.Replace(deploymentYAML(ns, "broken", "broken", false), "tether.local/ip-info:dev", "tether.local/does-not-exist:v1", 1)))
	brokenPod := waitPodWaiting(t, ns, "app=broken", time.Minute)

	dir := t.TempDir()
	cfg := agentConfig(t, dir)
	// A cluster slower than the timeout, as seen from tether.
	impatient := writeConfig(t, t.TempDir(), "agent:\n  image: "+agentImage+"\n  startup_timeout: 1ms\n")
	limited := readOnlyUser(t, dir, ns)
	badToken := kubeconfigWithToken(t, dir, "not-a-valid-token")
	exec := func(target string, extra ...string) []string {
		return append(append([]string{"exec", "-f", cfg, "-n", ns, "-t", target}, extra...), "--", "printenv", "MARKER")
	}
	_, rolloutCRDErr := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}).
		Get(context.Background(), "rollouts.argoproj.io", metav1.GetOptions{})
	noRolloutsSkip := ""
	switch {
	case rolloutCRDErr == nil:
		noRolloutsSkip = "this cluster has Argo Rollouts' CRD"
	case !apierrors.IsNotFound(rolloutCRDErr):
		t.Fatalf("looking for the Argo Rollouts CRD: %v", rolloutCRDErr)
	}
	typo := ns[:len(ns)-1] // e2e-catalogu

	rows := []e2eRow{
		{id: "TGT-NOT-FOUND", name: "misspelt deployment", args: exec("deployment/ip-infoo"), code: 1,
			problem: []string{`deployment "ip-infoo" not found in namespace ` + ns}, fix: []string{"Did you mean deployment/ip-info?", "tether ls -n " + ns}},
		{id: "TGT-NOT-FOUND", name: "misspelt pod", args: exec("pod/ip-info"), code: 1,
			problem: []string{`pod "ip-info" not found in namespace ` + ns}, fix: []string{"Did you mean pod/ip-info-", "tether ls -n " + ns}},
		{id: "TGT-NAMESPACE-NOT-FOUND", name: "misspelt namespace", args: []string{"exec", "-f", cfg, "-n", typo, "-t", "deployment/ip-info", "--", "true"}, code: 1,
			problem: []string{fmt.Sprintf("namespace %q does not exist", typo)}, fix: []string{"fix -n", "Did you mean -n " + ns}},
		{id: "TGT-CONTAINER-MISSING", name: "no such container", args: exec("deployment/duo/container/c"), code: 1,
			problem: []string{`has no container "c" (it has a, b)`}, fix: []string{"fix the container in the target, e.g. deployment/duo/container/a"}},
		{id: "TGT-CONTAINER-AMBIGUOUS", name: "two app containers", args: exec("deployment/duo"), code: 1,
			problem: []string{"has several containers (a, b) and no default"}, fix: []string{"choose one, e.g. deployment/duo/container/a"}},
		{id: "TGT-NO-PODS", name: "scaled to zero", args: exec("deployment/idle"), code: 1,
			problem: []string{"deployment/idle in namespace " + ns + `: no pods match its selector "app=idle" (is it scaled to zero?)`},
			fix:     []string{"kubectl scale deployment/idle -n " + ns + " --replicas=1"}},
		{id: "TGT-NOT-READY", name: "workload whose pod cannot start", args: exec("deployment/broken"), code: 1,
			problem: []string{"deployment/broken in namespace " + ns + ": none of its 1 pods is ready (" + brokenPod}, fix: []string{"wait for them, or see why with kubectl describe pod -n " + ns + " " + brokenPod}},
		{id: "TGT-NOT-READY", name: "pod that cannot start", args: exec("pod/" + brokenPod), code: 1,
			problem: []string{"pod " + ns + "/" + brokenPod + " is not ready"}, fix: []string{"wait for it or pick another pod (tether ls -n " + ns + ")"}},
		{id: "TGT-CRONJOB-NO-JOB", name: "cronjob that never ran", args: exec("cronjob/nightly"), code: 1,
			problem: []string{"cronjob/nightly has no job yet"}, fix: []string{"kubectl create job --from=cronjob/nightly"}},
		{id: "TGT-NO-ROLLOUTS", name: "rollout without Argo Rollouts", args: exec("rollout/ip-info"), code: 1, skip: noRolloutsSkip,
			problem: []string{"rollout/ip-info: this cluster has no Argo Rollouts"}, fix: []string{"target the deployment or pods instead"}},
		// The read-only user may get and list pods only; the context's
		// namespace is ns (no -n).
		{id: "KUBE-RBAC-FORBIDDEN", name: "get deployments", kubeconfig: limited, args: []string{"exec", "-f", cfg, "-t", "deployment/ip-info", "--", "true"}, code: 1,
			problem: []string{"your Kubernetes user may not get deployments in namespace " + ns + " (RBAC forbidden)"}, fix: []string{`ask a cluster admin for a Role with verb "get" on "deployments"`}},
		{id: "KUBE-RBAC-FORBIDDEN", name: "create the agent pod", kubeconfig: limited, args: []string{"exec", "-f", cfg, "-t", "pod/" + onePod(t, ns, "app=ip-info").Name, "--", "true"}, code: 1,
			problem: []string{"your Kubernetes user may not create pods in namespace " + ns + " (RBAC forbidden)"}, fix: []string{`Role with verb "create" on "pods"`}},
		{id: "KUBE-RBAC-FORBIDDEN", name: "create an ephemeral container", kubeconfig: limited, args: []string{"exec", "-f", cfg, "--ephemeral", "-t", "pod/" + onePod(t, ns, "app=ip-info").Name, "--", "true"}, code: 1,
			problem: []string{"your Kubernetes user may not create pods/ephemeralcontainers in namespace " + ns + " (RBAC forbidden)"}, fix: []string{`Role with verb "create" on "pods/ephemeralcontainers"`}},
		{id: "KUBE-RBAC-FORBIDDEN", name: "ls", kubeconfig: limited, args: []string{"ls"}, code: 1,
			problem: []string{"your Kubernetes user may not list deployments in namespace " + ns + " (RBAC forbidden)"}, fix: []string{"or use a kubeconfig/context that has it"}},
		{id: "KUBE-NO-CONTEXT", name: "no kubeconfig at all", kubeconfig: filepath.Join(dir, "missing", "kubeconfig"), env: []string{"HOME=" + dir},
			args: []string{"exec", "-f", cfg, "-t", "deployment/ip-info", "--", "true"}, code: 2,
			problem: []string{"no Kubernetes context"}, fix: []string{"set KUBECONFIG or pass --kubeconfig/--context"}},
		{id: "AGENT-STARTUP-TIMEOUT", name: "agent not ready in time", args: []string{"exec", "-f", impatient, "-n", ns, "-t", "deployment/ip-info", "--", "true"}, code: 1,
			problem: []string{"the agent was not ready within agent.startup_timeout (1ms)"}, fix: []string{"raise agent.startup_timeout"}},
		{id: "KUBE-CREDENTIALS", name: "token the API server refuses", kubeconfig: badToken, args: []string{"exec", "-f", cfg, "-n", ns, "-t", "deployment/ip-info", "--", "true"}, code: 1,
			problem: []string{"refused your credentials"}, fix: []string{"log in again or refresh your kubeconfig"}},
	}

	docs, err := os.ReadFile(filepath.Join(root, "docs", "errors.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		t.Run(r.id+"/"+strings.ReplaceAll(r.name, " ", "_"), func(t *testing.T) {
			if !strings.Contains(string(docs), "`"+r.id+"`") {
				t.Errorf("docs/errors.md does not list %s", r.id)
			}
			if r.skip != "" {
				t.Skip(r.skip)
			}
			kc := r.kubeconfig
			if kc == "" {
				kc = kubeconfig
			}
			out, errOut, code := runTetherEnv(t, dir, 2*time.Minute, append([]string{"KUBECONFIG=" + kc}, r.env...), r.args...)
			if strings.Contains(out+errOut, "panic:") || strings.Contains(out+errOut, "goroutine ") {
				t.Fatalf("tether panicked:\n%s%s", out, errOut)
			}
			if code != r.code {
				t.Errorf("exit code %d, want %d", code, r.code)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			for _, s := range append(append([]string{}, r.problem...), r.fix...) {
				if !strings.Contains(errOut, s) {
					t.Errorf("stderr lacks %q", s)
				}
			}
			if t.Failed() {
				t.Logf("KUBECONFIG=%s tether %s\nstderr:\n%s", kc, strings.Join(r.args, " "), errOut)
			}
		})
	}

	// None of these errors may leave an agent behind, or start one.
	if jobs := agentJobs(t, ns); len(jobs) != 0 {
		t.Errorf("agent jobs %v were created by failed starts", jobs)
	}
	if p := getPod(t, ns, onePod(t, ns, "app=ip-info").Name); len(p.Spec.EphemeralContainers) != 0 {
		t.Errorf("ephemeral containers were added: %v", p.Spec.EphemeralContainers)
	}
}

// waitPodWaiting waits until a pod matching selector in ns has a container
// waiting with a reason (an image pull failure...) and returns its name.
func waitPodWaiting(t *testing.T, ns, selector string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pods, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err == nil {
			for _, p := range pods.Items {
				for _, cs := range p.Status.ContainerStatuses {
					if w := cs.State.Waiting; w != nil && w.Reason != "" && w.Reason != "ContainerCreating" {
						return p.Name
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pod %q of %s waits with a reason after %v:\n%s", selector, ns, timeout, describePods(ns))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// readOnlyUser creates a ServiceAccount that may only get and list the pods
// of ns, waits until RBAC lets it, and returns a kubeconfig for it whose
// context's namespace is ns.
func readOnlyUser(t *testing.T, dir, ns string) string {
	t.Helper()
	apply(t, []byte(fmt.Sprintf(`apiVersion: v1
kind: ServiceAccount
metadata: {name: pod-reader, namespace: %[1]s}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: %[1]s}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: pod-reader, namespace: %[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects:
- {kind: ServiceAccount, name: pod-reader, namespace: %[1]s}
`, ns)))
	kc := limitedKubeconfig(t, dir, ns, "pod-reader")
	waitAllowed(t, kc, ns)
	return kc
}

// kubeconfigWithToken writes a kubeconfig for the test cluster (its server
// and CA) whose user has token, one the API server does not know.
func kubeconfigWithToken(t *testing.T, dir, token string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	kctx, ok := cfg.Contexts[cfg.CurrentContext]
	if !ok {
		t.Fatalf("kubeconfig %s: no current context", kubeconfig)
	}
	user := cfg.AuthInfos[kctx.AuthInfo]
	if user == nil {
		t.Fatalf("kubeconfig %s: no user %q", kubeconfig, kctx.AuthInfo)
	}
	user.ClientCertificate, user.ClientCertificateData, user.ClientKey, user.ClientKeyData = "", nil, "", nil
	user.Token, user.TokenFile = token, ""
	cluster := cfg.Clusters[kctx.Cluster]
	if cluster != nil && cluster.CertificateAuthority != "" && !filepath.IsAbs(cluster.CertificateAuthority) {
		cluster.CertificateAuthority = filepath.Join(filepath.Dir(kubeconfig), cluster.CertificateAuthority)
	}
	path := filepath.Join(dir, "bad-token.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}
