package integration

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/test/harness"
)

// TestIncomingLoopbackListener: a listener bound to 127.0.0.1 (a debugger's
// port, a profiler's) is the developer's own: it is not subscribed, the
// start-up says so and why, and the target's port keeps going to the
// deployed app; with incoming.loopback it is subscribed like any other.
func TestIncomingLoopbackListener(t *testing.T) {
	f := startIncoming(t)
	const steal = `{"incoming": {"mode": "steal"}}`

	t.Run("not subscribed by default", func(t *testing.T) {
		const port = portLoopback
		app := harness.StartLocalApp(t, f.agent.Addr, harness.AppOpts{Config: steal, HTTPPorts: []int{port}, Host: "127.0.0.1"})
		if !app.WaitStderr("not subscribed", 10*time.Second) {
			t.Fatalf("tether said nothing about the loopback listener; stderr:\n%s", app.Stderr())
		}
		for _, want := range []string{"127.0.0.1:18105", "loopback", "incoming.loopback"} {
			if !strings.Contains(app.Stderr(), want) {
				t.Errorf("the start-up message lacks %q; stderr:\n%s", want, app.Stderr())
			}
		}
		if strings.Contains(app.Stderr(), "stolen by the local listener") {
			t.Errorf("the loopback listener was subscribed anyway:\n%s", app.Stderr())
		}
		// The pod's port still reaches the deployed app, every time.
		for range 5 {
			a, err := f.client.Get(port, "/loopback/pod", nil)
			route{path: "/loopback/pod", who: harness.WhoPod}.check(t, "HTTP/1.1", a, err)
		}
		if tables, err := f.env.Pod.TetherTables(); err != nil || len(tables) != 0 {
			t.Errorf("tether tables in the pod for a loopback-only listener: %q (%v)", tables, err)
		}
	})

	t.Run("incoming.loopback subscribes it", func(t *testing.T) {
		const port = portLoopbackOptIn
		cfg := `{"incoming": {"mode": "steal", "loopback": true}}`
		harness.StartLocalApp(t, f.agent.Addr, harness.AppOpts{Config: cfg, HTTPPorts: []int{port}, Host: "127.0.0.1"})
		f.waitWho(t, port, http.MethodGet, "/loopback/local", nil, harness.WhoLocal)
	})
}
