// Package harness sets up a fake Kubernetes pod on the local machine for the
// tether integration tests: a "services" network namespace with a real DNS
// server (dnsmasq) and in-process HTTP/TCP/UDP servers, a "pod" process in
// its own network, mount, UTS and PID namespaces chroot'ed into a small
// rootfs, a tether-agent attached to that pod, and helpers to run commands
// under `tether exec` (and, for negative checks, without it).
//
// Everything the harness creates carries the "tth-" name prefix (network
// namespaces, links, temporary directories) and is removed when the test
// binary ends (see Main), or at the start of the next run if a previous run
// crashed. While the harness is up, the host has a route
// `unreachable 198.18.0.0/15`, so traffic to the fake cluster addresses can
// never leave the machine and fails fast (ENETUNREACH) without tether.
//
// Heavy tests run only with TETHER_INTEGRATION=1 (see Require); then they
// need root and the tools installed by hack/install-deps.sh, and fail when
// those are missing.
package harness

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// EnvVar is the environment variable that turns the integration tests on.
const EnvVar = "TETHER_INTEGRATION"

// Prefix starts the name of every resource the harness creates.
const Prefix = "tth-"

// Fixed addresses of the fake cluster.
const (
	// BlockedCIDR gets an unreachable route on the host while the harness is up.
	BlockedCIDR = "198.18.0.0/15"
	DNSIP       = "198.18.0.10" // dnsmasq, UDP and TCP port 53
	WebIP       = "198.18.0.20" // HTTP on port 80
	EchoIP      = "198.18.0.30" // TCP and UDP echo on port 7
	RedisIP     = "198.18.0.40" // DNS record only
	PodIP       = "198.19.0.2"
	PodGateway  = "198.19.0.1" // the services namespace's end of the pod's veth
	// LocalNameserver is the nameserver of the /etc/resolv.conf that local
	// commands see (RunLocal, Exec): inside BlockedCIDR, so a name resolved
	// locally fails fast instead of querying the machine's real resolver.
	LocalNameserver = "198.18.255.53"
)

// Cluster DNS names served by dnsmasq.
const (
	WebName   = "web.demo.svc.cluster.local"
	EchoName  = "echo.demo.svc.cluster.local"
	RedisName = "redis.demo.svc.cluster.local"
	// PodHostsName is only in the pod's /etc/hosts (-> WebIP).
	PodHostsName = "legacy-web.internal"
)

var (
	mainActive bool

	globalMu       sync.Mutex
	globalCleanups []func()

	runOnce sync.Once
	runErr  error
	runDir  string
	lockF   *os.File
)

// Main runs the tests of a package that uses the harness; call it from
// TestMain. After the tests (or on SIGINT/SIGTERM) it tears down everything
// shared: the services namespace, the pod, the host route, built binaries.
func Main(m *testing.M) {
	mainActive = true
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "harness: got %v, cleaning up\n", s)
		runGlobalCleanups()
		os.Exit(2)
	}()
	code := m.Run()
	signal.Stop(sigs)
	runGlobalCleanups()
	os.Exit(code)
}

// addGlobalCleanup registers fn to run when Main ends (last added, first run).
func addGlobalCleanup(fn func()) {
	globalMu.Lock()
	globalCleanups = append(globalCleanups, fn)
	globalMu.Unlock()
}

func runGlobalCleanups() {
	globalMu.Lock()
	fns := globalCleanups
	globalCleanups = nil
	globalMu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// Enabled reports whether TETHER_INTEGRATION=1.
func Enabled() bool { return os.Getenv(EnvVar) == "1" }

// Require skips t unless TETHER_INTEGRATION=1. When it is set, it fails t
// unless the process is root, runs under Main, and the base tools exist.
func Require(t testing.TB) {
	t.Helper()
	if !Enabled() {
		t.Skipf("integration test: set %s=1 and run as root (make test does) to run it", EnvVar)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("%s=1 but not running as root: the integration tests create network namespaces and need root", EnvVar)
	}
	if !mainActive {
		t.Fatal("harness: call harness.Main(m) from TestMain so shared resources are cleaned up")
	}
	for _, tool := range []string{"ip", "nsenter", "unshare", "mount", "dnsmasq", "busybox", "go"} {
		NeedTool(t, tool)
	}
}

// NeedTool returns the path of an external tool, failing t if it is missing.
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	p, err := lookTool(name)
	if err != nil {
		t.Fatalf("%s not found (%v); install the test dependencies with: sudo hack/install-deps.sh", name, err)
	}
	return p
}

