package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestSharedAgent: two sessions started at the same moment on the same
// target use one agent pod (one creates it, the other shares it); the agent
// stays while one session remains (well past its linger), a third session
// shares it too, and once all have ended it exits and its Job is removed.
func TestSharedAgent(t *testing.T) {
	requireE2E(t)
	ns := newNamespace(t, "e2e-share", nil)
	apply(t, []byte(deploymentYAML(ns, "web", "shared", true)))
	waitDeployments(t, ns, 2*time.Minute)
	dir := t.TempDir()
	cfg := agentConfig(t, dir)
	args := []string{"exec", "-f", cfg, "-n", ns, "-t", "deployment/web", "--progress", "plain", "--"}

	// Each session reads the pod's env and file, waits for the file
	// /tmp/<dir>/stop-N, then reads them again: the agent must still serve it.
	script := func(n string) []string {
		return append(append([]string{}, args...), "sh", "-c",
			`printenv MARKER; cat /app/marker.txt; echo; while [ ! -e `+dir+`/stop-`+n+` ]; do sleep 0.2; done; printenv MARKER; cat /app/marker.txt; echo; echo done-`+n)
	}
	p1 := startTether(t, dir, script("1")...)
	p2 := startTether(t, dir, script("2")...)
	for _, p := range []*tetherProc{p1, p2} {
		p.waitStdout(t, "shared\nfile of "+ns+"/web\n", 3*time.Minute)
	}
	pods := agentPods(t, ns)
	if len(pods) != 1 {
		t.Fatalf("%d agent pods for two sessions on one target, want 1: %v", len(pods), podNames(pods))
	}
	agent := pods[0].Name
	if jobs := agentJobs(t, ns); len(jobs) != 1 {
		t.Fatalf("agent jobs %v, want one", jobs)
	}
	created, shared := 0, 0
	for _, p := range []*tetherProc{p1, p2} {
		if !strings.Contains(p.Stderr(), agent) {
			t.Errorf("a session does not use agent pod %s:\n%s", agent, p.Stderr())
		}
		if strings.Contains(p.Stderr(), "(new)") || strings.Contains(p.Stderr(), "(new, starting)") {
			created++
		}
		if strings.Contains(p.Stderr(), "(shared with other sessions)") {
			shared++
		}
	}
	if created != 1 || shared != 1 {
		t.Errorf("%d sessions created the agent and %d shared it, want 1 and 1\nfirst:\n%s\nsecond:\n%s", created, shared, p1.Stderr(), p2.Stderr())
	}

	// The first session ends; the agent outlives its linger (2s) for the second.
	touch(t, dir+"/stop-1")
	p1.waitStdout(t, "done-1", time.Minute)
	waitExit(t, p1, 30*time.Second)
	time.Sleep(5 * time.Second)
	if pods := agentPods(t, ns); len(pods) != 1 || pods[0].Name != agent || pods[0].Status.Phase != corev1.PodRunning {
		t.Fatalf("5s after the first session ended (linger 2s), with the second still running, the agent pods are %v, want %s running", podNames(pods), agent)
	}
	out, errOut, code := runTether(t, dir, time.Minute, append(append([]string{}, args...), "printenv", "MARKER")...)
	if code != 0 || out != "shared\n" || !strings.Contains(errOut, agent+" (shared with other sessions)") {
		t.Fatalf("a third session: exit %d, stdout %q, want the shared agent %s\nstderr:\n%s", code, out, agent, errOut)
	}
	touch(t, dir+"/stop-2")
	p2.waitStdout(t, "shared\nfile of "+ns+"/web\ndone-2", time.Minute)
	waitExit(t, p2, 30*time.Second)
	if p1.cmd.ProcessState.ExitCode() != 0 || p2.cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("exit codes %d and %d, want 0\nfirst:\n%s\nsecond:\n%s", p1.cmd.ProcessState.ExitCode(), p2.cmd.ProcessState.ExitCode(), p1.Stderr(), p2.Stderr())
	}
	// Linger 2s, then the Job's ttlSecondsAfterFinished (5s).
	noLeftovers(t, ns, 60*time.Second)
}

