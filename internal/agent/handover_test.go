package agent

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/netfilter"
)

func TestQuietEnough(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		q        time.Duration
		answered bool
		want     bool
	}{
		{999 * ms, true, false},
		{quietAnswered, true, true},
		{quietAnswered + quietWindow - ms, true, true},
		{quietAnswered + quietWindow, true, false}, // first seen late: may be about to be used
		{5 * time.Second, true, false},
		{quietLong, true, true},
		{quietAnswered, false, false}, // unsure who spoke last
		{quietLong - ms, false, false},
		{quietLong, false, true},
	} {
		if got := quietEnough(tc.q, tc.answered); got != tc.want {
			t.Errorf("quietEnough(%v, answered %v) = %v, want %v", tc.q, tc.answered, got, tc.want)
		}
	}
}

func TestBypassing(t *testing.T) {
	ap := netip.MustParseAddrPort
	app := "10.0.0.5:8080"
	conns := []netfilter.Conn{
		{Local: ap(app), Remote: ap("10.0.0.9:40000")},                                  // a client, straight to the app
		{Local: ap(app), Remote: ap("10.0.0.9:40001")},                                  // the app's side of the agent's passthrough
		{Local: ap("10.0.0.9:40001"), Remote: ap(app), Mark: netfilter.TransparentMark}, // the agent's side
		{Local: ap(app), Remote: ap("10.0.0.5:50000")},                                  // the app's side of another agent socket
		{Local: ap("10.0.0.5:50000"), Remote: ap(app), Mark: netfilter.AgentMark},       // the agent's (not transparent)
		{Local: ap("10.0.0.5:9090"), Remote: ap("10.0.0.9:40002")},                      // another port
		{Local: ap("10.0.0.5:41000"), Remote: ap("10.0.0.7:8080")},                      // the app's own outgoing connection
	}
	got := bypassing(conns, 8080)
	if len(got) != 1 || got[0].Remote != ap("10.0.0.9:40000") {
		t.Errorf("bypassing = %+v, want only the client's direct connection", got)
	}
}

// TestSourcePort: a transparent passthrough never takes the client port of
// a connection the agent holds from the same address.
func TestSourcePort(t *testing.T) {
	in := &incoming{held: map[*net.TCPConn]struct{}{}, heldFrom: map[netip.AddrPort]int{}}
	client := netip.MustParseAddr("10.0.0.9")
	for p := ephemeralFirst; p <= ephemeralLast; p++ {
		if p != 40000 {
			in.heldFrom[netip.AddrPortFrom(client, uint16(p))] = 1
		}
	}
	for range 3 {
		if got := in.sourcePort(client); got != 40000 {
			t.Fatalf("sourcePort = %d, want 40000, the only port no held connection uses", got)
		}
	}
	release := in.holdFrom(&net.TCPConn{}, netip.MustParseAddrPort("[::ffff:10.0.0.9]:40000"))
	if in.heldFrom[netip.AddrPortFrom(client, 40000)] != 1 {
		t.Fatalf("hold of a v4-mapped client address: heldFrom %v", in.heldFrom[netip.AddrPortFrom(client, 40000)])
	}
	release()
	release()
	if _, ok := in.heldFrom[netip.AddrPortFrom(client, 40000)]; ok || len(in.held) != 0 {
		t.Errorf("after release: heldFrom has the port (%v), held %d", ok, len(in.held))
	}
}
