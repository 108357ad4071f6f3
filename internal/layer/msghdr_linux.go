package layer

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// struct msghdr and struct mmsghdr as a 64-bit caller lays them out
// (x86_64 and arm64 alike).
const (
	sizeofMsghdr  = 56
	sizeofMmsghdr = 64 // msghdr, then unsigned int msg_len, padded
	offMsgLen     = 56 // offsetof(struct mmsghdr, msg_len)
	offNamelen    = 8
	offControllen = 40
	offMsgFlags   = 48

	// maxIov is the kernel's UIO_MAXIOV: more iovecs are EMSGSIZE.
	maxIov = 1024
	// maxDatagram bounds what the supervisor copies for one datagram.
	maxDatagram = 1 << 16
	// maxControl bounds a control buffer (the kernel's optmem_max default is 20 KiB).
	maxControl = 64 << 10
)

// msghdr is a caller's struct msghdr.
type msghdr struct {
	name       uint64
	namelen    uint32
	iov        uint64
	iovlen     uint64
	control    uint64
	controllen uint64
	flags      int32
}

func parseMsghdr(b []byte) msghdr {
	le := binary.LittleEndian
	return msghdr{
		name: le.Uint64(b[0:]), namelen: le.Uint32(b[8:]),
		iov: le.Uint64(b[16:]), iovlen: le.Uint64(b[24:]),
		control: le.Uint64(b[32:]), controllen: le.Uint64(b[40:]),
		flags: int32(le.Uint32(b[48:])),
	}
}

func readMsghdr(pid int, addr uint64) (msghdr, error) {
	var b [sizeofMsghdr]byte
	if _, err := readMem(pid, addr, b[:]); err != nil {
		return msghdr{}, unix.EFAULT
	}
	return parseMsghdr(b[:]), nil
}

// readIovecs reads a caller's iovec array and the total length it describes.
func readIovecs(pid int, addr, count uint64) ([]unix.RemoteIovec, int, error) {
	if count == 0 {
		return nil, 0, nil
	}
	if count > maxIov {
		return nil, 0, unix.EMSGSIZE
	}
	raw := make([]byte, 16*count)
	if _, err := readMem(pid, addr, raw); err != nil {
		return nil, 0, unix.EFAULT
	}
	iovs := make([]unix.RemoteIovec, 0, count)
	total := 0
	for i := uint64(0); i < count; i++ {
		base := binary.LittleEndian.Uint64(raw[16*i:])
		l := binary.LittleEndian.Uint64(raw[16*i+8:])
		if l > 1<<31 || total+int(l) > 1<<31 {
			return nil, 0, unix.EINVAL
		}
		if l == 0 {
			continue
		}
		iovs = append(iovs, unix.RemoteIovec{Base: uintptr(base), Len: int(l)})
		total += int(l)
	}
	return iovs, total, nil
}

// gather reads the bytes the caller's iovecs describe.
func gather(pid int, iovs []unix.RemoteIovec, total int) ([]byte, error) {
	buf := make([]byte, total)
	if total == 0 {
		return buf, nil
	}
	local := []unix.Iovec{{Base: &buf[0], Len: uint64(total)}}
	n, err := unix.ProcessVMReadv(pid, local, iovs, 0)
	if err != nil || n != total {
		return nil, unix.EFAULT
	}
	return buf, nil
}

// scatter writes data into the caller's iovecs (as much as they hold).
func scatter(pid int, iovs []unix.RemoteIovec, data []byte) error {
	if len(data) == 0 || len(iovs) == 0 {
		return nil
	}
	var out []unix.RemoteIovec
	left := len(data)
	for _, v := range iovs {
		if left == 0 {
			break
		}
		v.Len = min(v.Len, left)
		out = append(out, v)
		left -= v.Len
	}
	n := len(data) - left
	local := []unix.Iovec{{Base: &data[0], Len: uint64(n)}}
	w, err := unix.ProcessVMWritev(pid, local, out, 0)
	if err != nil || w != n {
		return unix.EFAULT
	}
	return nil
}

func putU32(pid int, addr uint64, v uint32) error {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	return writeMem(pid, addr, b[:])
}

func putU64(pid int, addr uint64, v uint64) error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	return writeMem(pid, addr, b[:])
}
