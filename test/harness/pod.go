package harness

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/netns"
	"golang.org/x/sys/unix"
)

// Pod defaults.
const (
	PodHostname = "ip-visit-counter-6f7c9-x2x4q"
	// PodResponse is the content of /app/response.txt in the pod.
	PodResponse = "hello from the pod\n"
	// PodSettings is the content of /app/config/settings.json in the pod.
	PodSettings = `{"greeting": "hello-from-pod", "redis": "redis:6379"}` + "\n"
	// PodResolvConf is the pod's /etc/resolv.conf.
	PodResolvConf = "nameserver " + DNSIP + "\n" +
		"search demo.svc.cluster.local svc.cluster.local cluster.local\n" +
		"options ndots:5\n"
	// PodHosts is the pod's /etc/hosts; PodHostsName exists only here.
	PodHosts = "127.0.0.1\tlocalhost\n" +
		PodIP + "\t" + PodHostname + "\n" +
		WebIP + "\t" + PodHostsName + "\n"
)

// PodEnv is the environment of the pod's process.
var PodEnv = []string{
	"PATH=/bin",
	"HOME=/root",
	"HOSTNAME=" + PodHostname,
	"DEMO_GREETING=hello-from-pod",
	"REDIS_HOST=redis",
	"REDIS_PORT=6379",
	"WEB_URL=http://" + WebName,
}

// Pod is a process (busybox sleep) in its own network, mount, UTS and PID
// namespaces, chroot'ed into RootFS. Its network namespace has IP on eth0
// and a default route via PodGateway into the services namespace.
type Pod struct {
	PID      int    // host PID of the pod's process (PID 1 in its namespace)
	IP       string // PodIP
	RootFS   string // host directory that is the pod's /
	Hostname string // set in its UTS namespace
	Env      []string
	NetNS    string // name given to its network namespace (ip netns attach)

	proc *proc
}

// busyboxApplets get a symlink in the pod's /bin.
var busyboxApplets = []string{
	"sh", "cat", "ls", "sleep", "hostname", "uname", "wget", "wc", "echo",
	"nslookup", "stat", "env", "printenv", "id", "mkdir", "touch", "rm", "head",
}

func newPod(id, dir string, svc *Services) (*Pod, error) {
	bb, err := staticBusybox()
	if err != nil {
		return nil, err
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := buildRootFS(rootfs, bb); err != nil {
		return nil, fmt.Errorf("building rootfs: %w", err)
	}
	p := &Pod{
		IP:       PodIP,
		RootFS:   rootfs,
		Hostname: PodHostname,
		Env:      append([]string(nil), PodEnv...),
		NetNS:    Prefix + "pod-" + id,
	}
	cmd := &exec.Cmd{
		Path: "/bin/busybox", // inside the chroot
		Args: []string{"sleep", "2147483647"},
		Env:  p.Env,
		Dir:  "/",
		SysProcAttr: &syscall.SysProcAttr{
			Chroot:     rootfs,
			Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWPID,
		},
	}
	pr, err := startProc(cmd)
	if err != nil {
		return nil, fmt.Errorf("starting pod process: %w", err)
	}
	p.proc = pr
	p.PID = pr.pid()
	addGlobalCleanup(func() { pr.stop(0, 0, false) })
	if err := p.mountPodFixtures(); err != nil {
		return nil, err
	}

	if err := netns.Do(p.NSPath("uts"), unix.CLONE_NEWUTS, func() error {
		return unix.Sethostname([]byte(p.Hostname))
	}); err != nil {
		return nil, fmt.Errorf("setting pod hostname: %w", err)
	}

	ip := ipPath()
	if err := run(ip, "netns", "attach", p.NetNS, fmt.Sprint(p.PID)); err != nil {
		return nil, err
	}
	addGlobalCleanup(func() { exec.Command(ip, "netns", "del", p.NetNS).Run() })

	veth := Prefix + "v-" + id // the services end
	steps := [][]string{
		{"link", "add", "eth0", "netns", p.NetNS, "type", "veth", "peer", "name", veth, "netns", svc.NetNS},
		{"-n", svc.NetNS, "addr", "add", PodGateway + "/24", "dev", veth},
		{"-n", svc.NetNS, "link", "set", veth, "up"},
		{"-n", p.NetNS, "link", "set", "lo", "up"},
		{"-n", p.NetNS, "addr", "add", PodIP + "/24", "dev", "eth0"},
		{"-n", p.NetNS, "link", "set", "eth0", "up"},
		{"-n", p.NetNS, "route", "add", "default", "via", PodGateway},
	}
	for _, s := range steps {
		if err := run(ip, s...); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// NSPath returns /proc/PID/ns/KIND of the pod's process (net, uts, mnt, pid).
func (p *Pod) NSPath(kind string) string { return fmt.Sprintf("/proc/%d/ns/%s", p.PID, kind) }

// Alive reports whether the pod's process still runs.
func (p *Pod) Alive() bool { return !p.proc.exited() && processAlive(p.PID) }

// EnvValue returns the value of the pod's environment variable name.
func (p *Pod) EnvValue(name string) string {
	for _, kv := range p.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// Path returns the host path of the pod's file p (absolute in the pod).
func (p *Pod) Path(podPath string) string { return filepath.Join(p.RootFS, podPath) }

func buildRootFS(root, busybox string) error {
	for _, d := range []string{"bin", "etc", "app/config", "root", "tmp", "proc", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		return err
	}
	if err := copyFile(busybox, filepath.Join(root, "bin", "busybox"), 0o755); err != nil {
		return err
	}
	for _, a := range busyboxApplets {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			return err
		}
	}
	files := map[string]string{
		"app/response.txt":         PodResponse,
		"app/config/settings.json": PodSettings,
		"etc/resolv.conf":          PodResolvConf,
		"etc/hosts":                PodHosts,
		"etc/hostname":             PodHostname + "\n",
		"etc/passwd":               "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":                "root:x:0:\n",
		"etc/nsswitch.conf":        "hosts: files dns\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	if err := buildPodFiles(root); err != nil {
		return err
	}
	// Fixed times make stat output predictable.
	ts := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, name := range []string{"app/response.txt", "app/config/settings.json", "app/config", "app"} {
		os.Chtimes(filepath.Join(root, name), ts, ts)
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Run runs cmd inside the pod (all its namespaces and its root, via
// nsenter) with the pod's environment, without tether. cmd[0] is a path in
// the pod. It fails t on timeout (30 s).
func (p *Pod) Run(t testing.TB, cmd ...string) Result {
	t.Helper()
	nsenter := NeedTool(t, "nsenter")
	argv := append([]string{nsenter, "-t", fmt.Sprint(p.PID), "-n", "-u", "-m", "-p", "-r", "-w", "--"}, cmd...)
	return startRaw(t, cmd, argv, p.Env, "/", "").waitOrFail(t, 30*time.Second)
}

// CopyIn copies the host file src to podPath in the pod's rootfs (mode
// 0755) and removes it when t ends.
func (p *Pod) CopyIn(t testing.TB, src, podPath string) {
	t.Helper()
	dst := p.Path(podPath)
	if err := copyFile(src, dst, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dst) })
}
