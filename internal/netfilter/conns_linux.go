package netfilter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/netns"
)

// Diag lists and resets the TCP connections of one network namespace
// (sock_diag). Its netlink socket is made inside the namespace and stays
// bound to it, so polling does not enter the namespace each time.
type Diag struct {
	fd int
}

// OpenDiag opens a sock_diag socket in the network namespace at nsPath.
func OpenDiag(nsPath string) (*Diag, error) {
	var fd int
	err := netns.Do(nsPath, unix.CLONE_NEWNET, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sock_diag socket in %s: %w", nsPath, err)
	}
	return &Diag{fd: fd}, nil
}

// Close closes the socket.
func (d *Diag) Close() error { return unix.Close(d.fd) }

// Conns returns the namespace's established TCP connections (both
// families), with their queues, marks and idle times.
func (d *Diag) Conns() ([]Conn, error) {
	var out []Conn
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		msgs, err := dumpTCP(d.fd, family, 1<<tcpEstablished, 1<<(inetDiagInfo-1))
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			out = append(out, parseConn(family, m))
		}
	}
	return out, nil
}

// Destroy resets c (SOCK_DESTROY): its owner gets ECONNABORTED and its
// peer a reset. A connection that is gone already is not an error.
func (d *Diag) Destroy(c Conn) error {
	err := destroy(d.fd, c.family, c.id)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("the kernel cannot reset connections (CONFIG_INET_DIAG_DESTROY): %w", err)
	}
	return err
}

// Conn is one TCP connection as sock_diag shows it.
type Conn struct {
	Local, Remote netip.AddrPort
	// RQueue is what the owner has not read yet, WQueue what the peer has
	// not acknowledged yet.
	RQueue, WQueue uint32
	// Mark is the socket's SO_MARK (shown to CAP_NET_ADMIN only).
	Mark uint32
	// SinceSent and SinceRecv are how long ago data last left and arrived.
	// SinceAckRecv is how long ago the peer last acknowledged anything.
	SinceSent, SinceRecv, SinceAckRecv time.Duration
	HasInfo                            bool

	family uint8
	id     inetDiagSockID
}

// Quiet tells whether c is between exchanges, and since when: its owner
// answered last and everything is read and acknowledged (a keep-alive
// connection between two requests, or a server-speaks-first protocol
// waiting for its client). The kernel's times have a resolution of one
// clock tick (1-10 ms), so an answer and the next request in the same tick
// cannot be ordered: then an acknowledgement that arrived after the last
// request shows that an answer came last; without one the state is
// Unsure.
func (c Conn) Quiet() (time.Duration, QuietState) {
	switch {
	case !c.HasInfo || c.RQueue != 0 || c.WQueue != 0 || c.SinceSent > c.SinceRecv:
		return 0, Busy
	case c.SinceSent < c.SinceRecv || c.SinceAckRecv < c.SinceRecv:
		return c.SinceSent, Answered
	}
	return c.SinceSent, Unsure
}

// QuietState is what Conn.Quiet can tell.
type QuietState int

const (
	// Busy: a request is being read or served, or an answer is on its way.
	Busy QuietState = iota
	// Answered: the owner answered last; nothing is in flight.
	Answered
	// Unsure: nothing is in flight, but the last request and answer came
	// in the same clock tick: the owner may be serving that request.
	Unsure
)

// inet_diag attributes (linux/inet_diag.h).
const (
	inetDiagInfo = 2
	inetDiagMark = 15
)

// tcp_info offsets (linux/tcp.h) of the fields read here.
const (
	tcpiLastDataSent = 44
	tcpiLastDataRecv = 52
	tcpiLastAckRecv  = 56
)

func parseConn(family uint8, m diagMsg) Conn {
	c := Conn{family: family, id: m.ID, RQueue: m.RQueue, WQueue: m.WQueue}
	addr := func(b [16]byte) netip.Addr {
		if family == unix.AF_INET {
			return netip.AddrFrom4([4]byte(b[:4]))
		}
		return netip.AddrFrom16(b).Unmap()
	}
	c.Local = netip.AddrPortFrom(addr(m.ID.Src), binary.BigEndian.Uint16(m.ID.Sport[:]))
	c.Remote = netip.AddrPortFrom(addr(m.ID.Dst), binary.BigEndian.Uint16(m.ID.Dport[:]))
	for b := m.attrs; len(b) >= unix.SizeofRtAttr; {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		typ := binary.NativeEndian.Uint16(b[2:4])
		if l < unix.SizeofRtAttr || l > len(b) {
			break
		}
		data := b[unix.SizeofRtAttr:l]
		switch {
		case typ == inetDiagMark && len(data) >= 4:
			c.Mark = binary.NativeEndian.Uint32(data)
		case typ == inetDiagInfo && len(data) >= tcpiLastAckRecv+4:
			c.HasInfo = true
			c.SinceSent = time.Duration(binary.NativeEndian.Uint32(data[tcpiLastDataSent:])) * time.Millisecond
			c.SinceRecv = time.Duration(binary.NativeEndian.Uint32(data[tcpiLastDataRecv:])) * time.Millisecond
			c.SinceAckRecv = time.Duration(binary.NativeEndian.Uint32(data[tcpiLastAckRecv:])) * time.Millisecond
		}
		l = (l + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1)
		if l > len(b) {
			break
		}
		b = b[l:]
	}
	return c
}

// diagMsg is one inet_diag_msg and its attributes.
type diagMsg struct {
	inetDiagMsg
	attrs []byte
}

// dumpTCP lists family's TCP sockets in the states (a bit mask), with the
// extensions ext (a bit mask of 1<<(attribute-1)).
func dumpTCP(fd int, family uint8, states uint32, ext uint8) ([]diagMsg, error) {
	req := inetDiagReqV2{Family: family, Protocol: unix.IPPROTO_TCP, Ext: ext, States: states}
	msg := nlRequest(sockDiagByFamily, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, reqBytes(&req))
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sock_diag dump: %w", err)
	}
	var out []diagMsg
	buf := make([]byte, 1<<16)
	hdr := int(unsafe.Sizeof(inetDiagMsg{}))
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("sock_diag dump: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
						return nil, fmt.Errorf("sock_diag dump: %w", syscall.Errno(-e))
					}
				}
				return out, nil
			}
			if len(m.Data) < hdr {
				continue
			}
			dm := diagMsg{inetDiagMsg: *(*inetDiagMsg)(unsafe.Pointer(&m.Data[0]))}
			dm.attrs = append([]byte(nil), m.Data[hdr:]...)
			out = append(out, dm)
		}
	}
}
