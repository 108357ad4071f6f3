package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-dev/tether/test/harness"
)

// TestHarnessSelfCheckIncoming verifies the parts of the harness that the
// incoming-traffic tests use, without tether: the client namespace reaches
// the app in the pod over HTTP/1.1 keep-alive, h2c, WebSocket, gRPC and raw
// TCP, and the pod app sees the client's address; the load generator; a
// local podapp; nft inspection and a planted redirect table in the pod.
func TestHarnessSelfCheckIncoming(t *testing.T) {
	env := harness.Setup(t)
	client := env.Client(t)
	podApp := env.PodApp(t)
	const port = portSelfCheck

	t.Run("client-namespace", func(t *testing.T) {
		out, err := exec.Command("ip", "-n", client.NetNS, "route", "show", "default").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "via "+harness.ClientGateway) {
			t.Fatalf("client default route: %q (%v)", out, err)
		}
		// The client is not the pod: the pod's address is not local there.
		if _, err := harness.DialIn(client.NSPath, "tcp4", "127.0.0.1:"+fmt.Sprint(port), time.Second); err == nil {
			t.Fatal("port reachable on the client namespace's loopback: the client shares a namespace with the pod app?")
		}
	})

	t.Run("http1-keepalive", func(t *testing.T) {
		c, err := client.HTTP1(port)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for i, user := range []string{"alice", "", "bob"} {
			path := fmt.Sprintf("/self/h1-%d", i)
			a, err := c.Do(http.MethodGet, path, harness.Header(user))
			if err != nil {
				t.Fatal(err)
			}
			if a.Who != harness.WhoPod || a.Path != path || a.User != user || a.Proto != "HTTP/1.1" || a.Status != 200 {
				t.Fatalf("request %d: %v", i, a)
			}
			// One connection: the server saw this connection's address.
			if a.Remote != c.LocalAddr() {
				t.Fatalf("request %d: the pod app saw %s, the client connection is %s", i, a.Remote, c.LocalAddr())
			}
		}
		if len(podApp.WaitSaw(2*time.Second, "/self/h1-2")) > 0 {
			t.Fatalf("the pod app did not log /self/h1-2\n%s", podApp.Describe())
		}
	})

	t.Run("h2c", func(t *testing.T) {
		c, err := client.H2C(port)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		remotes := map[string]bool{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := range 8 { // concurrent streams on one connection
			wg.Add(1)
			go func() {
				defer wg.Done()
				path := fmt.Sprintf("/self/h2-%d", i)
				a, err := c.Do(http.MethodGet, path, harness.Header("carol"))
				if err == nil && (a.Who != harness.WhoPod || a.Path != path || a.User != "carol" || a.Proto != "HTTP/2.0") {
					err = fmt.Errorf("stream %d: %v", i, a)
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				remotes[a.Remote] = true
				mu.Unlock()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if c.Dials() != 1 || len(remotes) != 1 {
			t.Fatalf("want one connection: %d dials, the server saw %v", c.Dials(), remotes)
		}
		for r := range remotes {
			if ip, _, _ := net.SplitHostPort(r); ip != harness.ClientIP {
				t.Fatalf("the pod app saw %s, want the client's IP %s", r, harness.ClientIP)
			}
		}
	})

	t.Run("websocket", func(t *testing.T) {
		for _, user := range []string{"alice", ""} {
			ws, err := client.WebSocket(port, "/ws/self", harness.Header(user))
			if err != nil {
				t.Fatal(err)
			}
			h := ws.Hello
			if h.Who != harness.WhoPod || h.Kind != "ws" || h.Path != "/ws/self" || h.User != user || h.RemoteIP() != harness.ClientIP {
				t.Fatalf("websocket greeting: %v", h)
			}
			for _, msg := range []string{"ping-1", "ping-2"} {
				if got, err := ws.Echo(msg); err != nil || got != msg {
					t.Fatalf("websocket echo %q: %q, %v", msg, got, err)
				}
			}
			ws.Close()
		}
	})

	t.Run("grpc", func(t *testing.T) {
		g, err := client.GRPC(port)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		for _, user := range []string{"alice", "", "alice"} {
			a, err := g.Check(user)
			if err != nil {
				t.Fatal(err)
			}
			if a.Who != harness.WhoPod || a.Kind != "grpc" || a.Path != grpcCheckPath || a.User != user || a.RemoteIP() != harness.ClientIP {
				t.Fatalf("grpc answer: %v", a)
			}
		}
		if g.Dials() != 1 {
			t.Fatalf("gRPC calls used %d connections, want 1", g.Dials())
		}
	})

	t.Run("tcp-echo", func(t *testing.T) {
		e, err := client.Echo(harness.PodAppFirstEchoPort)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		for _, l := range []string{"hello", "again"} {
			if got, err := e.Line(l); err != nil || got != "who=pod echo="+l {
				t.Fatalf("echo %q: %q, %v", l, got, err)
			}
		}
	})

	t.Run("load", func(t *testing.T) {
		samples := client.StartLoad(harness.LoadOpts{Port: port, Rate: 50, Duration: time.Second, Path: "/self/load"}).Wait()
		st := harness.Stats(samples, time.Time{}, time.Time{})
		if st.Total < 40 || st.Failed != 0 || st.ByWho[harness.WhoPod] != st.Total {
			t.Fatalf("load: %v", st)
		}
		t.Logf("load: %v", st)
	})

	t.Run("local-app", func(t *testing.T) {
		app := harness.StartApp(t, harness.AppOpts{HTTPPorts: []int{localSelfCheck}})
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/self/local", localSelfCheck))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		a, err := harness.ParseAnswer(string(body))
		if err != nil || a.Who != harness.WhoLocal || a.Path != "/self/local" {
			t.Fatalf("local app answer %v, %v", a, err)
		}
		if len(app.WaitSaw(2*time.Second, "/self/local")) > 0 || app.PID != app.Process().PID {
			t.Logf("pids: app %d, process %d", app.PID, app.Process().PID)
			t.Fatalf("local app log / pid:\n%s", app.Describe())
		}
	})

	t.Run("nft", func(t *testing.T) {
		harness.NeedTool(t, "nft")
		tables, err := env.Pod.Tables()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("tables in the pod netns: %q", tables)
		const name = "tth-selfcheck"
		if err := env.Pod.AddRedirectTable(name, port, 1); err != nil {
			t.Fatal(err)
		}
		defer env.Pod.DeleteTable(name)
		if _, err := client.Get(port, "/self/redirected", nil); err == nil {
			t.Fatalf("a request went through despite the planted redirect to port 1:\n%s", env.Pod.Ruleset())
		}
		if err := env.Pod.DeleteTable(name); err != nil {
			t.Fatal(err)
		}
		if a, err := client.Get(port, "/self/after-redirect", nil); err != nil || a.Who != harness.WhoPod {
			t.Fatalf("after removing the table: %v, %v", a, err)
		}
	})
}

// grpcCheckPath is the method the gRPC helpers call.
const grpcCheckPath = "/grpc.health.v1.Health/Check"
