package integration

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/test/harness"
)

// Time bounds of the incoming-traffic tests.
const (
	// activationTimeout bounds the wait, after the local app printed its
	// ready line, for its subscription to take effect.
	activationTimeout = 15 * time.Second
	// cleanupBound: after a session ends its subscriptions are gone (and,
	// for the agent's last session or a killed worker, its tables) within
	// this time.
	cleanupBound = 2 * time.Second
)

// Messages the product prints (case-insensitive substrings).
const (
	msgAlreadyStolen = "already stolen" // tether exec's stderr, refused unfiltered steal
	msgOverlaps      = "overlaps"       // the later session's stderr, overlapping filters
	msgAddrInUse     = "address already in use"
)

// aliceFilter steals the requests of user alice.
const aliceFilter = `{"incoming": {"mode": "steal", "http_filter": {"header_filter": "^x-tether-user: alice$"}}}`

// inFixture is the fixture of the incoming-traffic tests: an agent, the
// client namespace and the app in the pod.
type inFixture struct {
	*fixture
	client *harness.Client
	pod    *harness.App
}

// startIncoming starts an agent for the pod (like start) and makes sure the
// client namespace and the pod's app are up. When t ends, after the agent
// has been stopped (SIGTERM), no tether table may remain in the pod's
// network namespace.
func startIncoming(t *testing.T) *inFixture {
	t.Helper()
	env := harness.Setup(t)
	harness.NeedTool(t, "nft")
	client := env.Client(t)
	podApp := env.PodApp(t)
	// Registered before the agent starts: runs after the agent is stopped.
	t.Cleanup(func() { checkNoTablesLeft(t, env.Pod) })
	return &inFixture{fixture: start(t), client: client, pod: podApp}
}

func checkNoTablesLeft(t *testing.T, pod *harness.Pod) {
	tables, err := pod.TetherTables()
	if err != nil {
		t.Errorf("listing nft tables in the pod: %v", err)
		return
	}
	if len(tables) > 0 {
		t.Errorf("tether nft tables left in the pod's netns after the agent exited: %q\n%s", tables, pod.Ruleset())
		pod.DeleteTetherTables()
	}
}

// app runs the podapp locally under tether exec against the fixture's
// agent and waits for its ready line.
func (f *inFixture) app(t *testing.T, config string, httpPorts ...int) *harness.App {
	t.Helper()
	return harness.StartLocalApp(t, f.agent.Addr, harness.AppOpts{Config: config, HTTPPorts: httpPorts})
}

// waitWho sends requests (fresh connections) to the pod's port until one
// is answered by who; it fails t after activationTimeout.
func (f *inFixture) waitWho(t *testing.T, port int, method, path string, hdr http.Header, who string) harness.Answer {
	t.Helper()
	var got harness.Answer
	err := harness.WaitFor(activationTimeout, func() error {
		a, err := f.client.Do(port, method, path, hdr)
		if err != nil {
			return err
		}
		if a.Who != who {
			return fmt.Errorf("answered by %v", a)
		}
		got = a
		return nil
	})
	if err != nil {
		tables, _ := f.env.Pod.TetherTables()
		t.Fatalf("%s %s (headers %v) to the pod's port %d was never answered by %q: %v\n(tether tables in the pod: %q)", method, path, hdr, port, who, err, tables)
	}
	return got
}

// wantTetherTable fails t unless the pod's netns has a tether table.
func (f *inFixture) wantTetherTable(t *testing.T) {
	t.Helper()
	tables, err := f.env.Pod.TetherTables()
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) == 0 {
		t.Errorf("no nft table named %s* in the pod's netns while a port is subscribed:\n%s", harness.TetherTablePrefix, f.env.Pod.Ruleset())
	}
}

// wantNoRedirect fails t if the pod's netns has a tether table: the
// agent redirects nothing.
func (f *inFixture) wantNoRedirect(t *testing.T) {
	t.Helper()
	tables, err := f.env.Pod.TetherTables()
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) > 0 {
		t.Errorf("nft tables %q in the pod's netns while the port is only mirrored: the app's connections should not be redirected\n%s", tables, f.env.Pod.Ruleset())
	}
}

// route is one request and who must answer it.
type route struct {
	method, path, user string
	who                string
}

func (r route) String() string {
	return fmt.Sprintf("%s %s (user %q) -> %s", r.method, r.path, r.user, r.who)
}

// check fails t unless a answers r.
func (r route) check(t *testing.T, via string, a harness.Answer, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: %v: %v", via, r, err)
		return
	}
	if a.Who != r.who || a.Path != r.path || a.User != r.user {
		t.Errorf("%s: %v: got %v", via, r, a)
		return
	}
	if r.who != harness.WhoPod && a.RemoteIP() != harness.ClientIP {
		t.Errorf("%s: %v: the local app saw remote %s, want the client's IP %s", via, r, a.Remote, harness.ClientIP)
	}
}

