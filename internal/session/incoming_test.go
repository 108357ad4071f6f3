package session

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/agent"
	"github.com/tether-dev/tether/internal/config"
	"github.com/tether-dev/tether/internal/netfilter"
)

// seenLog is the paths a who-server was asked for.
type seenLog struct {
	mu    sync.Mutex
	paths []string
}

func (l *seenLog) add(p string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.paths = append(l.paths, p)
}

// Paths returns a copy of the paths so far.
func (l *seenLog) Paths() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.paths...)
}

// whoServer answers every request with "who=NAME path=PATH client=ADDR".
func whoServer(t *testing.T, name string) (netip.AddrPort, *seenLog) {
	t.Helper()
	return whoServerAt(t, name, "127.0.0.1:0")
}

// whoServerAt is whoServer listening on addr.
func whoServerAt(t *testing.T, name, addr string) (netip.AddrPort, *seenLog) {
	t.Helper()
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	seen := &seenLog{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.add(r.URL.Path)
		if strings.HasPrefix(r.URL.Path, "/slow") {
			time.Sleep(300 * time.Millisecond) // in flight across a switch
		}
		if r.URL.Path == "/hangup" {
			// An app that exits mid-request: the connection ends unanswered.
			if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
				c.Close()
			}
			return
		}
		// A header name as no net/http proxy would pass it on (it
		// canonicalizes): seen verbatim, the answer was passed through.
		w.Header()["x-raw-case"] = []string{"kept"}
		io.Copy(io.Discard, r.Body) // a keep-alive connection goes on
		fmt.Fprintf(w, "who=%s path=%s client=%s", name, r.URL.Path, r.RemoteAddr)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).AddrPort(), seen
}

// incomingRig is an agent over a DirTarget with a fake redirector: a
// connection to the agent's incoming listener behaves like one redirected
// from app's port.
type incomingRig struct {
	app      netip.AddrPort
	appSeen  *seenLog
	redir    *netfilter.Fake
	agentAdr string
	grace    time.Duration
	stop     func()
}

func newIncomingRig(t *testing.T) *incomingRig { return newIncomingRigGrace(t, 0) }

func newIncomingRigGrace(t *testing.T, grace time.Duration) *incomingRig {
	t.Helper()
	r := &incomingRig{redir: netfilter.NewFake(), grace: grace}
	r.app, r.appSeen = whoServer(t, "pod")
	r.agentAdr = r.startAgent(t)
	return r
}

