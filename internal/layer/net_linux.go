package layer

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

func utsnameBytes(u *unix.Utsname) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(u)), unsafe.Sizeof(*u))
}

// readSockaddr reads a sockaddr argument from the trapped process.
func (s *supervisor) readSockaddr(n *notif, ptr, l uint64) ([]byte, bool) {
	if l < 2 || l > 128 || ptr == 0 {
		return nil, false
	}
	raw := make([]byte, l)
	if _, err := readMem(int(n.Pid), ptr, raw); err != nil {
		return nil, false
	}
	return raw, true
}

func sockAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
}

func toSockaddr(family int, ap netip.AddrPort) unix.Sockaddr {
	if family == afInet {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// onConnect redirects TCP and UDP connects to remote destinations: the
// socket (shared with the caller through pidfd_getfd) is connected to the
// session's local proxy or relay instead, and the caller gets the kernel's
// own result (0, EINPROGRESS, ...).
func (s *supervisor) onConnect(n *notif) {
	a := n.Data.Args
	raw, ok := s.readSockaddr(n, a[1], a[2])
	if !ok {
		s.cont(n)
		return
	}
	dst, family, ok := parseSockaddr(raw)
	if !ok || dst.Addr().IsUnspecified() {
		s.cont(n)
		return
	}
	tcp := s.sess.OutgoingRemote("tcp", dst)
	udp := s.sess.OutgoingRemote("udp", dst)
	if !tcp && !udp {
		s.cont(n)
		return
	}
	tfd, err := s.getfd(n, int(int32(a[0])))
	if err != nil {
		if err != errStale {
			s.cont(n) // let the kernel report EBADF/ENOTSOCK
		}
		return
	}
	switch kind := socketKind(tfd); {
	case dst.Port() == 0 && (kind == kindTCP || kind == kindUDP):
		// Port 0 is never relayed, and must not leave from here either.
		unix.Close(tfd)
		if kind == kindTCP {
			s.fail(n, unix.ECONNREFUSED)
		} else {
			s.fail(n, unix.ENETUNREACH)
		}
	case kind == kindTCP && tcp:
		if s.alreadyProxied(tfd) {
			// A connect restarted after a signal: the socket is already ours.
			unix.Close(tfd)
			s.ret(n, 0)
			return
		}
		nv := *n
		s.slow(func() {
			defer unix.Close(tfd)
			s.redirectTCP(&nv, tfd, family, dst)
		})
	case kind == kindUDP && udp:
		s.redirectUDP(n, tfd, family, dst)
		unix.Close(tfd)
	case kind == kindOtherInet:
		// Raw and ICMP sockets have no relay: a remote peer is unreachable
		// from here, and their packets must not leave through this machine.
		unix.Close(tfd)
		s.fail(n, unix.ENETUNREACH)
	default:
		unix.Close(tfd)
		s.cont(n)
	}
}

// alreadyProxied reports whether the socket is already connected to the proxy.
func (s *supervisor) alreadyProxied(tfd int) bool {
	pa, err := unix.Getpeername(tfd)
	if err != nil {
		return false
	}
	v4, v6 := s.sess.TCPProxy()
	p := sockAddrPort(pa)
	return p == v4 || (v6.IsValid() && p == v6)
}

func (s *supervisor) redirectTCP(n *notif, tfd, family int, dst netip.AddrPort) {
	switch err := s.connectViaProxy(tfd, family, dst); err {
	case nil, unix.EISCONN:
		s.ret(n, 0)
	default:
		s.failErr(n, err)
	}
}

// connectViaProxy dials dst through the target, then connects the
// caller's socket to the session's local proxy, which joins the two. Same
// open file description as the caller's fd: a non-blocking caller gets
// EINPROGRESS here exactly as from the kernel and then polls its own fd.
func (s *supervisor) connectViaProxy(tfd, family int, dst netip.AddrPort) error {
	v4, v6 := s.sess.TCPProxy()
	proxy := v4
	if family == afInet6 {
		if only, _ := unix.GetsockoptInt(tfd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); only == 1 {
			if !v6.IsValid() {
				return unix.ENETUNREACH
			}
			proxy = v6
		}
	}
	ctx, cancel := s.remoteCtx()
	pending, err := s.sess.DialTCP(ctx, dst)
	cancel()
	if err != nil {
		return err
	}
	// Bind first so the proxy can map the accepted connection (by its peer
	// port) to the pending remote connection without a race.
	la, err := unix.Getsockname(tfd)
	if err != nil {
		pending.Close()
		return err
	}
	local := sockAddrPort(la)
	if local.Port() == 0 {
		if err := unix.Bind(tfd, toSockaddr(family, netip.AddrPortFrom(proxy.Addr(), 0))); err != nil {
			pending.Close()
			return err
		}
		la, _ = unix.Getsockname(tfd)
		local = sockAddrPort(la)
	}
	s.sess.RegisterTCP(local.Port(), pending)
	return unix.Connect(tfd, toSockaddr(family, proxy))
}

func (s *supervisor) redirectUDP(n *notif, tfd, family int, dst netip.AddrPort) {
	relay, err := s.sess.UDPRelay(dst)
	if err != nil {
		s.log.Debug("udp relay", "dst", dst.String(), "err", err)
		s.fail(n, unix.ENETUNREACH)
		return
	}
	if err := unix.Connect(tfd, toSockaddr(family, relay)); err != nil {
		s.failErr(n, err)
		return
	}
	s.relayed.add(inodeOf(tfd))
	s.ret(n, 0)
}

// onGetpeername reports the real destination for sockets connected to the
// proxy or a relay.
func (s *supervisor) onGetpeername(n *notif) {
	a := n.Data.Args
	tfd, err := s.getfd(n, int(int32(a[0])))
	if err != nil {
		if err != errStale {
			s.cont(n)
		}
		return
	}
	defer unix.Close(tfd)
	pa, err := unix.Getpeername(tfd)
	if err != nil {
		s.cont(n)
		return
	}
	la, err := unix.Getsockname(tfd)
	if err != nil {
		s.cont(n)
		return
	}
	real, ok := s.sess.PeerOf(sockAddrPort(la), sockAddrPort(pa))
	if !ok {
		s.cont(n)
		return
	}
	family, _ := unix.GetsockoptInt(tfd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	s.writeSockaddrResult(n, a[1], a[2], encodeSockaddr(family, real))
}

// writeSockaddrResult answers a getpeername-style call with sa.
func (s *supervisor) writeSockaddrResult(n *notif, addrPtr, lenPtr uint64, sa []byte) {
	if err := writeSockaddrOut(int(n.Pid), addrPtr, lenPtr, sa); err != nil {
		s.fail(n, unix.EFAULT)
		return
	}
	s.ret(n, 0)
}

// writeSockaddrOut fills a (sockaddr *, socklen_t *) result pair the way
// the kernel does: truncate to the caller's length, report the full length.
func writeSockaddrOut(pid int, addrPtr, lenPtr uint64, sa []byte) error {
	l, err := readU32(pid, lenPtr)
	if err != nil {
		return err
	}
	if int(l) > len(sa) {
		l = uint32(len(sa))
	}
	var lb [4]byte
	binary.LittleEndian.PutUint32(lb[:], uint32(len(sa)))
	if l > 0 {
		if err := writeMem(pid, addrPtr, sa[:l]); err != nil {
			return err
		}
	}
	return writeMem(pid, lenPtr, lb[:])
}
