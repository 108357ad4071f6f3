package integration

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/tether-dev/tether/test/harness"
)

// webProof is what a web service answer must show when the request was
// really made from the pod: the path, and the pod's IP as the client.
func webProof(path string) []string {
	return []string{harness.WebGreeting, "path=" + path + "\n", "client=" + harness.PodIP + ":"}
}

// TestOutgoingTCPGo: a static Go binary reaches the cluster service by IP,
// by FQDN and by short name (search list); the connection is made from the
// pod's network namespace, and the app sees the service as its peer.
func TestOutgoingTCPGo(t *testing.T) {
	f := start(t)
	probe := harness.Probe(t)
	for _, c := range []struct{ name, url, path string }{
		{"ip", "http://" + harness.WebIP + "/by-ip", "/by-ip"},
		{"fqdn", "http://" + harness.WebName + "/by-fqdn", "/by-fqdn"},
		{"short-name", "http://web/by-short-name", "/by-short-name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := f.tether(t, "", probe, "get", c.url)
			wantStdout(t, r, append(webProof(c.path), "status: 200\n", "remote: "+harness.WebIP+":80\n")...)
		})
	}
	// Without tether the address is unreachable.
	wantFail(t, local(t, probe, "get", "http://"+harness.WebIP+"/"), unreachable...)
}

// TestOutgoingCurl: curl (glibc resolver, non-blocking connect) reaches the
// service by name; %{remote_ip} (getpeername) is the service's IP.
func TestOutgoingCurl(t *testing.T) {
	f := start(t)
	curl := harness.NeedTool(t, "curl")
	for _, url := range []string{"http://" + harness.WebName + "/curl", "http://web/curl"} {
		r := f.tether(t, "", curl, "-sS", "--noproxy", "*", "--max-time", "20", "-w", "\nremote_ip=%{remote_ip}\n", url)
		wantStdout(t, r, append(webProof("/curl"), "remote_ip="+harness.WebIP+"\n")...)
	}
	wantFail(t, local(t, curl, "-sS", "--noproxy", "*", "--max-time", "20", "http://"+harness.WebIP+"/curl"))
}

// TestOutgoingPython: CPython's urllib and http.client (glibc resolver).
func TestOutgoingPython(t *testing.T) {
	f := start(t)
	const script = `
import http.client, sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with opener.open("http://web/py-urllib", timeout=20) as r:
    print("status:", r.status)
    print(r.read().decode(), end="")
c = http.client.HTTPConnection("web", 80, timeout=20)
c.request("GET", "/py-client")
resp = c.getresponse()
print("peer: %s:%d" % c.sock.getpeername())
print(resp.read().decode(), end="")
`
	r := f.tether(t, "", python3, "-c", script)
	wantStdout(t, r, "status: 200\n", "peer: "+harness.WebIP+":80\n")
	wantStdout(t, r, webProof("/py-urllib")...)
	wantStdout(t, r, webProof("/py-client")...)
}

// TestOutgoingNode: node's http.get (libuv, dns.lookup).
func TestOutgoingNode(t *testing.T) {
	f := start(t)
	node := harness.NeedTool(t, "node")
	const script = `
const http = require('http');
http.get(process.argv[1], {agent: false}, res => {
  const remote = res.socket.remoteAddress + ':' + res.socket.remotePort;
  let body = '';
  res.setEncoding('utf8');
  res.on('data', d => body += d);
  res.on('end', () => { console.log('status: ' + res.statusCode); console.log('remote: ' + remote); process.stdout.write(body); });
}).on('error', e => { console.error('node get: ' + e.message); process.exit(1); });
`
	r := f.tether(t, "", node, "-e", script, "http://web/node")
	wantStdout(t, r, append(webProof("/node"), "status: 200\n", "remote: "+harness.WebIP+":80\n")...)
}

// TestOutgoingMusl: a static musl binary (musl's resolver, blocking connect).
func TestOutgoingMusl(t *testing.T) {
	f := start(t)
	musl := harness.MuslProbe(t)
	r := f.tether(t, "", musl, "get", "web", "80", "/musl")
	wantStdout(t, r, append(webProof("/musl"), "remote: "+harness.WebIP+":80\n")...)
	wantFail(t, local(t, musl, "get", harness.WebIP, "80", "/musl"))
}

