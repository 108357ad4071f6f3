package harness

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/netns"
	"golang.org/x/sys/unix"
)

// Addresses of the laptop network namespace and its sink.
const (
	LaptopIP = "198.19.9.2" // the laptop's eth0 (/30)
	SinkIP   = "198.19.9.1" // the sink's end, the laptop's default gateway
)

// sinkIf is the name of the sink's end of the veth inside the sink netns.
const sinkIf = "lap0"

// Laptop is a network namespace standing for a developer's laptop that, unlike
// the host while the harness is up, HAS a default route: eth0 LaptopIP/30,
// default via SinkIP. SinkIP is the other end of the veth, in a second
// namespace (the sink) that does not forward, has no other route and only
// counts what arrives (SinkPackets). Packets to the fake cluster (198.18.x)
// sent from the laptop without tether therefore leave through eth0 and are
// counted instead of failing with ENETUNREACH: a datagram that "works" on a
// real laptop without ever reaching the pod is visible here.
//
// IPv6 is disabled on both veth ends and both ends have a permanent
// neighbour entry for the other, so nothing (DAD, router solicitations, ARP)
// is counted but what the programs under test send. Unprivileged ICMP echo
// sockets are allowed in the laptop (net.ipv4.ping_group_range).
//
// Commands (Exec, RunLocal, Start) run inside the laptop namespace in the
// same conditions as the package-level Exec/RunLocal. The agent listens in
// the host namespace on 127.0.0.1, unreachable from the laptop's loopback,
// so NewLaptop starts a forwarder: a listener on 127.0.0.1 inside the laptop
// (AgentAddr) whose connections the test process relays to the agent.
type Laptop struct {
	NetNS      string // tth-lap-ID
	NSPath     string // /run/netns/NAME
	SinkNetNS  string // tth-snk-ID
	SinkNSPath string
	// AgentAddr is the forwarder's address inside the laptop namespace, to
	// pass to tether exec --agent-addr ("" when NewLaptop got no agent).
	AgentAddr string

	fwd *forwarder
}

// NewLaptop creates a laptop and its sink (removed when t ends, and by the
// harness's cleanup after a crash) and, if agentAddr is not empty, a
// forwarder from the laptop's 127.0.0.1 to agentAddr, stopped when t ends.
func NewLaptop(t testing.TB, agentAddr string) *Laptop {
	t.Helper()
	RunDir(t)
	var b [2]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	l := &Laptop{NetNS: Prefix + "lap-" + id, SinkNetNS: Prefix + "snk-" + id}
	if err := l.create(t); err != nil {
		t.Fatalf("harness: laptop namespace: %v", err)
	}
	if agentAddr != "" {
		fwd, err := startForwarder(l.NSPath, agentAddr)
		if err != nil {
			t.Fatalf("harness: laptop agent forwarder: %v", err)
		}
		l.fwd = fwd
		l.AgentAddr = fwd.addr
		t.Cleanup(fwd.stop)
	}
	return l
}

