package netfilter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/netns"
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
// app gets ECONNABORTED and its clients a reset, and they reconnect, now
// through the redirect rule. It is how connections opened before a
// subscription (keep-alive clients) start to follow the new rules.
func KillConnections(nsPath string, port uint16) (int, error) {
	var killed int
	var kerr error
	err := netns.Do(nsPath, unix.CLONE_NEWNET, func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
		if err != nil {
			return fmt.Errorf("sock_diag socket: %w", err)
		}
		defer unix.Close(fd)
		for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
			socks, err := dumpTCP(fd, family)
			if err != nil {
				return err
			}
			for _, m := range socks {
				if binary.BigEndian.Uint16(m.ID.Sport[:]) != port {
					continue
				}
				if err := destroy(fd, family, m.ID); err != nil {
					if errors.Is(err, unix.ENOENT) {
						continue // gone meanwhile
					}
					kerr = err
					continue
				}
				killed++
			}
		}
		return nil
	})
	if err == nil {
		err = kerr
	}
	if err != nil && errors.Is(err, unix.EOPNOTSUPP) {
		err = fmt.Errorf("the kernel cannot reset existing connections (CONFIG_INET_DIAG_DESTROY): keep-alive clients keep their old route until they reconnect: %w", err)
	}
	return killed, err
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

func dumpTCP(fd int, family uint8) ([]inetDiagMsg, error) {
	req := inetDiagReqV2{Family: family, Protocol: unix.IPPROTO_TCP, States: 1<<tcpEstablished | 1<<tcpCloseWait}
	msg := nlRequest(sockDiagByFamily, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, reqBytes(&req))
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sock_diag dump: %w", err)
	}
	var out []inetDiagMsg
	buf := make([]byte, 1<<16)
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
			if len(m.Data) < int(unsafe.Sizeof(inetDiagMsg{})) {
				continue
			}
			out = append(out, *(*inetDiagMsg)(unsafe.Pointer(&m.Data[0])))
		}
	}
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
