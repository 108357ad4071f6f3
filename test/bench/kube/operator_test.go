package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tether-dev/tether/internal/cri"
	"github.com/tether-dev/tether/test/bench/report"
)

const (
	operatorImage = "tether.local/tether-operator:dev"
	operatorNS    = "tether-system"
	// operatorSessions is the scale the operator issue asks of one replica.
	operatorSessions = 200
)

// TestOperator: tether-operator with one replica. Warm start-up through it
// (the CLI's SelfSubjectAccessReview, the connect through the API server's
// aggregation layer, the operator's SubjectAccessReviews and its relay to
// the node's agent) against the direct mode (--no-operator: a
// port-forward to the agent) in the same run, runs interleaved, with the
// CLI's CPU time; then 200 concurrent filtered-steal sessions through the
// one replica: its memory and CPU time, and the API server's memory,
// which carries every session's upgraded stream.
func TestOperator(t *testing.T) {
	benchEnabled(t)
	c := benchCluster(t)
	waitNoAgent(t, false)
	// Each tether exec holds an inotify instance: 200 of them on this one
	// machine pass the default per-user limit (128) that 200 developers'
	// machines would each have.
	raiseSysctl(t, "/proc/sys/fs/inotify/max_user_instances", 4*operatorSessions)
	installOperator(t)
	op := operatorPIDs(t)
	apiPID := apiserverPID(t)

	// Warm start-up: a holder session each keeps both agents running.
	direct := writeConfig(t, "operator-direct", "30s", "operator: false\n")
	via := writeConfig(t, "operator-via", "30s", "")
	hd, hv := holdAgent(t, direct), holdAgent(t, via)
	const warmRuns = 20
	var directWall, directCPU, viaWall, viaCPU []float64
	for range warmRuns {
		w, cpu := runCPU(t, time.Minute, tetherExec(direct, "off", "true"))
		directWall, directCPU = append(directWall, ms(w)), append(directCPU, ms(cpu))
		w, cpu = runCPU(t, time.Minute, tetherExec(via, "off", "true"))
		viaWall, viaCPU = append(viaWall, ms(w)), append(viaCPU, ms(cpu))
	}
	hd.stop(t)
	hv.stop(t)

	// 200 sessions, each stealing x-tether-user: devN to its own server.
	idleRSS, idleCPU := op.rss(), op.cpu()
	apiIdle := rssMiB(apiPID)
	t0 := time.Now()
	sessions := startSessions(t, 0, operatorSessions)
	startAll := time.Since(t0)
	time.Sleep(time.Second) // let the last subscriptions settle
	startCPU := op.cpu() - idleCPU
	fullRSS, apiFull := op.rss(), rssMiB(apiPID)

	// Every session gets its own requests, the rest reach the pod.
	url := "http://" + c.ServerIP + ":8080/small"
	for _, s := range sessions {
		mustRun(t, time.Minute, nil, c.inCluster(clientBin, "lat", "-n", "1", "-warmup", "0", "-H", "x-tether-user: "+s.user, "-expect", s.user, url)...)
	}
	mustRun(t, time.Minute, nil, c.inCluster(clientBin, "lat", "-n", "1", "-warmup", "0", "-expect", "pod", url)...)
	listed, listTime := sessionsListed(t)
	if listed < operatorSessions {
		t.Errorf("tether sessions -A lists %d sessions, want at least %d", listed, operatorSessions)
	}
	afterRSS := op.rss()
	stopSessions(t, sessions)
	allCPU := op.cpu() - idleCPU

	one := func(label string, v float64) report.Measure { return report.Runs(label, "", []float64{v}) }
	n := strconv.Itoa(operatorSessions)
	writeResults(t, report.File{
		Name:  "operator",
		Title: "tether-operator: warm start-up through it vs the direct mode, and " + n + " sessions on one replica",
		Notes: []string{
			"one operator replica (tether operator install --replicas 1); warm: a holder session each keeps the direct-mode agent and the operator's agent running; the direct and operator runs alternate;",
			"through the operator: the CLI's SelfSubjectAccessReview (use), its connect through the API server's aggregation layer, the operator's SubjectAccessReviews (use, mirror, steal) and its relay to the node's agent; direct: a port-forward to the agent pod;",
			n + " sessions: tether exec stealing with http_filter ^x-tether-user: devN$ to a local benchserver each, started 6 at a time; every session then got one request with its header, answered by its own server;",
			fmt.Sprintf("starting all %s took %s; the operator used %s of CPU (user+system) for it, %s per session, and %s over the whole phase (start, requests, listing, stop);",
				n, startAll.Round(time.Millisecond), report.Num(startCPU, "ms"), report.Num(startCPU/operatorSessions, "ms"), report.Num(allCPU, "ms")),
			fmt.Sprintf("tether sessions -A -o json listed %d sessions in %s;", listed, listTime.Round(time.Millisecond)),
			fmt.Sprintf("RSS (VmRSS) of the operator's container processes (%d); kube-apiserver, which proxies every session's upgraded stream, grew from %s to %s",
				len(op.pids), report.Num(apiIdle, "MiB"), report.Num(apiFull, "MiB")),
		},
		Rows: []report.Row{
			{
				Name: "warm start through the operator vs direct", Stat: "median", Unit: "ms",
				Baseline: report.Runs("tether exec --no-operator (operator: false)", cmdline(tetherExec(direct, "off", "true")), directWall),
				Tether:   report.Runs("tether exec through tether-operator", cmdline(tetherExec(via, "off", "true")), viaWall),
				Target:   &report.Target{Of: "added", Op: "<=", Limit: 100},
				Summary:  true,
			},
			{
				Name: "tether exec CPU, warm, through the operator vs direct", Stat: "median", Unit: "ms",
				Baseline: report.Runs("direct", "", directCPU),
				Tether:   report.Runs("through the operator", "", viaCPU),
			},
			{
				Name: "operator RSS, " + n + " sessions", Stat: "median", Unit: "MiB",
				Baseline: one("operator, no session", idleRSS),
				Tether:   one("operator, "+n+" sessions", fullRSS),
				Target:   &report.Target{Of: "tether", Op: "<=", Limit: 150},
				Summary:  true,
			},
			{
				Name: "operator RSS, " + n + " sessions after their requests", Stat: "median", Unit: "MiB",
				Baseline: one("operator, no session", idleRSS),
				Tether:   one("operator, "+n+" sessions, after requests", afterRSS),
			},
		},
	})
}

