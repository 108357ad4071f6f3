package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tether-dev/tether/internal/cri"
)

// localServerEnv makes the test binary a tiny HTTP server (the developer's
// local app in the fault tests): it listens on the port in the variable and
// answers "local". Its /hold opens a connection to the address in
// holdAddrEnv (through tether: an outgoing connection of the program) and
// keeps it open; /held says whether and how it has ended.
const (
	localServerEnv = "TETHER_E2E_LOCAL_SERVER"
	holdAddrEnv    = "TETHER_E2E_HOLD_ADDR"
	localNameEnv   = "TETHER_E2E_LOCAL_NAME"
	// localLogEnv makes it print each request to / it gets ("local
	// server got GET /PATH"): a mirrored copy is seen there.
	localLogEnv = "TETHER_E2E_LOCAL_LOG"
)

// runLocalServer is called by TestMain when localServerEnv is set.
func runLocalServer(port string) {
	var mu sync.Mutex
	held := "none"
	http.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
		c, err := net.DialTimeout("tcp", os.Getenv(holdAddrEnv), 5*time.Second)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		mu.Lock()
		held = "open"
		mu.Unlock()
		go func() {
			start := time.Now()
			_, err := c.Read(make([]byte, 1)) // an idle HTTP connection: nothing comes
			mu.Lock()
			held = fmt.Sprintf("ended after %v at %s: %v", time.Since(start).Round(time.Millisecond), time.Now().Format(time.RFC3339Nano), err)
			mu.Unlock()
		}()
		io.WriteString(w, "holding\n")
	})
	http.HandleFunc("/held", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		io.WriteString(w, "local "+held+"\n")
	})
	// /podname is the target pod's /podinfo/name (a downward API file:
	// which pod the session's files come from).
	http.HandleFunc("/podname", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile("/podinfo/name")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		io.WriteString(w, "local pod "+string(b)+"\n")
	})
	// TETHER_E2E_LOCAL_NAME tells one user's local process from another's.
	name := ""
	if n := os.Getenv(localNameEnv); n != "" {
		name = " " + n
	}
	logRequests := os.Getenv(localLogEnv) != ""
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if logRequests {
			fmt.Printf("local server got %s %s\n", r.Method, r.URL.Path)
		}
		io.WriteString(w, "local"+name+"\n")
	})
	err := http.ListenAndServe(":"+port, nil)
	fmt.Fprintln(os.Stderr, "local server:", err)
	os.Exit(1)
}

// waitAnswer waits until a request with the filter header gets want.
func waitAnswer(t *testing.T, url, user, want string, timeout time.Duration, p *tetherProc) time.Duration {
	t.Helper()
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	var last string
	for time.Since(start) < timeout {
		body, err := get(c, url, user)
		if err == nil && strings.Contains(body, want) {
			return time.Since(start)
		}
		last = fmt.Sprintf("%q %v", body, err)
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no %q answer to x-tether-user: %s within %v (last: %s)\ntether's stderr:\n%s", want, user, timeout, last, p.Stderr())
	return 0
}

// containerPID finds the main process of a pod's container on this node
// (the local cluster's node is this machine).
func containerPID(t *testing.T, p *corev1.Pod, container string) int {
	t.Helper()
	for _, cs := range append(p.Status.ContainerStatuses, p.Status.EphemeralContainerStatuses...) {
		if cs.Name == container && cs.ContainerID != "" {
			pid, err := cri.FindPID("/proc", cs.ContainerID)
			if err != nil {
				t.Fatalf("finding container %s of pod %s: %v", container, p.Name, err)
			}
			return pid
		}
	}
	t.Fatalf("pod %s has no running container %s", p.Name, container)
	return 0
}

// netfilterLeftovers lists tether's nftables tables and policy routing
// rules in the network namespace of process pid.
func netfilterLeftovers(t *testing.T, pid int) []string {
	t.Helper()
	var left []string
	out, err := exec.Command("nsenter", "-t", fmt.Sprint(pid), "-n", "nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables in the target's namespace: %v\n%s", err, out)
	}
	for _, l := range lines(string(out)) {
		if strings.Contains(l, "tether-") {
			left = append(left, "nft: "+l)
		}
	}
	out, err = exec.Command("nsenter", "-t", fmt.Sprint(pid), "-n", "ip", "rule").CombinedOutput()
	if err != nil {
		t.Fatalf("ip rule in the target's namespace: %v\n%s", err, out)
	}
	for _, l := range lines(string(out)) {
		if strings.Contains(l, "0x7e7e") {
			left = append(left, "ip rule: "+l)
		}
	}
	return left
}