// runHTTP1 sends the routes on one keep-alive HTTP/1.1 connection.
func (f *inFixture) runHTTP1(t *testing.T, port int, routes []route) {
	t.Helper()
	c, err := f.client.HTTP1(port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, r := range routes {
		method := r.method
		if method == "" {
			method = http.MethodGet
		}
		a, err := c.Do(method, r.path, harness.Header(r.user))
		r.check(t, "HTTP/1.1 keep-alive "+c.LocalAddr(), a, err)
	}
}

// wantSaw fails t unless app logged every path (waiting a little: the log
// goes through a pipe).
func wantSaw(t *testing.T, app *harness.App, paths ...string) {
	t.Helper()
	if missing := app.WaitSaw(5*time.Second, paths...); len(missing) > 0 {
		t.Errorf("the %s app did not see %q\n%s", app.Who, missing, app.Describe())
	}
}

// wantNotSaw fails t if app logged any of the paths.
func wantNotSaw(t *testing.T, app *harness.App, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if r, ok := app.Find(func(r harness.Answer) bool { return r.Path == p }); ok {
			t.Errorf("the %s app saw %s, which was not for it: %v", app.Who, p, r)
		}
	}
}

// pathsFor returns the paths of the routes answered by who.
func pathsFor(routes []route, who string) []string {
	var ps []string
	for _, r := range routes {
		if r.who == who {
			ps = append(ps, r.path)
		}
	}
	return ps
}

// TestIncomingMirror: by default (incoming.mode mirror) requests to the
// pod's port are answered by the pod, and the local app listening on the
// same port sees a copy of each of them, with the client's address.
func TestIncomingMirror(t *testing.T) {
	f := startIncoming(t)
	const port = portMirror
	local := f.app(t, "", port)

	// Wait until the mirror is in place: requests keep being answered by
	// the pod; one of them shows up at the local app.
	f.waitMirrored(t, local, port, "/mirror/warmup")
	// Mirroring alone changes nothing on the app's path: the agent
	// captures the port's packets, no rule redirects them.
	f.wantNoRedirect(t)

	var routes []route
	for i := range 5 {
		routes = append(routes, route{path: fmt.Sprintf("/mirror/keepalive-%d", i), user: "alice", who: harness.WhoPod})
	}
	f.runHTTP1(t, port, routes)
	paths := pathsFor(routes, harness.WhoPod)
	for i := range 5 {
		p := fmt.Sprintf("/mirror/fresh-%d", i)
		a, err := f.client.Get(port, p, harness.Header("bob"))
		route{path: p, user: "bob", who: harness.WhoPod}.check(t, "fresh connection", a, err)
		paths = append(paths, p)
	}
	wantSaw(t, local, paths...)
	wantSaw(t, f.pod, paths...)
	for _, r := range local.Requests() {
		if strings.HasPrefix(r.Path, "/mirror/") && r.RemoteIP() != harness.ClientIP {
			t.Errorf("the local app saw a mirrored request from %s, want the client's IP %s: %v", r.Remote, harness.ClientIP, r)
		}
	}
}

// TestIncomingStealAll: with incoming.mode steal and no filter, every
// connection goes to the local app (HTTP/1.1, h2c, WebSocket), which sees
// the client's address as the peer; the pod sees nothing. A second
// unfiltered stealer of the same port is refused, the first is unaffected.
func TestIncomingStealAll(t *testing.T) {
	f := startIncoming(t)
	const port = portStealAll
	const cfg = `{"incoming": {"mode": "steal"}}`
	local := f.app(t, cfg, port)
	f.waitWho(t, port, http.MethodGet, "/steal/wait", nil, harness.WhoLocal)
	f.wantTetherTable(t)

	c, err := f.client.HTTP1(port)
	if err != nil {
		t.Fatal(err)
	}
	var stolen []string
	for i, user := range []string{"alice", "", "bob"} {
		p := fmt.Sprintf("/steal/keepalive-%d", i)
		stolen = append(stolen, p)
		a, err := c.Do(http.MethodGet, p, harness.Header(user))
		route{path: p, user: user, who: harness.WhoLocal}.check(t, "HTTP/1.1 keep-alive", a, err)
		// accept/getpeername in the local app: exactly the client's socket.
		if err == nil && a.Remote != c.LocalAddr() {
			t.Errorf("the local app saw the peer %s, the client's connection is from %s", a.Remote, c.LocalAddr())
		}
	}
	c.Close()

	h2, err := f.client.H2C(port)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		p := fmt.Sprintf("/steal/h2c-%d", i)
		stolen = append(stolen, p)
		a, err := h2.Do(http.MethodGet, p, nil)
		route{path: p, who: harness.WhoLocal}.check(t, "h2c", a, err)
	}
	h2.Close()

	ws, err := f.client.WebSocket(port, "/ws/steal", nil)
	if err != nil {
		t.Fatal(err)
	}
	if ws.Hello.Who != harness.WhoLocal || ws.Hello.RemoteIP() != harness.ClientIP {
		t.Errorf("websocket answered by %v, want the local app seeing %s", ws.Hello, harness.ClientIP)
	}
	if got, err := ws.Echo("stolen-echo"); err != nil || got != "stolen-echo" {
		t.Errorf("websocket echo: %q, %v", got, err)
	}
	ws.Close()

	wantSaw(t, local, stolen...)
	wantNotSaw(t, f.pod, stolen...)

	t.Run("second-unfiltered-stealer-refused", func(t *testing.T) {
		// listen_ports makes the second app bind another local port, so an
		// EADDRINUSE can only come from tether refusing the subscription.
		cfg2 := fmt.Sprintf(`{"incoming": {"mode": "steal", "listen_ports": [[%d, %d]]}}`, port, localStealAllThief)
		thief := harness.StartLocalAppNoWait(t, f.agent.Addr, harness.AppOpts{Who: "thief", Config: cfg2, HTTPPorts: []int{port}})
		wantRefused(t, thief)
		f.waitWho(t, port, http.MethodGet, "/steal/after-refusal", nil, harness.WhoLocal)
		if local.Exited() {
			t.Fatalf("the first stealer exited\n%s", local.Describe())
		}
	})
}

