package kube

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-dev/tether/test/bench/report"
)

// load is what one state of the target's port (no agent, N sessions)
// measures, from inside the cluster (the benchclient pod's netns) to the
// serving pod's IP.
type load struct {
	unmatched, stolen []float64 // sequential GETs, µs
	wrkRPS            []float64 // per run
	wrkP50, wrkP99    []float64 // per run, µs
	h2RPS             []float64 // per run
	h2Lat             []float64 // every request of every run, µs
	cmdLat, cmdStolen string
	cmdWrk, cmdH2     string
	// errors reported by the load generators (timeouts under load...)
	errors []string
}

const (
	loadRuns    = 3
	loadSeconds = 4
	loadConns   = 8
)

// measure runs the sequential clients and the load generators once more
// for this state; header is the stolen request's (and who should answer).
func (l *load) measure(t *testing.T, c *cluster, header, who string) {
	t.Helper()
	url := "http://" + c.ServerIP + ":8080/small"
	file := filepath.Join(binDir, "incoming-lat.txt")
	for range 2 {
		argv := c.inCluster(clientBin, "lat", "-n", "1000", "-warmup", "100", "-expect", "pod", "-o", file, url)
		mustRun(t, 5*time.Minute, nil, argv...)
		l.unmatched = append(l.unmatched, readSamples(t, file)...)
		l.cmdLat = cmdline(argv)
		argv = c.inCluster(clientBin, "lat", "-n", "1000", "-warmup", "100", "-H", header, "-expect", who, "-o", file, url)
		mustRun(t, 5*time.Minute, nil, argv...)
		l.stolen = append(l.stolen, readSamples(t, file)...)
		l.cmdStolen = cmdline(argv)
	}
	for range loadRuns {
		argv := c.inCluster("wrk", "-t1", "-c"+strconv.Itoa(loadConns), "-d"+strconv.Itoa(loadSeconds)+"s", "--latency", url)
		out, _ := mustRun(t, time.Minute, nil, argv...)
		rps, p50, p99, errs := parseWrk(t, out)
		l.wrkRPS, l.wrkP50, l.wrkP99 = append(l.wrkRPS, rps), append(l.wrkP50, p50), append(l.wrkP99, p99)
		if errs != "" {
			l.errors = append(l.errors, "wrk: "+errs)
		}
		l.cmdWrk = cmdline(argv)

		log := filepath.Join(binDir, "h2load.log")
		argv = c.inCluster("h2load", "-t1", "-c"+strconv.Itoa(loadConns), "-m4", "-D", strconv.Itoa(loadSeconds), "--log-file="+log, url)
		out, _ = mustRun(t, time.Minute, nil, argv...)
		rps, errs = parseH2load(t, out)
		l.h2RPS = append(l.h2RPS, rps)
		l.h2Lat = append(l.h2Lat, readH2log(t, log)...)
		if errs != "" {
			l.errors = append(l.errors, "h2load: "+errs)
		}
		l.cmdH2 = cmdline(argv)
	}
}

// parseWrk reads requests/s and the 50% and 99% latencies (µs) of
// `wrk --latency`, and its error lines (socket errors, non-2xx answers).
func parseWrk(t *testing.T, out string) (rps, p50, p99 float64, errs string) {
	t.Helper()
	var bad []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			rps, _ = strconv.ParseFloat(f[1], 64)
		case len(f) == 2 && f[0] == "50%":
			p50 = wrkDuration(t, f[1])
		case len(f) == 2 && f[0] == "99%":
			p99 = wrkDuration(t, f[1])
		case strings.HasPrefix(strings.TrimSpace(line), "Socket errors") || strings.HasPrefix(strings.TrimSpace(line), "Non-2xx"):
			bad = append(bad, strings.TrimSpace(line))
		}
	}
	if rps == 0 || p50 == 0 || p99 == 0 {
		t.Fatalf("cannot read wrk's output:\n%s", out)
	}
	return rps, p50, p99, strings.Join(bad, "; ")
}

// wrkDuration parses wrk's "196.00us", "1.20ms", "2.00s" as µs.
func wrkDuration(t *testing.T, s string) float64 {
	t.Helper()
	for _, u := range []struct {
		suffix string
		us     float64
	}{{"us", 1}, {"ms", 1e3}, {"s", 1e6}, {"m", 60e6}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("wrk duration %q: %v", s, err)
			}
			return x * u.us
		}
	}
	t.Fatalf("wrk duration %q: unknown unit", s)
	return 0
}

