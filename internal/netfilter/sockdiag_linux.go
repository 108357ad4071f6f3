package netfilter

import (
	"encoding/binary"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// inet_diag structures (linux/inet_diag.h).
type inetDiagSockID struct {
	Sport  [2]byte // big endian
	Dport  [2]byte
	Src    [16]byte
	Dst    [16]byte
	If     uint32
	Cookie [2]uint32
}

type inetDiagReqV2 struct {
	Family   uint8
	Protocol uint8
	Ext      uint8
	Pad      uint8
	States   uint32
	ID       inetDiagSockID
}

type inetDiagMsg struct {
	Family  uint8
	State   uint8
	Timer   uint8
	Retrans uint8
	ID      inetDiagSockID
	Expires uint32
	RQueue  uint32
	WQueue  uint32
	UID     uint32
	Inode   uint32
}

const (
	sockDiagByFamily = 20
	sockDestroy      = 21
	tcpEstablished   = 1
	tcpCloseWait     = 8
)

// KillConnections resets the established TCP connections whose server side
// is port in the network namespace at nsPath (sock_diag SOCK_DESTROY): the
// app gets ECONNABORTED and its clients a reset.
func KillConnections(nsPath string, port uint16) (int, error) {
	d, err := OpenDiag(nsPath)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	conns, err := d.Conns()
	if err != nil {
		return 0, err
	}
	killed := 0
	for _, c := range conns {
		if c.Local.Port() != port {
			continue
		}
		if err := d.Destroy(c); err != nil {
			return killed, err
		}
		killed++
	}
	return killed, nil
}

func nlRequest(typ uint16, flags uint16, body []byte) []byte {
	b := make([]byte, unix.SizeofNlMsghdr+len(body))
	h := (*unix.NlMsghdr)(unsafe.Pointer(&b[0]))
	h.Len = uint32(len(b))
	h.Type = typ
	h.Flags = flags
	h.Seq = 1
	h.Pid = 0
	copy(b[unix.SizeofNlMsghdr:], body)
	return b
}

func reqBytes(r *inetDiagReqV2) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(r)), unsafe.Sizeof(*r))
}

func destroy(fd int, family uint8, id inetDiagSockID) error {
	req := inetDiagReqV2{Family: family, Protocol: unix.IPPROTO_TCP, States: ^uint32(0), ID: id}
	msg := nlRequest(sockDestroy, unix.NLM_F_REQUEST|unix.NLM_F_ACK, reqBytes(&req))
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return err
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if m.Header.Type == unix.NLMSG_ERROR && len(m.Data) >= 4 {
			if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
				return os.NewSyscallError("SOCK_DESTROY", syscall.Errno(-e))
			}
		}
	}
	return nil
}
