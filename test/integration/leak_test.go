package integration

import (
	"strings"
	"testing"

	"github.com/tether-dev/tether/test/harness"
)

// pyControl sends, without tether, what must reach the sink from the
// laptop: argv[1] "udp" sends one datagram to the echo service, "tcp"
// connects to the web service (the sink never answers: "connect: ...").
const pyControl = `
import socket, sys
if sys.argv[1] == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    print("sent: %d" % s.sendto(b"control", (sys.argv[2], 7)))
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect((sys.argv[2], 80))
        print("connected")
    except OSError as e:
        print("connect: %s" % e)
`

// pyICMP sends one ICMP echo request to argv[2] from an ICMP socket of
// kind argv[1] ("dgram": unprivileged ping socket, "raw") and prints
// "sendto errno: N NAME" if sendto fails, "reply from IP" if an answer
// comes, "sent, no reply" otherwise. A socket that cannot be created at
// all is a harness problem: exit 1.
const pyICMP = `
import errno, socket, struct, sys
kind, ip = sys.argv[1], sys.argv[2]
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff
payload = b"tether-ping!"
pkt = struct.pack("!BBHHH", 8, 0, 0, 0x7e7e, 1) + payload
pkt = pkt[:2] + struct.pack("!H", csum(pkt)) + pkt[4:]
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "dgram" else socket.SOCK_RAW, socket.IPPROTO_ICMP)
except OSError as e:
    print("socket: %s" % e, file=sys.stderr)
    sys.exit(1)
s.settimeout(3)
try:
    s.sendto(pkt, (ip, 0))
except OSError as e:
    print("sendto errno: %d %s" % (e.errno, errno.errorcode.get(e.errno, "?")))
    sys.exit(0)
try:
    while True:
        data, src = s.recvfrom(2048)
        if src[0] == ip:
            print("reply from %s" % src[0])
            break
except socket.timeout:
    print("sent, no reply")
`

// pyTFO sends an HTTP request to argv[1]:80 with TCP fast open
// (sendto(MSG_FASTOPEN) on an unconnected, blocking TCP socket, so sendto
// returns once connected; SO_SNDTIMEO bounds the wait) and prints the
// answer, or "sendto errno: N NAME". A sendto still in progress after 5 s
// (EINPROGRESS, EAGAIN, EALREADY) is neither refused nor relayed: exit 1.
const pyTFO = `
import errno, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 5, 0))
try:
    s.sendto(b"GET /tfo HTTP/1.0\r\nHost: web\r\n\r\n", socket.MSG_FASTOPEN, (sys.argv[1], 80))
except OSError as e:
    name = errno.errorcode.get(e.errno, "?")
    if e.errno in (errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY):
        print("sendto still pending after 5s: %d %s" % (e.errno, name), file=sys.stderr)
        sys.exit(1)
    print("sendto errno: %d %s" % (e.errno, name))
    sys.exit(0)
s.settimeout(5)
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print(data.decode())
`

// wantErrnoOr wants either "sendto errno: " (the destination could not be
// relayed and the program was told so) or, if it was relayed, every string
// of relayed. "sent, no reply" (neither) fails.
func wantErrnoOr(relayed ...string) func(*testing.T, harness.Result) {
	return func(t *testing.T, r harness.Result) {
		t.Helper()
		wantOK(t, r)
		if strings.Contains(r.Stdout, "sendto errno: ") {
			t.Logf("not relayed, failed with: %s", strings.TrimSpace(r.Stdout))
			return
		}
		wantStdout(t, r, relayed...)
	}
}