// parseH2load reads req/s from h2load's output, and its request counts
// when some failed.
func parseH2load(t *testing.T, out string) (rps float64, errs string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if rest, found := strings.CutPrefix(line, "finished in "); found {
			// finished in 4.00s, 31234.50 req/s, 1.23MB/s
			if f := strings.Split(rest, ", "); len(f) > 1 {
				rps, _ = strconv.ParseFloat(strings.TrimSuffix(f[1], " req/s"), 64)
			}
		}
		if strings.HasPrefix(line, "requests: ") && !strings.Contains(line, " 0 failed, 0 errored, 0 timeout") {
			errs = line
		}
	}
	if rps == 0 {
		t.Fatalf("h2load failed or cannot read its output:\n%s", out)
	}
	return rps, errs
}

// readH2log reads the request times (µs, third column) of h2load's
// --log-file.
func readH2log(t *testing.T, file string) []float64 {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("h2load log: %v", err)
	}
	var out []float64
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 3 {
			continue
		}
		if f[1] != "200" {
			continue // counted in h2load's summary (errs)
		}
		us, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			t.Fatalf("h2load log line %q: %v", line, err)
		}
		out = append(out, us)
	}
	if len(out) == 0 {
		t.Fatalf("h2load log %s is empty", file)
	}
	return out
}

// session is one developer's `tether exec` stealing requests with
// "x-tether-user: devN" from the target's port 8080 to a local benchserver.
type session struct {
	p    *proc
	user string
}

// startSessions starts sessions first..last-1, a few at a time, and
// returns once all of them steal.
func startSessions(t *testing.T, first, last int) []*session {
	t.Helper()
	out := make([]*session, last-first)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 6)
	for i := first; i < last; i++ {
		user := fmt.Sprintf("dev%d", i)
		port := strconv.Itoa(20000 + i)
		cfg := writeConfig(t, "session-"+user, "2s", fmt.Sprintf(`incoming:
  mode: steal
  loopback: true
  http_filter:
    header_filter: "^x-tether-user: %s$"
  port_mapping: [[%s, 8080]]
`, user, port))
		p := start(t, binDir, tetherExec(cfg, "plain", serverBin, "-listen", "127.0.0.1:"+port, "-who", user)...)
		out[i-first] = &session{p: p, user: user}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			p.wait(t, "traffic to the target's port 8080 is stolen", 3*time.Minute)
		}()
	}
	wg.Wait()
	return out
}

// stopSessions stops every session at once (SIGINT) and waits for them.
func stopSessions(t *testing.T, ss []*session) {
	var wg sync.WaitGroup
	for _, s := range ss {
		wg.Add(1)
		go func() { defer wg.Done(); s.p.stop(t) }()
	}
	wg.Wait()
}

// cliRSS is the resident memory (MiB) of the sessions' tether processes
// (the CLI with its supervisor; not the command it runs) and of their
// commands.
func cliRSS(ss []*session) (cli, cmds []float64) {
	for _, s := range ss {
		cli = append(cli, rssMiB(s.p.pid()))
		for _, c := range children(s.p.pid()) {
			cmds = append(cmds, rssMiB(c))
		}
	}
	return cli, cmds
}

func sum(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s
}

