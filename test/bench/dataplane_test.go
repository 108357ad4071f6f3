// Package bench holds tether's benchmarks in network-namespace "pods"
// (test/harness; no Kubernetes): the data plane and incoming traffic with
// an agent started by hand. The Kubernetes benchmarks are in test/bench/kube;
// make bench (hack/bench.sh) runs both. Each figure is measured next to
// its baseline in the same run and reported as a ratio, because this
// machine is noisy. Results go to bench/results/ (test/bench/report).
package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tether-dev/tether/test/bench/report"
	"github.com/tether-dev/tether/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// benchEnabled gates the benchmarks: they take minutes and want a quiet machine.
func benchEnabled(t *testing.T) {
	if os.Getenv("TETHER_BENCH") != "1" {
		t.Skip("benchmarks run with TETHER_BENCH=1 (make bench)")
	}
	harness.Require(t)
}

// parseKV reads "key=value" numbers from a loop's output.
func parseKV(t *testing.T, out, key string) float64 {
	t.Helper()
	x, err := report.KV(out, key)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func TestDataPlaneOverhead(t *testing.T) {
	benchEnabled(t)
	env := harness.Setup(t)
	harness.Tether(t)
	agent := harness.StartAgent(t, env.Pod)
	loop := harness.GoBinary(t, "./test/bench/loop", "loop")
	env.Pod.CopyIn(t, loop, "/loop")
	tether := func(args ...string) harness.Result {
		r := harness.Exec(t, agent.Addr, harness.ExecOpts{Timeout: 5 * time.Minute}, args...)
		if !r.OK() {
			t.Fatalf("%s", r)
		}
		return r
	}
	direct := func(args ...string) harness.Result {
		r := harness.RunLocal(t, harness.ExecOpts{Timeout: 5 * time.Minute}, args...)
		if !r.OK() {
			t.Fatalf("%s", r)
		}
		return r
	}
	inPod := func(args ...string) harness.Result {
		r := env.Pod.Run(t, args...)
		if !r.OK() {
			t.Fatalf("%s", r)
		}
		return r
	}
	const rounds = 5
	us := func(ns float64) float64 { return ns / 1000 }
	var rows []report.Row
	// 1. A trapped syscall that stays local (open+close, CONTINUE path).
	var d, w []float64
	for range rounds {
		d = append(d, us(parseKV(t, direct(loop, "open", "100000", "/etc/passwd").Stdout, "ns_per_op")))
		w = append(w, us(parseKV(t, tether(loop, "open", "100000", "/etc/passwd").Stdout, "ns_per_op")))
	}
	rows = append(rows, report.Row{Name: "open+close of a local file (trapped, continued), per call", Stat: "median", Unit: "µs",
		Baseline: report.Runs("direct", "loop open 100000 /etc/passwd", d),
		Tether:   report.Runs("tether exec", "tether exec --agent-addr AGENT -- loop open 100000 /etc/passwd", w)})
	// 2. stat of a remote file (one agent round trip) vs stat in the pod.
	d, w = nil, nil
	for range rounds {
		d = append(d, us(parseKV(t, inPod("/loop", "stat", "20000", "/app/response.txt").Stdout, "ns_per_op")))
		w = append(w, us(parseKV(t, tether(loop, "stat", "2000", "/app/response.txt").Stdout, "ns_per_op")))
	}
	rows = append(rows, report.Row{Name: "stat of a remote file, per call", Stat: "median", Unit: "µs",
		Baseline: report.Runs("in the pod", "(in the pod) loop stat 20000 /app/response.txt", d),
		Tether:   report.Runs("tether exec", "tether exec --agent-addr AGENT -- loop stat 2000 /app/response.txt", w),
		Summary:  true})
	// 3. Process start-up: the whole `tether exec -- true` vs `true`.
	d, w = nil, nil
	for range 20 {
		d = append(d, float64(direct("true").Duration.Microseconds())/1000)
		w = append(w, float64(tether("true").Duration.Microseconds())/1000)
	}
	rows = append(rows, report.Row{Name: "start-up, agent started by hand (incl. session setup)", Stat: "median", Unit: "ms",
		Baseline: report.Runs("true", "true", d),
		Tether:   report.Runs("tether exec", "tether exec --agent-addr AGENT -- true", w)})
	// 4. New connection + HTTP request to a cluster service.
	url := "http://" + harness.WebIP + "/bench"
	var dp, wp []float64
	for range rounds {
		dp = append(dp, parseKV(t, inPod("/loop", "get", "300", url).Stdout, "p50_us"))
		wp = append(wp, parseKV(t, tether(loop, "get", "300", url).Stdout, "p50_us"))
	}
	rows = append(rows, report.Row{Name: "new connection + HTTP GET to a service", Stat: "median p50", Unit: "µs",
		Baseline: report.Runs("from the pod", "(in the pod) loop get 300 "+url, dp),
		Tether:   report.Runs("tether exec", "tether exec --agent-addr AGENT -- loop get 300 "+url, wp)})
	writeResults(t, report.File{
		Name:  "dataplane",
		Title: "data plane in network-namespace pods (agent started by hand, no Kubernetes)",
		Notes: []string{"test/harness: the pod and the services are network namespaces on this machine; 5 rounds (20 for start-up); medians of the rounds"},
		Rows:  rows,
	})
}

// writeResults writes bench/results/NAME.{txt,json} and prints the text.
func writeResults(t *testing.T, f report.File) {
	t.Helper()
	root := harness.ModuleRoot(t)
	f.Env = report.CurrentEnv(root)
	text, err := report.Write(filepath.Join(root, "bench", "results"), f)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Print(text)
}
