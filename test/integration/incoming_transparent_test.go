package integration

import (
	"fmt"
	"testing"

	"github.com/tether-dev/tether/test/harness"
)

// TestIncomingPassthroughKeepsClientAddress: requests a filtered steal
// leaves to the deployed app reach it from the client's own address, as
// without tether (the app's logs, rate limits and counters per client
// stay right), and so do mirrored connections.
func TestIncomingPassthroughKeepsClientAddress(t *testing.T) {
	f := startIncoming(t)
	const port = portTransparent
	f.app(t, aliceFilter, port)
	f.waitWho(t, port, "GET", "/transparent/wait", harness.Header("alice"), harness.WhoLocal)
	conn, err := f.client.HTTP1(port)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 3 {
		a, err := conn.Do("GET", fmt.Sprintf("/transparent/%d", i), nil)
		if err != nil {
			t.Fatal(err)
		}
		if a.Who != harness.WhoPod || a.RemoteIP() != harness.ClientIP {
			t.Fatalf("unmatched request answered by %q seeing client %q; want the pod seeing %s", a.Who, a.Remote, harness.ClientIP)
		}
	}
}