// TestIncoming: requests to the target pod's port while 1, 10 and 100
// sessions steal from it with HTTP filters (x-tether-user: devN), each
// with its local server. Unmatched requests pass through the agent to the
// deployed app: their latency (sequential requests) and the load
// generators' throughput (wrk, HTTP/1.1; h2load, h2c) against the same
// with no agent (measured before the sessions start and after they have
// ended). Stolen requests: round trip to the local server vs the same
// request answered by the deployed app. And the memory of the agent and
// of the CLI, idle and at 100 sessions.
func TestIncoming(t *testing.T) {
	benchEnabled(t)
	c := benchCluster(t)
	for _, tool := range []string{"wrk", "h2load"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (hack/install-deps.sh installs it): %v", tool, err)
		}
	}
	waitNoAgent(t, false)
	const header = "x-tether-user: "

	// kubectl port-forward's memory once it has carried a request: the
	// baseline for the CLI's.
	pfProc, pfPort := portForward(t, c.ServerPod)
	mustRun(t, time.Minute, nil, clientBin, "lat", "-n", "100", "-expect", "pod", "http://127.0.0.1:"+pfPort+"/small")
	pfRSS := rssMiB(pfProc.pid())
	pfProc.stop(t)

	base := &load{}
	base.measure(t, c, header+"dev0", "pod")

	var sessions []*session
	loads := map[int]*load{}
	var agent1, agent100, agent100After float64
	var agentProcs int
	var cli1, cli100, cmds100 []float64
	for _, n := range []int{1, 10, 100} {
		sessions = append(sessions, startSessions(t, len(sessions), n)...)
		time.Sleep(time.Second) // let the last subscriptions settle
		switch n {
		case 1:
			agent1, agentProcs = agentRSS(t)
			cli1, _ = cliRSS(sessions)
		case 100:
			agent100, _ = agentRSS(t)
			cli100, cmds100 = cliRSS(sessions)
		}
		l := &load{}
		last := fmt.Sprintf("dev%d", n-1)
		l.measure(t, c, header+last, last)
		loads[n] = l
		if n == 100 {
			agent100After, _ = agentRSS(t)
		}
	}
	stopSessions(t, sessions)
	waitNoAgent(t, false)
	base.measure(t, c, header+"dev0", "pod")

	noAgent := "no agent"
	var steal, pass []report.Row
	for _, n := range []int{1, 10, 100} {
		l := loads[n]
		who := fmt.Sprintf("%d sessions", n)
		if n == 1 {
			who = "1 session"
		}
		stolenName := "stolen GET /small, 1 session"
		if n > 1 {
			stolenName = fmt.Sprintf("stolen GET /small, %d sessions, the last filter matches", n)
		}
		stolenRow := func(stat string) report.Row {
			return report.Row{
				Name: stolenName, Stat: stat, Unit: "µs",
				Baseline: report.Samples("answered by the pod, no agent", base.cmdStolen, base.stolen),
				Tether:   report.Samples("answered by the local server", l.cmdStolen, l.stolen),
				Summary:  stat == "p50" && n != 10,
			}
		}
		steal = append(steal, stolenRow("p50"), stolenRow("p99"))
		var target *report.Target
		if n == 100 {
			target = &report.Target{Of: "added", Op: "<=", Limit: 100}
		}
		unmatched := func(stat string, tg *report.Target, summary bool) report.Row {
			return report.Row{
				Name: "unmatched GET /small, " + who, Stat: stat, Unit: "µs",
				Baseline: report.Samples(noAgent, base.cmdLat, base.unmatched),
				Tether:   report.Samples("passed through by the agent", l.cmdLat, l.unmatched),
				Target:   tg, Summary: summary,
			}
		}
		pass = append(pass,
			unmatched("p50", target, true),
			unmatched("p99", nil, n == 100),
			report.Row{
				Name: "wrk HTTP/1.1 requests/s, " + who, Stat: "median", Unit: "req/s", HigherIsBetter: true,
				Baseline: report.Runs(noAgent, base.cmdWrk, base.wrkRPS), Tether: report.Runs("passed through", l.cmdWrk, l.wrkRPS), Summary: true,
			},
			report.Row{
				Name: "wrk latency under load, " + who, Stat: "median p50", Unit: "µs",
				Baseline: report.Runs(noAgent, base.cmdWrk, base.wrkP50), Tether: report.Runs("passed through", l.cmdWrk, l.wrkP50),
			},
			report.Row{
				Name: "wrk latency under load, " + who, Stat: "median p99", Unit: "µs",
				Baseline: report.Runs(noAgent, base.cmdWrk, base.wrkP99), Tether: report.Runs("passed through", l.cmdWrk, l.wrkP99),
			},
			report.Row{
				Name: "h2load h2c requests/s, " + who, Stat: "median", Unit: "req/s", HigherIsBetter: true,
				Baseline: report.Runs(noAgent, base.cmdH2, base.h2RPS), Tether: report.Runs("passed through", l.cmdH2, l.h2RPS), Summary: true,
			},
			report.Row{
				Name: "h2load latency under load, " + who, Stat: "p50", Unit: "µs",
				Baseline: report.Samples(noAgent, base.cmdH2, base.h2Lat), Tether: report.Samples("passed through", l.cmdH2, l.h2Lat),
			},
			report.Row{
				Name: "h2load latency under load, " + who, Stat: "p99", Unit: "µs",
				Baseline: report.Samples(noAgent, base.cmdH2, base.h2Lat), Tether: report.Samples("passed through", l.cmdH2, l.h2Lat),
			},
		)
	}
	var loadErrors []string
	for _, st := range []struct {
		name string
		l    *load
	}{{"no agent", base}, {"1 session", loads[1]}, {"10 sessions", loads[10]}, {"100 sessions", loads[100]}} {
		for _, e := range st.l.errors {
			loadErrors = append(loadErrors, "load generator errors, "+st.name+": "+e)
		}
	}
	if len(loadErrors) == 0 {
		loadErrors = []string{"the load generators saw no errors (every answer 2xx)"}
	}
	where := "clients in pod benchclient's netns (nsenter), to the serving pod's IP:8080; sessions steal with http_filter header_filter ^x-tether-user: devN$"
	writeResults(t, report.File{
		Name:  "incoming-steal",
		Title: "stolen requests on Kubernetes: round trip to the developer's local server vs answered in the cluster",
		Notes: []string{
			where + ", the request carries the last session's header;",
			"baseline: the same request (header x-tether-user: dev0) with no agent on the pod, measured before the sessions start and after they end;",
			"each figure: 2 x 1000 sequential requests on one keep-alive connection per state (x2 for the baseline)",
		},
		Rows: steal,
	})
	writeResults(t, report.File{
		Name:  "passthrough",
		Title: "passed-through requests on Kubernetes: 1, 10 and 100 filtered stealers on the port vs no agent",
		Notes: append([]string{
			where + "; the requests match no filter;",
			"no agent: measured before the sessions start and after they end (pooled);",
			fmt.Sprintf("sequential: 2 x 1000 GETs on one keep-alive connection; load: %d runs of %d s each of wrk (1 thread, %d connections) and h2load (1 thread, %d connections x 4 streams)", loadRuns, loadSeconds, loadConns, loadConns),
			"the machine has 2 cores shared by the load generator, the server, the agent, the cluster and the sessions: req/s ratios are the figure to read",
		}, loadErrors...),
		Rows: pass,
	})
	one := func(label string, v float64) report.Measure { return report.Runs(label, "", []float64{v}) }
	writeResults(t, report.File{
		Name:  "resources",
		Title: "memory of the agent and of the CLI on Kubernetes, idle and at 100 sessions",
		Notes: []string{
			fmt.Sprintf("RSS (VmRSS) from /proc: the agent = the %d processes of its container; the CLI = each session's tether process (supervisor and session), not its command;", agentProcs),
			"sessions as in passthrough.txt (steal with a header filter, a local benchserver each); \"after load\": after the 100-session wrk and h2load runs;",
			fmt.Sprintf("the sessions' commands (benchserver) use %s each on average; the agent grows by %s per session",
				report.Num(sum(cmds100)/float64(max(1, len(cmds100))), "MiB"), report.Num((agent100-agent1)/99, "MiB")),
		},
		Rows: []report.Row{
			{Name: "agent RSS, 100 idle sessions", Stat: "median", Unit: "MiB", Baseline: one("agent, 1 idle session", agent1), Tether: one("agent, 100 sessions", agent100), Summary: true},
			{Name: "agent RSS, 100 sessions after load", Stat: "median", Unit: "MiB", Baseline: one("agent, 1 idle session", agent1), Tether: one("agent, 100 sessions, after load", agent100After)},
			{Name: "CLI RSS, 1 idle session", Stat: "median", Unit: "MiB", Baseline: one("kubectl port-forward", pfRSS), Tether: report.Runs("tether exec", "", cli1), Summary: true},
			{Name: "CLI RSS per session, 100 sessions", Stat: "median", Unit: "MiB", Baseline: one("kubectl port-forward", pfRSS), Tether: report.Runs("tether exec (each)", "", cli100), Summary: true},
			{Name: "CLI RSS, 100 sessions together", Stat: "median", Unit: "MiB", Baseline: one("1 session", sum(cli1)), Tether: one("100 sessions", sum(cli100))},
		},
	})
}
