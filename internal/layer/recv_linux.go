package layer

import (
	"time"

	"golang.org/x/sys/unix"
)

// recvTarget is where one received datagram goes in the caller: its data
// buffers, and the address (and for recvmsg the control and flags) fields.
type recvTarget struct {
	iovs  []unix.RemoteIovec
	size  int    // bytes the iovecs hold (capped at maxDatagram)
	hdr   uint64 // the caller's msghdr (recvmsg, recvmmsg), or 0
	h     msghdr
	addr  uint64 // recvfrom: src_addr and addrlen pointers
	alen  uint64
	mmsgI int // recvmmsg: index of this message, -1 otherwise
}

// onRecv does recvfrom/recvmsg/recvmmsg for the caller when the socket
// sent through a relay, so the source it reports is the real peer.
// Everything else (no address asked for, other sockets, the error queue)
// continues in the kernel.
func (s *supervisor) onRecv(n *notif) {
	a := n.Data.Args
	pid := int(n.Pid)
	var targets []recvTarget
	var flags int
	switch n.Data.Nr {
	case unix.SYS_RECVFROM:
		flags = int(a[3])
		size := int(min(a[2], maxDatagram))
		targets = []recvTarget{{iovs: []unix.RemoteIovec{{Base: uintptr(a[1]), Len: size}}, size: size, addr: a[4], alen: a[5], mmsgI: -1}}
	case unix.SYS_RECVMSG:
		flags = int(a[2])
		h, err := readMsghdr(pid, a[1])
		if err != nil || h.name == 0 {
			s.cont(n)
			return
		}
		targets = []recvTarget{{hdr: a[1], h: h, mmsgI: -1}}
	case unix.SYS_RECVMMSG:
		flags = int(a[3])
		vlen := min(a[2], maxIov)
		raw := make([]byte, vlen*sizeofMmsghdr)
		if vlen == 0 {
			s.cont(n)
			return
		}
		if _, err := readMem(pid, a[1], raw); err != nil {
			s.cont(n)
			return
		}
		named := false
		for i := range int(vlen) {
			h := parseMsghdr(raw[i*sizeofMmsghdr:])
			named = named || h.name != 0
			targets = append(targets, recvTarget{hdr: a[1] + uint64(i)*sizeofMmsghdr, h: h, mmsgI: i})
		}
		if !named {
			s.cont(n)
			return
		}
	}
	if flags&unix.MSG_ERRQUEUE != 0 {
		s.cont(n)
		return
	}
	fd := int(int32(a[0]))
	if ino, ok := socketInode(pid, fd); !ok || !s.relayed.has(ino) {
		s.cont(n)
		return
	}
	for i := range targets {
		t := &targets[i]
		if t.hdr == 0 {
			continue
		}
		iovs, total, err := readIovecs(pid, t.h.iov, t.h.iovlen)
		if err != nil {
			s.failErr(n, err)
			return
		}
		t.iovs, t.size = iovs, min(total, maxDatagram)
	}
	tfd, err := s.getfd(n, fd)
	if err != nil {
		if err != errStale {
			s.cont(n)
		}
		return
	}
	family, _ := unix.GetsockoptInt(tfd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	blocking := flags&unix.MSG_DONTWAIT == 0 && !nonblocking(tfd)
	// attempt receives what is there without waiting; it answers the
	// caller unless nothing was there and the caller waits for data.
	attempt := func(n *notif) (wait bool) {
		got, err := s.receive(pid, tfd, family, targets, flags|unix.MSG_DONTWAIT)
		switch {
		case err == unix.EAGAIN && blocking:
			return true
		case err != nil:
			s.failErr(n, err)
		default:
			s.ret(n, int64(got))
		}
		return false
	}
	if !attempt(n) {
		unix.Close(tfd)
		return
	}
	// A blocking receive: wait on its own goroutine, honouring SO_RCVTIMEO,
	// and give up when the caller goes away (a signal, its exit).
	nv := *n
	s.slow(func() {
		defer unix.Close(tfd)
		n := &nv
		var deadline time.Time
		if tv, err := unix.GetsockoptTimeval(tfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO); err == nil && (tv.Sec != 0 || tv.Usec != 0) {
			deadline = time.Now().Add(time.Duration(tv.Nano()))
		}
		for {
			if !notifIDValid(s.lfd, n.ID) {
				return
			}
			wait := 250 * time.Millisecond
			if !deadline.IsZero() {
				left := time.Until(deadline)
				if left <= 0 {
					s.fail(n, unix.EAGAIN)
					return
				}
				wait = min(wait, left)
			}
			pfd := []unix.PollFd{{Fd: int32(tfd), Events: unix.POLLIN}}
			if c, _ := unix.Poll(pfd, int(wait/time.Millisecond)+1); c <= 0 {
				continue
			}
			if !attempt(n) {
				return
			}
		}
	})
}

// receive reads datagrams from tfd into the caller's targets: one for
// recvfrom/recvmsg (the result is the kernel's byte count), as many as are
// there for recvmmsg (the result is the count, at least one). A relay's
// address as the source is replaced by the peer it stands for.
func (s *supervisor) receive(pid, tfd, family int, targets []recvTarget, flags int) (int, error) {
	count := 0
	for i := range targets {
		t := &targets[i]
		f := flags
		if i > 0 {
			f |= unix.MSG_DONTWAIT
		}
		buf := make([]byte, t.size)
		var oob []byte
		if t.hdr != 0 && t.h.control != 0 {
			oob = make([]byte, min(t.h.controllen, maxControl))
		}
		k, oobn, rflags, from, err := unix.Recvmsg(tfd, buf, oob, f&^unix.MSG_WAITFORONE)
		if err != nil {
			if i == 0 {
				return 0, err
			}
			break
		}
		if err := scatter(pid, t.iovs, buf[:min(k, len(buf))]); err != nil {
			return 0, err
		}
		var sa []byte
		if from != nil {
			src := sockAddrPort(from)
			if real, ok := s.sess.RelayPeer(src); ok {
				src = real
			}
			sa = encodeSockaddr(family, src)
		}
		if err := s.writeRecvResult(pid, t, sa, oob[:oobn], rflags, k); err != nil {
			return 0, err
		}
		if t.mmsgI < 0 {
			return k, nil
		}
		count++
	}
	return count, nil
}

// writeRecvResult fills the caller's address, control, flags and (for
// recvmmsg) length fields the way the kernel does.
func (s *supervisor) writeRecvResult(pid int, t *recvTarget, sa, oob []byte, rflags, k int) error {
	if t.hdr == 0 { // recvfrom
		if t.addr == 0 || t.alen == 0 || sa == nil {
			return nil
		}
		return writeSockaddrOut(pid, t.addr, t.alen, sa)
	}
	if t.h.name != 0 && sa != nil {
		if l := min(int(t.h.namelen), len(sa)); l > 0 {
			if err := writeMem(pid, t.h.name, sa[:l]); err != nil {
				return unix.EFAULT
			}
		}
	}
	if err := putU32(pid, t.hdr+offNamelen, uint32(len(sa))); err != nil {
		return unix.EFAULT
	}
	if len(oob) > 0 {
		if err := writeMem(pid, t.h.control, oob); err != nil {
			return unix.EFAULT
		}
	}
	if t.h.control != 0 || t.h.controllen != 0 {
		if err := putU64(pid, t.hdr+offControllen, uint64(len(oob))); err != nil {
			return unix.EFAULT
		}
	}
	if err := putU32(pid, t.hdr+offMsgFlags, uint32(rflags)); err != nil {
		return unix.EFAULT
	}
	if t.mmsgI >= 0 {
		return putU32(pid, t.hdr+offMsgLen, uint32(k))
	}
	return nil
}