// create makes both namespaces, the veth between them, the addresses, the
// default route and the neighbour entries.
func (l *Laptop) create(t testing.TB) error {
	ip := ipPath()
	for _, ns := range []string{l.NetNS, l.SinkNetNS} {
		if err := run(ip, "netns", "add", ns); err != nil {
			return err
		}
		del := func() { exec.Command(ip, "netns", "del", ns).Run() }
		addGlobalCleanup(del)
		t.Cleanup(del)
	}
	l.NSPath, l.SinkNSPath = netnsPath(l.NetNS), netnsPath(l.SinkNetNS)
	if err := run(ip, "link", "add", "eth0", "netns", l.NetNS, "type", "veth", "peer", "name", sinkIf, "netns", l.SinkNetNS); err != nil {
		return err
	}
	// No IPv6 on the veth ends (no DAD/ND/MLD traffic to count); ICMP echo
	// sockets allowed for every group in the laptop.
	if err := netns.Do(l.NSPath, unix.CLONE_NEWNET, func() error {
		if err := writeSysctl("net/ipv6/conf/eth0/disable_ipv6", "1"); err != nil {
			return err
		}
		return writeSysctl("net/ipv4/ping_group_range", "0\t2147483647")
	}); err != nil {
		return fmt.Errorf("sysctls in %s: %w", l.NetNS, err)
	}
	if err := netns.Do(l.SinkNSPath, unix.CLONE_NEWNET, func() error {
		if err := writeSysctl("net/ipv6/conf/"+sinkIf+"/disable_ipv6", "1"); err != nil {
			return err
		}
		return writeSysctl("net/ipv4/ip_forward", "0")
	}); err != nil {
		return fmt.Errorf("sysctls in %s: %w", l.SinkNetNS, err)
	}
	lapMAC, err := macIn(l.NSPath, "eth0")
	if err != nil {
		return err
	}
	sinkMAC, err := macIn(l.SinkNSPath, sinkIf)
	if err != nil {
		return err
	}
	steps := [][]string{
		{"-n", l.NetNS, "link", "set", "lo", "up"},
		{"-n", l.NetNS, "addr", "add", LaptopIP + "/30", "dev", "eth0"},
		{"-n", l.NetNS, "neigh", "replace", SinkIP, "lladdr", sinkMAC, "dev", "eth0", "nud", "permanent"},
		{"-n", l.SinkNetNS, "addr", "add", SinkIP + "/30", "dev", sinkIf},
		{"-n", l.SinkNetNS, "neigh", "replace", LaptopIP, "lladdr", lapMAC, "dev", sinkIf, "nud", "permanent"},
		{"-n", l.SinkNetNS, "link", "set", sinkIf, "up"},
		{"-n", l.NetNS, "link", "set", "eth0", "up"},
		{"-n", l.NetNS, "route", "add", "default", "via", SinkIP, "dev", "eth0"},
	}
	for _, s := range steps {
		if err := run(ip, s...); err != nil {
			return err
		}
	}
	return nil
}

// netnsPath is the bind-mount path of the named network namespace.
func netnsPath(name string) string {
	p := filepath.Join("/run/netns", name)
	if _, err := os.Stat(p); err != nil {
		return filepath.Join("/var/run/netns", name)
	}
	return p
}

