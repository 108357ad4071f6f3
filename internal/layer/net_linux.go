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
	if !ok || dst.Port() == 0 || dst.Addr().IsUnspecified() {
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
	typ, _ := unix.GetsockoptInt(tfd, unix.SOL_SOCKET, unix.SO_TYPE)
	switch {
	case typ == unix.SOCK_STREAM && tcp:
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
	case typ == unix.SOCK_DGRAM && udp:
		s.redirectUDP(n, tfd, family, dst)
		unix.Close(tfd)
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
	v4, v6 := s.sess.TCPProxy()
	proxy := v4
	if family == afInet6 {
		if only, _ := unix.GetsockoptInt(tfd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); only == 1 {
			if !v6.IsValid() {
				s.fail(n, unix.ENETUNREACH)
				return
			}
			proxy = v6
		}
	}
	ctx, cancel := s.remoteCtx()
	pending, err := s.sess.DialTCP(ctx, dst)
	cancel()
	if err != nil {
		s.failErr(n, err)
		return
	}
	// Bind first so the proxy can map the accepted connection (by its peer
	// port) to the pending remote connection without a race.
	la, err := unix.Getsockname(tfd)
	if err != nil {
		pending.Close()
		s.failErr(n, err)
		return
	}
	local := sockAddrPort(la)
	if local.Port() == 0 {
		if err := unix.Bind(tfd, toSockaddr(family, netip.AddrPortFrom(proxy.Addr(), 0))); err != nil {
			pending.Close()
			s.failErr(n, err)
			return
		}
		la, _ = unix.Getsockname(tfd)
		local = sockAddrPort(la)
	}
	s.sess.RegisterTCP(local.Port(), pending)
	// Same open file description as the caller's fd: a non-blocking caller
	// gets EINPROGRESS here exactly as from the kernel and then polls its
	// own fd; a blocking one gets 0.
	err = unix.Connect(tfd, toSockaddr(family, proxy))
	switch err {
	case nil, unix.EISCONN:
		s.ret(n, 0)
	default:
		s.failErr(n, err)
	}
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
	s.ret(n, 0)
}

// onSendto handles sendto with a destination (unconnected UDP, e.g. musl's
// resolver): the destination in the caller's memory is rewritten to the
// session's relay for it and the syscall continues. Rewriting the caller's
// own copy keeps resolvers that check the reply's source address happy.
func (s *supervisor) onSendto(n *notif) {
	a := n.Data.Args
	raw, ok := s.readSockaddr(n, a[4], a[5])
	if !ok {
		s.cont(n)
		return
	}
	dst, family, ok := parseSockaddr(raw)
	if !ok || dst.Port() == 0 || !s.sess.OutgoingRemote("udp", dst) {
		s.cont(n)
		return
	}
	relay, err := s.sess.UDPRelay(dst)
	if err != nil {
		s.fail(n, unix.ENETUNREACH)
		return
	}
	nb := encodeSockaddr(family, relay)
	if len(nb) > len(raw) {
		s.cont(n)
		return
	}
	if err := writeMem(int(n.Pid), a[4], nb); err != nil {
		s.cont(n)
		return
	}
	s.cont(n)
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
	if err := s.writeSockaddrOut(n, addrPtr, lenPtr, sa); err != nil {
		s.fail(n, unix.EFAULT)
		return
	}
	s.ret(n, 0)
}

// writeSockaddrOut fills a (sockaddr *, socklen_t *) result pair the way
// the kernel does: truncate to the caller's length, report the full length.
func (s *supervisor) writeSockaddrOut(n *notif, addrPtr, lenPtr uint64, sa []byte) error {
	l, err := readU32(int(n.Pid), lenPtr)
	if err != nil {
		return err
	}
	if int(l) > len(sa) {
		l = uint32(len(sa))
	}
	var lb [4]byte
	binary.LittleEndian.PutUint32(lb[:], uint32(len(sa)))
	if l > 0 {
		if err := writeMem(int(n.Pid), addrPtr, sa[:l]); err != nil {
			return err
		}
	}
	return writeMem(int(n.Pid), lenPtr, lb[:])
}
