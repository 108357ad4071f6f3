package integration

import (
	"strings"
	"testing"

	"github.com/tether-dev/tether/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// fixture is the shared fake cluster plus an agent for one test.
type fixture struct {
	env   *harness.Env
	agent *harness.Agent
}

// start sets up the harness (or skips) and starts an agent for the pod.
func start(t *testing.T) *fixture {
	t.Helper()
	env := harness.Setup(t)
	harness.Tether(t) // build first: a build failure is the clearest message
	return &fixture{env: env, agent: harness.StartAgent(t, env.Pod)}
}

// tether runs cmd under `tether exec` with the given config (may be "").
func (f *fixture) tether(t *testing.T, config string, cmd ...string) harness.Result {
	t.Helper()
	return harness.Exec(t, f.agent.Addr, harness.ExecOpts{Config: config}, cmd...)
}

// local runs cmd directly (no tether), for negative checks.
func local(t *testing.T, cmd ...string) harness.Result {
	t.Helper()
	return harness.RunLocal(t, harness.ExecOpts{}, cmd...)
}

// wantOK fails t unless r exited 0.
func wantOK(t *testing.T, r harness.Result) {
	t.Helper()
	if !r.OK() {
		t.Fatalf("want exit code 0\n%s", r)
	}
}

// wantFail fails t if r exited 0, and unless its output mentions one of
// the given substrings (case-insensitive; none given: any failure).
func wantFail(t *testing.T, r harness.Result, anyOf ...string) {
	t.Helper()
	if r.OK() {
		t.Fatalf("want failure, got exit code 0\n%s", r)
	}
	if len(anyOf) == 0 {
		return
	}
	out := strings.ToLower(r.Stdout + r.Stderr)
	for _, s := range anyOf {
		if strings.Contains(out, strings.ToLower(s)) {
			return
		}
	}
	t.Fatalf("want output mentioning one of %q\n%s", anyOf, r)
}

// wantStdout fails t unless r succeeded and its stdout contains every want.
func wantStdout(t *testing.T, r harness.Result, want ...string) {
	t.Helper()
	wantOK(t, r)
	for _, w := range want {
		if !strings.Contains(r.Stdout, w) {
			t.Fatalf("stdout lacks %q\n%s", w, r)
		}
	}
}

// wantStdoutLacks fails t if r's stdout contains any of the strings.
func wantStdoutLacks(t *testing.T, r harness.Result, not ...string) {
	t.Helper()
	for _, n := range not {
		if strings.Contains(r.Stdout, n) {
			t.Fatalf("stdout unexpectedly contains %q\n%s", n, r)
		}
	}
}

// lines returns the non-empty lines of s, trimmed.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// python3 is the system Python (glibc resolver, urllib), not a pyenv shim.
const python3 = "/usr/bin/python3"

// unreachable are the messages of a connect to a cluster address that was
// not taken over by tether: the host's `unreachable 198.18.0.0/15` route
// gives EHOSTUNREACH (TCP) or ENETUNREACH.
var unreachable = []string{"no route to host", "network is unreachable", "host unreachable"}
