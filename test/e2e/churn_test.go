package e2e

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tether-dev/tether/internal/cri"
)

// churnServerEnv makes the test binary the local program of a churn
// session: "NAME PORT" listens on PORT and answers every request with
// "local NAME", so a filtered request shows which session answered it.
const churnServerEnv = "TETHER_E2E_CHURN_SERVER"

func init() {
	// Before TestMain: the churn sessions' local program is this binary.
	if v := os.Getenv(churnServerEnv); v != "" {
		name, port, _ := strings.Cut(v, " ")
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "local "+name+"\n") })
		err := http.ListenAndServe(":"+port, nil)
		fmt.Fprintln(os.Stderr, "churn server:", err)
		os.Exit(1)
	}
}

// Soak parameters. TETHER_SOAK_DURATION (a Go duration, default 3m) is how
// long sessions churn; `make soak` runs 30m.
const (
	churnPeak      = 50              // sessions alive at once at the peak
	churnFloor     = 10              // never fewer alive during the churn (the agent must not linger out)
	churnStartWait = 3 * time.Minute // a session must steal within this
	churnPortBase  = 20000           // local ports of the sessions' programs: from here
)

// churnSession is one `tether exec` of the soak, its program answering
// "local NAME" on its own local port, mapped to the target's 8080.
type churnSession struct {
	n       int
	name    string
	p       *tetherProc
	began   time.Time
	started time.Duration // until the steal was announced and its first filtered request answered by it
}

// churnStats is what the soak counts; mu guards it (sessions start and stop
// in goroutines).
type churnStats struct {
	mu            sync.Mutex
	started       int // sessions launched
	up            int // sessions that stole and answered
	maxAlive      int
	startTimes    []time.Duration
	rounds        int
	roundTimes    []time.Duration
	biggestRound  string // the round that stopped and started the most sessions
	biggest       int
	stopTimes     []time.Duration
	checksOK      int
	checksFailed  int
	firstTryMiss  []string // start checks that needed more than one request: the first answer
	failures      []string
	sessionCPU    time.Duration // user+sys of the ended tether processes (with their programs)
	restarts      []string
	tetherRSSPeak int64 // KiB, the sum over the alive tether processes (without their programs) at a peak
	agentVersion  string
}

func (s *churnStats) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, fmt.Sprintf(time.Now().Format("15:04:05.000 ")+format, args...))
}

// agentSample is the agent's processes at one moment.
type agentSample struct {
	at                time.Duration // since the soak began
	alive             int           // sessions alive
	pod               string
	parent, worker    int
	parentRSS, rss    int64 // VmRSS, KiB
	workerCPU, parCPU time.Duration
}

func (a agentSample) String() string {
	return fmt.Sprintf("%v: %d sessions, agent %s worker pid %d RSS %d KiB CPU %v, parent pid %d RSS %d KiB CPU %v",
		a.at.Round(time.Second), a.alive, a.pod, a.worker, a.rss, a.workerCPU, a.parent, a.parentRSS, a.parCPU)
}

