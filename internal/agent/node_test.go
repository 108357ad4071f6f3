package agent

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/protocol"
)

// TestNode: one agent serves its own target and the containers sessions
// name (each from its own context), refuses what it cannot open with the
// reason, and a target that exits ends its own sessions only.
func TestNode(t *testing.T) {
	dirServer := func(host string) *Server {
		target, err := NewDirTarget(t.TempDir(), []string{"WHO=" + host}, host)
		must(t, err)
		t.Cleanup(func() { target.Close() })
		return &Server{Target: target, Token: "tok"}
	}
	opened := 0
	n := &Node{Default: dirServer("own"), DefaultID: "containerd://own", Open: func(id string) (*Server, error) {
		if id != "containerd://b" {
			return nil, errors.New("no such container on this node")
		}
		opened++
		return dirServer("b"), nil
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- n.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-served
	})
	connect := func(target string) (protocol.Welcome, protocol.Mux, error) {
		conn, err := net.Dial("tcp", ln.Addr().String())
		must(t, err)
		w, err := protocol.ClientHandshake(conn, protocol.Hello{Client: "test", Token: "tok", Target: target})
		if err != nil {
			conn.Close()
			return w, nil, err
		}
		mux, err := protocol.NewClientMux(conn)
		must(t, err)
		t.Cleanup(func() { mux.Close() })
		return w, mux, nil
	}
	for _, tc := range []struct{ target, host string }{
		{"", "own"},
		{"containerd://own", "own"},
		{"containerd://b", "b"},
		{"containerd://b", "b"}, // the same server again
	} {
		w, mux, err := connect(tc.target)
		if err != nil {
			t.Fatalf("target %q: %v", tc.target, err)
		}
		if w.Target.Hostname != tc.host {
			t.Errorf("target %q: welcome %+v, want hostname %s", tc.target, w, tc.host)
		}
		resp, _ := call(t, mux, protocol.Request{Op: protocol.OpEnv}, nil)
		if !slices.Contains(resp.Env, "WHO="+tc.host) {
			t.Errorf("target %q: env %v, want WHO=%s", tc.target, resp.Env, tc.host)
		}
	}
	if opened != 1 || !slices.Equal(n.Targets(), []string{"containerd://b"}) {
		t.Errorf("opened %d times, targets %v; want once, [containerd://b]", opened, n.Targets())
	}
	if _, _, err := connect("containerd://nope"); err == nil || !strings.Contains(err.Error(), "cannot serve container containerd://nope: no such container on this node") {
		t.Errorf("unknown container: %v", err)
	}
	if got := n.Sessions(); got != 4 {
		t.Errorf("sessions = %d, want 4 (two on its own target, two on b)", got)
	}
	// b exits: its sessions end, the agent's own go on.
	if left := n.Exited("containerd://b"); left != 1 {
		t.Errorf("Exited(b) left %d targets, want 1", left)
	}
	if _, _, err := connect(""); err != nil {
		t.Errorf("own target after b exited: %v", err)
	}
	if left := n.Exited(""); left != 0 {
		t.Errorf("Exited(own) left %d targets, want 0", left)
	}
	if _, _, err := connect(""); err == nil || !strings.Contains(err.Error(), "has exited") {
		t.Errorf("own target after it exited: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for n.Sessions() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := n.Sessions(); got != 0 {
		t.Errorf("sessions after every target exited = %d, want 0", got)
	}
}

// TestNodeOwnOnly: an agent started for its own target only refuses
// another container with what to do.
func TestNodeOwnOnly(t *testing.T) {
	target, err := NewDirTarget(t.TempDir(), nil, "own")
	must(t, err)
	defer target.Close()
	n := &Node{Default: &Server{Target: target}, DefaultID: "containerd://own"}
	if _, err := n.server("containerd://other"); err == nil || !strings.Contains(err.Error(), "without --node") {
		t.Errorf("server(other) = %v, want a refusal naming --node", err)
	}
	if s, err := n.server("containerd://own"); err != nil || s != n.Default {
		t.Errorf("server(own) = %v, %v", s, err)
	}
}
