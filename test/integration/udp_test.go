package integration

import (
	"regexp"
	"strings"
	"testing"

	"github.com/tether-dev/tether/test/harness"
)

// udpCase is one program run under tether that talks to a cluster service
// and checks what it got. The programs are the same in the host namespace
// (TestUDPSourceAddress) and on the laptop (TestLeakSink).
type udpCase struct {
	name string
	// cmd returns the command (after `tether exec --`); it may fail t when
	// a tool is missing.
	cmd func(t *testing.T) []string
	// want checks the command's result.
	want func(t *testing.T, r harness.Result)
}

// echoPeer is the address every reply from the echo service must come from
// (recvfrom/recvmsg/recvmmsg source, node's rinfo), not a local relay's.
const echoPeer = harness.EchoIP + ":7"

// pyUDP sends sys.argv[4] to the echo service (argv 2-3) the way argv[1]
// says and prints the reply with its source address:
// sendto-recvfrom, sendmsg-recvmsg (unconnected), connected-recvfrom,
// connected-recvmsg (connect + send).
const pyUDP = `
import socket, sys
mode, ip, port, msg = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
if mode.startswith("connected-"):
    s.connect((ip, port))
    s.send(msg)
elif mode.startswith("sendmsg-"):
    s.sendmsg([msg], [], 0, (ip, port))
else:
    s.sendto(msg, (ip, port))
if mode.endswith("-recvmsg"):
    data, _, _, src = s.recvmsg(2048)
else:
    data, src = s.recvfrom(2048)
print("reply: %s from %s:%d" % (data.decode(), src[0], src[1]))
`

// nodeUDP sends argv[4] to the echo service (argv 2-3) with dgram, either
// unconnected (send with an address: sendmsg/sendmmsg with msg_name) or
// after connect, and prints the reply with rinfo's address and port.
const nodeUDP = `
const dgram = require('dgram');
const [mode, ip, port, msg] = process.argv.slice(1);
const s = dgram.createSocket('udp4');
const timer = setTimeout(() => { console.error('no reply within 5s'); process.exit(1); }, 5000);
s.on('error', e => { console.error('socket: ' + e.message); process.exit(1); });
s.on('message', (m, r) => {
  console.log('reply: ' + m + ' from ' + r.address + ':' + r.port);
  clearTimeout(timer);
  s.close();
});
const sent = e => { if (e) { console.error('send: ' + e.message); process.exit(1); } };
if (mode === 'connected') s.connect(+port, ip, () => s.send(msg, sent));
else s.send(msg, +port, ip, sent);
`

// pyDNS resolves argv[3] (type A) against the server argv[2] with
// dnspython, through dns.resolver (argv[1] "resolver") or one dns.query.udp
// ("query-udp", which raises UnexpectedSource if the answer's source is not
// the server), and prints "A: ADDRS".
const pyDNS = `
import sys
import dns.message, dns.query, dns.rdatatype, dns.resolver
mode, server, name = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "resolver":
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = [server]
    addrs = [a.address for a in r.resolve(name, "A", lifetime=5)]
else:
    resp = dns.query.udp(dns.message.make_query(name, "A"), server, timeout=5)
    addrs = [it.address for rr in resp.answer if rr.rdtype == dns.rdatatype.A for it in rr]
print("A: " + ",".join(addrs))
`

// udpSend returns the musl-static C program test/harness/testdata/udp
// /udpsend.c, built to send to the echo service.
func udpSend(t *testing.T) string {
	t.Helper()
	dstIP := strings.ReplaceAll(harness.EchoIP, ".", ",")
	return harness.MuslBinary(t, "udp/udpsend.c", "udpsend-echo", "-DDST_IP="+dstIP, "-DDST_PORT=7")
}

// wantReplies wants a "reply: MSG from EchoIP:7" line for each msg.
func wantReplies(msgs ...string) func(*testing.T, harness.Result) {
	return func(t *testing.T, r harness.Result) {
		t.Helper()
		for _, m := range msgs {
			wantStdout(t, r, "reply: "+m+" from "+echoPeer+"\n")
		}
	}
}

// digMDNSWarning is the one warning dig always prints for a .local name
// (";; WARNING: .local is reserved for Multicast DNS"): not about the
// answer.
const digMDNSWarning = ".local is reserved for multicast dns"

// wantDigClean fails t if dig's output reports a reply from an unexpected
// source or any warning but digMDNSWarning.
func wantDigClean(t *testing.T, r harness.Result) {
	t.Helper()
	for _, l := range strings.Split(r.Stdout+"\n"+r.Stderr, "\n") {
		ll := strings.ToLower(l)
		if strings.Contains(ll, "unexpected source") || (strings.Contains(ll, "warning") && !strings.Contains(ll, digMDNSWarning)) {
			t.Fatalf("dig reported %q\n%s", strings.TrimSpace(l), r)
		}
	}
}

