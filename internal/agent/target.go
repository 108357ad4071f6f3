// Package agent is tether-agent's server: it accepts tether sessions over
// the protocol mux and serves each request from the target process's
// context — its environment, hostname, network namespace and root file
// system.
package agent

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
)

// Target is the process whose context the agent serves. ProcessTarget is the
// real one (a PID on this host); tests use a directory-backed fake.
type Target interface {
	// PID of the target process (0 for a fake).
	PID() int
	// Environ returns the target's environment as KEY=VALUE strings.
	Environ() ([]string, error)
	// Hostname returns the target's hostname (its UTS namespace).
	Hostname() (string, error)
	// Dial connects from the target's network namespace. The agent's
	// sockets carry netfilter.AgentMark so its redirect rules let them pass.
	Dial(ctx context.Context, network, addr string) (net.Conn, error)
	// DialFrom is Dial from the address from (a client's, not local to the
	// target, and a port: 0 lets the kernel pick): the app sees that
	// client, not the agent. It needs the transparent routing netfilter
	// sets up with the redirect rules.
	DialFrom(ctx context.Context, network, addr string, from netip.AddrPort) (net.Conn, error)
	// Listen listens in the target's network namespace.
	Listen(network, addr string) (net.Listener, error)
	// NetNS is the path of the target's network namespace ("" when the
	// target has none of its own, as DirTarget).
	NetNS() string
	// Root is the target's root directory.
	Root() *os.Root
	// Close releases what the target holds open.
	Close() error
}

// parseEnviron splits the NUL-separated content of /proc/PID/environ.
func parseEnviron(b []byte) []string {
	var env []string
	for _, kv := range bytes.Split(b, []byte{0}) {
		if len(kv) > 0 && bytes.IndexByte(kv, '=') > 0 {
			env = append(env, string(kv))
		}
	}
	return env
}

func procPath(pid int, rest string) string {
	return "/proc/" + strconv.Itoa(pid) + "/" + rest
}

// checkPID verifies a target PID exists and the agent may read its state.
func checkPID(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("target pid %d is not valid: give the PID of the target process (--target-pid)", pid)
	}
	if _, err := os.Stat(procPath(pid, "")); err != nil {
		return fmt.Errorf("target process %d does not exist: %w", pid, err)
	}
	return nil
}
