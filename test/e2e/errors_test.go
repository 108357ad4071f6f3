package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestErrors provokes tether's user-facing errors on the real cluster: a
// misspelt target, a user whose RBAC lacks what tether needs, a missing
// Kubernetes context, a cluster without Argo Rollouts. Each fails with
// exit code 1 (2 for configuration mistakes), says what to do, and leaves
// no agent behind.
func TestErrors(t *testing.T) {
	requireE2E(t)
	ns := newNamespace(t, "e2e-errors", nil)
	apply(t, []byte(deploymentYAML(ns, "ip-info", "errors", false)))
	waitDeployments(t, ns, 2*time.Minute)
	pod := onePod(t, ns, "app=ip-info")
	dir := t.TempDir()
	cfg := agentConfig(t, dir)

	t.Run("unknown_target", func(t *testing.T) {
		out, errOut, code := runTether(t, dir, time.Minute, "exec", "-f", cfg, "-n", ns, "-t", "deployment/ip-infoo", "--", "printenv", "MARKER")
		if code != 1 || out != "" {
			t.Fatalf("exit %d, stdout %q, want exit 1 and no output\nstderr:\n%s", code, out, errOut)
		}
		for _, want := range []string{`deployment "ip-infoo" not found in namespace ` + ns, "Did you mean deployment/ip-info?", "tether ls -n " + ns} {
			if !strings.Contains(errOut, want) {
				t.Errorf("stderr does not say %q:\n%s", want, errOut)
			}
		}
		if jobs := agentJobs(t, ns); len(jobs) != 0 {
			t.Errorf("agent jobs %v were created for a target that does not exist", jobs)
		}
	})

	t.Run("rbac_forbidden", func(t *testing.T) {
		// A ServiceAccount that may only get and list pods.
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
		// RBAC may take a moment to see the new binding: wait until the
		// pods are readable with the token.
		waitAllowed(t, kc, ns)
		for _, c := range []struct {
			args []string
			want string
		}{
			// Resolving a deployment needs to get deployments.
			{[]string{"exec", "-f", cfg, "-t", "deployment/ip-info", "--", "printenv", "MARKER"}, "your Kubernetes user may not get deployments in namespace " + ns + " (RBAC forbidden)"},
			// A pod resolves; starting the agent needs to create pods.
			{[]string{"exec", "-f", cfg, "-t", "pod/" + pod.Name, "--", "printenv", "MARKER"}, "your Kubernetes user may not create pods in namespace " + ns + " (RBAC forbidden)"},
			{[]string{"exec", "-f", cfg, "--ephemeral", "-t", "pod/" + pod.Name, "--", "printenv", "MARKER"}, "your Kubernetes user may not create pods/ephemeralcontainers in namespace " + ns + " (RBAC forbidden)"},
			{[]string{"ls"}, "your Kubernetes user may not list deployments in namespace " + ns + " (RBAC forbidden)"},
		} {
			// The context's namespace is ns: no -n.
			out, errOut, code := runTetherEnv(t, dir, time.Minute, []string{"KUBECONFIG=" + kc}, c.args...)
			if code != 1 || out != "" || !strings.Contains(errOut, c.want) {
				t.Errorf("tether %s: exit %d, stdout %q, want exit 1 and %q\nstderr:\n%s", strings.Join(c.args, " "), code, out, c.want, errOut)
			}
		}
		if jobs := agentJobs(t, ns); len(jobs) != 0 {
			t.Errorf("agent jobs %v exist after the forbidden attempts", jobs)
		}
		if p := getPod(t, ns, pod.Name); len(p.Spec.EphemeralContainers) != 0 {
			t.Errorf("ephemeral containers were added by a user who may not: %v", p.Spec.EphemeralContainers)
		}
	})

	t.Run("no_kube_context", func(t *testing.T) {
		missing := filepath.Join(dir, "missing", "kubeconfig")
		out, errOut, code := runTetherEnv(t, dir, time.Minute, []string{"KUBECONFIG=" + missing, "HOME=" + dir}, "exec", "-f", cfg, "-t", "deployment/ip-info", "--", "printenv", "MARKER")
		if code != 2 || out != "" || !strings.Contains(errOut, "no Kubernetes context") {
			t.Fatalf("with KUBECONFIG=%s: exit %d, stdout %q, want exit 2 and \"no Kubernetes context\"\nstderr:\n%s", missing, code, out, errOut)
		}
	})

	t.Run("scaled_to_zero", func(t *testing.T) {
		apply(t, []byte(strings.Replace(deploymentYAML(ns, "idle", "idle", false), "replicas: 1", "replicas: 0", 1)))
		_, errOut, code := runTether(t, dir, time.Minute, "exec", "-f", cfg, "-n", ns, "-t", "deployment/idle", "--", "printenv", "MARKER")
		if want := "deployment/idle in namespace " + ns + `: no pods match its selector "app=idle" (is it scaled to zero?)`; code != 1 || !strings.Contains(errOut, want) {
			t.Fatalf("exit %d, want 1 and %q\nstderr:\n%s", code, want, errOut)
		}
	})

	t.Run("no_argo_rollouts", func(t *testing.T) {
		if _, err := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}).
			Get(context.Background(), "rollouts.argoproj.io", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Skipf("this cluster has Argo Rollouts' CRD (or: %v)", err)
		}
		_, errOut, code := runTether(t, dir, time.Minute, "exec", "-f", cfg, "-n", ns, "-t", "rollout/ip-info", "--", "printenv", "MARKER")
		if code != 1 || !strings.Contains(errOut, "this cluster has no Argo Rollouts") {
			t.Fatalf("exit %d, want 1 and \"this cluster has no Argo Rollouts\"\nstderr:\n%s", code, errOut)
		}
	})
}

