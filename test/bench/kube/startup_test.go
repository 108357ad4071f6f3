package kube

import (
	"testing"
	"time"

	"github.com/tether-dev/tether/test/bench/report"
)

// TestStartup: the whole `tether exec -t deployment/benchsrv -- true`,
// warm (the agent runs: a session holds it) and cold (no agent pod nor
// Job: the run creates the agent), against `kubectl exec POD -- true`, the
// API-server round trip every kubectl-based tool pays.
func TestStartup(t *testing.T) {
	benchEnabled(t)
	c := benchCluster(t)
	const coldRuns, warmRuns = 7, 20
	cold := writeConfig(t, "startup-cold", "30s", "")
	warm := writeConfig(t, "startup-warm", "2s", "")
	kexec := []string{kubectl, "-n", ns, "exec", c.ServerPod, "-c", "app", "--", "true"}
	coldCmd := tetherExec(cold, "off", "true")
	warmCmd := tetherExec(warm, "off", "true")

	var base, coldT, warmT []float64
	for range coldRuns {
		deleteAgents(t)
		_, d := mustRun(t, 3*time.Minute, kubeEnv(), coldCmd...)
		coldT = append(coldT, ms(d))
		_, d = mustRun(t, time.Minute, kubeEnv(), kexec...)
		base = append(base, ms(d))
	}
	deleteAgents(t)
	holder := holdAgent(t, warm)
	for range warmRuns {
		_, d := mustRun(t, time.Minute, kubeEnv(), warmCmd...)
		warmT = append(warmT, ms(d))
		_, d = mustRun(t, time.Minute, kubeEnv(), kexec...)
		base = append(base, ms(d))
	}
	holder.stop(t)

	kb := report.Runs("kubectl exec POD -- true", cmdline(kexec), base)
	writeResults(t, report.File{
		Name:  "startup",
		Title: "start-up on Kubernetes: tether exec -t deployment/X -- true vs kubectl exec POD -- true",
		Notes: []string{
			"wall time of the whole command, ms; warm: another session keeps the agent running;",
			"cold: before each run the agent Job is deleted and gone (its pod too), the run creates a new agent Job and waits for its pod",
		},
		Rows: []report.Row{
			{
				Name: "warm start (agent running)", Stat: "median", Unit: "ms",
				Baseline: kb,
				Tether:   report.Runs("tether exec, agent shared", cmdline(warmCmd), warmT),
				Target:   &report.Target{Of: "tether", Op: "<=", Limit: 1000},
				Summary:  true,
			},
			{
				Name: "cold start (agent pod created)", Stat: "median", Unit: "ms",
				Baseline: kb,
				Tether:   report.Runs("tether exec, new agent", cmdline(coldCmd), coldT),
				Summary:  true,
			},
		},
	})
}
