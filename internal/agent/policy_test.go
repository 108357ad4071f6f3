package agent

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/tether-dev/tether/internal/netfilter"
	"github.com/tether-dev/tether/internal/policy"
	"github.com/tether-dev/tether/internal/protocol"
)

// policyServer runs a Server over a DirTarget with /app/config and
// /etc/secret, for sessions whose grants carry policies.
func policyServer(t *testing.T) (addr, dir string, srv *Server) {
	t.Helper()
	dir = t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "app/config"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "app/config/app.yaml"), []byte("db: prod\n"), 0o644))
	must(t, os.MkdirAll(filepath.Join(dir, "etc/secret"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "etc/secret/token"), []byte("s3cr3t"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "etc/hosts"), []byte("127.0.0.1 localhost\n"), 0o644))
	must(t, os.MkdirAll(filepath.Join(dir, "tmp"), 0o777))
	target, err := NewDirTarget(dir, []string{"DB_PASSWORD=hunter2", "API_PASSWORD=x", "DB_HOST=db", "A=1"}, "pod-1")
	must(t, err)
	t.Cleanup(func() { target.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv = &Server{Target: target, Token: "tok", Grace: time.Minute,
		NewRedirector: func() (netfilter.Redirector, error) { return netfilter.NewFake(), nil }}
	node := &Node{Default: srv, Token: "tok"}
	go node.Serve(ctx, ln)
	return ln.Addr().String(), dir, srv
}

func policySession(t *testing.T, addr string, g *protocol.Grant) (protocol.Welcome, protocol.Mux) {
	t.Helper()
	w, mux, err := connect(t, addr, protocol.Hello{Token: "tok", Grant: g})
	must(t, err)
	return w, mux
}

// refused checks that resp failed with errno, refused by policy p.
func refused(t *testing.T, what string, resp protocol.Response, errno syscall.Errno, p string) {
	t.Helper()
	if !errors.Is(resp.Err(), errno) {
		t.Errorf("%s: %v, want %v", what, resp.Err(), errno)
		return
	}
	if p != "" && (len(resp.Refused) != 1 || resp.Refused[0].Policy != p) {
		t.Errorf("%s: refused %+v, want by %s", what, resp.Refused, p)
	}
}

func TestPolicyEnvAndFiles(t *testing.T) {
	addr, dir, _ := policyServer(t)
	rules := []policy.Rules{{
		Name:       "ClusterPolicy secrets",
		EnvExclude: []string{"*_PASSWORD"}, EnvMask: []string{"DB_*"},
		FSReadOnly: []string{`^/app/config(/|$)`}, FSNotFound: []string{`^/etc/secret(/|$)`}, FSLocal: []string{`^/etc/hosts$`},
	}}
	w, mux := policySession(t, addr, &protocol.Grant{User: "alice", Policies: rules})
	if len(w.Policies) != 1 || w.Policies[0].Name != "ClusterPolicy secrets" {
		t.Errorf("the welcome does not tell the client the policies: %+v", w.Policies)
	}
	resp, _ := call(t, mux, protocol.Request{Op: protocol.OpEnv}, nil)
	if got := strings.Join(resp.Env, ","); got != "DB_HOST=********,A=1" {
		t.Errorf("env = %q, want the passwords left out and DB_HOST masked", got)
	}
	if len(resp.Refused) != 2 || resp.Refused[0].What != "variables API_PASSWORD, DB_PASSWORD" || resp.Refused[1].Rule != "env.mask: DB_*" {
		t.Errorf("env refusals = %+v, want one per rule", resp.Refused)
	}

	// Read-only: reads work, every kind of write is EROFS.
	resp, body := call(t, mux, protocol.Request{Op: protocol.OpRead, Path: "/app/config/app.yaml"}, nil)
	if resp.Err() != nil || string(body) != "db: prod\n" {
		t.Errorf("reading a read-only file: %v %q", resp.Err(), body)
	}
	data := []byte("db: mine\n")
	resp, _ = call(t, mux, protocol.Request{Op: protocol.OpWrite, Path: "/app/config/app.yaml", Size: int64(len(data))}, data)
	refused(t, "write", resp, syscall.EROFS, "ClusterPolicy secrets")
	for _, req := range []protocol.Request{
		{Op: protocol.OpMkdir, Path: "/app/config/new"},
		{Op: protocol.OpRemove, Path: "/app/config/app.yaml"},
		{Op: protocol.OpRename, Path: "/app/config/app.yaml", NewPath: "/tmp/stolen.yaml"},
		{Op: protocol.OpRename, Path: "/tmp/x", NewPath: "/app/config/app.yaml"},
		{Op: protocol.OpSetAttr, Path: "/app/config/app.yaml", Attr: &protocol.Attr{Size: new(int64)}},
		{Op: protocol.OpSymlink, Path: "/app/config/l", Target: "/tmp"},
		{Op: protocol.OpLink, Path: "/app/config/app.yaml", NewPath: "/tmp/hard"},
	} {
		resp, _ := call(t, mux, req, nil)
		refused(t, req.Op+" "+req.Path+" "+req.NewPath, resp, syscall.EROFS, "ClusterPolicy secrets")
	}
	// A symlink elsewhere does not get around it: the resolved path is
	// checked too.
	resp, _ = call(t, mux, protocol.Request{Op: protocol.OpSymlink, Path: "/tmp/cfg", Target: "/app/config"}, nil)
	must(t, resp.Err())
	resp, _ = call(t, mux, protocol.Request{Op: protocol.OpWrite, Path: "/tmp/cfg/app.yaml", Size: int64(len(data))}, data)
	refused(t, "write through a symlink", resp, syscall.EROFS, "ClusterPolicy secrets")
	if b, _ := os.ReadFile(filepath.Join(dir, "app/config/app.yaml")); string(b) != "db: prod\n" {
		t.Fatalf("the read-only file was changed: %q", b)
	}
	// Not found and local: the target's file does not exist for the
	// session, nor in listings.
	for _, p := range []string{"/etc/secret/token", "/etc/secret", "/etc/hosts"} {
		resp, _ := call(t, mux, protocol.Request{Op: protocol.OpStat, Path: p}, nil)
		refused(t, "stat "+p, resp, syscall.ENOENT, "")
		resp, _ = call(t, mux, protocol.Request{Op: protocol.OpRead, Path: p}, nil)
		refused(t, "read "+p, resp, syscall.ENOENT, "")
	}
	resp, _ = call(t, mux, protocol.Request{Op: protocol.OpReadDir, Path: "/etc"}, nil)
	if resp.Err() != nil || len(resp.Entries) != 0 {
		t.Errorf("readdir /etc = %+v %v, want the secret and hosts hidden", resp.Entries, resp.Err())
	}
	// Elsewhere, writes work.
	resp, _ = call(t, mux, protocol.Request{Op: protocol.OpWrite, Path: "/tmp/ok", Size: int64(len(data))}, data)
	must(t, resp.Err())

	// block fs-write: everything is read-only.
	_, ro := policySession(t, addr, &protocol.Grant{User: "bob", Policies: []policy.Rules{{Name: "Policy x/ro", Block: []string{policy.BlockFSWrite}}}})
	resp, _ = call(t, ro, protocol.Request{Op: protocol.OpWrite, Path: "/tmp/ok", Size: int64(len(data))}, data)
	refused(t, "write with block fs-write", resp, syscall.EROFS, "Policy x/ro")
}

// dialResp dials addr through mux and returns the answer (the stream is
// closed).
func dialResp(t *testing.T, mux protocol.Mux, network, addr string) protocol.Response {
	t.Helper()
	st, resp := dialStream(t, mux, network, addr)
	st.Close()
	return resp
}

// dialStream dials addr through mux: the stream (open) and the answer.
func dialStream(t *testing.T, mux protocol.Mux, network, addr string) (protocol.Stream, protocol.Response) {
	t.Helper()
	st, err := mux.Open()
	must(t, err)
	must(t, protocol.WriteFrame(st, protocol.Request{Op: protocol.OpDial, Network: network, Addr: addr}))
	var resp protocol.Response
	must(t, protocol.ReadFrame(st, &resp))
	return st, resp
}

// echoServer listens on addr and echoes each connection until the test ends.
func echoServer(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	must(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln
}

func TestPolicyOutgoing(t *testing.T) {
	addr, _, srv := policyServer(t)
	db, other := echoServer(t, "127.0.0.1:0"), echoServer(t, "127.0.0.2:0")
	dbAddr := netip.MustParseAddrPort(db.Addr().String())
	rules := []policy.Rules{{Name: "Policy shop/no-db", OutgoingBlock: []policy.OutgoingRule{{Hostname: `^redis\.shop\.svc\.cluster\.local$`}}}}
	// The grant names the address (a Service's), as the operator does.
	g := &protocol.Grant{User: "alice", Policies: rules, Names: map[string][]string{dbAddr.Addr().String(): {"redis.shop.svc.cluster.local"}}}
	_, mux := policySession(t, addr, g)
	for range 3 {
		refused(t, "a dial of the blocked database", dialResp(t, mux, "tcp", db.Addr().String()), syscall.ECONNREFUSED, "Policy shop/no-db")
	}
	if resp := dialResp(t, mux, "tcp", other.Addr().String()); resp.Err() != nil {
		t.Errorf("another destination: %v", resp.Err())
	}
	refused(t, "a dial by name", dialResp(t, mux, "tcp", "localhost:80"), syscall.EINVAL, "")
	infos := srv.info()
	if len(infos) != 1 || len(infos[0].Refused) != 1 || infos[0].Refused[0].Count != 3 || infos[0].Refused[0].Policy != "Policy shop/no-db" {
		t.Errorf("the refusals recorded: %+v, want one entry counting 3", infos)
	}

	// Names the pod resolved count too: an answer for other's address.
	otherAddr := netip.MustParseAddrPort(other.Addr().String())
	srv.resolved().observe(dnsAnswer(t, "api.example.com.", "api-lb.example.net.", otherAddr.Addr()))
	_, mux2 := policySession(t, addr, &protocol.Grant{User: "bob", Policies: []policy.Rules{{Name: "P", OutgoingBlock: []policy.OutgoingRule{{Hostname: `^api\.example\.com$`}}}}})
	refused(t, "a dial of an address the pod resolved for a blocked name", dialResp(t, mux2, "tcp", other.Addr().String()), syscall.ECONNREFUSED, "P")
	if resp := dialResp(t, mux2, "tcp", db.Addr().String()); resp.Err() != nil {
		t.Errorf("a destination of another name: %v", resp.Err())
	}
}

// TestPolicyEdit: AdminPolicies applies at once to the running session:
// its connections and subscriptions that are now refused end, and its
// client is told.
func TestPolicyEdit(t *testing.T) {
	addr, _, srv := policyServer(t)
	echo := echoServer(t, "127.0.0.1:0")
	w, mux := policySession(t, addr, &protocol.Grant{User: "alice"})
	st, resp := dialStream(t, mux, "tcp", echo.Addr().String())
	defer st.Close()
	must(t, resp.Err())
	resp, _ = call(t, mux, protocol.Request{Op: protocol.OpSubscribe, Port: 8080, Mode: protocol.ModeSteal}, nil)
	must(t, resp.Err())

	rules := []policy.Rules{{Name: "ClusterPolicy lockdown", Block: []string{policy.BlockOutgoing, policy.BlockStealWithoutFilter}}}
	a := adminCall(t, admin(t, addr, "tok"), protocol.AdminRequest{Op: protocol.AdminPolicies, SessionID: w.SessionID, Policies: rules})
	if a.Error != "" || a.Updated != 1 {
		t.Fatalf("AdminPolicies: %+v", a)
	}
	// The open connection was cut: a reset, not an end that looks like
	// the data's.
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(st); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the refused connection was not cut: %v", err)
	}
	refused(t, "a new dial", dialResp(t, mux, "tcp", echo.Addr().String()), syscall.ECONNREFUSED, "ClusterPolicy lockdown")
	if subs := srv.info()[0].Subscriptions; len(subs) != 0 {
		t.Errorf("the unfiltered steal still runs: %+v", subs)
	}
	// The client is told, on streams the agent opens.
	var notices []string
	for len(notices) < 2 {
		in, err := acceptWithin(mux, 5*time.Second)
		if err != nil {
			t.Fatalf("notices: %v (got %q)", err, notices)
		}
		var hdr protocol.Incoming
		must(t, protocol.ReadFrame(in, &hdr))
		notices = append(notices, hdr.Notice)
	}
	if all := strings.Join(notices, "\n"); !strings.Contains(all, "ClusterPolicy lockdown refuses") || !strings.Contains(all, "port 8080") {
		t.Errorf("notices: %q", notices)
	}
	if g := srv.info()[0].Grant; len(g.Policies) != 1 {
		t.Errorf("the session's info does not show its new policies: %+v", g)
	}
	// A policy that cannot be compiled is refused, and changes nothing.
	a = adminCall(t, admin(t, addr, "tok"), protocol.AdminRequest{Op: protocol.AdminPolicies, SessionID: w.SessionID, Policies: []policy.Rules{{Name: "P", FSLocal: []string{"("}}}})
	if !strings.Contains(a.Error, "P: fs.local") {
		t.Errorf("a bad policy: %+v", a)
	}
	// And a session the operator grants one is refused for good.
	_, _, err := connect(t, addr, protocol.Hello{Token: "tok", Grant: &protocol.Grant{User: "bob", Policies: []policy.Rules{{Name: "P", Block: []string{"everything"}}}}})
	if err == nil || !strings.Contains(err.Error(), `"everything" is not a feature`) {
		t.Errorf("a session with a bad policy: %v", err)
	}
}

func acceptWithin(mux protocol.Mux, d time.Duration) (protocol.Stream, error) {
	type res struct {
		st  protocol.Stream
		err error
	}
	ch := make(chan res, 1)
	go func() {
		st, err := mux.Accept()
		ch <- res{st, err}
	}()
	select {
	case r := <-ch:
		return r.st, r.err
	case <-time.After(d):
		return nil, errors.New("nothing within " + d.String())
	}
}

func TestPolicySubscribe(t *testing.T) {
	addr, _, _ := policyServer(t)
	rules := []policy.Rules{
		{Name: "ClusterPolicy no-unfiltered", Block: []string{policy.BlockStealWithoutFilter}},
		{Name: "Policy shop/user", RequireHeaderFilter: `^x-tether-user: .+$`},
	}
	_, mux := policySession(t, addr, &protocol.Grant{User: "alice", Policies: rules})
	resp, _ := call(t, mux, protocol.Request{Op: protocol.OpSubscribe, Port: 80, Mode: protocol.ModeSteal}, nil)
	refused(t, "an unfiltered steal", resp, syscall.EACCES, "ClusterPolicy no-unfiltered")
	resp, _ = call(t, mux, protocol.Request{Op: protocol.OpSubscribe, Port: 80, Mode: protocol.ModeSteal, Filter: &protocol.HTTPFilter{Header: "x-other: me"}}, nil)
	refused(t, "a filter on another header", resp, syscall.EACCES, "Policy shop/user")
	resp, _ = call(t, mux, protocol.Request{Op: protocol.OpSubscribe, Port: 80, Mode: protocol.ModeSteal, Filter: &protocol.HTTPFilter{Header: "x-tether-user: alice"}}, nil)
	must(t, resp.Err())
	resp, _ = call(t, mux, protocol.Request{Op: protocol.OpSubscribe, Port: 81, Mode: protocol.ModeMirror}, nil)
	must(t, resp.Err())
	_, m2 := policySession(t, addr, &protocol.Grant{User: "bob", Policies: []policy.Rules{{Name: "P", Block: []string{policy.BlockMirror}}}})
	resp, _ = call(t, m2, protocol.Request{Op: protocol.OpSubscribe, Port: 82}, nil) // mode "" is mirror
	refused(t, "a mirror", resp, syscall.EACCES, "P")
}

func dnsAnswer(t *testing.T, name, cname string, a netip.Addr) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 1, Response: true})
	b.EnableCompression()
	must(t, b.StartQuestions())
	q := dnsmessage.MustNewName(name)
	must(t, b.Question(dnsmessage.Question{Name: q, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}))
	must(t, b.StartAnswers())
	c := dnsmessage.MustNewName(cname)
	must(t, b.CNAMEResource(dnsmessage.ResourceHeader{Name: q, Class: dnsmessage.ClassINET, TTL: 30}, dnsmessage.CNAMEResource{CNAME: c}))
	must(t, b.AResource(dnsmessage.ResourceHeader{Name: c, Class: dnsmessage.ClassINET, TTL: 30}, dnsmessage.AResource{A: a.As4()}))
	msg, err := b.Finish()
	must(t, err)
	return msg
}

