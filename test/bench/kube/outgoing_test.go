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

// outgoingPaths are the paths compared: the same client inside the
// cluster (the physical limit), locally through kubectl port-forward to
// the serving pod, and locally under tether to the ClusterIP service,
// through a port-forward to the agent and (agent.transport direct, as
// tether in a CI runner pod would) to the agent pod's IP.
func outgoingPaths(c *cluster, cfg, cfgDirect, pfPort string) []clientPath {
	svc := "http://" + c.ServiceIP
	return []clientPath{
		{"in the cluster (pod netns)", c.inCluster, svc},
		{"kubectl port-forward", func(a ...string) []string { return a }, "http://127.0.0.1:" + pfPort},
		{"tether exec", func(a ...string) []string { return tetherExec(cfg, "off", a...) }, svc},
		{"tether exec, direct transport", func(a ...string) []string { return tetherExec(cfgDirect, "off", a...) }, svc},
	}
}

// TestOutgoing: latency of small HTTP requests and throughput of a 256 MiB
// download from a local client under tether to a ClusterIP service, vs
// the same client through kubectl port-forward to the serving pod, vs the
// same client inside the cluster. Rounds interleave the three paths.
func TestOutgoing(t *testing.T) {
	benchEnabled(t)
	c := benchCluster(t)
	// A node's agent left by an earlier benchmark listens on loopback
	// only: the direct session needs one of its own.
	waitNoAgent(t, false)
	cfg := writeConfig(t, "outgoing", "2s", "")
	// The node's agent is shared: held by a direct session, it listens on
	// its pod IP (TLS) as well as on loopback (port-forwards).
	cfgDirect := writeConfig(t, "outgoing-direct", "2s", "  transport: direct\n")
	holdAgent(t, cfgDirect)
	pfProc, port := portForward(t, c.ServerPod)
	paths := outgoingPaths(c, cfg, cfgDirect, port)
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
	cpuPerGiB := make([][]float64, len(paths)) // s per GiB: client + relay (tether or kubectl) + agent
	cpuPerReq := make([][]float64, len(paths)) // µs per keep-alive GET: client + relay + agent
	cmds := map[string]string{}
	// carried is the CPU time (ms) of what carries path i's bytes besides
	// the client's own process: kubectl port-forward, or the agent.
	carried := func(i int) float64 {
		switch i {
		case 1:
			return cpuMS(pfProc.pid())
		case 2, 3:
			return cpuNow(t, c, nil).agent
		}
		return 0
	}
	// latencies runs the client once: its latencies, and the CPU time
	// (ms) of the run (client, tether CLI, agent or kubectl).
	latencies := func(i int, p clientPath, n int, extra ...string) ([]float64, float64) {
		file := filepath.Join(binDir, fmt.Sprintf("lat-%d.txt", i))
		argv := p.wrap(append(append([]string{clientBin, "lat", "-n", strconv.Itoa(n), "-expect", "pod", "-o", file}, extra...), p.base+"/small")...)
		before := carried(i)
		_, cpu := mustRunCPU(t, 5*time.Minute, kubeEnv(), argv...)
		ms := float64(cpu.Microseconds())/1000 + carried(i) - before
		if n == 0 {
			return nil, ms
		}
		cmds[fmt.Sprint(p.label, extra)] = cmdline(argv)
		return readSamples(t, file), ms
	}
	for range rounds {
		for i, p := range paths {
			lat, ms := latencies(i, p, perRound, "-warmup", "100")
			keepAlive[i] = append(keepAlive[i], lat...)
			// The same run without the measured requests: what is left
			// is their CPU, not the start of tether or of the client.
			_, idle := latencies(i, p, 0, "-warmup", "100")
			cpuPerReq[i] = append(cpuPerReq[i], (ms-idle)*1000/perRound)
		}
	}
	for range connRounds {
		for i, p := range paths {
			lat, _ := latencies(i, p, perConn, "-warmup", "10", "-new")
			newConn[i] = append(newConn[i], lat...)
		}
	}
	for range dlRounds {
		for i, p := range paths {
			argv := p.wrap(clientBin, "get", "-expect", "pod", fmt.Sprintf("%s/bytes?n=%d", p.base, dlSize))
			agent0, kubectl0 := cpuNow(t, c, nil).agent, cpuMS(pfProc.pid())
			out, cpu := mustRunCPU(t, 5*time.Minute, kubeEnv(), argv...)
			mibs[i] = append(mibs[i], kv(t, out, "mib_s"))
			// The client's CPU and, per path, what carried its bytes: the
			// tether CLI (it waits for the client: counted with it) and
			// the agent, or kubectl port-forward.
			ms := float64(cpu.Milliseconds())
			switch i {
			case 1:
				ms += cpuMS(pfProc.pid()) - kubectl0
			case 2, 3:
				ms += cpuNow(t, c, nil).agent - agent0
			}
			cpuPerGiB[i] = append(cpuPerGiB[i], ms/1000/(float64(dlSize)/(1<<30)))
			cmds[p.label+" get"] = cmdline(argv)
		}
	}

	const cl, pf, tt, td = 0, 1, 2, 3
	lat := func(i int, samples [][]float64, extra ...string) report.Measure {
		return report.Samples(paths[i].label, cmds[fmt.Sprint(paths[i].label, extra)], samples[i])
	}
	dl := func(i int) report.Measure {
		return report.Runs(paths[i].label, cmds[paths[i].label+" get"], mibs[i])
	}
	cpuReq := func(i int) report.Measure {
		return report.Runs(paths[i].label, cmds[fmt.Sprint(paths[i].label, []string{"-warmup", "100"})], cpuPerReq[i])
	}
	cpuGiB := func(i int) report.Measure {
		return report.Runs(paths[i].label, cmds[paths[i].label+" get"], cpuPerGiB[i])
	}
	ka, nc := []string{"-warmup", "100"}, []string{"-warmup", "10", "-new"}
	rows := []report.Row{
		{Name: "keep-alive GET /small, vs port-forward", Stat: "p50", Unit: "µs", Baseline: lat(pf, keepAlive, ka...), Tether: lat(tt, keepAlive, ka...),
			Target: &report.Target{Of: "ratio", Op: "<=", Limit: 1.0}, Summary: true},
		{Name: "keep-alive GET /small, vs port-forward", Stat: "p99", Unit: "µs", Baseline: lat(pf, keepAlive, ka...), Tether: lat(tt, keepAlive, ka...), Summary: true},
		{Name: "keep-alive GET /small, direct transport, vs port-forward", Stat: "p50", Unit: "µs", Baseline: lat(pf, keepAlive, ka...), Tether: lat(td, keepAlive, ka...),
			Target: &report.Target{Of: "ratio", Op: "<=", Limit: 0.4}, Summary: true},
		{Name: "keep-alive GET /small, direct transport, vs port-forward", Stat: "p99", Unit: "µs", Baseline: lat(pf, keepAlive, ka...), Tether: lat(td, keepAlive, ka...)},
		{Name: "keep-alive GET /small, CPU per request (client + relay + agent), vs port-forward", Stat: "median", Unit: "µs", Baseline: cpuReq(pf), Tether: cpuReq(tt), Summary: true},
		{Name: "keep-alive GET /small, direct transport, CPU per request, vs port-forward", Stat: "median", Unit: "µs", Baseline: cpuReq(pf), Tether: cpuReq(td)},
		{Name: "keep-alive GET /small, vs in the cluster", Stat: "p50", Unit: "µs", Baseline: lat(cl, keepAlive, ka...), Tether: lat(tt, keepAlive, ka...), Summary: true},
		{Name: "keep-alive GET /small, vs in the cluster", Stat: "p99", Unit: "µs", Baseline: lat(cl, keepAlive, ka...), Tether: lat(tt, keepAlive, ka...)},
		{Name: "port-forward itself, keep-alive GET /small", Stat: "p50", Unit: "µs", Baseline: lat(cl, keepAlive, ka...), Tether: lat(pf, keepAlive, ka...),
			Note: "not tether: kubectl port-forward against the in-cluster limit, for scale"},
		{Name: "new connection + GET /small, vs port-forward", Stat: "p50", Unit: "µs", Baseline: lat(pf, newConn, nc...), Tether: lat(tt, newConn, nc...)},
		{Name: "new connection + GET /small, vs port-forward", Stat: "p99", Unit: "µs", Baseline: lat(pf, newConn, nc...), Tether: lat(tt, newConn, nc...)},
		{Name: "new connection + GET /small, vs in the cluster", Stat: "p50", Unit: "µs", Baseline: lat(cl, newConn, nc...), Tether: lat(tt, newConn, nc...)},
		{Name: "256 MiB download, vs port-forward", Stat: "median", Unit: "MiB/s", HigherIsBetter: true, Baseline: dl(pf), Tether: dl(tt),
			Target: &report.Target{Of: "ratio", Op: ">=", Limit: 1.0}, Summary: true},
		{Name: "256 MiB download, CPU s per GiB (client + relay + agent), vs port-forward", Stat: "median", Unit: "s", Baseline: cpuGiB(pf), Tether: cpuGiB(tt), Summary: true},
		{Name: "256 MiB download, direct transport, vs port-forward", Stat: "median", Unit: "MiB/s", HigherIsBetter: true, Baseline: dl(pf), Tether: dl(td), Summary: true},
		{Name: "256 MiB download, direct transport, CPU s per GiB, vs port-forward", Stat: "median", Unit: "s", Baseline: cpuGiB(pf), Tether: cpuGiB(td)},
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
			"tether = tether exec -t deployment/benchsrv, to the ClusterIP (the agent dials it in the target pod's netns); direct transport: the same with agent.transport direct (this machine routes to pod IPs, as a pod in the cluster does);",
			"CPU per request: the same, over one round's 1000 requests, less that of the same run with none (tether's and the client's start, the warm-up); CPU per GiB: user+system time of the client and of what carried its bytes: kubectl port-forward, or the tether CLI (counted with the client it waits for) and the agent's processes (not the API server's or the kubelet's, on either path)",
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
