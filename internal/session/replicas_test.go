package session

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/netfilter"
)

// replicaRig is a session on one rig's agent (the representative pod) with
// a second rig's agent added as a replica (another pod of the workload).
func replicaRig(t *testing.T) (main, other *incomingRig, s *Session, msgs *syncWriter) {
	t.Helper()
	main, other = twoPods(t)
	s, msgs = main.sessionVia(t, "local", stealCfg("^x-tether-user: me$"), func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", main.agentAdr)
	})
	return main, other, s, msgs
}

// dialTo dials the address addr holds at the time.
// twoPods are the rigs of two pods of a workload: their apps listen on the
// same port (on 127.0.0.1 and 127.0.0.2).
func twoPods(t *testing.T) (a, b *incomingRig) {
	t.Helper()
	a = newIncomingRig(t)
	b = &incomingRig{redir: netfilter.NewFake()}
	b.app, b.appSeen = whoServerAt(t, "pod", fmt.Sprintf("127.0.0.2:%d", a.app.Port()))
	b.agentAdr = b.startAgent(t)
	return a, b
}

func dialTo(addr *atomic.Pointer[string]) func(ctx context.Context) (net.Conn, Credentials, error) {
	return func(ctx context.Context) (net.Conn, Credentials, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", *addr.Load())
		return c, Credentials{}, err
	}
}

func addrOf(s string) *atomic.Pointer[string] {
	var p atomic.Pointer[string]
	p.Store(&s)
	return &p
}

// TestReplicaSubscribes: a replica added after the program listens gets
// its subscriptions at once, and its matching requests reach the local
// listener while the rest reach its own app; removing it ends them there.
func TestReplicaSubscribes(t *testing.T) {
	_, other, s, _ := replicaRig(t)
	if err := <-s.AddReplica("uid-2", "web-2", dialTo(addrOf(other.agentAdr)), nil); err != nil {
		t.Fatal(err)
	}
	c := other.client(t)
	if got := get(t, c, "/a", "me"); !strings.Contains(got, "who=local") {
		t.Errorf("a matching request to the replica: %q, want the local listener's answer", got)
	}
	if got := get(t, c, "/b", ""); !strings.Contains(got, "who=pod") {
		t.Errorf("another request to the replica: %q, want its app's answer", got)
	}
	if got := s.Replicas(); len(got) != 1 || got[0] != "web-2" {
		t.Errorf("Replicas() = %v, want [web-2]", got)
	}
	s.RemoveReplica("uid-2")
	c.CloseIdleConnections()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, ok := other.redir.Ports()[other.app.Port()]; !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica's agent still redirects port %d 5s after RemoveReplica", other.app.Port())
		}
	}
	if got := s.Replicas(); len(got) != 0 {
		t.Errorf("Replicas() = %v after RemoveReplica, want none", got)
	}
}

// TestReplicaBeforeListen: a replica added before the program listens is
// subscribed when it does.
func TestReplicaBeforeListen(t *testing.T) {
	main, other := twoPods(t)
	conn, err := net.Dial("tcp", main.agentAdr)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), conn, Options{Config: withLoopback(stealCfg("^x-tether-user: me$")), Quiet: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := <-s.AddReplica("uid-2", "web-2", dialTo(addrOf(other.agentAdr)), nil); err != nil {
		t.Fatal(err)
	}
	local, _ := whoServer(t, "local")
	if err := s.Listening(context.Background(), local, main.app.Port()); err != nil {
		t.Fatal(err)
	}
	var clients []*http.Client
	for _, r := range []*incomingRig{main, other} {
		c := r.client(t)
		clients = append(clients, c)
		if got := get(t, c, "/a", "me"); !strings.Contains(got, "who=local") {
			t.Errorf("a matching request: %q, want the local listener's answer", got)
		}
	}
	s.Close()
	for i, r := range []*incomingRig{main, other} {
		clients[i].CloseIdleConnections()
		for deadline := time.Now().Add(5 * time.Second); len(r.redir.Ports()) != 0; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("agent %d still redirects %v 5s after the session closed", i, r.redir.Ports())
				break
			}
		}
	}
}

// TestReplicaUnreachable: a replica whose agent cannot be reached is said
// once and retried; the session and its main pod are unaffected, and the
// replica subscribes once its agent is there.
func TestReplicaUnreachable(t *testing.T) {
	main, other, s, msgs := replicaRig(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := addrOf(ln.Addr().String())
	ln.Close() // nothing listens there: connection refused
	if err := <-s.AddReplica("uid-2", "web-2", dialTo(addr), nil); err == nil {
		t.Fatal("AddReplica to a closed port: no error")
	}
	if got := get(t, main.client(t), "/a", "me"); !strings.Contains(got, "who=local") {
		t.Errorf("a matching request to the main pod: %q, want the local listener's answer", got)
	}
	addr.Store(&other.agentAdr) // the agent comes up (read by the next dial)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, ok := other.redir.Ports()[other.app.Port()]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica never subscribed once its agent was up; messages:\n%s", msgs)
		}
	}
	// The recovery is said after the subscription is made: wait for it.
	for deadline := time.Now().Add(5 * time.Second); strings.Count(msgs.String(), "pod web-2: ") < 2 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(msgs.String(), "pod web-2: "); n != 2 {
		t.Errorf("want the failure said once and the recovery once, got %d lines:\n%s", n, msgs)
	}
}

