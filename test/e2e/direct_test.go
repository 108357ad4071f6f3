package e2e

import (
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/agenttls"
	"github.com/tether-dev/tether/internal/kube"
	"github.com/tether-dev/tether/internal/protocol"
)

// TestDirectTransport: with agent.transport direct, tether reaches its
// agent at the agent pod's IP (this machine routes to the local
// cluster's pods, as a pod in the cluster does), with no port-forward and
// no fallback to one; the agent serves only TLS keyed by its token there:
// a plain hello and a TLS client with another token get nothing.
func TestDirectTransport(t *testing.T) {
	requireE2E(t)
	ns := newNamespace(t, "e2e-direct", nil)
	apply(t, []byte(deploymentYAML(ns, "web", "direct", true)))
	waitDeployments(t, ns, 2*time.Minute)
	dir := t.TempDir()
	cfg := agentConfig(t, dir, "  transport: direct")
	p := startTether(t, dir, "exec", "-f", cfg, "-n", ns, "-t", "deployment/web", "--progress", "plain", "--",
		"sh", "-c", `printenv MARKER; cat /app/marker.txt; echo; while [ ! -e `+dir+`/stop ]; do sleep 0.2; done; printenv MARKER; echo done`)
	p.waitStdout(t, "direct\nfile of "+ns+"/web\n", 3*time.Minute)

	pods := runningAgentPods(t, ns, 1, time.Minute)
	agent := pods[0]
	token := kube.AgentToken(&agent)
	if agent.Status.PodIP == "" || token == "" {
		t.Fatalf("agent pod %s: IP %q, token set %v", agent.Name, agent.Status.PodIP, token != "")
	}
	addr := net.JoinHostPort(agent.Status.PodIP, strconv.Itoa(kube.DefaultAgentPort))
	dial := func() net.Conn {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dialling the agent at %s: %v", addr, err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		t.Cleanup(func() { c.Close() })
		return c
	}
	// Plain, from off the pod's loopback: closed unanswered.
	plain := dial()
	protocol.WriteFrame(plain, protocol.Hello{Magic: protocol.Magic, Version: protocol.Version, MinVersion: protocol.MinVersion, Token: token, Client: "e2e"})
	if b, err := io.ReadAll(plain); len(b) != 0 || err != nil && !isReset(err) {
		t.Errorf("a plain hello at %s: read %q, %v; want the connection closed unanswered", addr, b, err)
	}
	// TLS with another token: not that agent.
	other := agenttls.Client(dial(), "not-the-token")
	if err := other.Handshake(); !errors.Is(err, agenttls.ErrNotThatAgent) {
		t.Errorf("TLS with another token: %v, want %v", err, agenttls.ErrNotThatAgent)
	}
	// TLS with the token: the agent's welcome.
	good := agenttls.Client(dial(), token)
	if _, err := protocol.ClientHandshake(good, protocol.Hello{Token: token, Client: "e2e", Admin: true}); err != nil {
		t.Errorf("TLS with the token: %v", err)
	}

	touch(t, dir+"/stop")
	p.waitStdout(t, "done", time.Minute)
	waitExit(t, p, 30*time.Second)
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d\n%s", code, p.Stderr())
	}
	if strings.Contains(p.Stderr(), "port-forward") {
		t.Errorf("a direct session mentions a port-forward:\n%s", p.Stderr())
	}
	noLeftovers(t, ns, 60*time.Second)
}

func isReset(err error) bool { return strings.Contains(err.Error(), "connection reset") }