func TestResolvedNames(t *testing.T) {
	r := newResolvedNames()
	now := time.Unix(1000, 0)
	r.now = func() time.Time { return now }
	ip := netip.MustParseAddr("10.96.0.7")
	r.observe(dnsAnswer(t, "redis.shop.svc.cluster.local.", "redis-0.shop.svc.cluster.local.", ip))
	if got := strings.Join(r.names(ip), ","); got != "redis-0.shop.svc.cluster.local,redis.shop.svc.cluster.local" {
		t.Errorf("names = %q", got)
	}
	if got := r.names(netip.MustParseAddr("::ffff:10.96.0.7")); len(got) != 2 {
		t.Errorf("an IPv4-mapped address: %q", got)
	}
	// Kept at least a minute, not after.
	now = now.Add(minResolvedTTL + time.Second)
	if got := r.names(ip); len(got) != 0 {
		t.Errorf("after its time: %q", got)
	}
	// A query (not a response) or an error answer teaches nothing.
	q := dnsAnswer(t, "x.example.", "y.example.", netip.MustParseAddr("192.0.2.9"))
	q[2] &^= 0x80 // QR bit off
	r.observe(q)
	if got := r.names(netip.MustParseAddr("192.0.2.9")); len(got) != 0 {
		t.Errorf("a query taught %q", got)
	}
}

// FuzzResolvedNames: any datagram from a name server is read without a
// panic, and an address is only ever given names that were in it.
func FuzzResolvedNames(f *testing.F) {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 1, Response: true})
	b.StartQuestions()
	n := dnsmessage.MustNewName("a.example.")
	b.Question(dnsmessage.Question{Name: n, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	b.StartAnswers()
	b.AResource(dnsmessage.ResourceHeader{Name: n, Class: dnsmessage.ClassINET, TTL: 5}, dnsmessage.AResource{A: [4]byte{10, 0, 0, 1}})
	seed, _ := b.Finish()
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, msg []byte) {
		r := newResolvedNames()
		r.observe(msg)
		for a, names := range r.addrs {
			for name := range names {
				if !strings.Contains(strings.ToLower(string(msg)), strings.Split(name, ".")[0]) && name != "" {
					t.Fatalf("%v got name %q, not in the message", a, name)
				}
			}
		}
	})
}