// macIn returns the hardware address of interface ifName in the namespace.
func macIn(nsPath, ifName string) (string, error) {
	var mac string
	err := netns.Do(nsPath, unix.CLONE_NEWNET, func() error {
		ifi, err := net.InterfaceByName(ifName)
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr.String()
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hardware address of %s in %s: %w", ifName, nsPath, err)
	}
	return mac, nil
}

// SinkPackets returns how many packets the sink's interface has received
// (rx_packets of its end of the veth, read inside the sink namespace from
// /proc/thread-self/net/dev: sysfs would show the test process's own
// namespace).
func (l *Laptop) SinkPackets() (int, error) {
	var n int
	err := netns.Do(l.SinkNSPath, unix.CLONE_NEWNET, func() error {
		var err error
		n, err = rxPackets("/proc/thread-self/net/dev", sinkIf)
		return err
	})
	return n, err
}

// rxPackets reads the received-packets column of ifName in a
// /proc/net/dev-format file.
func rxPackets(file, ifName string) (int, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(name) != ifName {
			continue
		}
		fields := strings.Fields(rest) // rx bytes, rx packets, ...
		if len(fields) < 2 {
			return 0, fmt.Errorf("%s: short line for %s: %q", file, ifName, sc.Text())
		}
		return strconv.Atoi(fields[1])
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no interface %s", file, ifName)
}

// SettledSinkPackets waits until SinkPackets gives the same count twice
// 250 ms apart (at most 5 s, then it fails t) and returns it, so packets
// still on their way are attributed to what sent them.
func (l *Laptop) SettledSinkPackets(t testing.TB) int {
	t.Helper()
	prev, err := l.SinkPackets()
	if err != nil {
		t.Fatalf("harness: reading the sink's counter: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		time.Sleep(250 * time.Millisecond)
		n, err := l.SinkPackets()
		if err != nil {
			t.Fatalf("harness: reading the sink's counter: %v", err)
		}
		if n == prev {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("harness: the sink's counter keeps moving (%d, then %d)", prev, n)
		}
		prev = n
	}
}

// Exec runs `tether exec --agent-addr AgentAddr [-f CONFIG] -- CMD...`
// inside the laptop namespace, like the package-level Exec.
func (l *Laptop) Exec(t testing.TB, opts ExecOpts, cmd ...string) Result {
	t.Helper()
	if l.AgentAddr == "" {
		t.Fatal("harness: Laptop.Exec on a laptop created without an agent address")
	}
	return l.RunLocal(t, opts, TetherCommand(t, l.AgentAddr, opts, cmd...)...)
}

// RunLocal runs cmd directly (no tether) inside the laptop namespace, in the
// same conditions as the package-level RunLocal (LocalEnv, private mount
// namespace with the harness's resolv.conf).
func (l *Laptop) RunLocal(t testing.TB, opts ExecOpts, cmd ...string) Result {
	t.Helper()
	return l.Start(t, opts, cmd...).waitOrFail(t, opts.Timeout)
}

// Start starts cmd like RunLocal without waiting for it; it is killed (with
// its process group) when t ends. nsenter, unshare and sh exec, so the
// Process's PID is cmd's.
func (l *Laptop) Start(t testing.TB, opts ExecOpts, cmd ...string) *Process {
	t.Helper()
	if len(cmd) == 0 {
		t.Fatal("harness: empty command")
	}
	nsenter := NeedTool(t, "nsenter")
	inner, err := sandboxArgv(t, cmd)
	if err != nil {
		t.Fatal(err)
	}
	argv := append([]string{nsenter, "--net=" + l.NSPath, "--"}, inner...)
	shown := append([]string{"nsenter", "--net=" + l.NSPath, "--"}, cmd...)
	dir := opts.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	return startRaw(t, shown, argv, mergeEnv(LocalEnv(t), opts.Env), dir, opts.Stdin)
}

// forwarder accepts TCP connections on 127.0.0.1 inside a network namespace
// and relays each to a fixed address dialled from the test process's own
// namespace.
type forwarder struct {
	addr string
	to   string
	ln   net.Listener

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// startForwarder listens on 127.0.0.1:0 inside nsPath and relays to to.
func startForwarder(nsPath, to string) (*forwarder, error) {
	f := &forwarder{to: to, conns: map[net.Conn]struct{}{}}
	err := netns.Do(nsPath, unix.CLONE_NEWNET, func() error {
		var err error
		f.ln, err = net.Listen("tcp4", "127.0.0.1:0")
		return err
	})
	if err != nil {
		return nil, err
	}
	f.addr = f.ln.Addr().String()
	f.wg.Add(1)
	go f.serve()
	return f, nil
}

// track remembers c so stop can close it; false once stopped.
func (f *forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

// serve accepts until the listener is closed.
func (f *forwarder) serve() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		f.wg.Add(1)
		go f.relay(c)
	}
}

// relay dials the target and copies both ways, passing half-closes on.
func (f *forwarder) relay(c net.Conn) {
	defer f.wg.Done()
	defer c.Close()
	if !f.track(c) {
		return
	}
	up, err := net.DialTimeout("tcp", f.to, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	if !f.track(up) {
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
	f.mu.Lock()
	delete(f.conns, c)
	delete(f.conns, up)
	f.mu.Unlock()
}

// stop closes the listener and every relayed connection and waits for the
// relaying goroutines.
func (f *forwarder) stop() {
	f.mu.Lock()
	f.closed = true
	f.ln.Close()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}
