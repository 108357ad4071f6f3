package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/test/harness"
)

// TestConcurrentSessions: one agent serves several `tether exec` sessions
// at once, each with its own connections, files and environment.
func TestConcurrentSessions(t *testing.T) {
	f := start(t)
	probe := harness.Probe(t)
	const n = 4
	var procs []*harness.Process
	for i := range n {
		// Each session reads a file, fetches the web service and holds its
		// session open for a moment so they overlap.
		script := fmt.Sprintf(`%s read /app/response.txt && %s get http://web/session-%d && sleep 1 && %s get http://web/again-%d`, probe, probe, i, probe, i)
		procs = append(procs, harness.StartExec(t, f.agent.Addr, harness.ExecOpts{}, "sh", "-c", script))
	}
	for i, p := range procs {
		r, ok := p.Wait(60 * time.Second)
		if !ok {
			t.Fatalf("session %d did not finish\n%s", i, r)
		}
		wantStdout(t, r, strings.TrimSpace(harness.PodResponse), fmt.Sprintf("path=/session-%d", i), fmt.Sprintf("path=/again-%d", i), "client="+harness.PodIP)
	}
	// The agent is still healthy afterwards.
	wantStdout(t, f.tether(t, "", probe, "get", "http://web/after"), "path=/after")
}
