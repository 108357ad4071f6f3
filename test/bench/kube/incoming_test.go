package kube

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tether-dev/tether/test/bench/report"
)

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

	// kubectl port-forward: a keep-alive GET through it (the path every
	// stolen request also takes, in the other direction), and its memory
	// once it has carried requests (the baseline for the CLI's).
	pfProc, pfPort := portForward(t, c.ServerPod)
	pfFile := filepath.Join(binDir, "incoming-pf-lat.txt")
	pfArgv := []string{clientBin, "lat", "-n", "1000", "-warmup", "100", "-expect", "pod", "-o", pfFile, "http://127.0.0.1:" + pfPort + "/small"}
	var pfLat []float64
	for range 2 {
		mustRun(t, 5*time.Minute, nil, pfArgv...)
		pfLat = append(pfLat, readSamples(t, pfFile)...)
	}
	pfRSS := rssMiB(pfProc.pid())
	pfProc.stop(t)

	base := &load{}
	base.measure(t, c, header+"dev0", "pod", nil)

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
		l.measure(t, c, header+last, last, sessions)
		loads[n] = l
		if n == 100 {
			agent100After, _ = agentRSS(t)
		}
	}
	stopSessions(t, sessions)
	waitNoAgent(t, false)
	base.measure(t, c, header+"dev0", "pod", nil)

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
		if n == 1 {
			// Issue 16: a stolen request costs about what the transport
			// every peer rides costs.
			steal = append(steal, report.Row{
				Name: "stolen GET /small, 1 session, vs a keep-alive GET through kubectl port-forward", Stat: "p50", Unit: "µs",
				Baseline: report.Samples("kubectl port-forward to the pod", cmdline(pfArgv), pfLat),
				Tether:   report.Samples("answered by the local server", l.cmdStolen, l.stolen),
				Target:   &report.Target{Of: "ratio", Op: "<=", Limit: 1.3}, Summary: true,
			}, report.Row{
				Name: "stolen GET /small, 1 session, CPU per request (app + agent + CLI + local server)", Stat: "median", Unit: "µs",
				Baseline: report.Runs("the app, no agent", base.cmdStolen, totals(base.stolenCPU)),
				Tether:   report.Runs("app + agent + CLI + local server", l.cmdStolen, totals(l.stolenCPU)),
				Note:     "where it went: " + cpuSplit(l.stolenCPU) + " (CLIs: the tether CLI and the local server it runs)",
			})
		}
		// Issue 16's targets: for 1 and 100 sessions.
		goal := func(of, op string, limit float64) *report.Target {
			if n == 10 {
				return nil
			}
			return &report.Target{Of: of, Op: op, Limit: limit}
		}
		var p50Goal, p99Goal *report.Target
		if n == 100 {
			p50Goal, p99Goal = goal("added", "<=", 50), goal("ratio", "<=", 2)
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
			unmatched("p50", p50Goal, true),
			unmatched("p99", p99Goal, n == 100),
			report.Row{
				Name: "wrk HTTP/1.1 requests/s, " + who, Stat: "median", Unit: "req/s", HigherIsBetter: true,
				Baseline: report.Runs(noAgent, base.cmdWrk, base.wrkRPS), Tether: report.Runs("passed through", l.cmdWrk, l.wrkRPS),
				Target: goal("ratio", ">=", 0.5), Summary: true,
			},
			cpuRow("wrk HTTP/1.1 CPU per request (app + agent + CLIs), "+who, base.cmdWrk, base.wrkCPU, l.wrkCPU, n != 10),
			report.Row{
				Name: fmt.Sprintf("wrk HTTP/1.1 requests/s, a handler burning %d µs CPU, %s", burnMicros, who), Stat: "median", Unit: "req/s", HigherIsBetter: true,
				Baseline: report.Runs(noAgent, base.cmdBurn, base.burnRPS), Tether: report.Runs("passed through", l.cmdBurn, l.burnRPS),
				Target: goal("ratio", ">=", 0.9), Summary: true,
			},
			cpuRow(fmt.Sprintf("wrk on a %d µs handler, CPU per request (app + agent + CLIs), %s", burnMicros, who), base.cmdBurn, base.burnCPU, l.burnCPU, false),
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
				Baseline: report.Runs(noAgent, base.cmdH2, base.h2RPS), Tether: report.Runs("passed through", l.cmdH2, l.h2RPS),
				Target: goal("ratio", ">=", 0.5), Summary: true,
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
			fmt.Sprintf("sequential: 2 x 1000 GETs on one keep-alive connection; load: %d runs of %d s each of wrk (1 thread, %d connections) on /small and on /burn?us=%d (the app burns %d µs of CPU per request), and h2load (1 thread, %d connections x 4 streams)", loadRuns, loadSeconds, loadConns, burnMicros, burnMicros, loadConns),
			"CPU per request: user+system time of the app's, the agent's and the sessions' tether processes during each wrk run, over the requests it made; the baseline is the app's alone (no agent);",
			cpuNote(base, loads),
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