// wantRefused fails t unless the app's tether exec ends with an error
// mentioning msgAlreadyStolen (tether) and msgAddrInUse (the app's listen).
func wantRefused(t *testing.T, app *harness.App) {
	t.Helper()
	res, ok := app.Process().Wait(30 * time.Second)
	if !ok {
		app.Process().Kill()
		t.Fatalf("the refused stealer is still running after 30s (its listen should have failed)\n%s", res)
	}
	if res.OK() {
		t.Fatalf("the refused stealer exited 0\n%s", res)
	}
	errOut := strings.ToLower(res.Stderr)
	for _, want := range []string{msgAlreadyStolen, msgAddrInUse} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr of the refused stealer lacks %q\n%s", want, res)
		}
	}
}

// TestIncomingStealFilterHeader: with a header filter, matching requests
// go to the local app and the others to the pod, per request on one
// HTTP/1.1 keep-alive connection, per stream on one h2c connection, per
// WebSocket upgrade and per gRPC call on one connection.
func TestIncomingStealFilterHeader(t *testing.T) {
	f := startIncoming(t)
	const port = portFilterHeader
	local := f.app(t, aliceFilter, port)
	f.waitWho(t, port, http.MethodGet, "/filter/wait", harness.Header("alice"), harness.WhoLocal)
	f.wantTetherTable(t)

	t.Run("http1-keepalive", func(t *testing.T) {
		var routes []route
		for i, user := range []string{"alice", "", "alice", "bob", "", "alice", "alicex", "alice"} {
			who := harness.WhoPod
			if user == "alice" {
				who = harness.WhoLocal
			}
			routes = append(routes, route{path: fmt.Sprintf("/filter/h1-%d", i), user: user, who: who})
		}
		f.runHTTP1(t, port, routes)
		wantSaw(t, local, pathsFor(routes, harness.WhoLocal)...)
		wantNotSaw(t, local, pathsFor(routes, harness.WhoPod)...)
		wantSaw(t, f.pod, pathsFor(routes, harness.WhoPod)...)
		wantNotSaw(t, f.pod, pathsFor(routes, harness.WhoLocal)...)
	})

	t.Run("unmatched-load-during-session-churn", func(t *testing.T) { unmatchedLoadDuringSessionChurn(t, f, port) })

	t.Run("h2c-streams", func(t *testing.T) {
		h2, err := f.client.H2C(port)
		if err != nil {
			t.Fatal(err)
		}
		defer h2.Close()
		var routes []route
		for i := range 12 {
			r := route{path: fmt.Sprintf("/filter/h2-%d", i), who: harness.WhoPod}
			if i%2 == 0 {
				r.user, r.who = "alice", harness.WhoLocal
			} else if i%3 == 0 {
				r.user = "bob"
			}
			routes = append(routes, r)
		}
		// Sequential streams, then concurrent ones, on the same connection.
		for _, r := range routes[:4] {
			a, err := h2.Do(http.MethodGet, r.path, harness.Header(r.user))
			r.check(t, "h2c stream", a, err)
		}
		var wg sync.WaitGroup
		for _, r := range routes[4:] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a, err := h2.Do(http.MethodGet, r.path, harness.Header(r.user))
				r.check(t, "concurrent h2c stream", a, err)
			}()
		}
		wg.Wait()
		if h2.Dials() != 1 {
			t.Errorf("the h2c client made %d connections, want 1", h2.Dials())
		}
		wantSaw(t, local, pathsFor(routes, harness.WhoLocal)...)
		wantNotSaw(t, local, pathsFor(routes, harness.WhoPod)...)
	})

	t.Run("websocket", func(t *testing.T) {
		for _, c := range []struct{ user, who string }{{"alice", harness.WhoLocal}, {"", harness.WhoPod}, {"bob", harness.WhoPod}} {
			path := "/ws/filter-" + c.user
			ws, err := f.client.WebSocket(port, path, harness.Header(c.user))
			if err != nil {
				t.Errorf("websocket as %q: %v", c.user, err)
				continue
			}
			if ws.Hello.Who != c.who || ws.Hello.Path != path {
				t.Errorf("websocket as %q answered by %v, want %s", c.user, ws.Hello, c.who)
			}
			for _, msg := range []string{"one", "two"} {
				if got, err := ws.Echo(msg); err != nil || got != msg {
					t.Errorf("websocket as %q: echo %q: %q, %v", c.user, msg, got, err)
				}
			}
			ws.Close()
		}
	})

	t.Run("grpc", func(t *testing.T) {
		g, err := f.client.GRPC(port)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		for _, c := range []struct{ user, who string }{
			{"alice", harness.WhoLocal}, {"", harness.WhoPod}, {"alice", harness.WhoLocal}, {"bob", harness.WhoPod},
		} {
			a, err := g.Check(c.user)
			if err != nil {
				t.Errorf("gRPC call as %q: %v", c.user, err)
				continue
			}
			if a.Who != c.who || a.Path != grpcCheckPath || a.User != c.user {
				t.Errorf("gRPC call as %q answered by %v, want %s", c.user, a, c.who)
			}
		}
		if g.Dials() != 1 {
			t.Errorf("the gRPC client made %d connections, want 1", g.Dials())
		}
	})
}