// killContainer SIGKILLs every process of the pod's container at once (as
// the OOM killer does with a container's memory.oom.group): the processes
// in the same cgroups as the container's main process. It returns when
// they have all died.
func killContainer(t *testing.T, p *corev1.Pod, container string) (signalled, dead time.Time) {
	t.Helper()
	main := containerPID(t, p, container)
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", main))
	if err != nil {
		t.Fatal(err)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	var pids []int
	for _, f := range procs {
		if b, err := os.ReadFile(f); err == nil && string(b) == string(cg) {
			var pid int
			fmt.Sscanf(f, "/proc/%d/cgroup", &pid)
			pids = append(pids, pid)
		}
	}
	if len(pids) < 2 {
		t.Fatalf("found %v in the agent container's cgroups, want its parent and worker", pids)
	}
	signalled = time.Now()
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	return signalled, deadAt(t, pids)
}

// deadAt waits until the processes pids have exited and returns the first
// moment all were seen so. A process has exited when every one of its
// threads has: the group leader shows as a zombie as soon as it exits
// itself, but the files (the listeners, the connections, the nftables
// sockets) stay open until its last thread is done. A killed process dies
// some moments after the signal: until then its listeners still complete
// handshakes (the kernel does it), and those connections are reset when
// it exits.
func deadAt(t *testing.T, pids []int) time.Time {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, pid := range pids {
		for !exited(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d still alive 30s after SIGKILL", pid)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return time.Now()
}

// exited reports whether all threads of process pid are gone or zombies.
func exited(pid int) bool {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/[0-9]*/stat", pid))
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		// The state follows the command's closing parenthesis.
		if i := bytes.LastIndexByte(b, ')'); err == nil && i >= 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X' {
			return false
		}
	}
	return true
}

// faultRow is one line of the fault table printed at the end.
type faultRow struct {
	fault, baseline    string
	res, base          loadResult
	recovery, leftover string
}

// TestFaults: faults during a session that steals filtered requests, with
// unmatched requests sent to the target's Service the whole time. Each
// fault is compared with the same fault without tether, measured in this
// run (a steady load with no fault for the faults only tether can have):
// no unmatched request may hang or get a wrong answer, and connection
// failures may occur in each phase (before the fault, during it until the
// session steals again or the app is back, after) only as the baseline's
// same phase allows (loadResult.exceeding: resets and EOFs at most as
// often, the app's own downtime only where it shows). The session
// must come back where that is possible, and nothing may be left behind:
// no agent pod or Job, no tether table or rule in the target's network
// namespace.
func TestFaults(t *testing.T) {
	requireE2E(t)
	ns := newNamespace(t, "e2e-faults", nil)
	apply(t, []byte(deploymentYAML(ns, "web", "faults", false)))
	waitDeployments(t, ns, 2*time.Minute)
	url := serviceURL(t, ns, "web") + "/10.1.2.3"
	const remote = "private network (cluster)"
	dir := t.TempDir()
	cfg := agentConfig(t, dir, "  session_grace: 5s", `incoming:
  mode: steal
  http_filter:
    header_filter: "^x-tether-user: fault$"`)
	var rows []faultRow
	t.Cleanup(func() { t.Log(faultTable(rows)) })

	// A failed fault test shows what the agents said.
	logsOnFailure := func(t *testing.T) {
		t.Cleanup(func() {
			if !t.Failed() {
				return
			}
			pods, _ := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: agentSelector})
			for _, p := range pods.Items {
				b, err := client.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(context.Background())
				t.Logf("logs of agent pod %s (%s): %v\n%s", p.Name, p.Status.Phase, err, b)
			}
		})
	}
	// start runs a session with the local server on the app's port and
	// waits until it steals.
	start := func(t *testing.T, cfg string) *tetherProc {
		t.Helper()
		logsOnFailure(t)
		hold := strings.TrimPrefix(serviceURL(t, ns, "web"), "http://")
		p := startTetherEnv(t, dir, []string{localServerEnv + "=8080", holdAddrEnv + "=" + hold}, "exec", "-f", cfg, "-n", ns, "-t", "deployment/web", "--progress", "plain", "--", os.Args[0])
		p.waitStderr(t, "traffic to the target's port 8080 is stolen", 3*time.Minute)
		waitAnswer(t, url, "fault", "local", 30*time.Second, p)
		return p
	}
	targetPod := func(t *testing.T) *corev1.Pod {
		return &waitPodsReady(t, ns, "app=web", 1, 2*time.Minute)[0]
	}
	agentPod := func(t *testing.T) *corev1.Pod {
		return &runningAgentPods(t, ns, 1, 30*time.Second)[0]
	}
	baselines := map[string]loadResult{}
	// finish stops the session, compares the load with the baseline
	// (none: a baseline itself) and checks that nothing is left.
	finish := func(t *testing.T, fault string, l *load, p *tetherProc, recovery, baseline string) {
		t.Helper()
		if p != nil {
			p.stop(t)
		}
		res := l.result()
		row := faultRow{fault: fault, baseline: baseline, res: res, recovery: recovery, leftover: "none"}
		if baseline == "" {
			baselines[fault] = res
		} else {
			base, ok := baselines[baseline]
			if !ok {
				t.Fatalf("no baseline %q measured before %s", baseline, fault)
			}
			row.base = base
			if bad := res.exceeding(base); len(bad) > 0 {
				t.Errorf("%s: unmatched requests failed beyond the baseline %q: %v\nload: %v\nbaseline: %v\nfirst failures: %v", fault, baseline, bad, res, base, res.samples())
			}
		}
		left := leftovers(t, ns, 90*time.Second)
		left = append(left, runningEphemeral(t, ns)...)
		left = append(left, netfilterLeftovers(t, containerPID(t, targetPod(t), "app"))...)
		if len(left) > 0 {
			row.leftover = strings.Join(left, "; ")
			t.Errorf("left behind after %s: %v", fault, left)
		}
		rows = append(rows, row)
		t.Logf("%s: %v", fault, res)
		if sent := res.sent(); sent < 50 {
			t.Errorf("the load generator sent only %d requests", sent)
		}
	}
	const steady = "no fault, no tether"

	t.Run("steady_without_tether", func(t *testing.T) {
		// The baseline of the faults that only tether can have: the same
		// load for as long, nothing done.
		l := startLoad(t, url, remote)
		time.Sleep(2 * time.Second)
		l.setPhase("during")
		time.Sleep(3 * time.Second)
		l.setPhase("after")
		time.Sleep(2 * time.Second)
		finish(t, steady, l, nil, "-", "")
	})

	t.Run("cli_sigkill", func(t *testing.T) {
		p := start(t, cfg)
		l := startLoad(t, url, remote)
		time.Sleep(2 * time.Second)
		l.setPhase("during")
		p.cmd.Process.Signal(syscall.SIGKILL)
		waitExit(t, p, 10*time.Second)
		// The session is detached: filtered requests go to the app now.
		waitAnswer(t, url, "fault", remote, 10*time.Second, p)
		l.setPhase("after")
		time.Sleep(2 * time.Second)
		finish(t, "tether exec SIGKILLed", l, nil, "ended; its requests go to the app", steady)
	})

	// underFault runs a session, breaks the pod victim returns with fault
	// while the load runs, and waits until tether has said said(old pod)
	// and subscribed again and filtered requests are answered locally
	// again. It returns the load, the session, the pod before the fault
	// and how long the recovery took.
	var current *load // the load of the fault under way, for died
	underFault := func(t *testing.T, victim func(*testing.T) *corev1.Pod, fault func(old *corev1.Pod), said func(old *corev1.Pod) string) (*load, *tetherProc, *corev1.Pod, time.Duration) {
		p := start(t, cfg)
		l := startLoad(t, url, remote)
		current = l
		time.Sleep(2 * time.Second)
		followLogs(t, ns, agentPod(t).Name)
		old := victim(t)
		l.setPhase("during")
		began := time.Now()
		fault(old)
		p.waitStderr(t, said(old), 2*time.Minute)
		// Its subscription again: made anew, or, when the Deployment's new
		// pod was ready first (a replica of the session), taken over.
		p.waitStderrAny(t, time.Minute, "subscribing the program's ports again", "took over the session that received that pod's traffic")
		waitAnswer(t, url, "fault", "local", time.Minute, p)
		took := time.Since(began)
		l.setPhase("after")
		time.Sleep(2 * time.Second)
		return l, p, old, took
	}
	resubscribed := func(*corev1.Pod) string { return "subscribing the program's ports again" }

	t.Run("agent_sigkill", func(t *testing.T) {
		l, p, _, took := underFault(t, agentPod, func(old *corev1.Pod) {
			// The requests it carried when it died die with it.
			current.died(killContainer(t, old, "agent"))
		}, resubscribed)
		finish(t, "agent SIGKILLed (all its processes)", l, p, fmt.Sprintf("new agent, stealing again after %v", took.Round(100*time.Millisecond)), steady)
	})

	t.Run("agent_pod_deleted", func(t *testing.T) {
		l, p, old, took := underFault(t, agentPod, func(old *corev1.Pod) {
			if err := client.CoreV1().Pods(ns).Delete(context.Background(), old.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}, resubscribed)
		if cur := agentPod(t); cur.Name == old.Name {
			t.Errorf("still agent pod %s after deleting it", old.Name)
		}
		finish(t, "agent pod deleted", l, p, fmt.Sprintf("new agent, stealing again after %v", took.Round(100*time.Millisecond)), steady)
	})

	t.Run("tunnel_cut", func(t *testing.T) {
		p := start(t, cfg)
		l := startLoad(t, url, remote)
		time.Sleep(2 * time.Second)
		// Destroy tether's TCP connections to the API server (the
		// port-forward's tunnel among them), as a network blip does.
		host := strings.TrimPrefix(strings.TrimPrefix(restCfg.Host, "https://"), "http://")
		_, port, err := net.SplitHostPort(host)
		if err != nil {
			t.Fatalf("API server address %q: %v", restCfg.Host, err)
		}
		// The program holds an outgoing connection to the Service.
		base := strings.TrimSuffix(url, "/10.1.2.3")
		waitAnswer(t, base+"/hold", "fault", "holding", 10*time.Second, p)
		waitAnswer(t, base+"/held", "fault", "local open", 10*time.Second, p)
		l.setPhase("during")
		fault := time.Now()
		cutTCP(t, p.cmd.Process.Pid, port)
		p.waitStderr(t, "resumed", 60*time.Second)
		waitAnswer(t, url, "fault", "local", 30*time.Second, p)
		took := time.Since(fault)
		l.setPhase("after")
		// That connection was in flight: it must have failed (cleanly, at
		// once), not hang; new connections work.
		waitAnswer(t, base+"/held", "fault", "local ended after", 10*time.Second, p)
		held, err := get(http.DefaultClient, base+"/held", "fault")
		if err != nil {
			t.Fatal(err)
		}
		_, at, _ := strings.Cut(strings.TrimSpace(held), " at ")
		at, _, _ = strings.Cut(at, ": ")
		if ended, err := time.Parse(time.RFC3339Nano, at); err != nil || ended.Before(fault) {
			t.Errorf("the program's connection ended before the cut (%s, cut at %s)", held, fault.Format(time.RFC3339Nano))
		} else if !strings.Contains(held, "connection reset by peer") {
			// An EOF would pass for the end of the data.
			t.Errorf("the program's connection in flight ended without a reset: %s", held)
		} else {
			t.Logf("the program's connection in flight ended %v after the cut: %s", ended.Sub(fault).Round(time.Millisecond), strings.TrimSpace(held))
		}
		waitAnswer(t, base+"/hold", "fault", "holding", 10*time.Second, p)
		time.Sleep(2 * time.Second)
		finish(t, "port-forward tunnel cut", l, p, fmt.Sprintf("same session resumed, stealing after %v", took.Round(100*time.Millisecond)), steady)
	})

	// withoutTether is a baseline: the fault with no tether at all, the
	// "during" phase lasting until the target's app answers again from a
	// ready pod (back) and for at least as long as the fault took with
	// tether in an earlier run here (a minimum of 3 s).
	withoutTether := func(t *testing.T, name string, fault func(old *corev1.Pod), back func(old *corev1.Pod)) {
		l := startLoad(t, url, remote)
		current = l
		time.Sleep(2 * time.Second)
		old := targetPod(t)
		l.setPhase("during")
		began := time.Now()
		fault(old)
		back(old)
		if d := time.Since(began); d < 3*time.Second {
			time.Sleep(3*time.Second - d)
		}
		l.setPhase("after")
		time.Sleep(2 * time.Second)
		finish(t, name, l, nil, "-", "")
	}
	deletePod := func(old *corev1.Pod) {
		if err := client.CoreV1().Pods(ns).Delete(context.Background(), old.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// killApp SIGKILLs the app: the requests it serves die with it.
	killApp := func(old *corev1.Pod) {
		pid := containerPID(t, old, "app")
		from := time.Now()
		syscall.Kill(pid, syscall.SIGKILL)
		current.died(from, deadAt(t, []int{pid}))
	}
	// freshPod replaces the target pod by a new one: the kubelet restarts
	// a killed container at once only the first time (then with a
	// growing back-off), so each container kill gets a pod never killed.
	freshPod := func(t *testing.T) {
		old := targetPod(t)
		deletePod(old)
		for deadline := time.Now().Add(2 * time.Minute); targetPod(t).Name == old.Name; time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the target pod %s was not replaced", old.Name)
			}
		}
		waitServed(t, url, "", remote)
	}
	const podDeleted, containerKilled = "target pod deleted, no tether", "target container killed, no tether"

	t.Run("target_pod_deleted_without_tether", func(t *testing.T) {
		withoutTether(t, podDeleted, deletePod, func(old *corev1.Pod) {
			for deadline := time.Now().Add(2 * time.Minute); targetPod(t).Name == old.Name; time.Sleep(200 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the target pod %s was not replaced", old.Name)
				}
			}
		})
	})

	t.Run("target_pod_deleted", func(t *testing.T) {
		l, p, old, took := underFault(t, targetPod, deletePod, func(old *corev1.Pod) string { return "the target pod " + old.Name + " is gone; re-attaching" })
		if cur := targetPod(t); cur.Name == old.Name {
			t.Fatalf("the target pod %s was not replaced", old.Name)
		}
		finish(t, "target pod deleted (replaced by the Deployment)", l, p, fmt.Sprintf("re-attached to the new pod, stealing after %v", took.Round(100*time.Millisecond)), podDeleted)
	})

	t.Run("target_container_killed_without_tether", func(t *testing.T) {
		freshPod(t)
		withoutTether(t, containerKilled, killApp, func(old *corev1.Pod) {
			restarts := func() int32 {
				p, err := client.CoreV1().Pods(ns).Get(context.Background(), old.Name, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				for _, cs := range p.Status.ContainerStatuses {
					if cs.Name == "app" && cs.Ready {
						return cs.RestartCount
					}
				}
				return -1
			}
			was := old.Status.ContainerStatuses[0].RestartCount
			for deadline := time.Now().Add(2 * time.Minute); restarts() <= was; time.Sleep(200 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the app container of %s did not restart", old.Name)
				}
			}
		})
	})

	t.Run("target_container_restarted", func(t *testing.T) {
		freshPod(t)
		// The app crashes; the kubelet restarts its container in the same pod.
		l, p, old, took := underFault(t, targetPod, killApp, func(*corev1.Pod) string { return "the target container app restarted; re-attaching" })
		if cur := targetPod(t); cur.Name != old.Name {
			t.Fatalf("the target pod changed from %s to %s; want its container restarted in place", old.Name, cur.Name)
		}
		finish(t, "target container killed (restarted in place)", l, p, fmt.Sprintf("re-attached to the restarted container, stealing after %v", took.Round(100*time.Millisecond)), containerKilled)
	})

	t.Run("agent_oom", func(t *testing.T) {
		// An agent limited to less memory than it needs is OOM-killed as
		// it starts: tether must say so, with the fix, and leave nothing.
		// (Just above what it needs to start, an agent can stall in memory
		// reclaim instead: tether gives up after startup_timeout, says the
		// same, and removes it.)
		oom := writeConfig(t, t.TempDir(), "agent:\n  image: "+agentImage+"\n  linger: 2s\n  startup_timeout: 20s\n  memory_limit: 4Mi\n")
		l := startLoad(t, url, remote)
		time.Sleep(time.Second)
		l.setPhase("during")
		_, errOut, code := runTetherEnv(t, dir, 2*time.Minute, []string{"KUBECONFIG=" + kubeconfig}, "exec", "-f", oom, "-n", ns, "-t", "deployment/web", "--progress", "plain", "--", "true")
		if code == 0 || !strings.Contains(errOut, "raise agent.memory_limit") {
			t.Errorf("with a 4Mi agent: exit %d, want a failure saying to raise agent.memory_limit\n%s", code, errOut)
		}
		l.setPhase("after")
		time.Sleep(2 * time.Second)
		finish(t, "agent OOM-killed (memory_limit 4Mi)", l, nil, "refused with \"raise agent.memory_limit\"", steady)
	})
}

