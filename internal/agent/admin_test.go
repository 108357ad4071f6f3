package agent

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/netfilter"
	"github.com/tether-dev/tether/internal/protocol"
)

// grantServer runs a Server with a token and a fake redirector and
// returns its address.
func grantServer(t *testing.T) string {
	t.Helper()
	target, err := NewDirTarget(t.TempDir(), []string{"A=1"}, "pod-1")
	must(t, err)
	t.Cleanup(func() { target.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv := &Server{Target: target, Token: "tok", Grace: time.Minute,
		NewRedirector: func() (netfilter.Redirector, error) { return netfilter.NewFake(), nil }}
	go srv.Serve(ctx, ln)
	return ln.Addr().String()
}

func connect(t *testing.T, addr string, h protocol.Hello) (protocol.Welcome, protocol.Mux, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	must(t, err)
	w, err := protocol.ClientHandshake(conn, h)
	if err != nil {
		conn.Close()
		return w, nil, err
	}
	mux, err := protocol.NewClientMux(conn)
	must(t, err)
	t.Cleanup(func() { mux.Close() })
	return w, mux, nil
}

func admin(t *testing.T, addr, token string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	must(t, err)
	t.Cleanup(func() { conn.Close() })
	if _, err := protocol.ClientHandshake(conn, protocol.Hello{Admin: true, Token: token}); err != nil {
		t.Fatalf("admin handshake: %v", err)
	}
	return conn
}

func adminCall(t *testing.T, conn net.Conn, req protocol.AdminRequest) protocol.AdminResponse {
	t.Helper()
	must(t, protocol.WriteFrame(conn, req))
	var resp protocol.AdminResponse
	must(t, protocol.ReadFrame(conn, &resp))
	return resp
}

// TestGrant: what the operator's grant refuses is refused with its
// message and EACCES, and recorded; the rest works.
func TestGrant(t *testing.T) {
	addr := grantServer(t)
	grant := &protocol.Grant{User: "alice", Namespace: "demo", Target: "deployment/api", Pod: "api-1",
		Refuse: map[string]string{protocol.ActionSteal: "alice may not steal"}}
	_, mux, err := connect(t, addr, protocol.Hello{Token: "tok", Run: "run-1", Grant: grant})
	must(t, err)
	resp, _ := call(t, mux, protocol.Request{Op: protocol.OpSubscribe, Port: 8080, Mode: protocol.ModeSteal}, nil)
	if resp.Errno != int(syscall.EACCES) || resp.Error != "alice may not steal" {
		t.Fatalf("steal: %+v, want EACCES with the grant's message", resp)
	}
	resp, _ = call(t, mux, protocol.Request{Op: protocol.OpSubscribe, Port: 8080, Mode: protocol.ModeMirror}, nil)
	if resp.Err() != nil {
		t.Fatalf("mirror: %v", resp.Err())
	}
	resp, _ = call(t, mux, protocol.Request{Op: protocol.OpEnv}, nil)
	if resp.Err() != nil || len(resp.Env) != 1 {
		t.Fatalf("env: %+v", resp)
	}
	list := adminCall(t, admin(t, addr, "tok"), protocol.AdminRequest{Op: protocol.AdminSessions})
	if len(list.Sessions) != 1 {
		t.Fatalf("sessions: %+v", list)
	}
	si := list.Sessions[0]
	if si.Run != "run-1" || si.Grant.Who() != "alice" || !si.Connected || len(si.Subscriptions) != 1 || si.Subscriptions[0].Mode != protocol.ModeMirror ||
		len(si.Refused) != 1 || si.Refused[0].Action != protocol.ActionSteal {
		t.Fatalf("session info: %+v", si)
	}
}

// TestAdminToken: the admin channel needs the agent's token.
func TestAdminToken(t *testing.T) {
	addr := grantServer(t)
	conn, err := net.Dial("tcp", addr)
	must(t, err)
	defer conn.Close()
	if _, err := protocol.ClientHandshake(conn, protocol.Hello{Admin: true, Token: "wrong"}); err == nil || !strings.Contains(err.Error(), "token") {
		t.Fatalf("admin with a wrong token: %v", err)
	}
}

// TestKill: an administrator ends a run: its client hears why, and a
// reconnect is refused for good with the same words; another run lives on.
func TestKill(t *testing.T) {
	addr := grantServer(t)
	w1, victim, err := connect(t, addr, protocol.Hello{Token: "tok", Run: "r1", Grant: &protocol.Grant{User: "alice"}})
	must(t, err)
	_, other, err := connect(t, addr, protocol.Hello{Token: "tok", Run: "r2", Grant: &protocol.Grant{User: "bob"}})
	must(t, err)
	resp := adminCall(t, admin(t, addr, "tok"), protocol.AdminRequest{Op: protocol.AdminKill, Run: "r1", Reason: "ended by carol: maintenance"})
	if resp.Killed != 1 || resp.Error != "" {
		t.Fatalf("kill: %+v", resp)
	}
	accepted := make(chan protocol.Stream, 1)
	go func() {
		if st, err := victim.Accept(); err == nil {
			accepted <- st
		}
	}()
	var st protocol.Stream
	select {
	case st = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("the victim was not told it was ended")
	}
	var in protocol.Incoming
	must(t, protocol.ReadFrame(st, &in))
	if in.Ended != "ended by carol: maintenance" {
		t.Fatalf("the victim heard %+v", in)
	}
	select {
	case <-victim.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the victim's connection stays open")
	}
	_, _, err = connect(t, addr, protocol.Hello{Token: "tok", Run: "r1", SessionID: w1.SessionID, Grant: &protocol.Grant{User: "alice"}})
	var ended *protocol.EndedError
	if !errors.As(err, &ended) || ended.Reason != "ended by carol: maintenance" {
		t.Fatalf("resuming a killed session: %v, want an EndedError with the reason", err)
	}
	if r, _ := call(t, other, protocol.Request{Op: protocol.OpEnv}, nil); r.Err() != nil {
		t.Fatalf("the other run: %v", r.Err())
	}
	// The ended session stays in the audit log, the other is live.
	list := adminCall(t, admin(t, addr, "tok"), protocol.AdminRequest{Op: protocol.AdminSessions})
	if len(list.Sessions) != 1 || list.Sessions[0].Run != "r2" || len(list.Ended) != 1 || list.Ended[0].ID != w1.SessionID || list.Ended[0].Ended.IsZero() {
		t.Fatalf("after the kill: live %+v, ended %+v", list.Sessions, list.Ended)
	}
}

// TestResumeOtherUser: a session ID is no credential: another user who
// presents it gets a new session of their own.
func TestResumeOtherUser(t *testing.T) {
	addr := grantServer(t)
	w1, _, err := connect(t, addr, protocol.Hello{Token: "tok", Grant: &protocol.Grant{User: "alice"}})
	must(t, err)
	w2, _, err := connect(t, addr, protocol.Hello{Token: "tok", SessionID: w1.SessionID, Grant: &protocol.Grant{User: "mallory"}})
	must(t, err)
	if w2.Resumed || w2.SessionID == w1.SessionID {
		t.Fatalf("mallory resumed alice's session: %+v", w2)
	}
	w3, _, err := connect(t, addr, protocol.Hello{Token: "tok", SessionID: w1.SessionID, Grant: &protocol.Grant{User: "alice"}})
	must(t, err)
	if !w3.Resumed {
		t.Fatalf("alice could not resume her own session: %+v", w3)
	}
}

// TestUnreported: a session that ends is unreported until the operator's
// audit trail polls the agent (for an --audited agent, or one it polled
// before); a poll for tether sessions does not count, and an agent
// nobody audits has none.
func TestUnreported(t *testing.T) {
	target, err := NewDirTarget(t.TempDir(), []string{"A=1"}, "pod-1")
	must(t, err)
	t.Cleanup(func() { target.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv := &Server{Target: target, Token: "tok", Grace: 50 * time.Millisecond, // a dropped client's session ends at once
		NewRedirector: func() (netfilter.Redirector, error) { return netfilter.NewFake(), nil }}
	node := &Node{Default: srv, Token: "tok"}
	go node.Serve(ctx, ln)
	addr := ln.Addr().String()
	end := func(run string) {
		t.Helper()
		w, mux, err := connect(t, addr, protocol.Hello{Token: "tok", Run: run, Grant: &protocol.Grant{User: "alice"}})
		must(t, err)
		mux.Close()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			ended := false
			for _, e := range srv.endedInfo() {
				ended = ended || e.ID == w.SessionID
			}
			if ended {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("session %s did not end", run)
			}
		}
	}
	end("r1")
	if n := node.Unreported(); n != 0 {
		t.Fatalf("nothing audits the agent yet: %d unreported, want 0", n)
	}
	node.Audited = true // an operator's agent (--audited): counted before its first poll
	if n := node.Unreported(); n != 1 {
		t.Fatalf("an audited agent before its first poll: %d unreported, want 1", n)
	}
	adminCall(t, admin(t, addr, "tok"), protocol.AdminRequest{Op: protocol.AdminSessions, Audit: true})
	time.Sleep(10 * time.Millisecond) // Ended times are after the poll's
	end("r2")
	if n := node.Unreported(); n != 1 {
		t.Fatalf("after an audit poll and one more end: %d unreported, want 1", n)
	}
	adminCall(t, admin(t, addr, "tok"), protocol.AdminRequest{Op: protocol.AdminSessions}) // tether sessions
	if n := node.Unreported(); n != 1 {
		t.Fatalf("a poll that is not the audit trail's reported the end: %d unreported, want 1", n)
	}
	adminCall(t, admin(t, addr, "tok"), protocol.AdminRequest{Op: protocol.AdminSessions, Audit: true})
	if n := node.Unreported(); n != 0 {
		t.Fatalf("after the next audit poll: %d unreported, want 0", n)
	}
}