// unmatchedLoadDuringSessionChurn (part of TestIncomingStealFilterHeader):
// while a steady stream of unmatched requests flows, another filtered
// session subscribes to the same port and ends; every unmatched request is
// answered by the pod, none fails.
func unmatchedLoadDuringSessionChurn(t *testing.T, f *inFixture, port int) {
	load := f.client.StartLoad(harness.LoadOpts{Port: port, Rate: 100, Duration: 4 * time.Second, Path: "/filter/load", Header: harness.Header("bob")})
	time.Sleep(500 * time.Millisecond)
	cfg := fmt.Sprintf(`{"incoming": {"mode": "steal", "http_filter": {"header_filter": "^x-tether-user: carol$"}, "listen_ports": [[%d, %d]]}}`, port, localFilterHeaderCarol)
	carol := harness.StartLocalApp(t, f.agent.Addr, harness.AppOpts{Who: "carol-app", Config: cfg, HTTPPorts: []int{port}})
	f.waitWho(t, port, http.MethodGet, "/filter/wait-carol", harness.Header("carol"), "carol-app")
	carol.Process().Signal(syscall.SIGINT)
	if res, ok := carol.Process().Wait(10 * time.Second); !ok {
		t.Errorf("carol's tether exec did not end on SIGINT\n%s", res)
	}
	st := harness.Stats(load.Wait(), time.Time{}, time.Time{})
	t.Logf("unmatched load while another session came and went: %v", st)
	if st.Total < 300 || st.Failed > 0 || st.ByWho[harness.WhoPod] != st.Total {
		t.Errorf("unmatched requests must all be answered by the pod while other sessions subscribe and leave: %v", st)
	}
}

// TestIncomingFilterKinds: path_filter, method_filter, all_of, any_of and
// the case-insensitive, anchored "Name: value" header match each route
// requests as written (one session at a time, one port per case).
func TestIncomingFilterKinds(t *testing.T) {
	f := startIncoming(t)
	L, P := harness.WhoLocal, harness.WhoPod
	for _, c := range []struct {
		name   string
		port   int
		filter string
		routes []route
	}{
		{"path_filter", portFilterPath, `{"path_filter": "^/api/alice(/|$)"}`, []route{
			{"GET", "/api/alice/x", "", L}, {"GET", "/api/bob", "", P}, {"GET", "/api/alice", "bob", L},
			{"GET", "/x/api/alice", "", P}, {"GET", "/api/alicex", "", P},
		}},
		{"method_filter", portFilterMethod, `{"method_filter": "^(POST|DELETE)$"}`, []route{
			{"POST", "/m/1", "", L}, {"GET", "/m/2", "", P}, {"DELETE", "/m/3", "", L}, {"PUT", "/m/4", "", P},
		}},
		{"all_of", portFilterAllOf, `{"all_of": [{"header": "^x-tether-user: alice$"}, {"path": "^/api/"}]}`, []route{
			{"GET", "/api/1", "alice", L}, {"GET", "/web/1", "alice", P}, {"GET", "/api/2", "bob", P}, {"GET", "/api/3", "", P},
		}},
		{"any_of", portFilterAnyOf, `{"any_of": [{"header": "^x-tether-user: alice$"}, {"path": "^/debug/"}]}`, []route{
			{"GET", "/web/1", "alice", L}, {"GET", "/debug/1", "bob", L}, {"GET", "/debug/2", "", L}, {"GET", "/web/2", "bob", P},
		}},
		{"header_case_and_anchors", portFilterHeaderCase, `{"header_filter": "^x-tether-user: alice$"}`, []route{
			{"GET", "/case/1", "ALICE", L}, {"GET", "/case/2", "Alice", L}, {"GET", "/case/3", "alice2", P}, {"GET", "/case/4", "malice", P},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := `{"incoming": {"mode": "steal", "http_filter": ` + c.filter + `}}`
			local := f.app(t, cfg, c.port)
			first := c.routes[0] // always a local one
			f.waitWho(t, c.port, first.method, first.path+"-wait", harness.Header(first.user), harness.WhoLocal)
			f.runHTTP1(t, c.port, c.routes)
			wantSaw(t, local, pathsFor(c.routes, L)...)
			wantNotSaw(t, local, pathsFor(c.routes, P)...)
			// A header in another header's value is not a header line.
			if c.name == "header_case_and_anchors" {
				a, err := f.client.Get(c.port, "/case/5", harness.Header("", "X-Other: x-tether-user: alice"))
				route{path: "/case/5", who: P}.check(t, "header inside a value", a, err)
			}
		})
	}
}

