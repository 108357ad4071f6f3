package e2e

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tether-dev/tether/internal/netns"
)

// untilStopped is a command that runs the shell script body, prints
// "ready", waits until the file stop exists, then prints "done".
func untilStopped(body, stop string) []string {
	return []string{"sh", "-c", body + "\necho ready\nwhile [ ! -e " + stop + " ]; do sleep 0.2; done\necho done"}
}

// stopSession creates the stop file of an untilStopped command and waits
// until tether exits with 0.
func stopSession(t *testing.T, p *tetherProc, stop string) {
	t.Helper()
	touch(t, stop)
	waitExit(t, p, 30*time.Second)
	if code := p.cmd.ProcessState.ExitCode(); code != 0 || !strings.HasSuffix(p.Stdout(), "done\n") {
		t.Fatalf("tether exited %d after its command ended, want 0\nstdout:\n%s\nstderr:\n%s", code, p.Stdout(), p.Stderr())
	}
}

// targetScript reads the target's environment, file, hostname and loopback
// (outgoing.ignore_localhost is false: 127.0.0.1 is the pod's).
const targetScript = `printenv MARKER
cat /app/marker.txt; echo
hostname
curl -sS -m 10 http://127.0.0.1:8080/1.2.3.4`

// checkTargetOutput checks what targetScript printed.
func checkTargetOutput(t *testing.T, p *tetherProc, ns string, pod *corev1.Pod) {
	t.Helper()
	want := "spawn\nfile of " + ns + "/web\n" + pod.Name + "\n1.2.3.4: public internet\nready\n"
	p.waitStdout(t, "ready\n", 3*time.Minute)
	if got := p.Stdout(); got != want {
		t.Fatalf("through the agent, the command printed:\n%s\nwant (the pod's env, file, hostname and loopback):\n%s\nstderr:\n%s", got, want, p.Stderr())
	}
}

// TestSpawnModes checks each way of running the agent: a Job on the
// target's node with hostPID (the default), an ephemeral container in the
// target pod (--ephemeral, numbered anew each time since ephemeral
// containers cannot be removed), and a Job of its own (targetless).
func TestSpawnModes(t *testing.T) {
	requireE2E(t)
	ns := newNamespace(t, "e2e-spawn", nil)
	apply(t, []byte(deploymentYAML(ns, "web", "spawn", true)))
	waitDeployments(t, ns, 2*time.Minute)
	target := onePod(t, ns, "app=web")
	dir := t.TempDir()
	cfg := agentConfig(t, dir, "outgoing:\n  ignore_localhost: false")
	args := []string{"exec", "-f", cfg, "-n", ns, "-t", "deployment/web", "--progress", "plain"}

	t.Run("job", func(t *testing.T) {
		stop := filepath.Join(dir, "stop-job")
		p := startTether(t, dir, append(append([]string{}, args...), append([]string{"--"}, untilStopped(targetScript, stop)...)...)...)
		checkTargetOutput(t, p, ns, target)
		a := runningAgentPods(t, ns, 1, 30*time.Second)[0]
		if !a.Spec.HostPID {
			t.Errorf("agent pod %s has no hostPID", a.Name)
		}
		if a.Spec.NodeName != target.Spec.NodeName {
			t.Errorf("agent pod %s runs on node %q, the target on %q", a.Name, a.Spec.NodeName, target.Spec.NodeName)
		}
		if got := a.Labels["tether.dev/target-uid"]; got != string(target.UID) {
			t.Errorf("agent pod %s: label tether.dev/target-uid=%q, want the target pod's UID %s", a.Name, got, target.UID)
		}
		if len(a.OwnerReferences) != 1 || a.OwnerReferences[0].Kind != "Job" || !strings.HasPrefix(a.OwnerReferences[0].Name, "tether-agent-") {
			t.Errorf("agent pod %s is owned by %v, want a Job tether-agent-*", a.Name, a.OwnerReferences)
		}
		if !strings.Contains(p.Stderr(), "agent pod "+ns+"/"+a.Name) {
			t.Errorf("the session does not say it uses agent pod %s:\n%s", a.Name, p.Stderr())
		}
		if pod := getPod(t, ns, target.Name); len(pod.Spec.EphemeralContainers) != 0 {
			t.Errorf("the default mode added ephemeral containers to the target: %v", pod.Spec.EphemeralContainers)
		}
		checkAgentSecurity(t, ns, &a, "file of "+ns+"/web")
		stopSession(t, p, stop)
		noLeftovers(t, ns, time.Minute)
	})

	t.Run("ephemeral", func(t *testing.T) {
		for n, name := range []string{"tether-agent-1", "tether-agent-2"} {
			stop := filepath.Join(dir, "stop-"+name)
			p := startTether(t, dir, append(append([]string{}, args...), append([]string{"--ephemeral", "--"}, untilStopped(targetScript, stop)...)...)...)
			checkTargetOutput(t, p, ns, target)
			if jobs, pods := agentJobs(t, ns), agentPods(t, ns); len(jobs)+len(pods) != 0 {
				t.Errorf("--ephemeral created agent jobs %v and pods %v", jobs, podNames(pods))
			}
			pod := getPod(t, ns, target.Name)
			var names []string
			for _, ec := range pod.Spec.EphemeralContainers {
				names = append(names, ec.Name)
				if ec.Name == name && ec.TargetContainerName != "app" {
					t.Errorf("ephemeral container %s targets container %q, want app", name, ec.TargetContainerName)
				}
			}
			if want := []string{"tether-agent-1", "tether-agent-2"}[:n+1]; !slices.Equal(names, want) {
				t.Fatalf("session %d: the target pod's ephemeral containers are %v, want %v", n+1, names, want)
			}
			if running := runningEphemeral(t, ns); !slices.Equal(running, []string{target.Name + "/" + name}) {
				t.Errorf("running ephemeral agents %v, want only %s/%s", running, target.Name, name)
			}
			if !strings.Contains(p.Stderr(), "added ephemeral container "+name+" to pod "+target.Name) {
				t.Errorf("stderr does not say that %s was added:\n%s", name, p.Stderr())
			}
			stopSession(t, p, stop)
			// The agent exits after its linger (2s).
			noRunningEphemeral(t, ns, 30*time.Second)
		}
	})

	t.Run("ephemeral_concurrent", func(t *testing.T) {
		// Two sessions started together share one new ephemeral agent.
		var ps []*tetherProc
		var stops []string
		for i := range 2 {
			stop := filepath.Join(dir, "stop-concurrent-"+string(rune('a'+i)))
			stops = append(stops, stop)
			ps = append(ps, startTether(t, dir, append(append([]string{}, args...), append([]string{"--ephemeral", "--"}, untilStopped(targetScript, stop)...)...)...))
		}
		for _, p := range ps {
			checkTargetOutput(t, p, ns, target)
		}
		if running := runningEphemeral(t, ns); len(running) != 1 {
			t.Errorf("running ephemeral agents %v, want one for both sessions", running)
		}
		for i, p := range ps {
			stopSession(t, p, stops[i])
		}
		noRunningEphemeral(t, ns, 30*time.Second)
	})

	t.Run("targetless", func(t *testing.T) {
		stop := filepath.Join(dir, "stop-targetless")
		p := startTether(t, dir, append([]string{"exec", "-f", cfg, "-n", ns, "-t", "targetless", "--progress", "plain", "--"},
			untilStopped("getent hosts web >/dev/null && echo resolved", stop)...)...)
		p.waitStdout(t, "resolved\nready\n", 3*time.Minute)
		a := runningAgentPods(t, ns, 1, 30*time.Second)[0]
		if a.Spec.HostPID {
			t.Errorf("targetless agent pod %s has hostPID", a.Name)
		}
		if uid, ok := a.Labels["tether.dev/target-uid"]; ok {
			t.Errorf("targetless agent pod %s has a target (tether.dev/target-uid=%s)", a.Name, uid)
		}
		if len(a.OwnerReferences) != 1 || a.OwnerReferences[0].Kind != "Job" {
			t.Errorf("targetless agent pod %s is owned by %v, want a Job", a.Name, a.OwnerReferences)
		}
		if !slices.Contains(a.Spec.Containers[0].Args, "--target-self") {
			t.Errorf("targetless agent args %v, want --target-self", a.Spec.Containers[0].Args)
		}
		stopSession(t, p, stop)
		noLeftovers(t, ns, time.Minute)
	})
}