// faultTable is the fault table as Markdown: per fault the unmatched
// requests sent, the failures by phase and kind, the same for its
// baseline, the hung ones, the session's recovery and the leftovers.
func faultTable(rows []faultRow) string {
	var b strings.Builder
	b.WriteString("\nfault table (failures: phase kind count; phases before/during/after the fault):\n")
	b.WriteString("| fault | sent | failed | of them in flight at the app's or the agent's death | baseline | baseline failed | hung | session | leftovers |\n|---|---|---|---|---|---|---|---|---|\n")
	failures := func(r loadResult) string {
		var parts []string
		for _, p := range r.phases {
			for _, k := range []string{kindReset, kindRefused, kindUnreachable, kindEOF, kindTimeout, kindWrong, kindOther} {
				if n := r.kind(p, k); n > 0 {
					parts = append(parts, fmt.Sprintf("%s %s %d", p, k, n))
				}
			}
		}
		if len(parts) == 0 {
			return "0"
		}
		return strings.Join(parts, ", ")
	}
	for _, r := range rows {
		var hung int64
		for _, p := range r.res.phases {
			hung += r.res.kind(p, kindTimeout)
		}
		base, baseFailed := "-", "-"
		if r.baseline != "" {
			base, baseFailed = r.baseline, failures(r.base)
		}
		hungs := fmt.Sprint(hung)
		if d := r.res.hungInDowntime(); d > 0 {
			hungs += fmt.Sprintf(" (%d sent in the app's downtime)", d)
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %d | %s | %s | %s | %s | %s |\n", r.fault, r.res.sent(), failures(r.res), r.res.atDeath(), base, baseFailed, hungs, r.recovery, r.leftover)
	}
	return b.String()
}

// cutTCP destroys process pid's TCP connections to port (ss -K, which
// uses the kernel's SOCK_DESTROY: both ends see the connection die).
func cutTCP(t *testing.T, pid int, port string) {
	t.Helper()
	out, err := exec.Command("ss", "-tnpH", "dport", "= :"+port).CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v\n%s", err, out)
	}
	cut := 0
	for _, l := range lines(string(out)) {
		if !strings.Contains(l, fmt.Sprintf("pid=%d,", pid)) {
			continue
		}
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		_, sport, err := net.SplitHostPort(f[3])
		if err != nil {
			continue
		}
		if b, err := exec.Command("ss", "-K", "-tn", "sport", "= :"+sport, "dport", "= :"+port).CombinedOutput(); err != nil {
			t.Fatalf("ss -K: %v\n%s", err, b)
		}
		cut++
	}
	if cut == 0 {
		t.Fatalf("tether (pid %d) has no connection to port %s:\n%s", pid, port, out)
	}
}

// followLogs collects the logs of pod (an agent that is about to go away)
// and shows them if the test fails.
func followLogs(t *testing.T, ns, pod string) {
	var mu sync.Mutex
	var b strings.Builder
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rc, err := client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Follow: true}).Stream(ctx)
		if err != nil {
			return
		}
		defer rc.Close()
		buf := make([]byte, 4096)
		for {
			n, err := rc.Read(buf)
			mu.Lock()
			b.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			mu.Lock()
			t.Logf("logs of agent pod %s:\n%s", pod, b.String())
			mu.Unlock()
			if all, err := client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{}).DoRaw(context.Background()); err == nil {
				t.Logf("all logs of agent pod %s now:\n%s", pod, all)
			}
		}
	})
}
