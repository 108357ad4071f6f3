package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestAPIServerRestart: the local cluster's kube-apiserver restarts
// (hack/cluster/restart-apiserver.sh: SIGTERM, SIGKILL after 15 s, the same
// command line again), twice, during two sessions that steal filtered
// requests of one target pod: one with a workload target
// (deployment/web), one with a pod target (pod/NAME, which also watches
// its pod through the API server), with unmatched requests sent to the
// target's Service before, during and after each restart. For tether each
// restart is a tunnel drop: both sessions must resume (the agent keeps
// them for agent.session_grace, 60 s by default) with the same agent,
// their filtered requests must reach their local programs again, tether
// must not exit, and nothing may be left when the sessions end. Unmatched
// requests must not fail at all: they go from the client through
// kube-proxy's rules to the pod and its agent, never through the API
// server. The second restart is a later outage in the same sessions,
// after one that was survived.
func TestAPIServerRestart(t *testing.T) {
	// Two: what a first outage leaves behind (a dial failing since then,
	// say) must not change how tether takes the next one.
	const restarts = 2
	requireE2E(t)
	if kubeconfig != defaultKubeconfig {
		t.Skipf("restarting the API server needs the local cluster of hack/cluster; TETHER_E2E_KUBECONFIG is %s", kubeconfig)
	}
	script := filepath.Join(root, "hack", "cluster", "restart-apiserver.sh")
	if err := clusterHealth(); err != nil {
		t.Fatalf("the cluster is not healthy before the API server restart: %v", err)
	}
	systemRestarts := kubeSystemRestarts(t)

	ns := newNamespace(t, "e2e-apiserver", nil)
	// Registered after newNamespace, so that it runs before the namespace
	// is deleted: the API server must be back for that too, and every
	// later test needs a healthy cluster.
	t.Cleanup(func() { waitClusterHealthy(t, systemRestarts) })
	apply(t, []byte(deploymentYAML(ns, "web", "apiserver", false)))
	waitDeployments(t, ns, 2*time.Minute)
	url := serviceURL(t, ns, "web") + "/10.1.2.3"
	const remote = "private network (cluster)"
	target := waitPodsReady(t, ns, "app=web", 1, 2*time.Minute)[0]

	// start runs a session on spec with the local server on localPort
	// (standing for the target's 8080) stealing the requests of user, and
	// waits until it steals. The default session_grace (60 s): the
	// restart must fit in it.
	start := func(spec, user string, localPort int) *apiSession {
		t.Helper()
		dir := t.TempDir()
		cfg := agentConfig(t, dir, fmt.Sprintf(`incoming:
  mode: steal
  port_mapping: [[%d, 8080]]
  http_filter:
    header_filter: "^x-tether-user: %s$"`, localPort, user))
		p := startTetherEnv(t, dir, []string{fmt.Sprintf("%s=%d", localServerEnv, localPort)}, "exec", "-f", cfg, "-n", ns, "-t", spec, "--progress", "plain", "--", os.Args[0])
		p.waitStderr(t, "traffic to the target's port 8080 is stolen", 3*time.Minute)
		waitAnswer(t, url, user, "local", 30*time.Second, p)
		id := sessionIDOf(p.Stderr())
		if id == "" {
			t.Fatalf("tether -t %s did not say its session's ID:\n%s", spec, p.Stderr())
		}
		return &apiSession{name: spec, user: user, p: p, id: id}
	}
	sessions := []*apiSession{
		start("deployment/web", "apiserver", 8080),
		start("pod/"+target.Name, "apiserver-pod", 8081),
	}
	agents := runningAgentPods(t, ns, 1, 30*time.Second) // one, shared by both sessions
	followLogs(t, ns, agents[0].Name)

	l := startLoad(t, url, remote)
	time.Sleep(2 * time.Second)
	for i := 1; i <= restarts; i++ {
		restartAPIServer(t, i, sessions, l, script)
		if cur := agentPods(t, ns); len(cur) != 1 || cur[0].Name != agents[0].Name {
			t.Errorf("agent pods %v after restart %d, want the same one (%s)", podNames(cur), i, agents[0].Name)
		}
	}
	for _, s := range sessions {
		s.p.stop(t)
	}
	res := l.result()
	t.Logf("unmatched load: %v", res)

	// No baseline allowance, not even that of a steady load without
	// tether (res.exceeding(steady)): unmatched requests never touch the
	// API server, so a restart of it gives them no reason to fail, and the
	// failures a noisy steady baseline happened to show would only hide
	// real ones. Every failure of any kind, in any phase, fails the test.
	for _, phase := range res.phases {
		c := res.counts[phase]
		if c.sent == 0 {
			t.Errorf("phase %s: no unmatched requests sent (load: %v)", phase, res)
			continue
		}
		if n := c.failed(); n > 0 {
			t.Errorf("phase %s: %d of %d unmatched requests failed (%v); first failures: %v", phase, n, c.sent, c.byKind, c.samples)
		}
	}

	left := leftovers(t, ns, 90*time.Second)
	left = append(left, runningEphemeral(t, ns)...)
	left = append(left, netfilterLeftovers(t, containerPID(t, &waitPodsReady(t, ns, "app=web", 1, 2*time.Minute)[0], "app"))...)
	if len(left) > 0 {
		t.Errorf("left behind after the sessions: %v", left)
	}
}