func getPod(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	p, err := client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkAgentSecurity checks a running Job agent: it keeps only the
// capabilities it uses, its listener answers only inside its own pod (the
// port-forward's way in), not from this node nor from the target's
// network, and its logs hold neither its token nor secret, a file's
// content it served.
func checkAgentSecurity(t *testing.T, ns string, a *corev1.Pod, secret string) {
	t.Helper()
	c := a.Spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		!slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_ADMIN", "NET_RAW", "SYS_ADMIN", "SYS_PTRACE"}) {
		t.Errorf("agent capabilities %+v, want drop ALL, add NET_ADMIN SYS_ADMIN SYS_PTRACE", sc)
	}
	if sc != nil && (sc.Privileged != nil && *sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation) {
		t.Errorf("agent security context %+v: want not privileged, no privilege escalation", sc)
	}
	addr := net.JoinHostPort(a.Status.PodIP, "7077")
	if conn, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
		conn.Close()
		t.Errorf("the agent's listener answers at %s from the node: it must listen on its pod's loopback only", addr)
	}
	target := onePod(t, ns, "app=web")
	err := netns.Do(fmt.Sprintf("/proc/%d/ns/net", containerPID(t, target, "app")), unix.CLONE_NEWNET, func() error {
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			conn.Close()
			return fmt.Errorf("the agent's listener answers at %s from the target pod", addr)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	logs, err := client.CoreV1().Pods(ns).GetLogs(a.Name, &corev1.PodLogOptions{}).DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	token := ""
	for _, e := range c.Env {
		if e.Name == "TETHER_AGENT_TOKEN" {
			token = e.Value
		}
	}
	if token == "" {
		t.Errorf("the agent has no token in its environment")
	}
	for what, s := range map[string]string{"its token": token, "a served file's content": secret} {
		if s != "" && strings.Contains(string(logs), s) {
			t.Errorf("the agent's logs print %s:\n%s", what, logs)
		}
	}
}