// TestChurnSoak: sessions start and stop in a loop on one target
// Deployment, each a filtered steal with its own header value
// (x-tether-user: churn-N) and its own local program, while two clients
// send unmatched requests (no header) to the target's Service the whole
// time. The loop, for TETHER_SOAK_DURATION (default 3m):
//
//   - ramp: the first session alone (it creates the agent), then rounds
//     that stop a quarter of the live sessions and, at the same time,
//     start enough new ones to reach 10, 20, ... 50 alive;
//   - churn: rounds that stop 10-25 random sessions while starting as many
//     new ones, back to 50 alive (never fewer than 10: the agent must not
//     linger out), then 3 s with all 50 up;
//   - stop: every session stops at once; the agent ends after its linger.
//
// Every session must steal: its first filtered request (retried for 10 s
// after tether says the port is stolen) and one more just before it stops
// (not retried) must be answered by its own program. No unmatched request
// may fail in any phase; the agent must be the same pod throughout and its
// worker's RSS at the last peak at most 1.2 times that at the first peak
// after one minute; nothing may be left: agent pods, Jobs, ephemeral
// containers, tether tables or rules in the target's network namespace.
// On 2 cores a session takes 4-7 s to its first own answer, a round that
// stops and starts 20-25 sessions at once 6-10 s (the table shows them).
func TestChurnSoak(t *testing.T) {
	requireE2E(t)
	duration := 3 * time.Minute
	if v := os.Getenv("TETHER_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("TETHER_SOAK_DURATION=%q: want a Go duration such as 30m", v)
		}
		duration = d
	}
	if deadline, ok := t.Deadline(); ok && time.Until(deadline) < duration+5*time.Minute {
		t.Fatalf("go test's -timeout leaves %v, too little for TETHER_SOAK_DURATION %v and 5 minutes for the rest", time.Until(deadline).Round(time.Second), duration)
	}
	ns := newNamespace(t, "e2e-churn", nil)
	apply(t, []byte(deploymentYAML(ns, "web", "churn", false)))
	waitDeployments(t, ns, 2*time.Minute)
	target := onePod(t, ns, "app=web")
	base := serviceURL(t, ns, "web")
	url := base + "/10.1.2.3"
	const remote = "private network (cluster)"

	st := &churnStats{}
	var samples []agentSample
	var baseline, final *agentSample
	var res loadResult
	var soakTook time.Duration
	var leftover []string
	l := startLoad(t, url, remote)
	t.Cleanup(func() {
		if res.counts == nil { // the test ended early
			res = l.result()
		}
		t.Log(churnTable(duration, soakTook, st, res, baseline, final, leftover))
	})
	l.setPhase("ramp")
	soakStart := time.Now()
	alive := map[int]*churnSession{}
	next := 0
	port := churnPortBase
	freePort := func() int {
		for {
			port++
			if port >= churnPortBase+10000 {
				port = churnPortBase + 1
			}
			if ln, err := net.Listen("tcp", ":"+strconv.Itoa(port)); err == nil {
				ln.Close()
				return port
			}
		}
	}
	// launch starts session n's tether (here, in the test's goroutine:
	// startTetherEnv may fail the test).
	launch := func() *churnSession {
		next++
		s := &churnSession{n: next, name: fmt.Sprintf("churn-%d", next), began: time.Now()}
		dir := t.TempDir()
		lp := freePort()
		cfg := agentConfig(t, dir, fmt.Sprintf(`incoming:
  mode: steal
  http_filter:
    header_filter: "^x-tether-user: %s$"
  port_mapping: [[%d, 8080]]`, s.name, lp))
		s.p = startTetherEnv(t, dir, []string{churnServerEnv + "=" + s.name + " " + strconv.Itoa(lp)},
			"exec", "-f", cfg, "-n", ns, "-t", "deployment/web", "--progress", "plain", "--", os.Args[0])
		st.mu.Lock()
		st.started++
		st.mu.Unlock()
		return s
	}
	check := func(c *http.Client, s *churnSession) error {
		body, err := get(c, url, s.name)
		if err != nil {
			return err
		}
		if want := "local " + s.name + "\n"; body != want {
			return fmt.Errorf("answer %q, want %q", body, want)
		}
		return nil
	}
	// up waits until session s steals and answers its first request.
	up := func(s *churnSession) bool {
		if err := waitStolen(s.p, churnStartWait); err != nil {
			st.fail("session %s did not start: %v\nstderr:\n%s", s.name, err, s.p.Stderr())
			return false
		}
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		var err, first error
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if err = check(c, s); err == nil || time.Now().After(deadline) {
				break
			}
			if first == nil {
				first = fmt.Errorf("%s %w", time.Now().Format("15:04:05.000"), err)
			}
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		if err != nil {
			st.checksFailed++
			st.failures = append(st.failures, fmt.Sprintf("%s session %s steals (tether says so) but its requests are not answered by it within 10s: %v\nstderr:\n%s", time.Now().Format("15:04:05.000"), s.name, err, s.p.Stderr()))
			return false
		}
		st.checksOK++
		if first != nil {
			st.firstTryMiss = append(st.firstTryMiss, fmt.Sprintf("%s: %v", s.name, first))
		}
		s.started = time.Since(s.began)
		st.startTimes = append(st.startTimes, s.started)
		st.up++
		return true
	}
	// down checks once that session s still steals, then stops it.
	down := func(s *churnSession) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		select {
		case <-s.p.done:
			st.fail("session %s ended by itself (%v)\nstderr:\n%s", s.name, s.p.cmd.ProcessState, s.p.Stderr())
		default:
			err := check(c, s)
			st.mu.Lock()
			if err != nil {
				st.checksFailed++
				st.failures = append(st.failures, fmt.Sprintf("%s session %s (up %v) does not get its request: %v", time.Now().Format("15:04:05.000"), s.name, time.Since(s.began).Round(time.Second), err))
			} else {
				st.checksOK++
			}
			st.mu.Unlock()
		}
		began := time.Now()
		s.p.stop(t)
		took := time.Since(began)
		ps := s.p.cmd.ProcessState
		st.mu.Lock()
		st.stopTimes = append(st.stopTimes, took)
		st.sessionCPU += ps.UserTime() + ps.SystemTime()
		st.mu.Unlock()
		for _, bad := range []string{"reconnected to the agent", "re-attaching", "replacing it", "has ended; replacing"} {
			if strings.Contains(s.p.Stderr(), bad) {
				st.fail("session %s says %q: the agent or its tunnel was lost\nstderr:\n%s", s.name, bad, s.p.Stderr())
				break
			}
		}
	}
	// round stops the sessions stop and starts start new ones at the
	// same time, and waits for both.
	round := func(name string, stop []*churnSession, start int) {
		began := time.Now()
		var wg sync.WaitGroup
		for _, s := range stop {
			delete(alive, s.n)
			wg.Go(func() { down(s) })
		}
		var failed []int
		var fmu sync.Mutex
		for range start {
			s := launch()
			alive[s.n] = s
			wg.Go(func() {
				if !up(s) {
					fmu.Lock()
					failed = append(failed, s.n)
					fmu.Unlock()
				}
			})
		}
		wg.Wait()
		// A session that did not come up is stopped (and counted failed).
		for _, n := range failed {
			alive[n].p.stop(t)
			delete(alive, n)
		}
		st.mu.Lock()
		st.maxAlive = max(st.maxAlive, len(alive))
		st.rounds++
		st.roundTimes = append(st.roundTimes, time.Since(began))
		if start > 0 && len(stop)+start > st.biggest {
			st.biggest = len(stop) + start
			st.biggestRound = fmt.Sprintf("%s (%d stopped, %d started) in %v", name, len(stop), start, time.Since(began).Round(100*time.Millisecond))
		}
		st.mu.Unlock()
		t.Logf("%s (%v) %s: stopped %d, started %d (%d failed) in %v; %d alive", began.Format("15:04:05.000"), time.Since(soakStart).Round(time.Second), name, len(stop), start, len(failed), time.Since(began).Round(100*time.Millisecond), len(alive))
	}
	pick := func(k int) []*churnSession {
		all := make([]*churnSession, 0, len(alive))
		for _, s := range alive {
			all = append(all, s)
		}
		rand.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
		return all[:min(k, len(all))]
	}
	// sample reads the agent's processes (not fatal: a failure is noted).
	sample := func() *agentSample {
		a, err := readAgent(ns)
		if err != nil {
			st.fail("reading the agent's processes with %d sessions alive: %v", len(alive), err)
			return nil
		}
		a.at, a.alive = time.Since(soakStart), len(alive)
		if len(samples) > 0 && samples[0].pod != a.pod {
			st.mu.Lock()
			st.restarts = append(st.restarts, fmt.Sprintf("%v: agent pod %s replaced by %s", a.at.Round(time.Second), samples[0].pod, a.pod))
			st.mu.Unlock()
		} else if len(samples) > 0 && samples[len(samples)-1].worker != a.worker {
			st.mu.Lock()
			st.restarts = append(st.restarts, fmt.Sprintf("%v: agent worker pid %d replaced by %d", a.at.Round(time.Second), samples[len(samples)-1].worker, a.worker))
			st.mu.Unlock()
		}
		samples = append(samples, *a)
		t.Logf("agent %v", a)
		return a
	}
	tetherRSS := func() {
		var sum int64
		for _, s := range alive {
			sum += vmRSS(s.p.cmd.Process.Pid)
		}
		st.mu.Lock()
		st.tetherRSSPeak = max(st.tetherRSSPeak, sum)
		st.mu.Unlock()
	}

	// Ramp.
	round("first session", nil, 1)
	if len(alive) == 0 {
		t.Fatalf("the first session did not start: %v", st.failures)
	}
	agent := runningAgentPods(t, ns, 1, 30*time.Second)
	followLogs(t, ns, agent[0].Name)
	if b, err := client.CoreV1().Pods(ns).GetLogs(agent[0].Name, &corev1.PodLogOptions{}).DoRaw(context.Background()); err == nil {
		for _, l := range lines(string(b)) {
			if _, v, ok := strings.Cut(l, " version="); ok && strings.Contains(l, "serving") {
				st.agentVersion = v
			}
		}
	}
	sample()
	for target := 10; target <= churnPeak; target += 10 {
		stop := pick(len(alive) / 4)
		round(fmt.Sprintf("ramp to %d", target), stop, target-len(alive)+len(stop))
		sample()
	}
	tetherRSS()
	// Churn.
	l.setPhase("churn")
	// The baseline: the first peak after a minute (every churn round
	// ends at the peak).
	for r := 1; ; r++ {
		time.Sleep(3 * time.Second) // all up, the load going through the agent
		if baseline == nil && time.Since(soakStart) >= time.Minute {
			if baseline = sample(); baseline == nil {
				break
			}
		}
		if baseline != nil && time.Since(soakStart) >= duration {
			break
		}
		stop := pick(max(0, min(10+rand.IntN(16), len(alive)-churnFloor)))
		round(fmt.Sprintf("churn %d", r), stop, churnPeak-len(alive)+len(stop))
		if r%5 == 0 {
			sample()
			tetherRSS()
		}
	}
	tetherRSS()
	final = sample()
	soakTook = time.Since(soakStart)

	// Stop: every session at once; the agent goes after its linger.
	l.setPhase("stop all")
	round("stop all", pick(len(alive)), 0)
	l.setPhase("agent exit")
	leftover = leftovers(t, ns, 90*time.Second)
	t.Logf("%s the agent is gone", time.Now().Format("15:04:05.000"))
	leftover = append(leftover, runningEphemeral(t, ns)...)
	if cur := onePod(t, ns, "app=web"); cur.Name != target.Name {
		st.fail("the target pod changed from %s to %s during the soak", target.Name, cur.Name)
	}
	leftover = append(leftover, netfilterLeftovers(t, containerPID(t, target, "app"))...)
	l.setPhase("after")
	time.Sleep(3 * time.Second) // the load after the agent's end
	res = l.result()

	if n := res.failed(); n > 0 {
		t.Errorf("%d of %d unmatched requests failed (%v); first failures:\n%s", n, res.sent(), res, strings.Join(res.samples(), "\n"))
	}
	if sent := res.sent(); sent < 100 {
		t.Errorf("the load generator sent only %d requests", sent)
	}
	for _, f := range st.failures {
		t.Errorf("%s", f)
	}
	for _, r := range st.restarts {
		t.Errorf("the agent restarted during the soak: %s", r)
	}
	if st.checksOK == 0 {
		t.Errorf("no filtered request was answered by its session")
	}
	if baseline != nil && final != nil && float64(final.rss) > 1.2*float64(baseline.rss) {
		t.Errorf("the agent worker's RSS grew from %d KiB (%v) to %d KiB (%v): %.2fx, want at most 1.2x", baseline.rss, baseline.at.Round(time.Second), final.rss, final.at.Round(time.Second), float64(final.rss)/float64(baseline.rss))
	}
	if len(leftover) > 0 {
		t.Errorf("left behind after all sessions stopped: %v", leftover)
	}
}