// leakCases are the outgoing programs of the laptop test besides
// udpCases: TCP with several resolvers, UDP through the Go and musl
// probes, and what tether cannot relay (ICMP, TCP fast open).
func leakCases() []udpCase {
	probe := func(args ...string) func(*testing.T) []string {
		return func(t *testing.T) []string { return append([]string{harness.Probe(t)}, args...) }
	}
	return []udpCase{
		{"curl", func(t *testing.T) []string {
			return []string{harness.NeedTool(t, "curl"), "-sS", "--noproxy", "*", "--max-time", "20",
				"-w", "\nremote_ip=%{remote_ip}\n", "http://" + harness.WebName + "/leak-curl"}
		}, func(t *testing.T, r harness.Result) {
			t.Helper()
			wantStdout(t, r, append(webProof("/leak-curl"), "remote_ip="+harness.WebIP+"\n")...)
		}},
		{"go-probe-get", probe("get", "http://web/leak-go"), func(t *testing.T, r harness.Result) {
			t.Helper()
			wantStdout(t, r, webProof("/leak-go")...)
		}},
		{"go-probe-udp", probe("udp", echoPeer, "leak-go-udp"), func(t *testing.T, r harness.Result) {
			t.Helper()
			wantStdout(t, r, "reply: leak-go-udp\n")
		}},
		{"musl-probe-get", func(t *testing.T) []string {
			return []string{harness.MuslProbe(t), "get", "web", "80", "/leak-musl"}
		}, func(t *testing.T, r harness.Result) {
			t.Helper()
			wantStdout(t, r, webProof("/leak-musl")...)
		}},
		{"icmp-dgram", func(*testing.T) []string { return []string{python3, "-c", pyICMP, "dgram", harness.EchoIP} },
			wantErrnoOr("reply from " + harness.EchoIP + "\n")},
		{"icmp-raw", func(*testing.T) []string { return []string{python3, "-c", pyICMP, "raw", harness.EchoIP} },
			wantErrnoOr("reply from " + harness.EchoIP + "\n")},
		{"tcp-fastopen", func(*testing.T) []string { return []string{python3, "-c", pyTFO, harness.WebIP} },
			wantErrnoOr(webProof("/tfo")...)},
	}
}

// leakControl proves the sink counts: without tether, a datagram to the
// echo service arrives there as exactly one packet (nothing else is on the
// link), a TCP connect to the web service as at least one (SYN,
// retransmissions).
func leakControl(t *testing.T, lap *harness.Laptop) {
	for _, c := range []struct {
		proto, ip, stdout string
		exact             bool
	}{
		{"udp", harness.EchoIP, "sent: 7\n", true},
		{"tcp", harness.WebIP, "connect: ", false},
	} {
		t.Run(c.proto, func(t *testing.T) {
			before := lap.SettledSinkPackets(t)
			r := lap.RunLocal(t, harness.ExecOpts{}, python3, "-c", pyControl, c.proto, c.ip)
			wantStdout(t, r, c.stdout)
			got := lap.SettledSinkPackets(t) - before
			if (c.exact && got != 1) || got < 1 {
				t.Fatalf("the sink counted %d packet(s) for the %s control, want %s\n%s", got, c.proto,
					map[bool]string{true: "exactly 1", false: "at least 1"}[c.exact], r)
			}
		})
	}
}

// TestLeakSink: on a laptop whose default route leads to the sink, every
// outgoing program run under tether gets its answer from the pod, and not
// one packet reaches the sink (leaves through the laptop's own network).
// The control (no tether) comes first and must show packets arriving.
func TestLeakSink(t *testing.T) {
	f := start(t)
	lap := harness.NewLaptop(t, f.agent.Addr)
	if !t.Run("control", func(t *testing.T) { leakControl(t, lap) }) {
		t.Fatal("the sink did not count the control's packets; the leak checks would mean nothing")
	}
	for _, c := range append(udpCases(), leakCases()...) {
		t.Run(c.name, func(t *testing.T) {
			cmd := c.cmd(t)
			before := lap.SettledSinkPackets(t)
			r := lap.Exec(t, harness.ExecOpts{}, cmd...)
			if leaked := lap.SettledSinkPackets(t) - before; leaked != 0 {
				t.Errorf("LEAK: %d packet(s) reached the sink, i.e. left through the laptop's default route instead of going to the pod (the program: exit code %d, stdout %q)",
					leaked, r.ExitCode, r.Stdout)
			}
			c.want(t, r)
		})
	}
}
