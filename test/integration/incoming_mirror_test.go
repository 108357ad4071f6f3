package integration

import (
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/test/harness"
)

// TestIncomingMirrorWithStealer: one session mirrors a port while another
// steals part of it with a filter. While both are subscribed the port is
// redirected to the agent, and the mirror sees a copy of every request
// (those stolen too); when the stealer leaves, the redirect goes, and the
// mirror goes on from the packet capture: fresh connections and ones kept
// alive across the change are copied, none twice.
func TestIncomingMirrorWithStealer(t *testing.T) {
	f := startIncoming(t)
	const port = portMirrorSteal
	mirror := harness.StartLocalApp(t, f.agent.Addr, harness.AppOpts{Who: "mirror-app", HTTPPorts: []int{port}})
	f.waitMirrored(t, mirror, port, "/ms/wait-mirror")
	f.wantNoRedirect(t)

	bobCfg := fmt.Sprintf(`{"incoming": {"mode": "steal", "http_filter": {"header_filter": "^x-tether-user: bob$"}, "listen_ports": [[%d, %d]]}}`, port, localMirrorStealBob)
	bob := harness.StartLocalApp(t, f.agent.Addr, harness.AppOpts{Who: "bob-app", Config: bobCfg, HTTPPorts: []int{port}})
	f.waitWho(t, port, http.MethodGet, "/ms/wait-bob", harness.Header("bob"), "bob-app")
	f.wantTetherTable(t)

	var routes []route
	for i, user := range []string{"bob", "", "alice", "bob", ""} {
		who := harness.WhoPod
		if user == "bob" {
			who = "bob-app"
		}
		routes = append(routes, route{path: fmt.Sprintf("/ms/both-%d", i), user: user, who: who})
	}
	f.runHTTP1(t, port, routes)
	wantSaw(t, bob, pathsFor(routes, "bob-app")...)
	wantSaw(t, f.pod, pathsFor(routes, harness.WhoPod)...)
	var all []string
	for _, r := range routes {
		all = append(all, r.path)
	}
	wantSaw(t, mirror, all...)

	// Bob leaves: the redirect goes, the capture takes over.
	if err := bob.Process().Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if _, ok := bob.Process().Wait(30 * time.Second); !ok {
		t.Fatal("bob's session did not end on SIGINT")
	}
	if err := harness.WaitFor(activationTimeout, func() error {
		tables, err := f.env.Pod.TetherTables()
		if err == nil && len(tables) > 0 {
			err = fmt.Errorf("tether tables %q remain", tables)
		}
		return err
	}); err != nil {
		t.Fatalf("the redirect stayed after the only stealer left: %v\n%s", err, f.env.Pod.Ruleset())
	}
	var after []string
	for i := range 5 {
		p := fmt.Sprintf("/ms/after-%d", i)
		a, err := f.client.Get(port, p, harness.Header("bob"))
		route{path: p, user: "bob", who: harness.WhoPod}.check(t, "after bob left", a, err)
		after = append(after, p)
	}
	wantSaw(t, mirror, after...)
	wantSaw(t, f.pod, after...)
	time.Sleep(500 * time.Millisecond) // a second copy, were there one
	seen := map[string]int{}
	for _, r := range mirror.Requests() {
		seen[r.Path]++
	}
	for _, p := range append(all, after...) {
		if seen[p] != 1 {
			t.Errorf("the mirror saw %s %d times, want once", p, seen[p])
		}
	}
}

// waitMirrored sends requests (fresh connections) to the pod's port until
// the mirroring app saw one; every one must be answered by the pod.
func (f *inFixture) waitMirrored(t *testing.T, app *harness.App, port int, prefix string) {
	t.Helper()
	var sent []string
	err := harness.WaitFor(activationTimeout, func() error {
		p := fmt.Sprintf("%s-%d", prefix, len(sent))
		sent = append(sent, p)
		a, err := f.client.Get(port, p, nil)
		if err != nil {
			return err
		}
		if a.Who != harness.WhoPod {
			return fmt.Errorf("answered by %v, want the pod (mirror)", a)
		}
		for _, s := range sent {
			if app.Saw(s) {
				return nil
			}
		}
		return fmt.Errorf("the mirroring app saw none of %s", strings.Join(sent, ", "))
	})
	if err != nil {
		t.Fatalf("mirroring never started: %v", err)
	}
}