// installOperator installs tether-operator with one replica and
// uninstalls it at the end of the test (the other benchmarks run in the
// direct mode: nothing of it may stay).
func installOperator(t *testing.T) {
	t.Helper()
	mustRun(t, 5*time.Minute, kubeEnv(), tetherBin, "operator", "install", "--replicas", "1",
		"--image", operatorImage, "--agent-image", agentImage, "--agent-linger", "5s", "--timeout", "4m")
	t.Cleanup(func() {
		if out, _, err := run(5*time.Minute, kubeEnv(), tetherBin, "operator", "uninstall"); err != nil {
			t.Errorf("tether operator uninstall: %v\n%s", err, out)
		}
	})
}

// procs are the processes of a container on this node.
type procs struct{ pids []int }

// operatorPIDs finds the one operator pod's processes.
func operatorPIDs(t *testing.T) procs {
	t.Helper()
	pods, err := client.CoreV1().Pods(operatorNS).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=tether-operator"})
	if err != nil {
		t.Fatalf("listing the operator's pods: %v", err)
	}
	var running []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].ContainerID != "" {
			running = append(running, p.Status.ContainerStatuses[0].ContainerID)
		}
	}
	if len(running) != 1 {
		t.Fatalf("%d operator pods run, want 1 (--replicas 1)", len(running))
	}
	_, id, err := cri.ParseContainerID(running[0])
	if err != nil {
		t.Fatal(err)
	}
	pids := containerPIDs(id)
	if len(pids) == 0 {
		t.Fatalf("no process of the operator's container %s on this node", id)
	}
	return procs{pids}
}

func (p procs) rss() float64 {
	total := 0.0
	for _, pid := range p.pids {
		total += rssMiB(pid)
	}
	return total
}

// cpu is the processes' CPU time so far (user+system), ms.
func (p procs) cpu() float64 {
	total := 0.0
	for _, pid := range p.pids {
		total += cpuMS(pid)
	}
	return total
}

// cpuMS is utime+stime of pid from /proc/PID/stat, ms (0 if it is gone).
func cpuMS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// After the command: state is field 3 of stat, utime 14, stime 15.
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) * 1000 / clockTicks
}

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100

// apiserverPID is kube-apiserver's pid from the local cluster's state.
func apiserverPID(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/var/lib/tether-cluster/run/kube-apiserver.pid")
	if err != nil {
		t.Fatalf("kube-apiserver's pid (the local cluster of hack/cluster): %v", err)
	}
	pid, err := strconv.Atoi(strings.Fields(string(b))[0])
	if err != nil {
		t.Fatalf("kube-apiserver.pid: %v", err)
	}
	return pid
}

// sessionsListed runs tether sessions -A -o json and returns how many
// sessions it lists and how long it took.
func sessionsListed(t *testing.T) (int, time.Duration) {
	t.Helper()
	out, d := mustRun(t, time.Minute, kubeEnv(), tetherBin, "sessions", "-A", "-o", "json")
	var list []json.RawMessage
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("tether sessions -A -o json: %v\n%s", err, out)
	}
	return len(list), d
}

// raiseSysctl sets the integer sysctl at path to at least v for the test.
func raiseSysctl(t *testing.T, path string, v int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	was := strings.TrimSpace(string(b))
	if n, err := strconv.Atoi(was); err == nil && n >= v {
		return
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(v)), 0o644); err != nil {
		t.Fatalf("raising %s to %d: %v", path, v, err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(path, []byte(was), 0o644); err != nil {
			t.Errorf("restoring %s to %s: %v", path, was, err)
		}
	})
}
