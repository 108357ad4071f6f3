// Package bench holds tether's benchmarks (make bench, not make test). Each
// figure is measured next to its baseline in the same run and reported as
// a ratio, because this machine is noisy. Results go to bench/results/.
package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

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

type row struct {
	name, unit         string
	baseline, measured float64
	baseName           string
}

// parseKV reads "key=value" numbers from a loop's output.
func parseKV(t *testing.T, out, key string) float64 {
	t.Helper()
	for _, f := range strings.Fields(out) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("bad %s in %q", key, out)
			}
			return x
		}
	}
	t.Fatalf("no %s in output %q", key, out)
	return 0
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
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
	var rows []row
	// 1. A trapped syscall that stays local (open+close, CONTINUE path).
	var d, w []float64
	for range rounds {
		d = append(d, parseKV(t, direct(loop, "open", "100000", "/etc/passwd").Stdout, "ns_per_op"))
		w = append(w, parseKV(t, tether(loop, "open", "100000", "/etc/passwd").Stdout, "ns_per_op"))
	}
	rows = append(rows, row{"open+close, local file (trapped, continued)", "ns/op", median(d), median(w), "direct"})
	rows = append(rows, row{"  added per trapped syscall", "ns", 0, median(w) - median(d), ""})
	// 2. stat of a remote file (one agent round trip) vs stat in the pod.
	d, w = nil, nil
	for range rounds {
		d = append(d, parseKV(t, inPod("/loop", "stat", "20000", "/app/response.txt").Stdout, "ns_per_op"))
		w = append(w, parseKV(t, tether(loop, "stat", "2000", "/app/response.txt").Stdout, "ns_per_op"))
	}
	rows = append(rows, row{"stat of a remote file", "ns/op", median(d), median(w), "in the pod"})
	// 3. Process start-up: the whole `tether exec -- true` vs `true`.
	d, w = nil, nil
	for range 20 {
		d = append(d, float64(direct("true").Duration.Microseconds()))
		w = append(w, float64(tether("true").Duration.Microseconds()))
	}
	rows = append(rows, row{"start-up: tether exec -- true (incl. session setup)", "µs", median(d), median(w), "true"})
	// 4. New connection + HTTP request to a cluster service.
	url := "http://" + harness.WebIP + "/bench"
	var dp, wp, d99, w99 []float64
	for range rounds {
		r := inPod("/loop", "get", "300", url).Stdout
		dp, d99 = append(dp, parseKV(t, r, "p50_us")), append(d99, parseKV(t, r, "p99_us"))
		r = tether(loop, "get", "300", url).Stdout
		wp, w99 = append(wp, parseKV(t, r, "p50_us")), append(w99, parseKV(t, r, "p99_us"))
	}
	rows = append(rows, row{"connect + HTTP GET, p50", "µs", median(dp), median(wp), "from the pod"})
	rows = append(rows, row{"connect + HTTP GET, p99", "µs", median(d99), median(w99), "from the pod"})
	writeResults(t, "dataplane", rows)
}

func writeResults(t *testing.T, name string, rows []row) {
	var b strings.Builder
	host, _ := os.Hostname()
	load, _ := os.ReadFile("/proc/loadavg")
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Fprintf(&b, "# tether benchmark: %s\n# date %s · host %s · %d cpus · kernel %s · load %s\n",
		name, time.Now().UTC().Format(time.RFC3339), host, runtime.NumCPU(), strings.TrimSpace(string(kernel)), strings.TrimSpace(string(load)))
	fmt.Fprintf(&b, "# medians of repeated runs, or the percentiles named; ratio = tether / baseline, measured in this run\n\n")
	fmt.Fprintf(&b, "%-55s %-12s %12s %12s %8s\n", "scenario", "baseline", "base", "tether", "ratio")
	for _, r := range rows {
		ratio := "-"
		if r.baseline > 0 {
			ratio = fmt.Sprintf("%.2fx", r.measured/r.baseline)
		}
		base := "-"
		if r.baseName != "" {
			base = fmt.Sprintf("%.0f %s", r.baseline, r.unit)
		}
		fmt.Fprintf(&b, "%-55s %-12s %12s %12s %8s\n", r.name, r.baseName, base, fmt.Sprintf("%.0f %s", r.measured, r.unit), ratio)
	}
	fmt.Print(b.String())
	dir := filepath.Join(harness.ModuleRoot(t), "bench", "results")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".txt"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}
