package layer

import (
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Datagrams. A sendto/sendmsg/sendmmsg whose destination is remote is sent
// by the supervisor itself, on the caller's socket (pidfd_getfd), to the
// session's relay for that destination: nothing is rewritten in the
// caller's memory, so a destination in read-only memory is redirected too,
// and nothing remote ever leaves through this machine's own interfaces.
// recvfrom/recvmsg/recvmmsg on a socket that used a relay are done by the
// supervisor too, so every datagram's source is the real peer, not the
// relay's local address.

// sockKind is what a socket is, as far as redirection goes.
type sockKind int

const (
	kindNotInet sockKind = iota // AF_UNIX, netlink...: never redirected
	kindTCP
	kindUDP
	kindOtherInet // raw, ICMP, SCTP...: no relay, so a remote destination fails
)

func socketKind(tfd int) sockKind {
	dom, _ := unix.GetsockoptInt(tfd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if dom != unix.AF_INET && dom != unix.AF_INET6 {
		return kindNotInet
	}
	typ, _ := unix.GetsockoptInt(tfd, unix.SOL_SOCKET, unix.SO_TYPE)
	proto, _ := unix.GetsockoptInt(tfd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	switch {
	case typ == unix.SOCK_STREAM && proto != unix.IPPROTO_SCTP:
		return kindTCP
	case typ == unix.SOCK_DGRAM && proto == unix.IPPROTO_UDP:
		return kindUDP
	}
	return kindOtherInet
}

func nonblocking(tfd int) bool {
	fl, _ := unix.FcntlInt(uintptr(tfd), unix.F_GETFL, 0)
	return fl&unix.O_NONBLOCK != 0
}

// relayedSockets remembers (by inode) the sockets that sent through a
// relay, whose receives the supervisor must do.
type relayedSockets struct{ m genMap[uint64, struct{}] }

func (r *relayedSockets) add(ino uint64) {
	if ino != 0 {
		r.m.put(ino, struct{}{})
	}
}

func (r *relayedSockets) has(ino uint64) bool {
	_, ok := r.m.get(ino)
	return ok
}

// socketInode returns the inode of the caller's fd if it is a socket,
// from /proc (one readlink: cheaper than taking the fd).
func socketInode(tid, fd int) (uint64, bool) {
	link, err := os.Readlink("/proc/" + strconv.Itoa(tid) + "/fd/" + strconv.Itoa(fd))
	if err != nil {
		return 0, false
	}
	num, ok := strings.CutPrefix(link, "socket:[")
	if !ok || !strings.HasSuffix(num, "]") {
		return 0, false
	}
	ino, err := strconv.ParseUint(num[:len(num)-1], 10, 64)
	return ino, err == nil
}

// destination reads and parses a destination sockaddr; ok is false when
// there is none, it is not IPv4/IPv6, or the session keeps it local.
func (s *supervisor) destination(n *notif, ptr, l uint64) (dst netip.AddrPort, family int, ok bool) {
	raw, ok := s.readSockaddr(n, ptr, l)
	if !ok {
		return dst, 0, false
	}
	dst, family, ok = parseSockaddr(raw)
	if !ok || dst.Addr().IsUnspecified() || !s.remoteAny(dst) {
		return dst, family, false
	}
	return dst, family, true
}

// remoteAny reports whether dst is remote for TCP or UDP.
func (s *supervisor) remoteAny(dst netip.AddrPort) bool {
	return s.sess.OutgoingRemote("udp", dst) || s.sess.OutgoingRemote("tcp", dst)
}

// dgram is one datagram to send from the caller's socket.
type dgram struct {
	data, oob []byte
	to        unix.Sockaddr // nil: the socket's connected peer
}

// onSendto handles sendto with a destination.
func (s *supervisor) onSendto(n *notif) {
	a := n.Data.Args
	dst, family, ok := s.destination(n, a[4], a[5])
	if !ok {
		s.cont(n)
		return
	}
	s.redirectSend(n, int(int32(a[0])), family, dst, int(a[3]), func() (dgram, error) {
		if a[2] > maxDatagram {
			return dgram{}, unix.EMSGSIZE
		}
		buf := make([]byte, a[2])
		if _, err := readMem(int(n.Pid), a[1], buf); err != nil {
			return dgram{}, unix.EFAULT
		}
		return dgram{data: buf}, nil
	})
}

// onSendmsg handles sendmsg: one message, perhaps with a destination.
func (s *supervisor) onSendmsg(n *notif) {
	a := n.Data.Args
	h, err := readMsghdr(int(n.Pid), a[1])
	if err != nil || h.name == 0 {
		s.cont(n) // no destination (or EFAULT): the kernel handles it
		return
	}
	dst, family, ok := s.destination(n, h.name, uint64(h.namelen))
	if !ok {
		s.cont(n)
		return
	}
	s.redirectSend(n, int(int32(a[0])), family, dst, int(a[2]), func() (dgram, error) {
		return readMessage(int(n.Pid), h)
	})
}

// readMessage reads the data and control bytes of a caller's msghdr.
func readMessage(pid int, h msghdr) (dgram, error) {
	iovs, total, err := readIovecs(pid, h.iov, h.iovlen)
	if err != nil {
		return dgram{}, err
	}
	if total > maxDatagram {
		return dgram{}, unix.EMSGSIZE
	}
	data, err := gather(pid, iovs, total)
	if err != nil {
		return dgram{}, err
	}
	var oob []byte
	if h.control != 0 && h.controllen > 0 {
		if h.controllen > maxControl {
			return dgram{}, unix.ENOBUFS
		}
		oob = make([]byte, h.controllen)
		if _, err := readMem(pid, h.control, oob); err != nil {
			return dgram{}, unix.EFAULT
		}
	}
	return dgram{data: data, oob: oob}, nil
}

// redirectSend sends one message for a remote destination from the
// caller's fd: through the relay (UDP), or by connecting through the
// session first (TCP fast open); other sockets cannot reach it.
func (s *supervisor) redirectSend(n *notif, fd, family int, dst netip.AddrPort, flags int, payload func() (dgram, error)) {
	tfd, err := s.getfd(n, fd)
	if err != nil {
		if err != errStale {
			s.cont(n) // EBADF, ENOTSOCK: the kernel says so
		}
		return
	}
	switch socketKind(tfd) {
	case kindUDP:
		if dst.Port() == 0 || !s.sess.OutgoingRemote("udp", dst) {
			break
		}
		relay, err := s.sess.UDPRelay(dst)
		if err != nil {
			unix.Close(tfd)
			s.log.Debug("udp relay", "dst", dst.String(), "err", err)
			s.fail(n, unix.ENETUNREACH)
			return
		}
		m, err := payload()
		if err != nil {
			unix.Close(tfd)
			s.failErr(n, err)
			return
		}
		m.to = toSockaddr(family, relay)
		s.relayed.add(inodeOf(tfd))
		s.sendDatagrams(n, tfd, []dgram{m}, flags, 0)
		return
	case kindTCP:
		if flags&unix.MSG_FASTOPEN == 0 || !s.sess.OutgoingRemote("tcp", dst) {
			break // a connected stream ignores the address
		}
		m, err := payload()
		if err != nil {
			unix.Close(tfd)
			s.failErr(n, err)
			return
		}
		nv := *n
		s.slow(func() { s.fastOpen(&nv, tfd, family, dst, m.data, flags) })
		return
	case kindOtherInet:
		// Raw and ICMP sockets have no relay: fail rather than send from here.
		unix.Close(tfd)
		s.fail(n, unix.ENETUNREACH)
		return
	}
	unix.Close(tfd)
	s.cont(n)
}

// fastOpen emulates sendto(MSG_FASTOPEN) to a remote address: connect
// through the session, then send the data.
func (s *supervisor) fastOpen(n *notif, tfd, family int, dst netip.AddrPort, data []byte, flags int) {
	defer unix.Close(tfd)
	err := s.connectViaProxy(tfd, family, dst)
	if err == unix.EINPROGRESS {
		pfd := []unix.PollFd{{Fd: int32(tfd), Events: unix.POLLOUT}}
		unix.Poll(pfd, int(remoteTimeout/time.Millisecond))
		err = nil
	}
	if err != nil && err != unix.EISCONN {
		s.failErr(n, err)
		return
	}
	k, err := unix.SendmsgN(tfd, data, nil, nil, flags&^unix.MSG_FASTOPEN)
	if err != nil {
		s.failErr(n, err)
		return
	}
	s.ret(n, int64(k))
}

// onSendmmsg handles sendmmsg: when any message has a remote destination,
// the supervisor sends them all, in order.
func (s *supervisor) onSendmmsg(n *notif) {
	a := n.Data.Args
	pid := int(n.Pid)
	vec, vlen, flags := a[1], min(a[2], maxIov), int(a[3])
	if vlen == 0 {
		s.cont(n)
		return
	}
	raw := make([]byte, vlen*sizeofMmsghdr)
	if _, err := readMem(pid, vec, raw); err != nil {
		s.cont(n)
		return
	}
	hdrs := make([]msghdr, vlen)
	remote := false
	for i := range hdrs {
		hdrs[i] = parseMsghdr(raw[i*sizeofMmsghdr:])
		if hdrs[i].name != 0 {
			if _, _, ok := s.destination(n, hdrs[i].name, uint64(hdrs[i].namelen)); ok {
				remote = true
			}
		}
	}
	if !remote {
		s.cont(n)
		return
	}
	tfd, err := s.getfd(n, int(int32(a[0])))
	if err != nil {
		if err != errStale {
			s.cont(n)
		}
		return
	}
	switch socketKind(tfd) {
	case kindUDP:
	case kindOtherInet:
		unix.Close(tfd)
		s.fail(n, unix.ENETUNREACH)
		return
	default:
		unix.Close(tfd)
		s.cont(n)
		return
	}
	msgs := make([]dgram, 0, len(hdrs))
	for i, h := range hdrs {
		m, err := readMessage(pid, h)
		if err == nil && h.name != 0 {
			m.to, err = s.sendTarget(n, h)
		}
		if err != nil {
			if i == 0 {
				unix.Close(tfd)
				s.failErr(n, err)
				return
			}
			break // the kernel sends the messages before the bad one
		}
		msgs = append(msgs, m)
	}
	s.relayed.add(inodeOf(tfd))
	s.sendDatagrams(n, tfd, msgs, flags, vec)
}

// sendTarget is where a message with a destination goes: its relay when
// the destination is remote, else the destination itself.
func (s *supervisor) sendTarget(n *notif, h msghdr) (unix.Sockaddr, error) {
	raw, ok := s.readSockaddr(n, h.name, uint64(h.namelen))
	if !ok {
		return nil, unix.EINVAL
	}
	dst, family, ok := parseSockaddr(raw)
	if !ok {
		return nil, unix.EAFNOSUPPORT
	}
	if dst.Port() == 0 || !s.sess.OutgoingRemote("udp", dst) {
		return toSockaddr(family, dst), nil
	}
	relay, err := s.sess.UDPRelay(dst)
	if err != nil {
		return nil, unix.ENETUNREACH
	}
	return toSockaddr(family, relay), nil
}

// sendDatagrams sends msgs from tfd (and closes it) and answers the
// caller: bytes sent for one message, or the count (with each msg_len
// written at mmsg) for sendmmsg. A send that would block a blocking
// caller waits on its own goroutine.
func (s *supervisor) sendDatagrams(n *notif, tfd int, msgs []dgram, flags int, mmsg uint64) {
	pid := int(n.Pid)
	// run sends with flags and answers, or reports that it would block
	// when mayWait (the caller blocks, so the goroutine tries again).
	run := func(n *notif, flags int, mayWait bool) (wouldBlock bool) {
		sent, nbytes := 0, 0
		var first error
		for i, m := range msgs {
			k, err := unix.SendmsgN(tfd, m.data, m.oob, m.to, flags)
			if err != nil {
				first = err
				break
			}
			if mmsg != 0 && putU32(pid, mmsg+uint64(i)*sizeofMmsghdr+offMsgLen, uint32(k)) != nil {
				break
			}
			sent, nbytes = sent+1, k
		}
		switch {
		case sent == 0 && first == unix.EAGAIN && mayWait:
			return true
		case sent == 0:
			s.failErr(n, first)
		case mmsg != 0:
			s.ret(n, int64(sent))
		default:
			s.ret(n, int64(nbytes))
		}
		return false
	}
	blocking := flags&unix.MSG_DONTWAIT == 0 && !nonblocking(tfd)
	if !blocking || len(msgs) == 1 {
		// First without blocking: a datagram to the relay on loopback
		// almost never waits.
		if !run(n, flags|unix.MSG_DONTWAIT, blocking) {
			unix.Close(tfd)
			return
		}
	}
	nv := *n
	s.slow(func() {
		defer unix.Close(tfd)
		run(&nv, flags, false)
	})
}
