package integration

import (
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/test/harness"
)

// TestIncomingTakeover: a keep-alive connection opened before a filtered
// steal keeps being served by the pod until it is quiet after an answer;
// then the agent closes it (not in the middle of a request), the client
// reconnects through the redirect rule, and its filtered requests reach
// the session. No request fails.
func TestIncomingTakeover(t *testing.T) {
	f := startIncoming(t)
	const port = portTakeover
	// Three keep-alive clients opened before the session: one sends a
	// request every 1.5 s (quiet in between: taken over), two back to back
	// (never quiet: left alone, and never cut), one of them with slow
	// answers (300 ms). The pausing client's answers take 20 ms, so that
	// the kernel's clock (1-10 ms ticks) orders request and answer.
	pausing := &reconnecting{t: t, f: f, port: port}
	busy := &reconnecting{t: t, f: f, port: port}
	slow := &reconnecting{t: t, f: f, port: port}
	for _, c := range []*reconnecting{pausing, busy, slow} {
		if _, err := c.do("/before", ""); err != nil {
			t.Fatal(err)
		}
	}
	app := f.app(t, aliceFilter, port)
	f.waitWho(t, port, http.MethodGet, "/takeover/new", harness.Header("alice"), harness.WhoLocal)
	stop := make(chan struct{})
	done := make(chan int)
	backToBack := func(c *reconnecting, path string) {
		n := 0
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			if _, err := c.do(path, ""); err != nil {
				t.Errorf("the back-to-back client (%s) failed: %v", path, err)
			}
			n++
		}
	}
	go backToBack(busy, "/busy")
	go backToBack(slow, "/slow?delay=300ms")
	local := false
	for i := 0; i < 8 && !local; i++ {
		time.Sleep(1500 * time.Millisecond)
		a, err := pausing.do("/takeover/old?delay=20ms", "alice")
		if err != nil {
			t.Fatalf("request %d on the keep-alive connection opened before the session: %v", i, err)
		}
		local = a.Who == harness.WhoLocal
	}
	if !local {
		t.Errorf("the keep-alive connection opened before the session never reached it (quiet 1.5 s between requests)")
	}
	// The session ends: the connection the agent now holds goes on, its
	// requests answered by the pod (the agent keeps translating it).
	if err := app.Process().Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if res, ok := app.Process().Wait(10 * time.Second); !ok {
		t.Fatalf("tether exec did not exit on SIGINT\n%s", res)
	}
	for i := range 3 {
		time.Sleep(1500 * time.Millisecond)
		a, err := pausing.do("/takeover/after?delay=20ms", "alice")
		if err != nil {
			t.Fatalf("request %d after the session ended, on the connection the agent holds: %v", i, err)
		}
		if a.Who != harness.WhoPod {
			t.Errorf("request %d after the session ended: answered by %v, want the pod", i, a)
		}
	}
	close(stop)
	n, nSlow := <-done, <-done
	if pausing.dials > 3 {
		t.Errorf("the pausing client connected %d times, want 2 or 3 (closed once when quiet, maybe once by the agent's drain)", pausing.dials)
	}
	for _, c := range []*reconnecting{busy, slow} {
		if c.dials != 1 {
			t.Errorf("a back-to-back client connected %d times, want 1 (never quiet: never closed)", c.dials)
		}
	}
	t.Logf("pausing client: %d connections; back-to-back clients: %d and %d requests on %d and %d connection(s)", pausing.dials, n, nSlow, busy.dials, slow.dials)
}

// reconnecting is a keep-alive HTTP/1.1 client that opens a new
// connection when the server closed its last one between requests (as
// HTTP clients do) and counts its connections.
type reconnecting struct {
	t     *testing.T
	f     *inFixture
	port  int
	conn  *harness.HTTP1Conn
	dials int
}

func (r *reconnecting) do(path, user string) (harness.Answer, error) {
	if r.conn != nil && r.conn.ClosedByPeer() {
		r.conn.Close()
		r.conn = nil
	}
	if r.conn == nil {
		c, err := r.f.client.HTTP1(r.port)
		if err != nil {
			return harness.Answer{}, err
		}
		r.conn, r.dials = c, r.dials+1
	}
	return r.conn.Do(http.MethodGet, path, harness.Header(user))
}

// TestIncomingAgentStop: the agent stopped (SIGTERM, as when its pod is
// deleted) while unmatched requests arrive on new connections to a port
// it steals with a filter, 400 a second: every request is answered by
// the pod, none fails or hangs. Those redirected just before the rule
// went are accepted and served by the draining agent, and the agent's
// last packets go out while its table still translates them.
func TestIncomingAgentStop(t *testing.T) {
	f := startIncoming(t)
	const port = portAgentStop
	f.app(t, aliceFilter, port)
	f.waitWho(t, port, http.MethodGet, "/stop/wait", harness.Header("alice"), harness.WhoLocal)
	load := f.client.StartLoad(harness.LoadOpts{Port: port, Rate: 400, Duration: 4 * time.Second, Timeout: 3 * time.Second, Path: "/stop/load"})
	time.Sleep(1500 * time.Millisecond)
	stopped := time.Now()
	if !f.agent.Terminate(15 * time.Second) {
		t.Fatalf("tether-agent did not exit within 15s of SIGTERM")
	}
	exited := time.Now()
	samples := load.Wait()
	st := harness.Stats(samples, time.Time{}, time.Time{})
	var failed []string
	for _, s := range samples {
		if s.Err != nil || s.Who != harness.WhoPod {
			failed = append(failed, fmt.Sprintf("sent %v after the SIGTERM, took %v: %v %v", s.Start.Sub(stopped).Round(time.Millisecond), s.End.Sub(s.Start).Round(time.Millisecond), s.Who, s.Err))
		}
	}
	t.Logf("agent exited %v after SIGTERM; %v", exited.Sub(stopped).Round(time.Millisecond), st)
	if st.Total < 1000 || len(failed) > 0 {
		t.Errorf("unmatched requests around the agent's stop: %d of %d not answered by the pod (want all of at least 1000): %v", len(failed), st.Total, failed)
	}
}
