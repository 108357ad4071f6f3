package kube

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// load is what one state of the target's port (no agent, N sessions)
// measures, from inside the cluster (the benchclient pod's netns) to the
// serving pod's IP.
type load struct {
	unmatched, stolen []float64 // sequential GETs, µs
	// CPU per stolen GET (µs): the app, the agent, the CLIs and their
	// local servers, per run
	stolenCPU      []cpuUse
	wrkRPS         []float64 // per run
	wrkP50, wrkP99 []float64 // per run, µs
	h2RPS          []float64 // per run
	h2Lat          []float64 // every request of every run, µs
	burnRPS        []float64 // per run: wrk on /burn (burnMicros of CPU per request)
	// CPU per request (µs) of the app, the agent and the CLIs, per wrk run
	// on /small and on /burn.
	wrkCPU, burnCPU   []cpuUse
	cmdLat, cmdStolen string
	cmdWrk, cmdH2     string
	cmdBurn           string
	// errors reported by the load generators (timeouts under load...)
	errors []string
}

const (
	loadRuns    = 3
	loadSeconds = 4
	loadConns   = 8
	// burnMicros is the CPU a request to /burn costs the app: a handler
	// that computes, as a typical app's does (issue 16: ~200 µs).
	burnMicros = 200
)

// measure runs the sequential clients and the load generators once more
// for this state; header is the stolen request's (and who should answer);
// ss are the sessions whose CLIs' CPU is counted.
func (l *load) measure(t *testing.T, c *cluster, header, who string, ss []*session) {
	t.Helper()
	url := "http://" + c.ServerIP + ":8080/small"
	file := filepath.Join(binDir, "incoming-lat.txt")
	for range 2 {
		argv := c.inCluster(clientBin, "lat", "-n", "1000", "-warmup", "100", "-expect", "pod", "-o", file, url)
		mustRun(t, 5*time.Minute, nil, argv...)
		l.unmatched = append(l.unmatched, readSamples(t, file)...)
		l.cmdLat = cmdline(argv)
		argv = c.inCluster(clientBin, "lat", "-n", "1000", "-warmup", "100", "-H", header, "-expect", who, "-o", file, url)
		before := cpuNow(t, c, ss)
		mustRun(t, 5*time.Minute, nil, argv...)
		l.stolenCPU = append(l.stolenCPU, cpuNow(t, c, ss).minus(before).per(1100))
		l.stolen = append(l.stolen, readSamples(t, file)...)
		l.cmdStolen = cmdline(argv)
	}
	l.throughput(t, c, ss, true)
}

// throughput runs the load generators: wrk on /small and on /burn, and
// h2load when h2 is set.
func (l *load) throughput(t *testing.T, c *cluster, ss []*session, h2 bool) {
	t.Helper()
	base := "http://" + c.ServerIP + ":8080"
	for range loadRuns {
		rps, p50, p99, cpu := l.wrk(t, c, ss, base+"/small", &l.cmdWrk)
		l.wrkRPS, l.wrkP50, l.wrkP99, l.wrkCPU = append(l.wrkRPS, rps), append(l.wrkP50, p50), append(l.wrkP99, p99), append(l.wrkCPU, cpu)
		rps, _, _, cpu = l.wrk(t, c, ss, base+"/burn?us="+strconv.Itoa(burnMicros), &l.cmdBurn)
		l.burnRPS, l.burnCPU = append(l.burnRPS, rps), append(l.burnCPU, cpu)
		if !h2 {
			continue
		}
		log := filepath.Join(binDir, "h2load.log")
		argv := c.inCluster("h2load", "-t1", "-c"+strconv.Itoa(loadConns), "-m4", "-D", strconv.Itoa(loadSeconds), "--log-file="+log, base+"/small")
		out, _ := mustRun(t, time.Minute, nil, argv...)
		rps, errs := parseH2load(t, out)
		l.h2RPS = append(l.h2RPS, rps)
		l.h2Lat = append(l.h2Lat, readH2log(t, log)...)
		if errs != "" {
			l.errors = append(l.errors, "h2load: "+errs)
		}
		l.cmdH2 = cmdline(argv)
	}
}

// wrk runs wrk once on url: requests/s, its p50 and p99 (µs), and the CPU
// per request (µs) of the app, the agent and the sessions' CLIs.
func (l *load) wrk(t *testing.T, c *cluster, ss []*session, url string, cmd *string) (rps, p50, p99 float64, perReq cpuUse) {
	t.Helper()
	argv := c.inCluster("wrk", "-t1", "-c"+strconv.Itoa(loadConns), "-d"+strconv.Itoa(loadSeconds)+"s", "--latency", url)
	before := cpuNow(t, c, ss)
	out, _ := mustRun(t, time.Minute, nil, argv...)
	used := cpuNow(t, c, ss).minus(before)
	rps, p50, p99, errs := parseWrk(t, out)
	if errs != "" {
		l.errors = append(l.errors, "wrk "+url+": "+errs)
	}
	*cmd = cmdline(argv)
	n := rps * loadSeconds / 1000 // ms -> µs per request
	return rps, p50, p99, cpuUse{app: used.app / n, agent: used.agent / n, cli: used.cli / n}
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