// waitStolen waits until tether says the target's port 8080 is stolen (not
// fatal, for the sessions' goroutines).
func waitStolen(p *tetherProc, timeout time.Duration) error {
	const s = "traffic to the target's port 8080 is stolen"
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.Stderr(), s) {
		select {
		case <-p.done:
			return fmt.Errorf("tether exited (%v) before printing %q", p.cmd.ProcessState, s)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("tether did not print %q within %v", s, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// readAgent finds the running agent pod of ns and its processes on this
// node (the processes in its container's cgroups; the worker is the one
// with TETHER_AGENT_ROLE=worker) and reads their RSS and CPU time.
func readAgent(ns string) (*agentSample, error) {
	pods, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: agentSelector})
	if err != nil {
		return nil, err
	}
	var running []corev1.Pod
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			running = append(running, p)
		}
	}
	if len(running) != 1 {
		return nil, fmt.Errorf("%d running agent pods %v, want one", len(running), podNames(running))
	}
	p := running[0]
	var id string
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == "agent" && cs.State.Running != nil {
			id = cs.ContainerID
		}
	}
	if id == "" {
		return nil, fmt.Errorf("agent pod %s has no running container", p.Name)
	}
	main, err := cri.FindPID("/proc", id)
	if err != nil {
		return nil, err
	}
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", main))
	if err != nil {
		return nil, err
	}
	a := &agentSample{pod: p.Name, parent: main}
	procs, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	for _, f := range procs {
		if b, err := os.ReadFile(f); err != nil || !bytes.Equal(b, cg) {
			continue
		}
		var pid int
		fmt.Sscanf(f, "/proc/%d/cgroup", &pid)
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if slices.ContainsFunc(bytes.Split(env, []byte{0}), func(kv []byte) bool { return string(kv) == "TETHER_AGENT_ROLE=worker" }) {
			if a.worker != 0 {
				return nil, fmt.Errorf("agent pod %s has two workers, %d and %d", p.Name, a.worker, pid)
			}
			a.worker = pid
		}
	}
	if a.worker == 0 {
		return nil, fmt.Errorf("agent pod %s (pid %d) has no worker process", p.Name, main)
	}
	a.rss, a.parentRSS = vmRSS(a.worker), vmRSS(a.parent)
	a.workerCPU, a.parCPU = cpuTime(a.worker), cpuTime(a.parent)
	return a, nil
}

