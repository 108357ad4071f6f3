package e2e

import (
	"strings"
	"testing"
	"time"
)

// The user errors that need a cluster are the rows of TestCatalogue
// (catalogue_test.go); the tests here provoke the agent's own start-up
// errors, which need more than one run each.

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
