package bench

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tether-dev/tether/test/bench/report"
	"github.com/tether-dev/tether/test/harness"
)

// latencies sends n requests on one keep-alive HTTP/1.1 connection from
// the client namespace and returns their round-trip times in µs, checking
// who answered.
func latencies(t *testing.T, c *harness.Client, port, n int, hdr http.Header, who string) []float64 {
	t.Helper()
	conn, err := c.HTTP1(port)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	out := make([]float64, 0, n)
	for i := range n {
		start := time.Now()
		a, err := conn.Do("GET", fmt.Sprintf("/bench/%d", i), hdr)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		out = append(out, float64(time.Since(start).Microseconds()))
		if a.Who != who {
			t.Fatalf("request %d answered by %q, want %q", i, a.Who, who)
		}
	}
	return out
}

// TestIncomingOverhead: the latency a request to the pod gains when an
// agent with a filtered stealer sits on its port: unmatched requests
// (passed through to the deployed app) and matched ones (answered by the
// developer's local app), against the same requests with no agent.
func TestIncomingOverhead(t *testing.T) {
	benchEnabled(t)
	env := harness.Setup(t)
	harness.Tether(t)
	env.PodApp(t)
	c := env.Client(t)
	const port, n = 18119, 500
	base := latencies(t, c, port, n, nil, "pod")
	agent := harness.StartAgent(t, env.Pod)
	const cfg = `{"incoming":{"mode":"steal","http_filter":{"header_filter":"^x-tether-user: alice$"}}}`
	harness.StartLocalApp(t, agent.Addr, harness.AppOpts{Who: "local", HTTPPorts: []int{port}, Config: cfg})
	unmatched := latencies(t, c, port, n, nil, "pod")
	stolen := latencies(t, c, port, n, harness.Header("alice"), "local")
	const client = "HTTP/1.1 keep-alive GETs from the client namespace to the pod's port"
	writeResults(t, report.File{
		Name:  "incoming",
		Title: "incoming traffic in network-namespace pods (agent started by hand, no Kubernetes)",
		Notes: []string{fmt.Sprintf("%d sequential requests per figure on one keep-alive connection; one session steals with header_filter ^x-tether-user: alice$", n)},
		Rows: []report.Row{
			{Name: "unmatched request, passed through", Stat: "p50", Unit: "µs", Baseline: report.Samples("no agent", client, base), Tether: report.Samples("passed through", client, unmatched)},
			{Name: "unmatched request, passed through", Stat: "p99", Unit: "µs", Baseline: report.Samples("no agent", client, base), Tether: report.Samples("passed through", client, unmatched)},
			{Name: "stolen request, answered locally", Stat: "p50", Unit: "µs", Baseline: report.Samples("no agent", client, base), Tether: report.Samples("answered locally", client+", x-tether-user: alice", stolen)},
			{Name: "stolen request, answered locally", Stat: "p99", Unit: "µs", Baseline: report.Samples("no agent", client, base), Tether: report.Samples("answered locally", client+", x-tether-user: alice", stolen)},
		},
	})
}