func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	// Root's PATH usually has the sbin dirs, but test runners may not.
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/go/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// RunDir returns this run's private temporary directory (/tmp/tth-run-*),
// creating it on first use. The first call also takes the machine-wide
// harness lock (one harness instance at a time: they share the host route
// and the stale-resource sweep), removes leftovers of crashed runs and
// installs the host's unreachable route.
func RunDir(t testing.TB) string {
	t.Helper()
	runOnce.Do(func() { runErr = startRun() })
	if runErr != nil {
		t.Fatalf("harness start: %v", runErr)
	}
	return runDir
}

const lockPath = "/run/lock/tether-integration-harness.lock"

func startRun() error {
	lp := lockPath
	if _, err := os.Stat(filepath.Dir(lp)); err != nil {
		lp = filepath.Join(os.TempDir(), "tether-integration-harness.lock")
	}
	f, err := os.OpenFile(lp, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("opening lock %s: %w", lp, err)
	}
	deadline := time.Now().Add(10 * time.Minute)
	warned := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return fmt.Errorf("locking %s: %w", lp, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return fmt.Errorf("another integration harness holds %s for more than 10 minutes", lp)
		}
		if !warned {
			fmt.Fprintf(os.Stderr, "harness: waiting for another test binary holding %s\n", lp)
			warned = true
		}
		time.Sleep(200 * time.Millisecond)
	}
	lockF = f
	addGlobalCleanup(func() {
		unix.Flock(int(lockF.Fd()), unix.LOCK_UN)
		lockF.Close()
	})

	removeStale()

	dir, err := os.MkdirTemp("", Prefix+"run-")
	if err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	runDir = dir
	addGlobalCleanup(func() { os.RemoveAll(dir) })

	// The route: tolerate it existing (removeStale already tried to delete it).
	if out, err := exec.Command(ipPath(), "route", "replace", "unreachable", BlockedCIDR).CombinedOutput(); err != nil {
		return fmt.Errorf("ip route replace unreachable %s: %v: %s", BlockedCIDR, err, out)
	}
	addGlobalCleanup(func() {
		exec.Command(ipPath(), "route", "del", "unreachable", BlockedCIDR).Run()
	})
	return nil
}

func ipPath() string {
	if p, err := lookTool("ip"); err == nil {
		return p
	}
	return "ip"
}

// removeStale deletes what a crashed run may have left: processes it
// recorded (by PID, only if still the same process), tth-* network
// namespaces and host links, /tmp/tth-run-* directories and the route.
func removeStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), Prefix+"run-*"))
	for _, d := range dirs {
		killRecorded(filepath.Join(d, "pids"))
	}
	if out, err := exec.Command(ipPath(), "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) > 0 && strings.HasPrefix(f[0], Prefix) {
				exec.Command(ipPath(), "netns", "del", f[0]).Run()
			}
		}
	}
	if out, err := exec.Command(ipPath(), "-o", "link", "show").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			// "12: tth-v-abcd@if11: <...>"
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if strings.HasPrefix(name, Prefix) {
				exec.Command(ipPath(), "link", "del", name).Run()
			}
		}
	}
	exec.Command(ipPath(), "route", "del", "unreachable", BlockedCIDR).Run()
	for _, d := range dirs {
		os.RemoveAll(d)
	}
}

// procStartTime returns field 22 of /proc/PID/stat (start time in ticks).
func procStartTime(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", fmt.Errorf("bad stat for %d", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", fmt.Errorf("bad stat for %d", pid)
	}
	return f[19], nil
}

var pidsMu sync.Mutex

// recordProcess notes a started process in the run's pid file, so a later
// run can end it if this one crashes before its cleanup.
func recordProcess(pid int) {
	if runDir == "" {
		return
	}
	st, err := procStartTime(pid)
	if err != nil {
		return
	}
	pidsMu.Lock()
	defer pidsMu.Unlock()
	f, err := os.OpenFile(filepath.Join(runDir, "pids"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	fmt.Fprintf(f, "%d %s\n", pid, st)
	f.Close()
}

func killRecorded(file string) {
	f, err := os.Open(file)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			continue
		}
		pid, err := strconv.Atoi(fields[0])
		if err != nil || pid <= 1 {
			continue
		}
		if st, err := procStartTime(pid); err == nil && st == fields[1] {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

// ProcessAlive reports whether the process pid exists and is not a zombie.
func ProcessAlive(pid int) bool { return processAlive(pid) }

// run runs a short helper command and returns an error with its output.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
