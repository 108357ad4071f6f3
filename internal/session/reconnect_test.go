package session

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// cutProxy forwards TCP connections to a target and can cut them all, as
// a dying port-forward or network blip does.
type cutProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	target string
	conns  []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			target := p.target
			p.mu.Unlock()
			u, err := net.Dial("tcp4", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *cutProxy) retarget(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = addr
}

func (p *cutProxy) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp4", p.ln.Addr().String())
}

// waitAnswer polls until a GET with user is answered by who.
func waitAnswer(t *testing.T, r *incomingRig, user, who string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		if _, ok := r.redir.Ports()[r.app.Port()]; !ok {
			last = "no redirect rule yet"
			time.Sleep(50 * time.Millisecond)
			continue
		}
		c := r.client(t)
		req, _ := newGet("/poll", user)
		if resp, err := c.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = string(b)
			if strings.HasPrefix(last, "who="+who+" ") {
				return
			}
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("never answered by %s within %v (last: %q)", who, within, last)
}

func TestSessionResumesAfterTunnelDrop(t *testing.T) {
	r := newIncomingRigGrace(t, time.Minute)
	proxy := newCutProxy(t, r.agentAdr)
	s, msgs := r.sessionVia(t, "local", stealCfg("^x-tether-user: alice$"), proxy.dial)
	waitAnswer(t, r, "alice", "local", 5*time.Second)
	proxy.cut()
	// While the client is away its requests go to the app, never hang.
	waitAnswer(t, r, "alice", "local", 10*time.Second)
	if !strings.Contains(msgs.String(), "resumed") {
		t.Fatalf("messages: %q", msgs.String())
	}
	id := s.ID()
	proxy.cut()
	waitAnswer(t, r, "alice", "local", 10*time.Second)
	if s.ID() != id {
		t.Fatalf("session id changed from %s to %s on a resume", id, s.ID())
	}
	// Unmatched traffic reached the app the whole time.
	waitAnswer(t, r, "", "pod", time.Second)
}

func TestSessionResubscribesOnNewAgent(t *testing.T) {
	r := newIncomingRigGrace(t, time.Minute)
	proxy := newCutProxy(t, r.agentAdr)
	_, msgs := r.sessionVia(t, "local", stealCfg("^x-tether-user: alice$"), proxy.dial)
	waitAnswer(t, r, "alice", "local", 5*time.Second)
	// The agent is replaced (its pod restarted): same redirector and
	// target, but it knows nothing of the session.
	r2 := r.restartAgent(t)
	proxy.retarget(r2)
	proxy.cut()
	waitAnswer(t, r, "alice", "local", 15*time.Second)
	if !strings.Contains(msgs.String(), "as a new session") {
		t.Fatalf("messages: %q", msgs.String())
	}
}