// digAnswer is dig's answer line for the web service.
var digAnswer = regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(harness.WebName) + `\.\s+\d+\s+IN\s+A\s+` + regexp.QuoteMeta(harness.WebIP) + `$`)

// udpCases are the UDP programs whose replies must come from the real
// peer: every way of sending (sendto, sendmsg, sendmmsg, connect + send,
// a read-only destination) and of receiving (recvfrom, recvmsg, recvmmsg,
// node's rinfo, resolvers that check the source).
func udpCases() []udpCase {
	py := func(mode, msg string) func(*testing.T) []string {
		return func(*testing.T) []string { return []string{python3, "-c", pyUDP, mode, harness.EchoIP, "7", msg} }
	}
	node := func(mode, msg string) func(*testing.T) []string {
		return func(t *testing.T) []string {
			return []string{harness.NeedTool(t, "node"), "-e", nodeUDP, mode, harness.EchoIP, "7", msg}
		}
	}
	musl := func(args ...string) func(*testing.T) []string {
		return func(t *testing.T) []string { return append([]string{udpSend(t)}, args...) }
	}
	dnspy := func(mode string) func(*testing.T) []string {
		return func(*testing.T) []string { return []string{python3, "-c", pyDNS, mode, harness.DNSIP, harness.WebName} }
	}
	wantA := func(t *testing.T, r harness.Result) { t.Helper(); wantStdout(t, r, "A: "+harness.WebIP+"\n") }
	return []udpCase{
		{"node-dgram-send", node("unconnected", "node-send"), wantReplies("node-send")},
		{"node-dgram-connected", node("connected", "node-conn"), wantReplies("node-conn")},
		{"python-sendto-recvfrom", py("sendto-recvfrom", "py-sendto"), wantReplies("py-sendto")},
		{"python-sendmsg-recvmsg", py("sendmsg-recvmsg", "py-sendmsg"), wantReplies("py-sendmsg")},
		{"python-connected-recvfrom", py("connected-recvfrom", "py-conn-from"), wantReplies("py-conn-from")},
		{"python-connected-recvmsg", py("connected-recvmsg", "py-conn-msg"), wantReplies("py-conn-msg")},
		{"musl-sendto-rodata", musl("sendto-rodata", "c-rodata"), func(t *testing.T, r harness.Result) {
			t.Helper()
			wantStdout(t, r, "dst-mapping: r-", "sent: 8\n")
			wantReplies("c-rodata")(t, r)
		}},
		{"musl-sendmmsg-recvfrom", musl("sendmmsg", "recvfrom", "c-mm-1", "c-mm-2"), func(t *testing.T, r harness.Result) {
			t.Helper()
			wantStdout(t, r, "sent: 2\n")
			wantReplies("c-mm-1", "c-mm-2")(t, r)
		}},
		{"musl-sendmmsg-recvmmsg", musl("sendmmsg", "recvmmsg", "c-mm-3", "c-mm-4"), func(t *testing.T, r harness.Result) {
			t.Helper()
			wantStdout(t, r, "sent: 2\n")
			wantReplies("c-mm-3", "c-mm-4")(t, r)
		}},
		{"dig", func(t *testing.T) []string {
			return []string{harness.NeedTool(t, "dig"), "@" + harness.DNSIP, harness.WebName, "A", "+time=3", "+tries=1"}
		}, func(t *testing.T, r harness.Result) {
			t.Helper()
			wantDigClean(t, r)
			wantStdout(t, r, ";; ANSWER SECTION:\n", ";; SERVER: "+harness.DNSIP+"#53(")
			if !digAnswer.MatchString(r.Stdout) {
				t.Fatalf("dig's answer lacks %q\n%s", digAnswer, r)
			}
		}},
		{"dnspython-resolver", dnspy("resolver"), wantA},
		{"dnspython-query-udp", dnspy("query-udp"), wantA},
	}
}

// TestUDPSourceAddress: in the host namespace (where cluster addresses are
// unreachable without tether), every UDP program gets the echo service's or
// the DNS server's answer, and sees the real peer as its source.
func TestUDPSourceAddress(t *testing.T) {
	f := start(t)
	for _, c := range udpCases() {
		t.Run(c.name, func(t *testing.T) {
			c.want(t, f.tether(t, "", c.cmd(t)...))
		})
	}
}