// TestIncomingTwoFilteredSessions: two sessions with different filters
// steal from the same port of one agent; each gets only its own requests,
// the rest reaches the pod, on shared keep-alive and h2c connections. An
// unfiltered stealer of that port is then refused, and both sessions keep
// working.
func TestIncomingTwoFilteredSessions(t *testing.T) {
	f := startIncoming(t)
	const port = portTwoSessions
	alice := harness.StartLocalApp(t, f.agent.Addr, harness.AppOpts{Who: "alice-app", Config: aliceFilter, HTTPPorts: []int{port}})
	f.waitWho(t, port, http.MethodGet, "/two/wait-alice", harness.Header("alice"), "alice-app")
	// Bob runs on the same machine: listen_ports binds another local port.
	bobCfg := fmt.Sprintf(`{"incoming": {"mode": "steal", "http_filter": {"header_filter": "^x-tether-user: bob$"}, "listen_ports": [[%d, %d]]}}`, port, localTwoSessionsBob)
	bob := harness.StartLocalApp(t, f.agent.Addr, harness.AppOpts{Who: "bob-app", Config: bobCfg, HTTPPorts: []int{port}})
	f.waitWho(t, port, http.MethodGet, "/two/wait-bob", harness.Header("bob"), "bob-app")

	var routes []route
	for i, user := range []string{"alice", "bob", "", "carol", "bob", "alice", "", "alice", "bob"} {
		who := map[string]string{"alice": "alice-app", "bob": "bob-app"}[user]
		if who == "" {
			who = harness.WhoPod
		}
		routes = append(routes, route{path: fmt.Sprintf("/two/h1-%d", i), user: user, who: who})
	}
	f.runHTTP1(t, port, routes)

	h2, err := f.client.H2C(port)
	if err != nil {
		t.Fatal(err)
	}
	for i, user := range []string{"bob", "alice", "", "alice", "bob"} {
		who := map[string]string{"alice": "alice-app", "bob": "bob-app"}[user]
		if who == "" {
			who = harness.WhoPod
		}
		r := route{path: fmt.Sprintf("/two/h2-%d", i), user: user, who: who}
		routes = append(routes, r)
		a, err := h2.Do(http.MethodGet, r.path, harness.Header(user))
		r.check(t, "h2c", a, err)
	}
	h2.Close()

	wantSaw(t, alice, pathsFor(routes, "alice-app")...)
	wantNotSaw(t, alice, append(pathsFor(routes, "bob-app"), pathsFor(routes, harness.WhoPod)...)...)
	wantSaw(t, bob, pathsFor(routes, "bob-app")...)
	wantNotSaw(t, bob, append(pathsFor(routes, "alice-app"), pathsFor(routes, harness.WhoPod)...)...)
	wantSaw(t, f.pod, pathsFor(routes, harness.WhoPod)...)

	t.Run("unfiltered-stealer-refused", func(t *testing.T) {
		cfg := fmt.Sprintf(`{"incoming": {"mode": "steal", "listen_ports": [[%d, %d]]}}`, port, localTwoSessionsThief)
		thief := harness.StartLocalAppNoWait(t, f.agent.Addr, harness.AppOpts{Who: "thief", Config: cfg, HTTPPorts: []int{port}})
		wantRefused(t, thief)
		f.runHTTP1(t, port, []route{
			{"GET", "/two/after-1", "alice", "alice-app"}, {"GET", "/two/after-2", "bob", "bob-app"}, {"GET", "/two/after-3", "", harness.WhoPod},
		})
	})
}

// TestIncomingOverlappingFilters: when a later session's filter overlaps
// an earlier one's, the earlier session gets the requests matching both,
// the later one is warned on stderr, and it still gets the requests only
// its filter matches.
func TestIncomingOverlappingFilters(t *testing.T) {
	f := startIncoming(t)
	const port = portOverlap
	first := harness.StartLocalApp(t, f.agent.Addr, harness.AppOpts{Who: "first", Config: aliceFilter, HTTPPorts: []int{port}})
	f.waitWho(t, port, http.MethodGet, "/overlap/wait-first", harness.Header("alice"), "first")
	cfg := fmt.Sprintf(`{"incoming": {"mode": "steal", "http_filter": {"header_filter": "^x-tether-user: (alice|bob)$"}, "listen_ports": [[%d, %d]]}}`, port, localOverlapSecond)
	second := harness.StartLocalApp(t, f.agent.Addr, harness.AppOpts{Who: "second", Config: cfg, HTTPPorts: []int{port}})
	f.waitWho(t, port, http.MethodGet, "/overlap/wait-second", harness.Header("bob"), "second")

	routes := []route{
		{"GET", "/overlap/1", "alice", "first"}, {"GET", "/overlap/2", "bob", "second"}, {"GET", "/overlap/3", "carol", harness.WhoPod},
		{"GET", "/overlap/4", "alice", "first"}, {"GET", "/overlap/5", "", harness.WhoPod}, {"GET", "/overlap/6", "alice", "first"},
	}
	f.runHTTP1(t, port, routes)
	wantNotSaw(t, second, pathsFor(routes, "first")...)
	wantSaw(t, first, pathsFor(routes, "first")...)
	if !second.WaitStderr(msgOverlaps, 5*time.Second) {
		t.Errorf("the later session was not warned (stderr lacks %q)\n%s", msgOverlaps, second.Describe())
	}
}

// TestIncomingNonHTTPPassthrough: on a port subscribed with an HTTP filter,
// a connection that is not HTTP goes to the pod untouched. The pod serves a
// raw line echo on that port; the local app serves HTTP there, which proves
// the port is subscribed.
func TestIncomingNonHTTPPassthrough(t *testing.T) {
	f := startIncoming(t)
	const port = portNonHTTP
	f.app(t, aliceFilter, port)
	f.waitWho(t, port, http.MethodGet, "/raw/wait", harness.Header("alice"), harness.WhoLocal)
	for i := range 3 {
		began := time.Now()
		e, err := f.client.Echo(port)
		if err != nil {
			t.Fatal(err)
		}
		for j, l := range []string{fmt.Sprintf("hello-%d", i), "not http at all", "GET"} {
			got, err := e.Line(l)
			if err != nil || got != "who=pod echo="+l {
				t.Errorf("raw TCP line %q on a filtered port: got %q, %v; want the pod's echo", l, got, err)
			}
			if j == 0 {
				t.Logf("connection %d: first echo after %v", i, time.Since(began).Round(time.Millisecond))
			}
		}
		e.Close()
	}
}

