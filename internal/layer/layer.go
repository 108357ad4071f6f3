// Package layer is tether's seccomp supervisor: it launches a command with a
// seccomp user-notification filter (inherited by every descendant), traps
// the syscalls that touch the target's context — connect, sendto,
// getpeername, the open/stat/access/readlink family, uname — and answers
// them, asking a Session for everything remote. Everything else runs
// natively at full speed.
package layer

import (
	"context"
	"io"
	"net/netip"

	"github.com/tether-dev/tether/internal/protocol"
)

// Route says where a path is served from.
type Route int

const (
	// Local: the local file system, untouched (the syscall continues).
	Local Route = iota
	// RemoteRead: the target's file, read-only (writes fail with EROFS).
	RemoteRead
	// RemoteWrite: the target's file, writes go back to the target.
	RemoteWrite
	// NotFound: the path does not exist (ENOENT), wherever it is.
	NotFound
)

func (r Route) String() string {
	switch r {
	case Local:
		return "local"
	case RemoteRead:
		return "remote-read"
	case RemoteWrite:
		return "remote-write"
	case NotFound:
		return "not-found"
	}
	return "unknown"
}

// Session is what the supervisor needs from the session runtime: routing
// decisions, virtual files, and access to the target through the agent.
// Implementations must be safe for concurrent use.
type Session interface {
	// OutgoingRemote reports whether a connection or datagram from the
	// local process to dst ("tcp" or "udp") goes through the target.
	OutgoingRemote(network string, dst netip.AddrPort) bool
	// DialTCP connects to dst through the target before the caller's
	// connect returns, so connect reports the target's own result
	// (ECONNREFUSED, ENETUNREACH, ...). The supervisor then connects the
	// caller's socket to TCPProxy and hands the pending connection over with
	// RegisterTCP, keyed by the socket's local port.
	DialTCP(ctx context.Context, dst netip.AddrPort) (io.Closer, error)
	// TCPProxy returns the local proxy address for IPv4 sockets and, if
	// available, the one for IPv6-only sockets.
	TCPProxy() (v4, v6 netip.AddrPort)
	RegisterTCP(localPort uint16, pending io.Closer)
	// UDPRelay returns a local address whose datagrams reach dst through the
	// target (and whose replies come back from that address).
	UDPRelay(dst netip.AddrPort) (netip.AddrPort, error)
	// PeerOf maps a local proxy or relay address seen by a socket back to
	// the real remote address (for getpeername).
	PeerOf(local, peer netip.AddrPort) (netip.AddrPort, bool)
	// RelayPeer maps a UDP relay address (the source of a datagram the
	// program receives) to the remote address the relay stands for.
	RelayPeer(relay netip.AddrPort) (netip.AddrPort, bool)

	// Incoming traffic.
	//
	// IncomingEnabled reports whether listening programs get the target's
	// traffic at all (incoming.mode is not off).
	IncomingEnabled() bool
	// Subscribes reports whether a listener bound to addr would get the
	// target's traffic (loopback listeners stay local unless configured).
	Subscribes(addr netip.AddrPort) bool
	// ListenPort maps a port the program binds to the local port to bind
	// instead (listen_ports); ok is false when the port is kept.
	ListenPort(port uint16) (local uint16, ok bool)
	// Listening subscribes the target's port behind a local listener;
	// requested is the port the program asked for when its bind was moved
	// (0 otherwise). An error refuses the listen (EADDRINUSE).
	Listening(ctx context.Context, local netip.AddrPort, requested uint16) error
	// Subscribed reports whether a local listening port receives the
	// target's traffic (its accepts report the original clients).
	Subscribed(localPort uint16) bool
	// Warnf shows the user a warning.
	Warnf(format string, args ...any)

	// RouteFile decides where an absolute path is served from.
	RouteFile(path string) Route
	// VirtualFile returns generated content for a path (the target's
	// resolv.conf, hosts, hostname), if the path is virtual.
	VirtualFile(path string) ([]byte, bool)
	// Hostname returns the target's hostname, if hostname emulation is on.
	Hostname() (string, bool)

	// Remote file operations.
	Stat(ctx context.Context, path string, follow bool) (*protocol.Stat, error)
	ReadFile(ctx context.Context, path string) (*protocol.Stat, io.ReadCloser, error)
	// ReadDir lists a directory; st is the directory's own stat (nil
	// from an agent too old to send it).
	ReadDir(ctx context.Context, path string) (entries []protocol.DirEntry, st *protocol.Stat, err error)
	Readlink(ctx context.Context, path string) (string, error)
	WriteFile(ctx context.Context, path string, r io.Reader, size int64, perm uint32) error
	Mkdir(ctx context.Context, path string, perm uint32) error
	Remove(ctx context.Context, path string) error
	Rename(ctx context.Context, from, to string) error
	// SetAttr changes a remote file's mode, owner, times or size.
	SetAttr(ctx context.Context, path string, follow bool, a protocol.Attr) error
	// Symlink makes link a symlink to target; Link makes to a hard link to from.
	Symlink(ctx context.Context, target, link string) error
	Link(ctx context.Context, from, to string, follow bool) error
}
