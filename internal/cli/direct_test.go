package cli

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tether-dev/tether/internal/agenttls"
	"github.com/tether-dev/tether/internal/kube"
)

// TestListenOnPodIP: a Job agent listens on its pod's IP only when the
// direct transport will be tried.
func TestListenOnPodIP(t *testing.T) {
	for _, tc := range []struct {
		transport string
		inCluster bool
		want      bool
	}{
		{"auto", false, false},
		{"auto", true, true},
		{"port-forward", true, false},
		{"direct", false, true},
		{"direct", true, true},
	} {
		host := ""
		if tc.inCluster {
			host = "10.96.0.1"
		}
		t.Setenv("KUBERNETES_SERVICE_HOST", host)
		if got := listenOnPodIP(tc.transport); got != tc.want {
			t.Errorf("transport %s, in a pod %v: %v, want %v", tc.transport, tc.inCluster, got, tc.want)
		}
	}
}

// tlsAgent serves the TLS handshake of an agent with token on loopback.
func tlsAgent(t *testing.T, token string) (ip string, port int) {
	t.Helper()
	cfg, err := agenttls.ServerConfig(token)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &agenttls.Listener{Listener: raw, Config: cfg, RequireTLS: true}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Read(make([]byte, 1)) // the handshake happens at first use
			}()
		}
	}()
	a := raw.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

// TestDialDirect: which agents the direct transport dials, and what it
// says when it cannot.
func TestDialDirect(t *testing.T) {
	ip, port := tlsAgent(t, "tok")
	pod := func(name, ip string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}, Status: corev1.PodStatus{PodIP: ip}}
	}
	agent := func(podIP string) *kube.Agent {
		return &kube.Agent{Namespace: "ns", Pod: "agent-pod", PodIP: podIP, Port: port, Name: "tether-agent-x", Token: "tok", OnPodIP: true}
	}
	for _, tc := range []struct {
		name      string
		transport string
		inCluster bool
		pods      []*corev1.Pod
		agent     *kube.Agent
		wantConn  bool
		wantOK    bool
		wantErr   string // in the error; "" for none
		usage     bool   // the error is final (a UsageError)
	}{
		{name: "port-forward", transport: "port-forward", inCluster: true, agent: agent(ip)},
		{name: "auto outside the cluster", transport: "auto", agent: agent(ip)},
		{name: "auto in a pod", transport: "auto", inCluster: true, agent: agent(ip), wantConn: true, wantOK: true},
		{name: "direct", transport: "direct", agent: agent(ip), wantConn: true, wantOK: true},
		// Found early (AgentOptions.Early): its pod had no IP yet.
		{name: "direct, IP read from the pod", transport: "direct", pods: []*corev1.Pod{pod("agent-pod", ip)}, agent: agent(""), wantConn: true, wantOK: true},
		{name: "direct, no IP yet", transport: "direct", pods: []*corev1.Pod{pod("agent-pod", "")}, agent: agent(""), wantOK: true, wantErr: "has no IP yet"},
		{name: "auto, no IP yet", transport: "auto", inCluster: true, pods: []*corev1.Pod{pod("agent-pod", "")}, agent: agent("")},
		{name: "direct, wrong token", transport: "direct", agent: &kube.Agent{Namespace: "ns", Pod: "agent-pod", PodIP: ip, Port: port, Token: "other", OnPodIP: true}, wantOK: true, wantErr: "not the one its token gives"},
		{name: "direct, ephemeral", transport: "direct", agent: &kube.Agent{Namespace: "ns", Pod: "target", Port: port, Token: "tok", Ephemeral: true}, wantOK: true, wantErr: "drop --ephemeral", usage: true},
		{name: "auto, ephemeral", transport: "auto", inCluster: true, agent: &kube.Agent{Namespace: "ns", Pod: "target", Port: port, Token: "tok", Ephemeral: true}},
		{name: "direct, loopback agent", transport: "direct", agent: &kube.Agent{Namespace: "ns", Pod: "agent-pod", PodIP: ip, Port: port, Token: "tok"}, wantOK: true, wantErr: "listens on its pod's loopback only", usage: true},
		{name: "auto, loopback agent", transport: "auto", inCluster: true, agent: &kube.Agent{Namespace: "ns", Pod: "agent-pod", PodIP: ip, Port: port, Token: "tok"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := ""
			if tc.inCluster {
				host = "10.96.0.1"
			}
			t.Setenv("KUBERNETES_SERVICE_HOST", host)
			cs := fake.NewClientset()
			for _, p := range tc.pods {
				cs.Tracker().Add(p)
			}
			k := &kubeClients{client: cs, transport: transportState{mode: tc.transport}}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, ok, err := k.dialDirect(ctx, tc.agent)
			if c != nil {
				c.Close()
			}
			if (c != nil) != tc.wantConn || ok != tc.wantOK {
				t.Errorf("conn %v, ok %v (err %v); want conn %v, ok %v", c != nil, ok, err, tc.wantConn, tc.wantOK)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one saying %q", err, tc.wantErr)
			}
			var ue *UsageError
			if got := errors.As(err, &ue); got != tc.usage {
				t.Errorf("error %v is a usage error: %v, want %v", err, got, tc.usage)
			}
		})
	}
}
