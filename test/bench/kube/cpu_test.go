package kube

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tether-dev/tether/internal/cri"
	"github.com/tether-dev/tether/test/bench/report"
)

// cpuUse is the CPU time (user+system, ms) of the processes a figure
// depends on: the deployed app, the agent, the sessions' tether CLIs
// (with the local programs they run). A
// ratio is read with it beside it, so that it cannot be bought by burning
// CPU elsewhere.
type cpuUse struct{ app, agent, cli float64 }

func (a cpuUse) minus(b cpuUse) cpuUse {
	return cpuUse{app: a.app - b.app, agent: a.agent - b.agent, cli: a.cli - b.cli}
}

func (a cpuUse) total() float64 { return a.app + a.agent + a.cli }

// per is a's CPU per request of n, in µs.
func (a cpuUse) per(n float64) cpuUse {
	return cpuUse{app: a.app * 1000 / n, agent: a.agent * 1000 / n, cli: a.cli * 1000 / n}
}

func totals(us []cpuUse) []float64 {
	var out []float64
	for _, u := range us {
		out = append(out, u.total())
	}
	return out
}

// cpuNow reads the CPU time of the serving pod's container, of every
// agent pod's, and of the sessions' tether processes.
func cpuNow(t *testing.T, c *cluster, ss []*session) cpuUse {
	t.Helper()
	var u cpuUse
	for _, pid := range containerPIDs(c.ServerCID) {
		u.app += cpuMS(pid)
	}
	for _, p := range agentPods(t) {
		for _, cs := range p.Status.ContainerStatuses {
			if _, id, err := cri.ParseContainerID(cs.ContainerID); err == nil {
				for _, pid := range containerPIDs(id) {
					u.agent += cpuMS(pid)
				}
			}
		}
	}
	for _, s := range ss {
		u.cli += treeCPU(s.p.pid())
	}
	return u
}

// treeCPU is the CPU time (ms) of pid and of its descendants (a
// session's CLI and the local program it runs).
func treeCPU(pid int) float64 {
	ms := cpuMS(pid)
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		for _, f := range strings.Fields(string(b)) {
			if child, err := strconv.Atoi(f); err == nil {
				ms += treeCPU(child)
			}
		}
	}
	return ms
}

// serverCID is the container ID of the serving pod's container.
func serverCID(pod string) (string, error) {
	p, err := client.CoreV1().Pods(ns).Get(context.Background(), pod, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	_, id, err := cri.ParseContainerID(p.Status.ContainerStatuses[0].ContainerID)
	return id, err
}

// cpuRow compares the CPU per request of the app, the agent and the CLIs
// together with the app's alone (no agent).
func cpuRow(name, cmd string, base, with []cpuUse, summary bool) report.Row {
	return report.Row{
		Name: name, Stat: "median", Unit: "µs",
		Baseline: report.Runs("the app, no agent", cmd, totals(base)),
		Tether:   report.Runs("app + agent + CLIs", cmd, totals(with)),
		Summary:  summary,
	}
}

// cpuNote says where each state's CPU per request went (medians of the
// wrk runs on /small).
func cpuNote(base *load, loads map[int]*load) string {
	s := "CPU per /small request under wrk: no agent: " + cpuSplit(base.wrkCPU)
	for _, n := range []int{1, 10, 100} {
		if l := loads[n]; l != nil {
			s += fmt.Sprintf("; %d sessions: %s", n, cpuSplit(l.wrkCPU))
		}
	}
	return s
}

// cpuSplit says where the CPU per request went (medians of the runs):
// the app, the agent, the CLIs with their local programs.
func cpuSplit(us []cpuUse) string {
	var app, agent, cli []float64
	for _, u := range us {
		app, agent, cli = append(app, u.app), append(agent, u.agent), append(cli, u.cli)
	}
	return fmt.Sprintf("app %s, agent %s, CLIs %s", report.Num(median(app), "µs"), report.Num(median(agent), "µs"), report.Num(median(cli), "µs"))
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