// apiSession is one tether exec of TestAPIServerRestart.
type apiSession struct {
	name, user string // the target, the filter header's value
	p          *tetherProc
	id         string // the session's ID at the start
}

// restartAPIServer restarts the API server with script (restart n) while
// the load l runs (in phase "during n" until every session steals again,
// then "after n", 3 s) and checks that for each session it was a tunnel
// drop: the same session resumed, filtered requests answered locally
// again, tether still running.
func restartAPIServer(t *testing.T, n int, sessions []*apiSession, l *load, script string) {
	t.Helper()
	const lost, resumed = "the connection to the agent was lost", "resumed"
	// What tether says from here on is about this restart.
	marks := make([]int, len(sessions))
	seen := make([]func() map[string]time.Time, len(sessions))
	for i, s := range sessions {
		marks[i] = len(s.p.Stderr())
		seen[i] = watchStderr(s.p, func() string { return s.p.Stderr()[marks[i]:] }, lost, resumed)
		defer seen[i]()
	}
	l.setPhase(fmt.Sprintf("during %d", n))
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, script)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("restart %d: %s: %v\n%s%s", n, script, err, out.String(), errOut.String())
	}
	ready := time.Now() // the script ends when /readyz answers
	t.Logf("restart %d: %s:\n%s%s", n, filepath.Base(script), errOut.String(), out.String())
	m := regexp.MustCompile(`unavailable for ([0-9.]+)s`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("%s did not say how long the API server was unavailable:\n%s", script, out.String())
	}
	downtime, err := time.ParseDuration(m[1] + "s")
	if err != nil {
		t.Fatalf("downtime %q: %v", m[1], err)
	}
	stealing := make([]time.Duration, len(sessions))
	for i, s := range sessions {
		s.p.waitStderr(t, resumed, 2*time.Minute)
		waitAnswer(t, l.url, s.user, "local", 30*time.Second, s.p)
		stealing[i] = time.Since(began)
	}
	l.setPhase(fmt.Sprintf("after %d", n))
	time.Sleep(3 * time.Second)

	t.Logf("restart %d: API server unavailable for %v (restart began to /readyz %v as seen by the test)", n, downtime, ready.Sub(began).Round(time.Millisecond))
	for i, s := range sessions {
		select {
		case <-s.p.done:
			t.Fatalf("restart %d: tether -t %s exited (%v) after the API server restart\nstderr:\n%s", n, s.name, s.p.cmd.ProcessState, s.p.Stderr())
		default:
		}
		said := s.p.Stderr()[marks[i]:]
		if !strings.Contains(said, lost) || !strings.Contains(said, "session "+s.id+" resumed") {
			t.Errorf("restart %d: for tether -t %s the API server restart was not a tunnel drop with session %s resumed (what it said is logged below)", n, s.name, s.id)
		}
		// A new session (the agent's or tether's state lost), a replaced
		// agent or target, an ended or given-up session are all failures.
		for _, bad := range []string{"as a new session", "subscribing the program's ports again", "replacing it", "re-attaching", "could not reconnect", "starting a new agent", "the session ends"} {
			if strings.Contains(said, bad) {
				t.Errorf("restart %d: tether -t %s said %q (what it said is logged below)", n, s.name, bad)
			}
		}
		at := seen[i]()
		var timing []string
		if d, ok := at[lost]; ok {
			timing = append(timing, fmt.Sprintf("saw the tunnel drop %v after the restart began", d.Sub(began).Round(time.Millisecond)))
		}
		if d, ok := at[resumed]; ok {
			timing = append(timing, fmt.Sprintf("resumed %v after the restart began (%v after /readyz answered)", d.Sub(began).Round(time.Millisecond), d.Sub(ready).Round(time.Millisecond)))
		}
		timing = append(timing, fmt.Sprintf("its filtered requests answered locally again %v after the restart began", stealing[i].Round(time.Millisecond)))
		t.Logf("restart %d: tether -t %s %s; it said:\n%s", n, s.name, strings.Join(timing, ", "), strings.TrimSpace(said))
	}
}

