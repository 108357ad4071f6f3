package integration

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/test/harness"
)

// TestHarnessSelfCheck verifies the fake cluster itself, without tether:
// from inside the pod everything works; from the local machine nothing of
// the pod is visible and cluster addresses fail fast.
func TestHarnessSelfCheck(t *testing.T) {
	env := harness.Setup(t)
	pod, svc := env.Pod, env.Services

	t.Run("namespaces", func(t *testing.T) {
		if !pod.Alive() {
			t.Fatal("pod process is not running")
		}
		for _, ns := range []string{"net", "uts", "mnt", "pid"} {
			self, err1 := os.Readlink("/proc/self/ns/" + ns)
			their, err2 := os.Readlink(pod.NSPath(ns))
			if err1 != nil || err2 != nil {
				t.Fatalf("readlink ns %s: %v %v", ns, err1, err2)
			}
			if self == their {
				t.Errorf("pod shares our %s namespace (%s)", ns, self)
			}
		}
		root, err := os.Readlink(fmt.Sprintf("/proc/%d/root", pod.PID))
		if err != nil || root != pod.RootFS {
			t.Errorf("pod root = %q (%v), want %q", root, err, pod.RootFS)
		}
		environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pod.PID))
		if err != nil || !strings.Contains(string(environ), "DEMO_GREETING=hello-from-pod\x00") {
			t.Errorf("pod environ = %q (%v)", environ, err)
		}
		out, err := exec.Command("ip", "route", "show", harness.BlockedCIDR).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "unreachable") {
			t.Errorf("host route for %s: %q (%v)", harness.BlockedCIDR, out, err)
		}
	})

	t.Run("dns-server", func(t *testing.T) {
		for _, network := range []string{"udp", "tcp"} {
			for name, want := range map[string]string{
				harness.WebName: harness.WebIP, harness.EchoName: harness.EchoIP, harness.RedisName: harness.RedisIP,
			} {
				addrs, err := svc.Lookup(name, network)
				if err != nil || len(addrs) != 1 || addrs[0] != want {
					t.Errorf("%s lookup %s = %v, %v; want [%s]", network, name, addrs, err, want)
				}
			}
			_, err := svc.Lookup("nope.demo.svc.cluster.local", network)
			var dnsErr *net.DNSError
			if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
				t.Errorf("%s lookup of an unknown cluster name: %v, want not found", network, err)
			}
			// From the pod's network namespace too.
			addrs, err := harness.LookupIn(pod.NSPath("net"), harness.DNSIP+":53", network, harness.WebName)
			if err != nil || len(addrs) != 1 || addrs[0] != harness.WebIP {
				t.Errorf("%s lookup from the pod netns = %v, %v", network, addrs, err)
			}
		}
	})

	t.Run("inside-pod-busybox", func(t *testing.T) {
		r := pod.Run(t, "/bin/busybox", "wget", "-q", "-O", "-", "http://"+harness.WebIP+"/self-ip")
		wantStdout(t, r, harness.WebGreeting, "path=/self-ip", "client="+harness.PodIP+":")
		r = pod.Run(t, "/bin/busybox", "nslookup", harness.WebName, harness.DNSIP)
		wantStdout(t, r, harness.WebIP)
		r = pod.Run(t, "/bin/busybox", "hostname")
		wantStdout(t, r, harness.PodHostname)
		r = pod.Run(t, "/bin/busybox", "cat", "/app/response.txt")
		if wantOK(t, r); r.Stdout != harness.PodResponse {
			t.Errorf("pod's /app/response.txt = %q", r.Stdout)
		}
	})

	t.Run("inside-pod-go-probe", func(t *testing.T) {
		pod.CopyIn(t, harness.Probe(t), "/tmp/probe")
		p := "/tmp/probe"
		wantStdout(t, pod.Run(t, p, "resolve", "web"), harness.WebIP)
		wantStdout(t, pod.Run(t, p, "resolve", "redis"), harness.RedisIP)
		wantStdout(t, pod.Run(t, p, "resolve", harness.PodHostsName), harness.WebIP)
		wantStdout(t, pod.Run(t, p, "get", "http://web/self-name"),
			"status: 200", "remote: "+harness.WebIP+":80", "path=/self-name", "client="+harness.PodIP+":")
		wantStdout(t, pod.Run(t, p, "tcp", harness.EchoIP+":7", "ping-tcp"), "reply: ping-tcp", "remote: "+harness.EchoIP+":7")
		wantStdout(t, pod.Run(t, p, "udp", harness.EchoIP+":7", "ping-udp"), "reply: ping-udp")
		wantStdout(t, pod.Run(t, p, "nbconnect", harness.EchoIP+":7", "ping-nb"), "peer: "+harness.EchoIP+":7", "reply: ping-nb")
		wantStdout(t, pod.Run(t, p, "hostname"), harness.PodHostname)
		wantStdout(t, pod.Run(t, p, "ls", "/app"), "config", "response.txt")
		wantStdout(t, pod.Run(t, p, "env", "DEMO_GREETING"), "DEMO_GREETING=hello-from-pod")
	})

	t.Run("inside-pod-musl-probe", func(t *testing.T) {
		pod.CopyIn(t, harness.MuslProbe(t), "/tmp/musl-probe")
		wantStdout(t, pod.Run(t, "/tmp/musl-probe", "resolve", "web"), harness.WebIP)
		wantStdout(t, pod.Run(t, "/tmp/musl-probe", "get", "web", "80", "/musl"),
			"remote: "+harness.WebIP+":80", "path=/musl", "client="+harness.PodIP+":")
		r := pod.Run(t, "/tmp/musl-probe", "read", "/app/config/settings.json")
		if wantOK(t, r); r.Stdout != harness.PodSettings {
			t.Errorf("settings.json = %q", r.Stdout)
		}
	})

	t.Run("local-sees-nothing", func(t *testing.T) {
		probe := harness.Probe(t)
		began := time.Now()
		wantFail(t, local(t, probe, "get", "http://"+harness.WebIP+"/"), unreachable...)
		wantFail(t, local(t, probe, "tcp", harness.EchoIP+":7", "x"), unreachable...)
		wantFail(t, local(t, probe, "udp", harness.EchoIP+":7", "x"), unreachable...)
		wantFail(t, local(t, probe, "resolve", harness.WebName))
		wantFail(t, local(t, probe, "resolve", harness.PodHostsName))
		wantFail(t, local(t, probe, "read", "/app/response.txt"), "no such file")
		if d := time.Since(began); d > 20*time.Second {
			t.Errorf("local negative checks took %v; they should fail fast", d)
		}
		wantStdout(t, local(t, probe, "env", "DEMO_GREETING", "HOME"), "unset DEMO_GREETING", "HOME="+harness.LocalHome(t))
		r := local(t, probe, "hostname")
		wantStdoutLacks(t, r, harness.PodHostname)
		r = local(t, "cat", "/etc/resolv.conf")
		wantStdout(t, r, "nameserver "+harness.LocalNameserver)
		t.Logf("io_uring locally: %s", strings.TrimSpace(local(t, probe, "uring").Stdout))
	})

	t.Run("process-plumbing", func(t *testing.T) {
		r := local(t, "sh", "-c", "echo out; echo err >&2; exit 7")
		if r.ExitCode != 7 || r.Stdout != "out\n" || r.Stderr != "err\n" {
			t.Fatalf("want exit 7, out, err\n%s", r)
		}
		p := harness.Start(t, harness.ExecOpts{}, "sh", "-c", "echo ready; exec sleep 30")
		if !p.WaitStdout("ready", 10*time.Second) {
			t.Fatalf("no ready line: %q %q", p.Stdout(), p.Stderr())
		}
		if err := p.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		res, ok := p.Wait(5 * time.Second)
		if !ok || res.Signal != syscall.SIGINT {
			t.Fatalf("sleep did not die of SIGINT (ok=%v)\n%s", ok, res)
		}
	})

	t.Run("tools", func(t *testing.T) {
		for _, tool := range []string{"curl", "node", "getent", "cat", "ls", "stat", "wc", "hostname", "uname", "sh"} {
			harness.NeedTool(t, tool)
		}
		if _, err := os.Stat(python3); err != nil {
			t.Errorf("%s: %v (install python3: sudo hack/install-deps.sh)", python3, err)
		}
	})
}