// vmRSS is process pid's VmRSS in KiB (0 if it is gone).
func vmRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range lines(string(b)) {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// cpuTime is process pid's utime+stime (/proc/PID/stat, in USER_HZ ticks:
// 100 a second on Linux).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses: state is
	// field 3, utime 14 and stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stt, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+stt) * time.Second / 100
}

// churnTable is the soak's summary as Markdown.
func churnTable(duration, took time.Duration, st *churnStats, res loadResult, baseline, final *agentSample, leftover []string) string {
	st.mu.Lock()
	defer st.mu.Unlock()
	pct := func(d []time.Duration, p int) string {
		if len(d) == 0 {
			return "-"
		}
		s := slices.Clone(d)
		slices.SortFunc(s, cmp.Compare)
		return s[min(len(s)-1, len(s)*p/100)].Round(10 * time.Millisecond).String()
	}
	var b strings.Builder
	row := func(k string, format string, args ...any) {
		fmt.Fprintf(&b, "| %s | %s |\n", k, fmt.Sprintf(format, args...))
	}
	b.WriteString("\nchurn soak:\n| | |\n|---|---|\n")
	row("duration", "%v of churn (TETHER_SOAK_DURATION %v), agent version %s", took.Round(time.Second), duration, st.agentVersion)
	row("sessions started", "%d (%d stole and answered; at most %d alive at once)", st.started, st.up, st.maxAlive)
	row("session start (to its first own answer)", "p50 %s, p90 %s, max %s", pct(st.startTimes, 50), pct(st.startTimes, 90), pct(st.startTimes, 100))
	row("session stop (SIGINT to exit)", "p50 %s, max %s", pct(st.stopTimes, 50), pct(st.stopTimes, 100))
	row("rounds (stops and starts at once)", "%d, p50 %s, max %s; the biggest: %s", st.rounds, pct(st.roundTimes, 50), pct(st.roundTimes, 100), st.biggestRound)
	row("unmatched requests", "%d sent, %d failed (%v)", res.sent(), res.failed(), res)
	row("filtered checks", "%d ok, %d failed (%d start checks needed a retry: %v)", st.checksOK, st.checksFailed, len(st.firstTryMiss), st.firstTryMiss)
	if baseline != nil && final != nil {
		row("agent worker RSS", "%d KiB at %v (%d sessions), %d KiB at %v (%d sessions): %.2fx", baseline.rss, baseline.at.Round(time.Second), baseline.alive, final.rss, final.at.Round(time.Second), final.alive, float64(final.rss)/float64(baseline.rss))
		row("agent parent RSS", "%d KiB, %d KiB", baseline.parentRSS, final.parentRSS)
		row("agent CPU (utime+stime)", "worker %v (%v since the baseline), parent %v", final.workerCPU, final.workerCPU-baseline.workerCPU, final.parCPU)
	} else {
		row("agent worker RSS", "not measured")
	}
	row("tether exec CPU (with their programs)", "%v over the %d sessions ended (%v each)", st.sessionCPU.Round(10*time.Millisecond), len(st.stopTimes), (st.sessionCPU / time.Duration(max(1, len(st.stopTimes)))).Round(time.Millisecond))
	row("tether exec RSS at the peak (sum)", "%d MiB", st.tetherRSSPeak/1024)
	row("agent restarts", "%d %v", len(st.restarts), st.restarts)
	if len(leftover) == 0 {
		row("leftovers", "none")
	} else {
		row("leftovers", "%v", leftover)
	}
	return b.String()
}