// startAgent starts an agent over a fresh DirTarget and returns its address.
func (r *incomingRig) startAgent(t *testing.T) string {
	t.Helper()
	target, err := agent.NewDirTarget(t.TempDir(), []string{"A=1"}, "pod-1")
	if err != nil {
		t.Fatal(err)
	}
	srv := &agent.Server{
		Target:        target,
		Grace:         r.grace,
		NewRedirector: func() (netfilter.Redirector, error) { return r.redir, nil },
		OriginalDst:   func(*net.TCPConn) (netip.AddrPort, error) { return r.app, nil },
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go srv.Serve(ctx, ln)
	t.Cleanup(cancel)
	r.stop = cancel
	return ln.Addr().String()
}

// restartAgent stops the agent and starts a new one (same app and fake
// redirector), returning the new address.
func (r *incomingRig) restartAgent(t *testing.T) string {
	r.stop()
	r.redir = netfilter.NewFake()
	return r.startAgent(t)
}

// session connects a session with cfg and subscribes the app's port for
// a local who-server; it returns the session, the local server's log and
// the user messages.
func (r *incomingRig) session(t *testing.T, name string, cfg *config.Config) (*Session, *seenLog, *bytes.Buffer, error) {
	t.Helper()
	conn, err := net.Dial("tcp", r.agentAdr)
	if err != nil {
		t.Fatal(err)
	}
	var msgs bytes.Buffer
	s, err := New(context.Background(), conn, Options{Config: withLoopback(cfg), Messages: &syncWriter{w: &msgs}, Quiet: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	local, seen := whoServer(t, name)
	err = s.Listening(context.Background(), local, r.app.Port())
	return s, seen, &msgs, err
}

// withLoopback is cfg with incoming.loopback on: the rig's local servers
// listen on 127.0.0.1, which is otherwise never subscribed.
func withLoopback(cfg *config.Config) *config.Config {
	c := *cfg
	c.Incoming.Loopback = true
	return &c
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.(*bytes.Buffer).String()
}

// sessionVia starts a session that dials (and redials) with dial, and
// subscribes the app's port for a local who-server.
func (r *incomingRig) sessionVia(t *testing.T, name string, cfg *config.Config, dial func(context.Context) (net.Conn, error)) (*Session, *syncWriter) {
	t.Helper()
	conn, err := dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	msgs := &syncWriter{w: &bytes.Buffer{}}
	s, err := New(context.Background(), conn, Options{Config: withLoopback(cfg), Messages: msgs, Quiet: true,
		Redial: func(ctx context.Context) (net.Conn, Credentials, error) {
			c, err := dial(ctx)
			return c, Credentials{}, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	local, _ := whoServer(t, name)
	if err := s.Listening(context.Background(), local, r.app.Port()); err != nil {
		t.Fatal(err)
	}
	return s, msgs
}

func newGet(path, user string) (*http.Request, error) {
	req, err := http.NewRequest("GET", "http://app"+path, nil)
	if err == nil && user != "" {
		req.Header.Set("X-Tether-User", user)
	}
	return req, err
}

// client returns an HTTP client whose every connection goes to the
// agent's incoming listener (as a redirected connection would), reusing
// one keep-alive connection.
func (r *incomingRig) client(t *testing.T) *http.Client {
	t.Helper()
	to, ok := r.redir.Ports()[r.app.Port()]
	if !ok {
		t.Fatalf("no redirect rule for port %d: %v", r.app.Port(), r.redir.Ports())
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxConnsPerHost: 1,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", to))
		},
	}}
}

func get(t *testing.T, c *http.Client, path, user string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://app"+path, nil)
	if user != "" {
		req.Header.Set("X-Tether-User", user)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func stealCfg(filter string) *config.Config {
	c := &config.Config{Incoming: config.Incoming{Mode: "steal"}}
	c.Incoming.HTTPFilter.HeaderFilter = filter
	return c
}

func TestIncomingFilteredSteal(t *testing.T) {
	r := newIncomingRig(t)
	_, aliceSeen, _, err := r.session(t, "alice", stealCfg("^x-tether-user: alice$"))
	if err != nil {
		t.Fatal(err)
	}
	_, bobSeen, _, err := r.session(t, "bob", stealCfg("^x-tether-user: bob$"))
	if err != nil {
		t.Fatal(err)
	}
	c := r.client(t)
	// One keep-alive connection, requests interleaved.
	for i, tc := range []struct{ user, who string }{{"alice", "alice"}, {"", "pod"}, {"bob", "bob"}, {"carol", "pod"}, {"alice", "alice"}} {
		got := get(t, c, fmt.Sprintf("/r%d", i), tc.user)
		if !strings.HasPrefix(got, "who="+tc.who+" ") {
			t.Errorf("request %d (user %q) answered %q, want who=%s", i, tc.user, got, tc.who)
		}
	}
	if len(aliceSeen.Paths()) != 2 || len(bobSeen.Paths()) != 1 || len(r.appSeen.Paths()) != 2 {
		t.Errorf("alice %v, bob %v, app %v", aliceSeen.Paths(), bobSeen.Paths(), r.appSeen.Paths())
	}
}

func TestIncomingStealConflicts(t *testing.T) {
	r := newIncomingRig(t)
	if _, _, _, err := r.session(t, "first", stealCfg("")); err != nil {
		t.Fatal(err)
	}
	_, _, _, err := r.session(t, "second", stealCfg(""))
	if err == nil || !strings.Contains(err.Error(), "already stolen") {
		t.Fatalf("second unfiltered stealer: %v, want 'already stolen'", err)
	}
	_, _, _, err = r.session(t, "third", stealCfg("x-tether-user: carol"))
	if err == nil || !strings.Contains(err.Error(), "no request would reach your filter") {
		t.Fatalf("filtered stealer after an unfiltered one: %v", err)
	}
	if got := get(t, r.client(t), "/x", ""); !strings.HasPrefix(got, "who=first ") {
		t.Fatalf("answered %q, want the first stealer", got)
	}
}

func TestIncomingOverlapWarning(t *testing.T) {
	r := newIncomingRig(t)
	if _, _, _, err := r.session(t, "alice", stealCfg("^x-tether-user: alice$")); err != nil {
		t.Fatal(err)
	}
	_, _, msgs, err := r.session(t, "both", stealCfg("^x-tether-user: (alice|bob)$"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msgs.String(), "overlaps on port") {
		t.Fatalf("no overlap warning: %q", msgs.String())
	}
	c := r.client(t)
	if got := get(t, c, "/a", "alice"); !strings.HasPrefix(got, "who=alice ") {
		t.Errorf("alice's request went to %q: the earlier subscription must win", got)
	}
	if got := get(t, c, "/b", "bob"); !strings.HasPrefix(got, "who=both ") {
		t.Errorf("bob's request went to %q", got)
	}
}

func TestIncomingMirror(t *testing.T) {
	r := newIncomingRig(t)
	_, seen, _, err := r.session(t, "mirror", &config.Config{})
	if err != nil {
		t.Fatal(err)
	}
	c := r.client(t)
	for i := range 3 {
		if got := get(t, c, fmt.Sprintf("/m%d", i), ""); !strings.HasPrefix(got, "who=pod ") {
			t.Fatalf("mirror mode: answered by %q, want the pod", got)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(seen.Paths()) < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Join(seen.Paths(), ",") != "/m0,/m1,/m2" {
		t.Fatalf("the mirroring session saw %v", seen.Paths())
	}
}

func TestIncomingSessionEndRemovesRule(t *testing.T) {
	r := newIncomingRig(t)
	s, _, _, err := r.session(t, "local", stealCfg(""))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.redir.Ports()) != 1 {
		t.Fatalf("rules = %v", r.redir.Ports())
	}
	s.Close()
	deadline := time.Now().Add(2 * time.Second)
	for !r.redir.IsClosed() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(r.redir.Ports()) != 0 || !r.redir.IsClosed() {
		t.Fatalf("after the last session: rules %v closed %v", r.redir.Ports(), r.redir.IsClosed())
	}
}

// TestIncomingLoopbackNotSubscribed: without incoming.loopback, a listener
// on 127.0.0.1 is not subscribed (no rule at the agent) and the user is told
// why and how to change it.
func TestIncomingLoopbackNotSubscribed(t *testing.T) {
	r := newIncomingRig(t)
	conn, err := net.Dial("tcp", r.agentAdr)
	if err != nil {
		t.Fatal(err)
	}
	msgs := &syncWriter{w: &bytes.Buffer{}}
	s, err := New(context.Background(), conn, Options{Config: &config.Config{Incoming: config.Incoming{Mode: "steal"}}, Messages: msgs})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	local, _ := whoServer(t, "local")
	if err := s.Listening(context.Background(), local, r.app.Port()); err != nil {
		t.Fatal(err)
	}
	if s.Subscribed(local.Port()) {
		t.Errorf("the loopback listener %v is subscribed", local)
	}
	if rules := r.redir.Ports(); len(rules) != 0 {
		t.Errorf("redirect rules for a loopback listener: %v", rules)
	}
	for _, want := range []string{"not subscribed", "loopback", "incoming.loopback: true"} {
		if !strings.Contains(msgs.String(), want) {
			t.Errorf("messages lack %q: %q", want, msgs.String())
		}
	}
}

// TestPassthroughAppHangsUp: an unmatched request whose app closes the
// connection without answering (it is exiting) ends the same way for
// the client, not with an answer of the agent's own (a 502).
func TestPassthroughAppHangsUp(t *testing.T) {
	r := newIncomingRig(t)
	if _, _, _, err := r.session(t, "local", stealCfg("^x-tether-user: me$")); err != nil {
		t.Fatal(err)
	}
	c := r.client(t)
	req, _ := newGet("/hangup", "")
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("the app hung up, the client got %s; want its connection to end unanswered", resp.Status)
	}
	if got := get(t, c, "/after", ""); !strings.Contains(got, "who=pod") {
		t.Errorf("the next request: %q, want the app's answer", got)
	}
}

// TestIncomingListenAgain: a second listener for a target port this
// session subscribed already (the program closed its listener and opened
// another, or retried after its listen failed once subscribed) takes the
// port's traffic, instead of being refused as a duplicate subscription.
func TestIncomingListenAgain(t *testing.T) {
	r := newIncomingRig(t)
	s, firstSeen, _, err := r.session(t, "first", stealCfg("^x-tether-user: me$"))
	if err != nil {
		t.Fatal(err)
	}
	second, secondSeen := whoServer(t, "second")
	if err := s.Listening(context.Background(), second, r.app.Port()); err != nil {
		t.Fatalf("listening again for port %d: %v", r.app.Port(), err)
	}
	c := r.client(t)
	if got := get(t, c, "/again", "me"); !strings.HasPrefix(got, "who=second ") {
		t.Errorf("a matching request answered %q, want the second listener's", got)
	}
	if got := get(t, c, "/other", ""); !strings.HasPrefix(got, "who=pod ") {
		t.Errorf("an unmatched request answered %q, want the pod's", got)
	}
	if len(firstSeen.Paths()) != 0 || len(secondSeen.Paths()) != 1 {
		t.Errorf("first listener saw %v, second %v", firstSeen.Paths(), secondSeen.Paths())
	}
}