// sessionIDOf is the session ID in tether's "session ID · ..." summary
// line ("" if there is none).
func sessionIDOf(stderr string) string {
	m := regexp.MustCompile(`session (\S+) · `).FindStringSubmatch(stderr)
	if m == nil {
		return ""
	}
	return m[1]
}

// watchStderr notes when each of the strings first appears in text() (a
// part of p's stderr) until p exits or the returned function is called,
// which returns the times seen.
func watchStderr(p *tetherProc, text func() string, strs ...string) func() map[string]time.Time {
	var mu sync.Mutex
	at := map[string]time.Time{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			s := text()
			now := time.Now()
			mu.Lock()
			for _, want := range strs {
				if _, ok := at[want]; !ok && strings.Contains(s, want) {
					at[want] = now
				}
			}
			n := len(at)
			mu.Unlock()
			if n == len(strs) {
				return
			}
			select {
			case <-stop:
				return
			case <-p.done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	var once sync.Once
	return func() map[string]time.Time {
		once.Do(func() { close(stop) })
		<-done
		mu.Lock()
		defer mu.Unlock()
		return at
	}
}

// kubeSystemRestarts is the restart count of every container in
// kube-system, by pod/container.
func kubeSystemRestarts(t *testing.T) map[string]int32 {
	t.Helper()
	pods, err := client.CoreV1().Pods("kube-system").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing the kube-system pods: %v", err)
	}
	out := map[string]int32{}
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			out[p.Name+"/"+cs.Name] = cs.RestartCount
		}
	}
	return out
}

// clusterHealth is nil when the local cluster is healthy: every daemon
// running, the API server ready, the node Ready and CoreDNS Available
// (hack/cluster/status.sh), and every kube-system pod running and ready.
func clusterHealth() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, filepath.Join(root, "hack", "cluster", "status.sh")).CombinedOutput(); err != nil {
		return fmt.Errorf("hack/cluster/status.sh: %w\n%s", err, out)
	}
	pods, err := client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing the kube-system pods: %w", err)
	}
	if len(pods.Items) == 0 {
		return fmt.Errorf("no pods in kube-system")
	}
	var bad []string
	for i := range pods.Items {
		if !isReady(&pods.Items[i]) {
			bad = append(bad, pods.Items[i].Name+" ("+string(pods.Items[i].Status.Phase)+")")
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("kube-system pods not ready: %v", bad)
	}
	return nil
}

// waitClusterHealthy waits until the cluster is healthy again after the
// API server restart (restarts: the kube-system restart counts before).
// If it is not within 2 minutes (the script failed half-way, say), it runs
// hack/cluster/up.sh, which starts whatever is not running, and waits
// again.
func waitClusterHealthy(t *testing.T, restarts map[string]int32) {
	t.Helper()
	start := time.Now()
	wait := func(timeout time.Duration) error {
		deadline := time.Now().Add(timeout)
		for {
			err := clusterHealth()
			if err == nil || time.Now().After(deadline) {
				return err
			}
			time.Sleep(time.Second)
		}
	}
	err := wait(2 * time.Minute)
	if err != nil {
		t.Errorf("the cluster is not healthy 2 minutes after the API server restart (%v); running hack/cluster/up.sh", err)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		out, uerr := exec.CommandContext(ctx, filepath.Join(root, "hack", "cluster", "up.sh")).CombinedOutput()
		if uerr != nil {
			t.Errorf("hack/cluster/up.sh: %v\n%s", uerr, out)
		}
		if err = wait(2 * time.Minute); err != nil {
			t.Errorf("the cluster is still not healthy after hack/cluster/up.sh: %v", err)
			return
		}
	}
	for c, n := range kubeSystemRestarts(t) {
		if n > restarts[c] {
			t.Logf("kube-system container %s restarted %d times during the test (ready again)", c, n-restarts[c])
		}
	}
	t.Logf("cluster healthy (node Ready, kube-system pods ready) %v after the test", time.Since(start).Round(100*time.Millisecond))
}