// TestOutgoingTCPEcho: raw TCP with half-close; RemoteAddr via getpeername.
func TestOutgoingTCPEcho(t *testing.T) {
	f := start(t)
	probe := harness.Probe(t)
	r := f.tether(t, "", probe, "tcp", harness.EchoIP+":7", "ping-tcp")
	wantStdout(t, r, "reply: ping-tcp\n", "remote: "+harness.EchoIP+":7\n")
	r = f.tether(t, "", probe, "tcp", "echo:7", "ping-by-name")
	wantStdout(t, r, "reply: ping-by-name\n", "remote: "+harness.EchoIP+":7\n")
	wantFail(t, local(t, probe, "tcp", harness.EchoIP+":7", "ping-tcp"), unreachable...)
}

// TestOutgoingNonBlockingConnect: socket(NONBLOCK) + connect + poll +
// SO_ERROR + getpeername, with raw syscalls.
func TestOutgoingNonBlockingConnect(t *testing.T) {
	f := start(t)
	probe := harness.Probe(t)
	r := f.tether(t, "", probe, "nbconnect", harness.EchoIP+":7", "ping-nb")
	wantStdout(t, r, "peer: "+harness.EchoIP+":7\n", "reply: ping-nb\n")
	wantFail(t, local(t, probe, "nbconnect", harness.EchoIP+":7"), unreachable...)
}

// TestOutgoingUDP: a connected UDP socket gets the echo service's reply.
func TestOutgoingUDP(t *testing.T) {
	f := start(t)
	probe := harness.Probe(t)
	r := f.tether(t, "", probe, "udp", harness.EchoIP+":7", "hi-udp")
	wantStdout(t, r, "reply: hi-udp\n")
	t.Logf("UDP RemoteAddr seen by the app: %s", strings.TrimSpace(strings.TrimPrefix(lastLine(r.Stdout), "remote:")))
	wantFail(t, local(t, probe, "udp", harness.EchoIP+":7", "hi-udp"), unreachable...)
}

// TestOutgoingLoopbackStaysLocal: by default loopback destinations are not
// sent to the pod: a listener of this test on 127.0.0.1 is reached.
func TestOutgoingLoopbackStaysLocal(t *testing.T) {
	f := start(t)
	probe := harness.Probe(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "local-listener path=%s\n", r.URL.Path)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	url := "http://" + ln.Addr().String() + "/loop"
	r := f.tether(t, "", probe, "get", url)
	wantStdout(t, r, "status: 200\n", "local-listener path=/loop\n", "remote: "+ln.Addr().String()+"\n")
}

// TestOutgoingFilterLocal: outgoing.filter.local keeps a destination local
// (so the echo service is unreachable), the rest still goes to the pod.
func TestOutgoingFilterLocal(t *testing.T) {
	f := start(t)
	probe := harness.Probe(t)
	const cfg = `{"outgoing": {"filter": {"local": ["` + harness.EchoIP + `"]}}}`
	wantFail(t, f.tether(t, cfg, probe, "tcp", harness.EchoIP+":7", "should-stay-local"), unreachable...)
	wantStdout(t, f.tether(t, cfg, probe, "get", "http://"+harness.WebIP+"/still-remote"), webProof("/still-remote")...)
}

// TestOutgoingFilterRemote: with outgoing.filter.remote only the listed
// destination goes to the pod; others are local.
func TestOutgoingFilterRemote(t *testing.T) {
	f := start(t)
	probe := harness.Probe(t)
	const cfg = `{"outgoing": {"filter": {"remote": ["` + harness.EchoIP + `:7"]}}}`
	wantStdout(t, f.tether(t, cfg, probe, "tcp", harness.EchoIP+":7", "remote-listed"), "reply: remote-listed\n")
	wantFail(t, f.tether(t, cfg, probe, "get", "http://"+harness.WebIP+"/not-listed"), unreachable...)
}

func lastLine(s string) string {
	l := lines(s)
	if len(l) == 0 {
		return ""
	}
	return l[len(l)-1]
}

// TestOutgoingFilterByHostName: a filter written with a host name matches
// connections to the addresses that name resolved to through the pod's DNS.
func TestOutgoingFilterByHostName(t *testing.T) {
	f := start(t)
	probe := harness.Probe(t)
	const cfg = `{"outgoing": {"filter": {"remote": ["` + harness.WebName + `"]}}}`
	// Resolving and connecting in one process: the name is learnt from the
	// DNS answer, then the connection to its address goes remote.
	wantStdout(t, f.tether(t, cfg, probe, "get", "http://web/by-name"), "path=/by-name", "client="+harness.PodIP)
	// The echo service is not listed: it stays local and is unreachable.
	wantFail(t, f.tether(t, cfg, probe, "tcp", harness.EchoName+":7", "not-listed"), unreachable...)
}
