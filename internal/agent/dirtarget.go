package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
)

// DirTarget is a Target made of plain parts: a directory as the root file
// system, a fixed environment and hostname, and dials from this process's
// own network. It stands in for a process in tests and local experiments.
type DirTarget struct {
	root     *os.Root
	env      []string
	hostname string
	// DialFunc, when set, replaces the default dialer.
	DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)
}

// NewDirTarget opens dir as the target's root.
func NewDirTarget(dir string, env []string, hostname string) (*DirTarget, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("opening target root %s: %w", dir, err)
	}
	return &DirTarget{root: root, env: env, hostname: hostname}, nil
}

func (t *DirTarget) PID() int                   { return 0 }
func (t *DirTarget) Root() *os.Root             { return t.root }
func (t *DirTarget) Close() error               { return t.root.Close() }
func (t *DirTarget) Environ() ([]string, error) { return t.env, nil }
func (t *DirTarget) Hostname() (string, error)  { return t.hostname, nil }

// DialFrom dials from this process's own address (a DirTarget has no
// transparent routing).
func (t *DirTarget) DialFrom(ctx context.Context, network, addr string, _ netip.AddrPort) (net.Conn, error) {
	return t.Dial(ctx, network, addr)
}

// Listen listens in this process's network namespace.
func (t *DirTarget) Listen(network, addr string) (net.Listener, error) {
	return net.Listen(network, addr)
}

// NetNS is empty: a DirTarget shares this process's network.
func (t *DirTarget) NetNS() string { return "" }

func (t *DirTarget) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if t.DialFunc != nil {
		return t.DialFunc(ctx, network, addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}