// TestIncomingModeOff: incoming.mode off subscribes nothing: the pod
// answers, the local app sees nothing, no rules are installed.
func TestIncomingModeOff(t *testing.T) {
	f := startIncoming(t)
	const port = portModeOff
	local := f.app(t, `{"incoming": {"mode": "off"}}`, port)
	time.Sleep(1500 * time.Millisecond) // what a subscription would need
	var paths []string
	for i := range 5 {
		p := fmt.Sprintf("/off/%d", i)
		paths = append(paths, p)
		a, err := f.client.Get(port, p, harness.Header("alice"))
		route{path: p, user: "alice", who: harness.WhoPod}.check(t, "mode off", a, err)
	}
	wantSaw(t, f.pod, paths...)
	time.Sleep(500 * time.Millisecond)
	wantNotSaw(t, local, paths...)
	if tables, err := f.env.Pod.TetherTables(); err != nil || len(tables) > 0 {
		t.Errorf("mode off: tether tables in the pod: %q (%v)", tables, err)
	}
}

// TestIncomingPortSelection: incoming.ports subscribes only the listed
// ports, incoming.ignore_ports all but the listed ones.
func TestIncomingPortSelection(t *testing.T) {
	f := startIncoming(t)
	for _, c := range []struct {
		name              string
		key               string
		listed, unlisted  int
		listedWho, unlWho string
	}{
		{"ports", "ports", portOnlyPorts, portOnlyPortsOther, harness.WhoLocal, harness.WhoPod},
		{"ignore_ports", "ignore_ports", portIgnorePorts, portIgnorePortsOther, harness.WhoPod, harness.WhoLocal},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := fmt.Sprintf(`{"incoming": {"mode": "steal", %q: [%d]}}`, c.key, c.listed)
			f.app(t, cfg, c.listed, c.unlisted)
			stolen := c.listed
			if c.listedWho == harness.WhoPod {
				stolen = c.unlisted
			}
			f.waitWho(t, stolen, http.MethodGet, "/sel/wait", nil, harness.WhoLocal)
			for _, p := range []struct {
				port int
				who  string
			}{{c.listed, c.listedWho}, {c.unlisted, c.unlWho}} {
				for i := range 3 {
					path := fmt.Sprintf("/sel/%s-%d-%d", c.name, p.port, i)
					a, err := f.client.Get(p.port, path, nil)
					route{path: path, who: p.who}.check(t, fmt.Sprintf("port %d", p.port), a, err)
				}
			}
		})
	}
}

// TestIncomingPortMapping: port_mapping [[local, remote]]: the app listens
// on the local port and gets the traffic of the pod's remote port.
func TestIncomingPortMapping(t *testing.T) {
	f := startIncoming(t)
	const remote, localPort = portMapping, localMapping
	cfg := fmt.Sprintf(`{"incoming": {"mode": "steal", "port_mapping": [[%d, %d]]}}`, localPort, remote)
	local := f.app(t, cfg, localPort)
	f.waitWho(t, remote, http.MethodGet, "/mapping/wait", nil, harness.WhoLocal)
	a, err := f.client.Get(remote, "/mapping/1", harness.Header("alice"))
	route{path: "/mapping/1", user: "alice", who: harness.WhoLocal}.check(t, "mapped port", a, err)
	wantSaw(t, local, "/mapping/1")
	wantNotSaw(t, f.pod, "/mapping/1")
}

// TestIncomingListenPorts: listen_ports [[remote, local]]: the app asks for
// the remote port, tether binds the local one on this machine instead, and
// the app gets the remote port's traffic.
func TestIncomingListenPorts(t *testing.T) {
	f := startIncoming(t)
	const remote, localPort = portListenPorts, localListenPorts
	cfg := fmt.Sprintf(`{"incoming": {"mode": "steal", "listen_ports": [[%d, %d]]}}`, remote, localPort)
	local := f.app(t, cfg, remote)
	f.waitWho(t, remote, http.MethodGet, "/listen-ports/wait", nil, harness.WhoLocal)
	a, err := f.client.Get(remote, "/listen-ports/1", nil)
	route{path: "/listen-ports/1", who: harness.WhoLocal}.check(t, "remote port", a, err)
	wantSaw(t, local, "/listen-ports/1")

	// Locally the app is on the other port, not on the one it asked for.
	if a, err := localGet(localPort, "/listen-ports/direct"); err != nil || a.Who != harness.WhoLocal {
		t.Errorf("127.0.0.1:%d (listen_ports' local port): %v, %v; want the local app", localPort, a, err)
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", remote), time.Second); err == nil {
		c.Close()
		t.Errorf("127.0.0.1:%d accepts connections on this machine: listen_ports should have bound %d instead", remote, localPort)
	}
}

