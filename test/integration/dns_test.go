package integration

import (
	"strings"
	"testing"

	"github.com/tether-dev/tether/test/harness"
)

// wantAddrs fails t unless r succeeded and printed exactly the addresses.
func wantAddrs(t *testing.T, r harness.Result, want ...string) {
	t.Helper()
	wantOK(t, r)
	got := lines(r.Stdout)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("want addresses %q, got %q\n%s", want, got, r)
	}
}

// TestDNSGo: Go's pure resolver uses the pod's resolv.conf (search list,
// ndots) and nameserver.
func TestDNSGo(t *testing.T) {
	f := start(t)
	probe := harness.Probe(t)
	for name, ip := range map[string]string{
		"web":                  harness.WebIP,
		harness.WebName:        harness.WebIP,
		"redis":                harness.RedisIP,
		"echo.demo":            harness.EchoIP,
		harness.EchoName + ".": harness.EchoIP,
	} {
		t.Run(name, func(t *testing.T) { wantAddrs(t, f.tether(t, "", probe, "resolve", name), ip) })
	}
	wantFail(t, f.tether(t, "", probe, "resolve", "nonexistent"), "no such host")
	wantFail(t, local(t, probe, "resolve", harness.WebName))
}

// TestDNSGlibc: getent (NSS), python socket.gethostbyname and curl.
func TestDNSGlibc(t *testing.T) {
	f := start(t)
	getent := harness.NeedTool(t, "getent")
	r := f.tether(t, "", getent, "hosts", "web")
	wantStdout(t, r, harness.WebIP)
	r = f.tether(t, "", getent, "ahostsv4", "redis")
	wantStdout(t, r, harness.RedisIP)
	r = f.tether(t, "", python3, "-c", `import socket; print(socket.gethostbyname("redis")); print(socket.gethostbyname("`+harness.WebName+`"))`)
	wantStdout(t, r, harness.RedisIP+"\n"+harness.WebIP+"\n")
	curl := harness.NeedTool(t, "curl")
	r = f.tether(t, "", curl, "-sS", "--noproxy", "*", "--max-time", "20", "-w", "\nremote_ip=%{remote_ip}\n", "http://web/glibc")
	wantStdout(t, r, append(webProof("/glibc"), "remote_ip="+harness.WebIP+"\n")...)
	wantFail(t, local(t, getent, "hosts", harness.WebName))
}

// TestDNSNode: dns.lookup (getaddrinfo) and dns.resolve4 (c-ares, which
// reads resolv.conf itself).
func TestDNSNode(t *testing.T) {
	f := start(t)
	node := harness.NeedTool(t, "node")
	const script = `
const dns = require('dns');
dns.lookup('web', {family: 4}, (err, addr) => {
  if (err) { console.error('lookup: ' + err.message); process.exit(1); }
  console.log('lookup: ' + addr);
  dns.resolve4(process.argv[1], (err, addrs) => {
    if (err) { console.error('resolve4: ' + err.message); process.exit(1); }
    console.log('resolve4: ' + addrs.join(','));
  });
});
`
	r := f.tether(t, "", node, "-e", script, harness.EchoName)
	wantStdout(t, r, "lookup: "+harness.WebIP+"\n", "resolve4: "+harness.EchoIP+"\n")
}

// TestDNSMusl: musl's resolver (its own resolv.conf parsing, UDP sendto).
func TestDNSMusl(t *testing.T) {
	f := start(t)
	musl := harness.MuslProbe(t)
	wantAddrs(t, f.tether(t, "", musl, "resolve", "web"), harness.WebIP)
	wantAddrs(t, f.tether(t, "", musl, "resolve", harness.RedisName), harness.RedisIP)
	wantFail(t, local(t, musl, "resolve", harness.WebName))
}

// TestDNSPodHosts: the pod's /etc/hosts applies (an entry only it has).
func TestDNSPodHosts(t *testing.T) {
	f := start(t)
	probe := harness.Probe(t)
	wantAddrs(t, f.tether(t, "", probe, "resolve", harness.PodHostsName), harness.WebIP)
	wantStdout(t, f.tether(t, "", harness.NeedTool(t, "getent"), "hosts", harness.PodHostsName), harness.WebIP)
	wantAddrs(t, f.tether(t, "", harness.MuslProbe(t), "resolve", harness.PodHostsName), harness.WebIP)
	wantStdout(t, f.tether(t, "", probe, "get", "http://"+harness.PodHostsName+"/legacy"), webProof("/legacy")...)
	wantFail(t, local(t, probe, "resolve", harness.PodHostsName))
}

// TestDNSFilterLocal: dns.filter.local keeps a name local, where it does
// not resolve; other names still resolve in the pod.
func TestDNSFilterLocal(t *testing.T) {
	f := start(t)
	probe := harness.Probe(t)
	const cfg = `{"dns": {"filter": {"local": ["` + harness.WebName + `"]}}}`
	wantFail(t, f.tether(t, cfg, probe, "resolve", harness.WebName))
	wantAddrs(t, f.tether(t, cfg, probe, "resolve", harness.EchoName), harness.EchoIP)
}
