package kube

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/test/bench/report"
)

// clientPath is one way for the benchmark client to reach the bench
// server: wrap turns the client's command line into the command to run,
// base is the server's URL from there.
type clientPath struct {
	label string
	wrap  func(argv ...string) []string
	base  string
}

// outgoingPaths are the three paths compared: the same client inside the
// cluster (the physical limit), locally through kubectl port-forward to
// the serving pod, and locally under tether to the ClusterIP service.
func outgoingPaths(c *cluster, cfg, pfPort string) []clientPath {
	svc := "http://" + c.ServiceIP
	return []clientPath{
		{"in the cluster (pod netns)", c.inCluster, svc},
		{"kubectl port-forward", func(a ...string) []string { return a }, "http://127.0.0.1:" + pfPort},
		{"tether exec", func(a ...string) []string { return tetherExec(cfg, "off", a...) }, svc},
	}
}

// TestOutgoing: latency of small HTTP requests and throughput of a 256 MiB
// download from a local client under tether to a ClusterIP service, vs
// the same client through kubectl port-forward to the serving pod, vs the
// same client inside the cluster. Rounds interleave the three paths.
func TestOutgoing(t *testing.T) {
	benchEnabled(t)
	c := benchCluster(t)
	cfg := writeConfig(t, "outgoing", "2s", "")
	holdAgent(t, cfg)
	_, port := portForward(t, c.ServerPod)
	paths := outgoingPaths(c, cfg, port)
	const (
		rounds     = 5
		perRound   = 1000
		connRounds = 3
		perConn    = 150
		dlRounds   = 5
		dlSize     = 256 << 20
	)
	keepAlive := make([][]float64, len(paths))
	newConn := make([][]float64, len(paths))
	mibs := make([][]float64, len(paths))
	cmds := map[string]string{}
	latencies := func(i int, p clientPath, n int, extra ...string) []float64 {
		file := filepath.Join(binDir, fmt.Sprintf("lat-%d.txt", i))
		argv := p.wrap(append(append([]string{clientBin, "lat", "-n", strconv.Itoa(n), "-expect", "pod", "-o", file}, extra...), p.base+"/small")...)
		mustRun(t, 5*time.Minute, kubeEnv(), argv...)
		cmds[fmt.Sprint(p.label, extra)] = cmdline(argv)
		return readSamples(t, file)
	}
	for range rounds {
		for i, p := range paths {
			keepAlive[i] = append(keepAlive[i], latencies(i, p, perRound, "-warmup", "100")...)
		}
	}
	for range connRounds {
		for i, p := range paths {
			newConn[i] = append(newConn[i], latencies(i, p, perConn, "-warmup", "10", "-new")...)
		}
	}
	for range dlRounds {
		for i, p := range paths {
			argv := p.wrap(clientBin, "get", "-expect", "pod", fmt.Sprintf("%s/bytes?n=%d", p.base, dlSize))
			out, _ := mustRun(t, 5*time.Minute, kubeEnv(), argv...)
			mibs[i] = append(mibs[i], kv(t, out, "mib_s"))
			cmds[p.label+" get"] = cmdline(argv)
		}
	}

	const cl, pf, tt = 0, 1, 2
	lat := func(i int, samples [][]float64, extra ...string) report.Measure {
		return report.Samples(paths[i].label, cmds[fmt.Sprint(paths[i].label, extra)], samples[i])
	}
	dl := func(i int) report.Measure {
		return report.Runs(paths[i].label, cmds[paths[i].label+" get"], mibs[i])
	}
	ka, nc := []string{"-warmup", "100"}, []string{"-warmup", "10", "-new"}
	rows := []report.Row{
		{Name: "keep-alive GET /small, vs port-forward", Stat: "p50", Unit: "µs", Baseline: lat(pf, keepAlive, ka...), Tether: lat(tt, keepAlive, ka...),
			Target: &report.Target{Of: "ratio", Op: "<=", Limit: 1.05}, Summary: true},
		{Name: "keep-alive GET /small, vs port-forward", Stat: "p99", Unit: "µs", Baseline: lat(pf, keepAlive, ka...), Tether: lat(tt, keepAlive, ka...),
			Target: &report.Target{Of: "ratio", Op: "<=", Limit: 1.05}, Summary: true},
		{Name: "keep-alive GET /small, vs in the cluster", Stat: "p50", Unit: "µs", Baseline: lat(cl, keepAlive, ka...), Tether: lat(tt, keepAlive, ka...), Summary: true},
		{Name: "keep-alive GET /small, vs in the cluster", Stat: "p99", Unit: "µs", Baseline: lat(cl, keepAlive, ka...), Tether: lat(tt, keepAlive, ka...)},
		{Name: "port-forward itself, keep-alive GET /small", Stat: "p50", Unit: "µs", Baseline: lat(cl, keepAlive, ka...), Tether: lat(pf, keepAlive, ka...),
			Note: "not tether: kubectl port-forward against the in-cluster limit, for scale"},
		{Name: "new connection + GET /small, vs port-forward", Stat: "p50", Unit: "µs", Baseline: lat(pf, newConn, nc...), Tether: lat(tt, newConn, nc...)},
		{Name: "new connection + GET /small, vs port-forward", Stat: "p99", Unit: "µs", Baseline: lat(pf, newConn, nc...), Tether: lat(tt, newConn, nc...)},
		{Name: "new connection + GET /small, vs in the cluster", Stat: "p50", Unit: "µs", Baseline: lat(cl, newConn, nc...), Tether: lat(tt, newConn, nc...)},
		{Name: "256 MiB download, vs port-forward", Stat: "median", Unit: "MiB/s", HigherIsBetter: true, Baseline: dl(pf), Tether: dl(tt),
			Target: &report.Target{Of: "ratio", Op: ">=", Limit: 0.95}, Summary: true},
		{Name: "256 MiB download, vs in the cluster", Stat: "median", Unit: "MiB/s", HigherIsBetter: true, Baseline: dl(cl), Tether: dl(tt), Summary: true},
	}
	writeResults(t, report.File{
		Name:  "outgoing",
		Title: "outgoing requests on Kubernetes: local client under tether vs kubectl port-forward vs in the cluster",
		Notes: []string{
			"one client binary (test/bench/benchclient) on every path, timing each request from inside the process;",
			fmt.Sprintf("latency: %d rounds x %d requests on one keep-alive HTTP/1.1 connection (after 100 unmeasured), %d x %d on new connections;", rounds, perRound, connRounds, perConn),
			fmt.Sprintf("throughput: %d downloads of 256 MiB per path; rounds interleave the paths; tether's agent is kept running by another session", dlRounds),
			"paths: in the cluster = nsenter into pod benchclient's netns, to the ClusterIP; port-forward = kubectl port-forward pod/SERVER :8080;",
			"tether = tether exec -t deployment/benchsrv, to the ClusterIP (the agent dials it in the target pod's netns)",
		},
		Rows: rows,
	})
}

// readSamples reads the latencies (ns, one a line) benchclient wrote, in µs.
func readSamples(t *testing.T, file string) []float64 {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("reading the client's latencies: %v", err)
	}
	var out []float64
	for _, f := range strings.Fields(string(b)) {
		ns, err := strconv.ParseFloat(f, 64)
		if err != nil {
			t.Fatalf("latency file %s: %v", file, err)
		}
		out = append(out, ns/1000)
	}
	return out
}

// kv reads the number after "key=" in a program's output.
func kv(t *testing.T, out, key string) float64 {
	t.Helper()
	x, err := report.KV(out, key)
	if err != nil {
		t.Fatal(err)
	}
	return x
}
