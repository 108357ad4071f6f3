package operator

import (
	"net"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tether-dev/tether/internal/protocol"
)

// TestRelayHandshake: what the client puts in its hello about the agent
// (token, container, grant, admin) never reaches the agent.
func TestRelayHandshake(t *testing.T) {
	clientSide, proxyClient := net.Pipe()
	proxyAgent, agentSide := net.Pipe()
	grant := &protocol.Grant{User: "alice", Namespace: "a"}
	done := make(chan protocol.Hello, 1)
	go func() {
		var h protocol.Hello
		protocol.ReadFrame(agentSide, &h)
		done <- h
		protocol.WriteFrame(agentSide, protocol.Welcome{Version: protocol.Version, SessionID: "s1"})
	}()
	go relayHandshake(proxyClient, proxyAgent, func(h *protocol.Hello) {
		h.Token, h.Target, h.Grant, h.Admin = "agent-token", "containerd://a", grant, false
	})
	w, err := protocol.ClientHandshake(clientSide, protocol.Hello{Token: "forged", Target: "containerd://b", Admin: true,
		Grant: &protocol.Grant{User: "system:admin", Namespace: "b"}, Run: "r1"})
	if err != nil || w.SessionID != "s1" {
		t.Fatalf("handshake: %+v %v", w, err)
	}
	select {
	case h := <-done:
		if h.Token != "agent-token" || h.Target != "containerd://a" || h.Admin || h.Grant.Who() != "alice" || h.Grant.Namespace != "a" || h.Run != "r1" {
			t.Fatalf("the agent got %+v", h)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no hello reached the agent")
	}
}

// TestGroup: one Session per run, with a pod per agent session, its ports
// once, namespaces apart; sessions without a grant are not the operator's.
func TestGroup(t *testing.T) {
	now := time.Now()
	agent := func(name string, ss ...protocol.SessionInfo) agentSessions {
		return agentSessions{pod: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}}, sessions: ss}
	}
	g := func(user, ns, pod string) *protocol.Grant {
		return &protocol.Grant{User: user, Namespace: ns, Target: "deployment/web", Pod: pod}
	}
	steal := []protocol.SubscriptionInfo{{Port: 8080, Mode: "steal", Filter: "header ~ x"}}
	all := []agentSessions{
		agent("agent-1",
			protocol.SessionInfo{ID: "a", Run: "r1", Grant: g("alice", "ns1", "web-1"), Started: now, Subscriptions: steal},
			protocol.SessionInfo{ID: "b", Run: "r1", Grant: g("alice", "ns1", "web-2"), Started: now.Add(time.Second), Subscriptions: steal},
			protocol.SessionInfo{ID: "c", Run: "r2", Grant: g("bob", "ns2", "web-1"), Started: now.Add(2 * time.Second)},
			protocol.SessionInfo{ID: "d", Run: "r3", Started: now}),
		agent("agent-2", protocol.SessionInfo{ID: "e", Run: "r1", Grant: g("alice", "ns1", "web-3"), Started: now.Add(-time.Second), Subscriptions: steal}),
	}
	got := group(all, "", func(string, ...any) {})
	if len(got) != 2 || got[0].Name != "r1" || got[1].Name != "r2" {
		t.Fatalf("sessions %+v, want r1 then r2", got)
	}
	r1 := got[0]
	if len(r1.Status.Pods) != 3 || len(r1.Status.Ports) != 1 || r1.Spec.User != "alice" || !r1.Status.Started.Time.Equal(now.Add(-time.Second)) || r1.Namespace != "ns1" {
		t.Errorf("r1: %+v", r1)
	}
	if got := group(all, "ns2", func(string, ...any) {}); len(got) != 1 || got[0].Spec.User != "bob" {
		t.Errorf("in ns2: %+v", got)
	}
}