// waitAllowed waits until the kubeconfig kc may list the pods of ns.
func waitAllowed(t *testing.T, kc, ns string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, errOut, code := runTetherEnv(t, t.TempDir(), 30*time.Second, []string{"KUBECONFIG=" + kc}, "exec", "-t", "pod/does-not-exist", "--", "true")
		// Resolving a missing pod lists the pods for suggestions: a
		// not-found answer (rather than forbidden) means RBAC lets us read.
		if code == 1 && strings.Contains(errOut, "not found in namespace "+ns) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ServiceAccount's kubeconfig cannot read pods after 30s: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		time.Sleep(time.Second)
	}
}

// TestPodSecurityBaseline: in a namespace whose Pod Security level is
// baseline, the default agent (hostPID, capabilities) is refused with a
// message naming Pod Security Admission and --ephemeral; --ephemeral then
// works (env, files) with an agent that has no added capabilities.
func TestPodSecurityBaseline(t *testing.T) {
	requireE2E(t)
	ns := newNamespace(t, "e2e-psa", map[string]string{"pod-security.kubernetes.io/enforce": "baseline"})
	apply(t, []byte(deploymentYAML(ns, "web", "baseline", true)))
	waitDeployments(t, ns, 2*time.Minute)
	target := onePod(t, ns, "app=web")
	dir := t.TempDir()
	cfg := agentConfig(t, dir)
	args := []string{"exec", "-f", cfg, "-n", ns, "-t", "deployment/web", "--progress", "plain"}
	script := []string{"sh", "-c", "printenv MARKER; cat /app/marker.txt"}

	out, errOut, code := runTether(t, dir, 2*time.Minute, append(append([]string{}, args...), append([]string{"--"}, script...)...)...)
	if code != 1 || out != "" {
		t.Fatalf("default mode in a baseline namespace: exit %d, stdout %q, want exit 1\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"Pod Security Admission in namespace " + ns, "--ephemeral", "hostPID"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr does not say %q:\n%s", want, errOut)
		}
	}
	if jobs := agentJobs(t, ns); len(jobs) != 0 {
		t.Errorf("agent jobs %v left after the refusal", jobs)
	}

	out, errOut, code = runTether(t, dir, 2*time.Minute, append(append([]string{}, args...), append([]string{"--ephemeral", "--"}, script...)...)...)
	if want := "baseline\nfile of " + ns + "/web"; code != 0 || out != want {
		t.Fatalf("--ephemeral in a baseline namespace: exit %d, stdout %q, want %q\nstderr:\n%s", code, out, want, errOut)
	}
	if !strings.Contains(errOut, "starting the agent without them") {
		t.Errorf("stderr does not say the agent runs without NET_ADMIN/SYS_PTRACE:\n%s", errOut)
	}
	p := getPod(t, ns, target.Name)
	if len(p.Spec.EphemeralContainers) != 1 || p.Spec.EphemeralContainers[0].Name != "tether-agent-1" {
		t.Fatalf("the target's ephemeral containers: %v, want tether-agent-1", p.Spec.EphemeralContainers)
	}
	if sc := p.Spec.EphemeralContainers[0].SecurityContext; sc != nil && sc.Capabilities != nil && len(sc.Capabilities.Add) > 0 {
		t.Errorf("the ephemeral agent has capabilities %v in a baseline namespace", sc.Capabilities.Add)
	}
	noRunningEphemeral(t, ns, 30*time.Second)
}

// TestBadAgentImage: an agent image that cannot be pulled fails the start
// at once (not after agent.startup_timeout) with the image named; the
// failed agent is not left behind, and a run with the right image works.
func TestBadAgentImage(t *testing.T) {
	requireE2E(t)
	ns := newNamespace(t, "e2e-badimage", nil)
	apply(t, []byte(deploymentYAML(ns, "web", "badimage", false)))
	waitDeployments(t, ns, 2*time.Minute)
	dir := t.TempDir()
	bad := writeConfig(t, dir, "agent:\n  image: tether.local/does-not-exist:v1\n  linger: 2s\n  startup_timeout: 90s\n")
	start := time.Now()
	out, errOut, code := runTether(t, dir, 2*time.Minute, "exec", "-f", bad, "-n", ns, "-t", "deployment/web", "--progress", "plain", "--", "printenv", "MARKER")
	elapsed := time.Since(start)
	if code != 1 || out != "" {
		t.Fatalf("exit %d, stdout %q, want exit 1\nstderr:\n%s", code, out, errOut)
	}
	if elapsed > 30*time.Second {
		t.Errorf("the failure took %v, want well under agent.startup_timeout (90s)", elapsed.Round(time.Second))
	}
	if want := `the agent image "tether.local/does-not-exist:v1" cannot be pulled`; !strings.Contains(errOut, want) {
		t.Errorf("stderr does not say %q:\n%s", want, errOut)
	}
	t.Logf("failed in %v", elapsed.Round(100*time.Millisecond))

	// The failed agent must not stay (its pod would wait for the image
	// for ever).
	if left := leftovers(t, ns, 30*time.Second); len(left) > 0 {
		t.Errorf("30s after the failed start, the failed agent is still there: %v", left)
	}

	// Fixing agent.image must be enough.
	good := agentConfig(t, dir)
	out, errOut, code = runTether(t, dir, 2*time.Minute, "exec", "-f", good, "-n", ns, "-t", "deployment/web", "--progress", "plain", "--", "printenv", "MARKER")
	if code != 0 || out != "badimage\n" {
		t.Errorf("after fixing agent.image: exit %d, stdout %q, want \"badimage\\n\"\nstderr:\n%s", code, out, errOut)
	}
}
