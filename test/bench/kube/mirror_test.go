package kube

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/config"
	"github.com/tether-dev/tether/test/bench/report"
)

// TestMirror: the deployed app's throughput (wrk, HTTP/1.1, on /small and
// on a handler that burns CPU) while one session mirrors its port to a
// local benchserver, against the same with no agent (before the session
// starts and after it ends). Copies the session cannot take in time are
// left out and counted, never queued without bound: the app must not be
// slowed by them.
func TestMirror(t *testing.T) {
	benchEnabled(t)
	c := benchCluster(t)
	waitNoAgent(t, false)

	base := &load{}
	base.throughput(t, c, nil, false)

	const port = "20999"
	cfg := writeConfig(t, "session-mirror", "2s", "incoming:\n  mode: mirror\n  loopback: true\n  port_mapping: [["+port+", 8080]]\n")
	p := start(t, binDir, tetherExec(cfg, "plain", serverBin, "-listen", "127.0.0.1:"+port, "-who", "mirror")...)
	p.wait(t, "traffic to the target's port 8080 is mirrored", 3*time.Minute)
	ss := []*session{{p: p, user: "mirror"}}
	time.Sleep(time.Second)
	l := &load{}
	l.throughput(t, c, ss, false)
	time.Sleep(3 * time.Second) // the agent's last count of left-out copies (every 2 s)
	stopSessions(t, ss)
	leftOut := mirrorLeftOut(p.Stderr())
	waitNoAgent(t, false)
	base.throughput(t, c, nil, false)

	noAgent := "no agent"
	var sent float64
	for _, rps := range append(append([]float64{}, l.wrkRPS...), l.burnRPS...) {
		sent += rps * loadSeconds
	}
	var loadErrors []string
	for _, e := range append(append([]string{}, base.errors...), l.errors...) {
		loadErrors = append(loadErrors, "load generator errors: "+e)
	}
	if len(loadErrors) == 0 {
		loadErrors = []string{"the load generators saw no errors (every answer 2xx)"}
	}
	writeResults(t, report.File{
		Name:  "mirror",
		Title: "mirror mode on Kubernetes: the deployed app's throughput while a session mirrors its port, vs no agent",
		Notes: append([]string{
			"clients in pod benchclient's netns (nsenter), to the serving pod's IP:8080; one session mirrors port 8080 to a local benchserver (incoming.mode mirror);",
			fmt.Sprintf("no agent: measured before the session starts and after it ends (pooled); %d runs of %d s each of wrk (1 thread, %d connections) on /small and on /burn?us=%d", loadRuns, loadSeconds, loadConns, burnMicros),
			fmt.Sprintf("copies left out (over incoming.mirror_rate, default %d a second, or the session did not keep up; counted by the agent and told to the session): %d of about %.0f requests (%.1f%%)", config.DefaultMirrorRate, leftOut, sent, 100*float64(leftOut)/max(1, sent)),
			"the port is not redirected: the agent follows its connections from a packet capture (TPACKET_V3) and the app's traffic keeps its path; the copies cross the port-forward and the CLI to a local benchserver on the same 2 cores",
			"CPU per request: user+system time of the app's, the agent's and the session's tether process during each wrk run, over the requests it made; the baseline is the app's alone",
		}, loadErrors...),
		Rows: []report.Row{
			{
				Name: "wrk HTTP/1.1 requests/s, 1 mirroring session", Stat: "median", Unit: "req/s", HigherIsBetter: true,
				Baseline: report.Runs(noAgent, base.cmdWrk, base.wrkRPS), Tether: report.Runs("mirrored", l.cmdWrk, l.wrkRPS),
				Target: &report.Target{Of: "ratio", Op: ">=", Limit: 0.5}, Summary: true,
			},
			{
				Name: "wrk latency under load, 1 mirroring session", Stat: "median p50", Unit: "µs",
				Baseline: report.Runs(noAgent, base.cmdWrk, base.wrkP50), Tether: report.Runs("mirrored", l.cmdWrk, l.wrkP50),
			},
			cpuRow("wrk HTTP/1.1 CPU per request (app + agent + CLI), 1 mirroring session", base.cmdWrk, base.wrkCPU, l.wrkCPU, true),
			{
				Name: fmt.Sprintf("wrk HTTP/1.1 requests/s, a handler burning %d µs CPU, 1 mirroring session", burnMicros), Stat: "median", Unit: "req/s", HigherIsBetter: true,
				Baseline: report.Runs(noAgent, base.cmdBurn, base.burnRPS), Tether: report.Runs("mirrored", l.cmdBurn, l.burnRPS), Summary: true,
			},
		},
	})
}

// mirrorLeftOut is the last count of copies left out that the agent told
// the session ("... (N since you subscribed)"), 0 when it told none.
func mirrorLeftOut(stderr string) int {
	m := leftOutRE.FindAllStringSubmatch(stderr, -1)
	if len(m) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return n
}

var leftOutRE = regexp.MustCompile(`were not copied to you in the last [^(]*\((\d+) since you subscribed\)`)
