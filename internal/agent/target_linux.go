package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/netfilter"
	"github.com/tether-dev/tether/internal/netns"
)

// ProcessTarget is a live process on this host, reached through /proc.
type ProcessTarget struct {
	pid  int
	root *os.Root
	// net is the target's network namespace, held open: it stays
	// reachable after the target process exits (to remove rules and reset
	// connections), as long as the namespace itself lives.
	net *os.File
}

// NewProcessTarget attaches to pid: it opens the process's root directory
// and checks that its network and UTS namespaces can be entered.
func NewProcessTarget(pid int) (*ProcessTarget, error) {
	if err := checkPID(pid); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(procPath(pid, "root"))
	if err != nil {
		return nil, fmt.Errorf("opening the root file system of process %d: %w (the agent needs CAP_SYS_PTRACE and to share the PID namespace of the target)", pid, err)
	}
	net, err := os.Open(procPath(pid, "ns/net"))
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("opening the network namespace of process %d: %w (the agent needs CAP_SYS_PTRACE)", pid, err)
	}
	t := &ProcessTarget{pid: pid, root: root, net: net}
	for _, ns := range []struct {
		name string
		typ  int
	}{{"net", unix.CLONE_NEWNET}, {"uts", unix.CLONE_NEWUTS}} {
		if err := netns.Do(procPath(pid, "ns/"+ns.name), ns.typ, func() error { return nil }); err != nil {
			root.Close()
			net.Close()
			return nil, fmt.Errorf("entering the %s namespace of process %d: %w (the agent needs CAP_SYS_ADMIN)", ns.name, pid, err)
		}
	}
	return t, nil
}

func (t *ProcessTarget) PID() int       { return t.pid }
func (t *ProcessTarget) Root() *os.Root { return t.root }
func (t *ProcessTarget) Close() error {
	t.net.Close()
	return t.root.Close()
}

func (t *ProcessTarget) Environ() ([]string, error) {
	b, err := os.ReadFile(procPath(t.pid, "environ"))
	if err != nil {
		return nil, fmt.Errorf("reading the environment of process %d: %w", t.pid, err)
	}
	return parseEnviron(b), nil
}

func (t *ProcessTarget) Hostname() (string, error) {
	var name string
	err := netns.Do(procPath(t.pid, "ns/uts"), unix.CLONE_NEWUTS, func() error {
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			return err
		}
		name = unix.ByteSliceToString(u.Nodename[:])
		return nil
	})
	return name, err
}

func (t *ProcessTarget) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	// The socket is created on the locked thread inside the target's netns
	// and stays there; the connect itself may complete on any thread.
	err := netns.Do(t.NetNS(), unix.CLONE_NEWNET, func() error {
		d := net.Dialer{Control: netfilter.MarkControl}
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

func (t *ProcessTarget) DialFrom(ctx context.Context, network, addr string, from netip.AddrPort) (net.Conn, error) {
	// The client's address with the port the caller chose (0: any). Not
	// the client's own port: that would give the same connection tuple as
	// the client's redirected connection, and conntrack would take our SYN
	// for part of that one.
	src := from.Addr().Unmap()
	var c net.Conn
	err := netns.Do(t.NetNS(), unix.CLONE_NEWNET, func() error {
		d := net.Dialer{
			LocalAddr: &net.TCPAddr{IP: src.AsSlice(), Port: int(from.Port())},
			Control:   netfilter.TransparentControl(netip.AddrPortFrom(src, from.Port())),
		}
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

func (t *ProcessTarget) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := netns.Do(t.NetNS(), unix.CLONE_NEWNET, func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// NetNS is a path to the target's network namespace that stays valid
// after the target process exits (through the agent's open descriptor).
func (t *ProcessTarget) NetNS() string { return fmt.Sprintf("/proc/self/fd/%d", t.net.Fd()) }
