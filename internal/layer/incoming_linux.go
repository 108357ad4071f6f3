package layer

import (
	"errors"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"
)

// listenState is the supervisor's memory of listening sockets: binds that
// were moved to another local port, and connections accepted for a caller
// that went away before it got them.
type listenState struct {
	mu        sync.Mutex
	boundFrom map[uint16]uint16 // local port -> port the program asked for
	queued    map[uint64][]int  // listening socket inode -> accepted fds not yet handed out
}

func (l *listenState) setBound(local, requested uint16) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.boundFrom == nil {
		l.boundFrom = map[uint16]uint16{}
	}
	l.boundFrom[local] = requested
}

func (l *listenState) requested(local uint16) uint16 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.boundFrom[local]
}

func (l *listenState) queue(ino uint64, fd int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.queued == nil {
		l.queued = map[uint64][]int{}
	}
	l.queued[ino] = append(l.queued[ino], fd)
}

func (l *listenState) dequeue(ino uint64) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	q := l.queued[ino]
	if len(q) == 0 {
		return -1, false
	}
	fd := q[0]
	l.queued[ino] = q[1:]
	return fd, true
}

func (l *listenState) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, q := range l.queued {
		for _, fd := range q {
			unix.Close(fd)
		}
	}
	l.queued = nil
}

func inodeOf(fd int) uint64 {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return 0
	}
	return st.Ino
}