// TestReplicaAgentRestart: a replica whose agent is replaced (a new
// session there) subscribes again by itself.
func TestReplicaAgentRestart(t *testing.T) {
	_, other, s, msgs := replicaRig(t)
	addr := addrOf(other.agentAdr)
	if err := <-s.AddReplica("uid-2", "web-2", dialTo(addr), nil); err != nil {
		t.Fatal(err)
	}
	na := other.restartAgent(t)
	addr.Store(&na)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, ok := other.redir.Ports()[other.app.Port()]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica did not subscribe on its new agent; messages:\n%s", msgs)
		}
	}
	if got := get(t, other.client(t), "/a", "me"); !strings.Contains(got, "who=local") {
		t.Errorf("a matching request to the replica's new agent: %q, want the local listener's answer", got)
	}
}

// TestAdoptReplica: when a replica's pod becomes the session's own (its
// representative pod went), the session's reconnect takes over the
// replica's agent session: the pod's matching requests reach the local
// listener before, during and after the switch, never its app.
func TestAdoptReplica(t *testing.T) {
	main, other := twoPods(t)
	cur := addrOf(main.agentAdr)
	s, msgs := main.sessionVia(t, "local", stealCfg("^x-tether-user: me$"), func(ctx context.Context) (net.Conn, error) {
		c, _, err := dialTo(cur)(ctx)
		return c, err
	})
	if err := <-s.AddReplica("uid-2", "web-2", dialTo(addrOf(other.agentAdr)), nil); err != nil {
		t.Fatal(err)
	}
	c := other.client(t)
	// A steady user of the replica's pod, all through the switch.
	var wrong, failed, sent atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := newGet("/a", "me")
			resp, err := c.Do(req)
			sent.Add(1)
			if err != nil {
				failed.Add(1)
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(b), "who=local") {
				wrong.Add(1)
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	// The redial finds the replica's pod: the session adopts its replica,
	// whose agent session keeps stealing until the reconnect takes it.
	cur.Store(&other.agentAdr)
	s.AdoptReplica("uid-2")
	if got := get(t, other.client(t), "/b", "me"); !strings.Contains(got, "who=local") {
		t.Errorf("after AdoptReplica, before the reconnect: %q, want the local listener's answer", got)
	}
	// A slow request the replica's connection carries across the switch.
	slow := make(chan string, 1)
	go func() {
		req, _ := newGet("/slow", "me")
		resp, err := other.client(t).Do(req)
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- string(b)
	}()
	time.Sleep(100 * time.Millisecond)
	s.muxMu.Lock()
	s.mux.Close() // the representative pod's agent is gone
	s.muxMu.Unlock()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(msgs.String(), "took over the session"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no takeover within 10s; messages:\n%s", msgs)
		}
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	<-done
	if got := <-slow; !strings.Contains(got, "who=local") {
		t.Errorf("a request in flight across the switch: %q, want the local listener's answer", got)
	}
	if wrong.Load() != 0 || failed.Load() != 0 || sent.Load() < 10 {
		t.Errorf("through the switch: %d sent, %d answered by the app, %d failed; want none of either", sent.Load(), wrong.Load(), failed.Load())
	}
	if got := s.Replicas(); len(got) != 0 {
		t.Errorf("Replicas() = %v after the adoption, want none", got)
	}
	if got := get(t, other.client(t), "/c", "me"); !strings.Contains(got, "who=local") {
		t.Errorf("after the takeover, a new connection: %q, want the local listener's answer", got)
	}
	s.Close()
	c.CloseIdleConnections()
	for deadline := time.Now().Add(5 * time.Second); len(other.redir.Ports()) != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the adopted pod's agent still redirects %v 5s after the session closed", other.redir.Ports())
		}
	}
}

// TestReplicaStarting: while a replica's agent is still starting (gone
// says ErrReplicaStarting), its failed connections are tried again soon
// and silently, and AddReplica's ready waits for the first real outcome.
func TestReplicaStarting(t *testing.T) {
	_, other, s, msgs := replicaRig(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := addrOf(ln.Addr().String())
	ln.Close() // its agent does not listen yet
	var asked atomic.Int64
	ready := s.AddReplica("uid-2", "web-2", dialTo(addr), func(context.Context) error {
		asked.Add(1)
		if *addr.Load() != other.agentAdr {
			return ErrReplicaStarting
		}
		return nil
	})
	select {
	case err := <-ready:
		t.Fatalf("ready while its agent starts: %v", err)
	case <-time.After(600 * time.Millisecond):
	}
	if n := asked.Load(); n < 3 {
		t.Errorf("tried %d times in 600ms while starting, want it tried every %v", n, replicaStartingRetry)
	}
	addr.Store(&other.agentAdr) // it listens
	start := time.Now()
	if err := <-ready; err != nil {
		t.Fatalf("ready: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("connected %v after its agent listened", took)
	}
	if got := get(t, other.client(t), "/a", "me"); !strings.Contains(got, "who=local") {
		t.Errorf("a matching request to the replica: %q, want the local listener's answer", got)
	}
	if strings.Contains(msgs.String(), "web-2") {
		t.Errorf("said something of the starting replica:\n%s", msgs)
	}
}
