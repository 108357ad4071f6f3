// Package demo is `make demo`: it brings up a pod-like target (network,
// mount, UTS and PID namespaces, its own root file system, a DNS server and
// a web service only the pod can reach), starts tether-agent next to it,
// and runs ordinary programs first locally, then under `tether exec`.
// Each step is also checked, so the demo doubles as a smoke test.
package demo

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tether-dev/tether/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

func say(format string, args ...any) { fmt.Printf(format+"\n", args...) }

func show(r harness.Result) {
	out := strings.TrimRight(r.Stdout+r.Stderr, "\n")
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "tether: ") {
			continue // the session summary, shown once below
		}
		say("    %s", l)
	}
	say("    (exit code %d)", r.ExitCode)
}

func TestDemo(t *testing.T) {
	env := harness.Setup(t)
	harness.Tether(t)
	pod := env.Pod
	say("\n== a pod: pid %d, ip %s, hostname %s, root %s", pod.PID, pod.IP, pod.Hostname, pod.RootFS)
	say("   it has env DEMO_GREETING, files under /app, DNS at %s with %s -> %s", harness.DNSIP, harness.WebName, harness.WebIP)
	agent := harness.StartAgent(t, pod)
	say("== tether-agent attached to the pod, listening on %s", agent.Addr)

	probe := harness.Probe(t)
	curl := harness.NeedTool(t, "curl")
	steps := []struct {
		what string
		cmd  []string
		want string
	}{
		{"the pod's environment", []string{"sh", "-c", "echo DEMO_GREETING=$DEMO_GREETING"}, "DEMO_GREETING=" + pod.EnvValue("DEMO_GREETING")},
		{"a file only the pod has", []string{"cat", "/app/response.txt"}, strings.TrimSpace(harness.PodResponse)},
		{"the pod's hostname", []string{"hostname"}, pod.Hostname},
		{"a cluster service by its short name (curl, glibc resolver)", []string{curl, "-sS", "--noproxy", "*", "--max-time", "10", "http://web/demo"}, harness.WebGreeting},
		{"the same from a static Go binary (server sees the pod's IP)", []string{probe, "get", "http://" + harness.WebName + "/demo"}, pod.IP},
	}
	for _, s := range steps {
		say("\n-- %s: %s", s.what, strings.Join(shortCmd(s.cmd), " "))
		say("  locally:")
		local := harness.RunLocal(t, harness.ExecOpts{}, s.cmd...)
		show(local)
		say("  under tether exec:")
		r := harness.Exec(t, agent.Addr, harness.ExecOpts{}, s.cmd...)
		show(r)
		if !r.OK() || !strings.Contains(r.Stdout, s.want) {
			t.Errorf("%s: want output containing %q\n%s", s.what, s.want, r)
		}
		if local.OK() && strings.Contains(local.Stdout, s.want) {
			t.Errorf("%s: the local run already shows %q: the demo proves nothing", s.what, s.want)
		}
	}
	r := harness.Exec(t, agent.Addr, harness.ExecOpts{}, "true")
	say("\nthe session summary tether prints on stderr:")
	for _, l := range strings.Split(r.Stderr, "\n") {
		if strings.HasPrefix(l, "tether: ") {
			say("  %s", l)
		}
	}
}

func shortCmd(cmd []string) []string {
	out := append([]string(nil), cmd...)
	for i, c := range out {
		if strings.HasPrefix(c, "/") && strings.Contains(c, "tth-run") {
			out[i] = "probe"
		} else if strings.HasPrefix(c, "/usr/bin/") {
			out[i] = strings.TrimPrefix(c, "/usr/bin/")
		}
	}
	return out
}
