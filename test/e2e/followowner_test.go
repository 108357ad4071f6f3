package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tether-dev/tether/internal/cli"
)

// podGoneTiming is when, after its target pod's deletion, a session said
// so and exited, and when the API server stopped showing the pod.
type podGoneTiming struct {
	said, exited, apiGone time.Duration
}

// deleteAndWaitExit deletes pod ns/name under the session p and waits
// until tether has said msg and exited. The bound is measured here: the
// time from the delete until the API server no longer has the pod, plus
// the session's own detection interval (cli.PodWatchRetryMax: its watch
// sees the deletion at once; were the watch broken at that moment, it
// reads the pod again within that). A session that retries instead (the
// old behaviour: about 2 minutes) fails.
func deleteAndWaitExit(t *testing.T, p *tetherProc, ns, name, msg string) podGoneTiming {
	t.Helper()
	start := time.Now()
	if err := client.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting pod %s: %v", name, err)
	}
	apiGone := make(chan time.Duration, 1)
	go func() {
		for time.Since(start) < 3*time.Minute {
			_, err := client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				apiGone <- time.Since(start)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		apiGone <- -1
	}()
	var tm podGoneTiming
	deadline := start.Add(3 * time.Minute) // until the API server's own time is known
	for tm.exited == 0 {
		if tm.said == 0 && strings.Contains(p.Stderr(), msg) {
			tm.said = time.Since(start)
		}
		select {
		case <-p.done:
			tm.exited = time.Since(start)
			continue
		case d := <-apiGone:
			if d < 0 {
				t.Fatalf("pod %s is still in the API 3 minutes after its deletion", name)
			}
			tm.apiGone = d
			deadline = start.Add(d + cli.PodWatchRetryMax)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("tether still runs %v after the deletion of its target pod %s (the API server showed it gone after %v; the session checks within %v)\nstderr:\n%s",
				time.Since(start).Round(time.Millisecond), name, tm.apiGone.Round(time.Millisecond), cli.PodWatchRetryMax, p.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if tm.said == 0 && strings.Contains(p.Stderr(), msg) {
		tm.said = tm.exited
	}
	if tm.said == 0 {
		t.Errorf("tether exited without saying %q\nstderr:\n%s", msg, p.Stderr())
	}
	if tm.apiGone == 0 {
		tm.apiGone = <-apiGone
		if tm.apiGone < 0 {
			t.Fatalf("pod %s is still in the API 3 minutes after its deletion", name)
		}
		if limit := tm.apiGone + cli.PodWatchRetryMax; tm.exited > limit {
			t.Errorf("tether exited %v after the deletion, later than the API server's %v plus the session's detection interval %v", tm.exited, tm.apiGone, cli.PodWatchRetryMax)
		}
	}
	if code := p.cmd.ProcessState.ExitCode(); code != cli.ExitTargetGone {
		t.Errorf("tether exited with %d (%v), want %d\nstderr:\n%s", code, p.cmd.ProcessState, cli.ExitTargetGone, p.Stderr())
	}
	t.Logf("pod %s deleted: tether said so after %v and exited after %v; the API server showed the pod gone after %v (bound %v); tether's stderr:\n%s",
		name, tm.said.Round(time.Millisecond), tm.exited.Round(time.Millisecond), tm.apiGone.Round(time.Millisecond), (tm.apiGone + cli.PodWatchRetryMax).Round(time.Millisecond), p.Stderr())
	return tm
}

// nothingLeft checks that no agent pod or Job remains in ns (the agent
// ends with its target pod; its Job is removed 5 s after).
func nothingLeft(t *testing.T, ns string) {
	t.Helper()
	start := time.Now()
	if left := append(leftovers(t, ns, 90*time.Second), runningEphemeral(t, ns)...); len(left) > 0 {
		t.Errorf("left behind in %s: %v", ns, left)
		return
	}
	t.Logf("no agent pod or Job left, %v after the check began", time.Since(start).Round(100*time.Millisecond))
}

// TestFollowOwner: a pod target whose pod goes away. Without
// --follow-owner the session ends at once with exit code 69 and says
// what to do (a pod without an owner and a pod of a Deployment alike),
// its program stopped with SIGTERM; with --follow-owner a Deployment's
// pod is followed to the new pod and the program keeps getting its
// stolen requests; --follow-owner on a pod without an owner is refused
// before any agent starts. Nothing is left behind.
func TestFollowOwner(t *testing.T) {
	requireE2E(t)
	ns := newNamespace(t, "e2e-followowner", nil)
	apply(t, []byte(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: bare, namespace: %s, labels: {app: bare}}
spec:%s
---
%s`, ns, podSpec("Always", ipInfoContainer("app", "bare", 8080)), deploymentYAML(ns, "web", "follow", false))))
	waitDeployments(t, ns, 2*time.Minute)
	waitPodsReady(t, ns, "app=bare", 1, 2*time.Minute)
	url := serviceURL(t, ns, "web") + "/10.1.2.3"
	const remote = "private network (cluster)"
	dir := t.TempDir()
	plain := agentConfig(t, dir)
	stealDir := t.TempDir()
	steal := agentConfig(t, stealDir, `incoming:
  mode: steal
  http_filter:
    header_filter: "^x-tether-user: follow$"`)
	webPod := func(t *testing.T) string { return waitPodsReady(t, ns, "app=web", 1, 2*time.Minute)[0].Name }
	// stealing runs the local server under a session on target and waits
	// until the filtered requests reach it.
	stealing := func(t *testing.T, target string, extra ...string) *tetherProc {
		t.Helper()
		args := append([]string{"exec", "-f", steal, "-n", ns, "-t", target, "--progress", "plain"}, extra...)
		p := startTetherEnv(t, stealDir, []string{localServerEnv + "=8080"}, append(args, "--", os.Args[0])...)
		p.waitStderr(t, "traffic to the target's port 8080 is stolen", 3*time.Minute)
		waitAnswer(t, url, "follow", "local", 30*time.Second, p)
		return p
	}

	t.Run("bare_pod_follow_owner_refused", func(t *testing.T) {
		start := time.Now()
		_, errOut, code := runTether(t, dir, 2*time.Minute, "exec", "-f", plain, "-n", ns, "-t", "pod/bare", "--follow-owner", "--progress", "plain", "--", "true")
		if code != 2 {
			t.Errorf("exit code %d, want 2", code)
		}
		for _, s := range []string{"--follow-owner (follow_owner): pod " + ns + "/bare has no owner", "drop --follow-owner", "or target a workload"} {
			if !strings.Contains(errOut, s) {
				t.Errorf("stderr lacks %q:\n%s", s, errOut)
			}
		}
		if strings.Contains(errOut, "starting the agent") {
			t.Errorf("an agent was started before the refusal:\n%s", errOut)
		}
		if left := leftovers(t, ns, 0); len(left) > 0 {
			t.Errorf("agents after the refusal: %v", left)
		}
		t.Logf("refused after %v", time.Since(start).Round(time.Millisecond))
	})

	t.Run("bare_pod_deleted", func(t *testing.T) {
		// The program says how it was stopped: SIGTERM, as Ctrl-C or kill
		// would stop it, not killed with tether.
		p := startTether(t, dir, "exec", "-f", plain, "-n", ns, "-t", "pod/bare", "--progress", "plain", "--",
			"sh", "-c", `trap 'echo stopped-by-SIGTERM; exit 0' TERM; printenv MARKER; while :; do sleep 0.1; done`)
		p.waitStdout(t, "bare\n", 3*time.Minute)
		deleteAndWaitExit(t, p, ns, "bare", "the target pod "+ns+"/bare was deleted and it has no owner that replaces it: the session ends (exit code 69); run tether again with another target (tether ls -n "+ns+" lists them)")
		if !strings.Contains(p.Stdout(), "stopped-by-SIGTERM") {
			t.Errorf("the program was not stopped with SIGTERM; its output:\n%s\nstderr:\n%s", p.Stdout(), p.Stderr())
		}
		nothingLeft(t, ns)
	})

	t.Run("deployment_pod_without_follow_owner", func(t *testing.T) {
		old := webPod(t)
		p := stealing(t, "pod/"+old)
		deleteAndWaitExit(t, p, ns, old, "the target pod "+ns+"/"+old+" was deleted: the session ends (exit code 69) without following its replacement: target its owner (-t deployment/web) or pass --follow-owner")
		// The session is gone: its filtered requests reach the app again.
		waitAnswer(t, url, "follow", remote, 30*time.Second, p)
		nothingLeft(t, ns)
	})

	t.Run("deployment_pod_with_follow_owner", func(t *testing.T) {
		old := webPod(t)
		p := stealing(t, "pod/"+old, "--follow-owner")
		p.waitStderr(t, "when it goes, re-attaching to deployment/web", time.Second)
		start := time.Now()
		if err := client.CoreV1().Pods(ns).Delete(context.Background(), old, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		p.waitStderr(t, "the target pod "+old+" is gone; re-attaching to deployment/web: pod ", 2*time.Minute)
		reattached := time.Since(start)
		p.waitStderr(t, "subscribing the program's ports again", time.Minute)
		waitAnswer(t, url, "follow", "local", time.Minute, p)
		took := time.Since(start)
		cur := webPod(t)
		if cur == old {
			t.Fatalf("the pod %s was not replaced", old)
		}
		if !strings.Contains(p.Stderr(), "re-attaching to deployment/web: pod "+cur) {
			t.Errorf("tether did not re-attach to the new pod %s:\n%s", cur, p.Stderr())
		}
		select {
		case <-p.done:
			t.Fatalf("tether exited (%v) after following the owner\nstderr:\n%s", p.cmd.ProcessState, p.Stderr())
		default:
		}
		t.Logf("pod %s deleted: re-attached to %s after %v, stolen requests reach the program again after %v", old, cur, reattached.Round(100*time.Millisecond), took.Round(100*time.Millisecond))
		p.stop(t)
		nothingLeft(t, ns)
	})
}