// TestAgentRestartAfterLinger: a session started while the previous
// session's agent lingers shares it and keeps it alive; sessions started
// while that agent is exiting, or after it has exited but before its Job is
// garbage-collected, get a new agent.
func TestAgentRestartAfterLinger(t *testing.T) {
	requireE2E(t)
	ns := newNamespace(t, "e2e-relinger", nil)
	apply(t, []byte(deploymentYAML(ns, "web", "relinger", true)))
	waitDeployments(t, ns, 2*time.Minute)
	dir := t.TempDir()
	cfg := agentConfig(t, dir)
	args := []string{"exec", "-f", cfg, "-n", ns, "-t", "deployment/web", "--progress", "plain", "--"}
	// first runs a session and returns once it has ended (its agent
	// lingers then); it starts from a namespace without agents.
	first := func(t *testing.T) {
		t.Helper()
		noLeftovers(t, ns, time.Minute)
		out, errOut, code := runTether(t, dir, 2*time.Minute, append(append([]string{}, args...), "printenv", "MARKER")...)
		if code != 0 || out != "relinger\n" {
			t.Fatalf("first session: exit %d, stdout %q\nstderr:\n%s", code, out, errOut)
		}
	}

	t.Run("during_linger", func(t *testing.T) {
		first(t)
		// Within the agent's linger (2s): share it; it must not exit
		// under this session when the linger would have run out.
		out, errOut, code := runTether(t, dir, 2*time.Minute, append(append([]string{}, args...), "sh", "-c", "printenv MARKER; sleep 5; cat /app/marker.txt")...)
		if code != 0 || out != "relinger\nfile of "+ns+"/web" {
			t.Fatalf("a session started during the linger and lasting past it: exit %d, stdout %q\nstderr:\n%s", code, out, errOut)
		}
		noLeftovers(t, ns, time.Minute)
	})

	t.Run("agent_exiting", func(t *testing.T) {
		first(t)
		// The agent's container has exited (linger over), but its Job is
		// not necessarily marked finished yet.
		job := waitAgentState(t, ns, func(j *batchv1.Job, p *corev1.Pod) bool {
			return p != nil && len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].State.Terminated != nil
		})
		t.Logf("agent exited; its job finished: %v", jobDone(job))
		out, errOut, code := runTether(t, dir, 2*time.Minute, append(append([]string{}, args...), "printenv", "MARKER")...)
		if code != 0 || out != "relinger\n" {
			t.Fatalf("a session started once the previous agent has exited: exit %d, stdout %q, want a new agent\nstderr:\n%s", code, out, errOut)
		}
		noLeftovers(t, ns, time.Minute)
	})

	t.Run("job_finished", func(t *testing.T) {
		first(t)
		// The agent's Job is complete and waits for its TTL (5s).
		var old string
		waitAgentState(t, ns, func(j *batchv1.Job, p *corev1.Pod) bool {
			if p != nil {
				old = p.Name
			}
			return jobDone(j)
		})
		// Hold the old agent's pod (as a slow garbage collector or node
		// would): it keeps its job-name label after its Job is replaced.
		hold(t, ns, old)
		out, errOut, code := runTether(t, dir, 2*time.Minute, append(append([]string{}, args...), "printenv", "MARKER")...)
		release(t, ns, old)
		if code != 0 || out != "relinger\n" {
			t.Fatalf("a session started after the previous agent's Job (pod %s) completed: exit %d, stdout %q, want a new agent\nstderr:\n%s", old, code, out, errOut)
		}
		noLeftovers(t, ns, time.Minute)
	})
}

// waitAgentState polls the only agent Job of ns (and its newest pod) until
// cond holds, and returns the Job.
func waitAgentState(t *testing.T, ns string, cond func(*batchv1.Job, *corev1.Pod) bool) *batchv1.Job {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(time.Minute)
	for {
		jobs, err := client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: agentSelector})
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs.Items) == 1 {
			j := &jobs.Items[0]
			pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/controller-uid=" + string(j.UID)})
			if err != nil {
				t.Fatal(err)
			}
			var p *corev1.Pod
			if len(pods.Items) > 0 {
				p = &pods.Items[0]
			}
			if cond(j, p) {
				return j
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent of %s did not reach the expected state within a minute (jobs: %v)", ns, agentJobs(t, ns))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func jobDone(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func podNames(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name+" ("+string(p.Status.Phase)+")")
	}
	return out
}

// waitExit waits until tether has exited by itself.
func waitExit(t *testing.T, p *tetherProc, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("tether did not exit within %v after its command ended\nstderr:\n%s", timeout, p.Stderr())
	}
}

// holdFinalizer keeps a pod from being deleted until the test releases it.
const holdFinalizer = "e2e.tether.dev/hold"

// hold adds holdFinalizer to pod ns/name (released at the latest when the
// test ends).
func hold(t *testing.T, ns, name string) {
	t.Helper()
	patch := []byte(`{"metadata":{"finalizers":["` + holdFinalizer + `"]}}`)
	if _, err := client.CoreV1().Pods(ns).Patch(context.Background(), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("holding pod %s: %v", name, err)
	}
	t.Cleanup(func() { release(t, ns, name) })
}

// release removes holdFinalizer from pod ns/name.
func release(t *testing.T, ns, name string) {
	t.Helper()
	patch := []byte(`{"metadata":{"finalizers":null}}`)
	_, err := client.CoreV1().Pods(ns).Patch(context.Background(), name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("releasing pod %s: %v", name, err)
	}
}