// streamSocket takes the caller's fd when it is a TCP socket (AF_INET/6).
func (s *supervisor) streamSocket(n *notif, fd int) (int, bool) {
	tfd, err := s.getfd(n, fd)
	if err != nil {
		if err != errStale {
			s.cont(n)
		}
		return -1, false
	}
	typ, _ := unix.GetsockoptInt(tfd, unix.SOL_SOCKET, unix.SO_TYPE)
	dom, _ := unix.GetsockoptInt(tfd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if typ != unix.SOCK_STREAM || (dom != unix.AF_INET && dom != unix.AF_INET6) {
		unix.Close(tfd)
		s.cont(n)
		return -1, false
	}
	return tfd, true
}

// onBind moves a TCP bind to another local port when listen_ports says so,
// or when the port is taken or privileged here: the target's port still
// reaches the program.
func (s *supervisor) onBind(n *notif) {
	a := n.Data.Args
	if !s.sess.IncomingEnabled() {
		s.cont(n)
		return
	}
	raw, ok := s.readSockaddr(n, a[1], a[2])
	if !ok {
		s.cont(n)
		return
	}
	addr, family, ok := parseSockaddr(raw)
	if !ok || addr.Port() == 0 || !s.sess.Subscribes(addr) {
		s.cont(n) // a loopback listener stays as it is: no port moves
		return
	}
	tfd, ok := s.streamSocket(n, int(int32(a[0])))
	if !ok {
		return
	}
	defer unix.Close(tfd)
	want := addr.Port()
	if local, moved := s.sess.ListenPort(want); moved {
		if err := unix.Bind(tfd, toSockaddr(family, netip.AddrPortFrom(addr.Addr(), local))); err != nil {
			s.failErr(n, err)
			return
		}
		s.listen.setBound(local, want)
		s.ret(n, 0)
		return
	}
	err := unix.Bind(tfd, toSockaddr(family, addr))
	if err != unix.EADDRINUSE && err != unix.EACCES {
		if err != nil {
			s.failErr(n, err)
			return
		}
		s.ret(n, 0)
		return
	}
	if err := unix.Bind(tfd, toSockaddr(family, netip.AddrPortFrom(addr.Addr(), 0))); err != nil {
		s.failErr(n, err)
		return
	}
	la, _ := unix.Getsockname(tfd)
	got := sockAddrPort(la).Port()
	s.listen.setBound(got, want)
	why := "taken"
	if err == unix.EACCES {
		why = "privileged"
	}
	s.sess.Warnf("port %d is %s on this machine: the program listens on port %d instead, and the target's port %d still reaches it (set incoming.listen_ports to choose the port)", want, why, got, want)
	s.ret(n, 0)
}

// onListen subscribes the target's port before the socket starts listening,
// so traffic flows as soon as the program is ready.
func (s *supervisor) onListen(n *notif) {
	if !s.sess.IncomingEnabled() {
		s.cont(n)
		return
	}
	tfd, ok := s.streamSocket(n, int(int32(n.Data.Args[0])))
	if !ok {
		return
	}
	nv := *n
	s.slow(func() {
		defer unix.Close(tfd)
		n := &nv
		backlog := int(int32(n.Data.Args[1]))
		la, err := unix.Getsockname(tfd)
		if err != nil {
			s.failErr(n, err)
			return
		}
		local := sockAddrPort(la)
		if local.Port() == 0 {
			// Listening without bind: the kernel picks the port at listen.
			if err := unix.Listen(tfd, backlog); err != nil {
				s.failErr(n, err)
				return
			}
			la, _ = unix.Getsockname(tfd)
			local = sockAddrPort(la)
			ctx, cancel := s.remoteCtx()
			s.sess.Listening(ctx, local, 0)
			cancel()
			s.ret(n, 0)
			return
		}
		ctx, cancel := s.remoteCtx()
		err = s.sess.Listening(ctx, local, s.listen.requested(local.Port()))
		cancel()
		if err != nil {
			// Refused (RBAC, a policy): EACCES, as the kernel says of a
			// port the process may not bind; else the port is not to be had.
			if errors.Is(err, unix.EACCES) {
				s.fail(n, unix.EACCES)
			} else {
				s.fail(n, unix.EADDRINUSE)
			}
			return
		}
		if err := unix.Listen(tfd, backlog); err != nil {
			s.failErr(n, err)
			return
		}
		s.ret(n, 0)
	})
}

// onAccept accepts on behalf of the caller on subscribed listeners, so the
// address it gets is the original client's, not tether's local end.
func (s *supervisor) onAccept(n *notif) {
	a := n.Data.Args
	tfd, ok := s.streamSocket(n, int(int32(a[0])))
	if !ok {
		return
	}
	la, err := unix.Getsockname(tfd)
	if err != nil || !s.sess.Subscribed(sockAddrPort(la).Port()) {
		unix.Close(tfd)
		s.cont(n)
		return
	}
	var flags int
	if n.Data.Nr == unix.SYS_ACCEPT4 {
		flags = int(a[3])
	}
	ino := inodeOf(tfd)
	if fd, ok := s.listen.dequeue(ino); ok {
		unix.Close(tfd)
		s.handOver(n, ino, fd, flags)
		return
	}
	fl, _ := unix.FcntlInt(uintptr(tfd), unix.F_GETFL, 0)
	if fl&unix.O_NONBLOCK != 0 {
		defer unix.Close(tfd)
		nfd, _, err := unix.Accept4(tfd, (flags&unix.SOCK_NONBLOCK)|unix.SOCK_CLOEXEC)
		if err != nil {
			s.failErr(n, err)
			return
		}
		s.handOver(n, ino, nfd, flags)
		return
	}
	// A blocking listener: wait for a connection without holding up the
	// notification loop, and give up if the caller goes away.
	nv := *n
	s.slow(func() {
		defer unix.Close(tfd)
		n := &nv
		for {
			if !notifIDValid(s.lfd, n.ID) {
				return
			}
			pfd := []unix.PollFd{{Fd: int32(tfd), Events: unix.POLLIN}}
			if c, _ := unix.Poll(pfd, 250); c <= 0 {
				continue
			}
			nfd, _, err := unix.Accept4(tfd, (flags&unix.SOCK_NONBLOCK)|unix.SOCK_CLOEXEC)
			if err == unix.EAGAIN || err == unix.EINTR {
				continue
			}
			if err != nil {
				s.failErr(n, err)
				return
			}
			s.handOver(n, ino, nfd, flags)
			return
		}
	})
}

// handOver injects an accepted socket into the caller and writes the
// original client's address; when the caller is gone, the socket waits
// for the listener's next accept.
func (s *supervisor) handOver(n *notif, ino uint64, nfd int, flags int) {
	a := n.Data.Args
	if a[1] != 0 && a[2] != 0 {
		peer := netip.AddrPort{}
		if pa, err := unix.Getpeername(nfd); err == nil {
			peer = sockAddrPort(pa)
		}
		if ls, err := unix.Getsockname(nfd); err == nil {
			if real, ok := s.sess.PeerOf(sockAddrPort(ls), peer); ok {
				peer = real
			}
		}
		family, _ := unix.GetsockoptInt(nfd, unix.SOL_SOCKET, unix.SO_DOMAIN)
		if peer.IsValid() {
			if err := writeSockaddrOut(int(n.Pid), a[1], a[2], encodeSockaddr(family, peer)); err != nil {
				unix.Close(nfd)
				s.fail(n, unix.EFAULT)
				return
			}
		}
	}
	newfd, err := notifAddFD(s.lfd, n.ID, nfd, flags&unix.SOCK_CLOEXEC != 0)
	if err != nil {
		s.listen.queue(ino, nfd) // the caller was interrupted: keep it for the next accept
		return
	}
	unix.Close(nfd)
	s.stats.injected.Add(1)
	s.ret(n, int64(newfd))
}