// localGet makes an HTTP request to 127.0.0.1:port on this machine.
func localGet(port int, path string) (harness.Answer, error) {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		return harness.Answer{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\r\n", path)
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	_, body, _ := strings.Cut(b.String(), "\r\n\r\n")
	return harness.ParseAnswer(body)
}

// TestIncomingSessionEnd: when a stealing session ends (its app exits, or
// tether exec gets SIGINT), the pod answers again within cleanupBound, and
// the agent (still running) removes its rules, the session being its last.
func TestIncomingSessionEnd(t *testing.T) {
	f := startIncoming(t)
	for _, c := range []struct {
		name string
		port int
		end  func(app *harness.App) error
	}{
		{"app-exits", portEndNormal, func(app *harness.App) error { return syscall.Kill(app.PID, syscall.SIGTERM) }},
		{"sigint", portEndSIGINT, func(app *harness.App) error { return app.Process().Signal(syscall.SIGINT) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			app := f.app(t, `{"incoming": {"mode": "steal"}}`, c.port)
			f.waitWho(t, c.port, http.MethodGet, "/end/wait", nil, harness.WhoLocal)
			f.wantTetherTable(t)
			began := time.Now()
			if err := c.end(app); err != nil {
				t.Fatal(err)
			}
			err := harness.WaitFor(cleanupBound, func() error {
				a, err := f.client.Get(c.port, "/end/after", nil)
				if err != nil {
					return err
				}
				if a.Who != harness.WhoPod {
					return fmt.Errorf("answered by %v", a)
				}
				return nil
			})
			if err != nil {
				t.Errorf("the pod did not answer again within %v of the session's end: %v", cleanupBound, err)
			}
			err = harness.WaitFor(cleanupBound-time.Since(began), func() error {
				tables, err := f.env.Pod.TetherTables()
				if err == nil && len(tables) > 0 {
					err = fmt.Errorf("tables %q", tables)
				}
				return err
			})
			if err != nil {
				t.Errorf("the agent's last session ended but its rules remain after %v: %v\n%s", cleanupBound, err, f.env.Pod.Ruleset())
			}
			res, ok := app.Process().Wait(10 * time.Second)
			if !ok {
				t.Errorf("tether exec did not exit\n%s", res)
			}
			t.Logf("tether exec: exit %d after the end signal", res.ExitCode)
		})
	}
}

// TestIncomingKillExec: kill -9 of `tether exec` while a client sends a
// steady stream of requests to a port it steals: after cleanupBound every
// request is answered by the pod again (failures are tolerated only inside
// that window); once the agent exits on SIGTERM, no tether table remains.
func TestIncomingKillExec(t *testing.T) {
	f := startIncoming(t)
	const port = portKillExec
	app := f.app(t, `{"incoming": {"mode": "steal"}}`, port)
	f.waitWho(t, port, http.MethodGet, "/kill/wait", nil, harness.WhoLocal)

	load := f.client.StartLoad(harness.LoadOpts{Port: port, Rate: 100, Duration: 6 * time.Second, Timeout: 2 * time.Second, Path: "/kill/load"})
	time.Sleep(2 * time.Second)
	killed := time.Now()
	if err := app.Process().Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	samples := load.Wait()
	// Requests in flight at the kill may fail: they count in the window.
	before := harness.Stats(harness.EndedBefore(samples, killed), time.Time{}, time.Time{})
	window := harness.Stats(samples, time.Time{}, killed.Add(cleanupBound))
	window.Total -= before.Total
	window.OK -= before.OK
	window.Failed -= before.Failed
	window.ByWho[harness.WhoLocal] -= before.ByWho[harness.WhoLocal]
	after := harness.Stats(samples, killed.Add(cleanupBound), time.Time{})
	t.Logf("completed before kill -9: %v", before)
	t.Logf("in flight at the kill or started in the first %v after: %v", cleanupBound, window)
	t.Logf("afterwards: %v", after)
	if before.Total == 0 || before.Failed > 0 || before.ByWho[harness.WhoLocal] != before.Total {
		t.Errorf("before the kill every request should be stolen by the local app: %v", before)
	}
	if after.Total < 100 || after.Failed > 0 || after.ByWho[harness.WhoPod] != after.Total {
		t.Errorf("from %v after kill -9 of tether exec, every request must be answered by the pod: %v", cleanupBound, after)
	}
	if res, ok := app.Process().Wait(5 * time.Second); !ok || res.Signal != syscall.SIGKILL {
		t.Errorf("tether exec did not die of SIGKILL\n%s", res)
	}

	if !f.agent.Terminate(10 * time.Second) {
		t.Fatalf("tether-agent did not exit within 10s of SIGTERM")
	}
	if tables, err := f.env.Pod.TetherTables(); err != nil || len(tables) > 0 {
		t.Errorf("after the agent exited: tether tables %q (%v)\n%s", tables, err, f.env.Pod.Ruleset())
		f.env.Pod.DeleteTetherTables()
	}
	if err := harness.WaitFor(5*time.Second, func() error {
		if left := f.agent.AliveDescendants(); len(left) > 0 {
			return fmt.Errorf("still running: %v", left)
		}
		return nil
	}); err != nil {
		t.Errorf("the agent's child processes outlived it: %v", err)
	}
	if a, err := f.client.Get(port, "/kill/after-agent", nil); err != nil || a.Who != harness.WhoPod {
		t.Errorf("after the agent exited: %v, %v; want the pod", a, err)
	}
}

// TestIncomingKillAgentWorker: kill -9 of the agent's worker process (the
// only child of tether-agent): its parent removes the rules within
// cleanupBound and the pod answers directly again.
func TestIncomingKillAgentWorker(t *testing.T) {
	f := startIncoming(t)
	const port = portKillWorker
	f.app(t, `{"incoming": {"mode": "steal"}}`, port)
	f.waitWho(t, port, http.MethodGet, "/worker/wait", nil, harness.WhoLocal)
	f.wantTetherTable(t)
	worker, err := f.agent.WorkerPID()
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(worker, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := harness.WaitFor(cleanupBound, func() error {
		tables, err := f.env.Pod.TetherTables()
		if err == nil && len(tables) > 0 {
			err = fmt.Errorf("tables %q", tables)
		}
		return err
	}); err != nil {
		t.Errorf("after kill -9 of the agent's worker (pid %d) its rules remain: %v\n%s", worker, err, f.env.Pod.Ruleset())
	}
	if err := harness.WaitFor(max(cleanupBound-time.Since(began), 100*time.Millisecond), func() error {
		a, err := f.client.Get(port, "/worker/after", nil)
		if err == nil && a.Who != harness.WhoPod {
			err = fmt.Errorf("answered by %v", a)
		}
		return err
	}); err != nil {
		t.Errorf("after kill -9 of the agent's worker, the pod does not answer directly: %v", err)
	}
	t.Logf("tether-agent parent after its worker was killed: exited=%v", f.agent.Exited())
}

// TestIncomingStaleRules: rules left by a dead agent are removed when a new
// agent starts and a session subscribes: a planted table named like a
// tether table whose owner is gone, and the real tables of an agent killed
// with its worker (nobody left to clean up).
func TestIncomingStaleRules(t *testing.T) {
	env := harness.Setup(t)
	harness.NeedTool(t, "nft")
	client := env.Client(t)
	env.PodApp(t)

	t.Run("planted", func(t *testing.T) {
		const port = portStalePlanted
		if a, err := client.Get(port, "/stale/before", nil); err != nil || a.Who != harness.WhoPod {
			t.Fatalf("before planting: %v, %v", a, err)
		}
		// Redirect to a port where nothing listens: the pod is cut off.
		if err := env.Pod.AddRedirectTable(harness.StaleTableName, port, 1); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { env.Pod.DeleteTable(harness.StaleTableName) })
		if _, err := client.Get(port, "/stale/planted", nil); err == nil {
			t.Fatalf("the planted table does not cut the port off:\n%s", env.Pod.Ruleset())
		}
		f := startIncoming(t)
		local := f.app(t, "", port) // mirror
		if err := harness.WaitFor(activationTimeout, func() error { return noTable(env.Pod, harness.StaleTableName) }); err != nil {
			t.Fatalf("the stale table %s is still there after a new agent started and a session subscribed: %v\n%s", harness.StaleTableName, err, env.Pod.Ruleset())
		}
		err := harness.WaitFor(activationTimeout, func() error {
			a, err := client.Get(port, "/stale/after", nil)
			if err == nil && a.Who != harness.WhoPod {
				err = fmt.Errorf("answered by %v", a)
			}
			return err
		})
		if err != nil {
			t.Fatalf("the pod does not answer after the stale table was removed: %v", err)
		}
		wantSaw(t, local, "/stale/after")
	})

	t.Run("killed-agent", func(t *testing.T) {
		const port = portStaleKilled
		old := harness.StartAgent(t, env.Pod)
		app := harness.StartLocalApp(t, old.Addr, harness.AppOpts{Config: `{"incoming": {"mode": "steal"}}`, HTTPPorts: []int{port}})
		oldFix := &inFixture{fixture: &fixture{env: env, agent: old}, client: client}
		oldFix.waitWho(t, port, http.MethodGet, "/stale/wait-old", nil, harness.WhoLocal)
		oldTables, err := env.Pod.TetherTables()
		if err != nil {
			t.Fatal(err)
		}
		// Freeze, then kill, the worker and the parent: nobody cleans up.
		kids, _ := old.Children()
		procs := append(kids, old.PID)
		for _, pid := range procs {
			syscall.Kill(pid, syscall.SIGSTOP)
		}
		for _, pid := range procs {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		if !old.Wait(10 * time.Second) {
			t.Fatal("the old agent did not die of SIGKILL")
		}
		app.Process().Kill()
		// A new agent after the old one is really gone (reaped, not a zombie).
		if err := harness.WaitFor(10*time.Second, func() error {
			for _, pid := range procs {
				if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
					return fmt.Errorf("pid %d still exists (zombie?)", pid)
				}
			}
			return nil
		}); err != nil {
			t.Fatalf("the killed agent's processes were not reaped: %v", err)
		}
		left, _ := env.Pod.TetherTables()
		t.Logf("tables of the old agent: %q; left after kill -9 of agent and worker: %q", oldTables, left)
		if len(left) > 0 {
			if a, err := client.Get(port, "/stale/cut-off", nil); err == nil {
				t.Logf("with the dead agent's tables in place, the pod still answered: %v", a)
			}
		}

		f := startIncoming(t)
		local := f.app(t, "", port) // mirror
		if err := harness.WaitFor(activationTimeout, func() error {
			for _, tbl := range left {
				if err := noTable(env.Pod, strings.Fields(tbl)[1]); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatalf("the dead agent's tables remain after a new agent started and a session subscribed: %v\n%s", err, env.Pod.Ruleset())
		}
		err = harness.WaitFor(activationTimeout, func() error {
			a, err := client.Get(port, "/stale/after-kill", nil)
			if err == nil && a.Who != harness.WhoPod {
				err = fmt.Errorf("answered by %v", a)
			}
			return err
		})
		if err != nil {
			t.Fatalf("the pod does not answer after the new agent started: %v", err)
		}
		wantSaw(t, local, "/stale/after-kill")
	})
}

// noTable returns an error while the pod's netns has a table called name.
func noTable(pod *harness.Pod, name string) error {
	tables, err := pod.Tables()
	if err != nil {
		return err
	}
	for _, tbl := range tables {
		if f := strings.Fields(tbl); len(f) == 2 && f[1] == name {
			return fmt.Errorf("table %s present", tbl)
		}
	}
	return nil
}
