package layer

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Kernel ABI of seccomp user notification (include/uapi/linux/seccomp.h);
// x/sys/unix has the constants and ioctl numbers but not these structs.
const (
	x32SyscallBit = 0x40000000

	offNr   = 0  // offsetof(struct seccomp_data, nr)
	offArch = 4  // offsetof(struct seccomp_data, arch)
	offArgs = 16 // args[i] at 16+8*i, little endian: low word first
)

type seccompData struct {
	Nr   int32
	Arch uint32
	IP   uint64
	Args [6]uint64
}

type notif struct { // struct seccomp_notif
	ID    uint64
	Pid   uint32
	Flags uint32
	Data  seccompData

	// viaRemote is the supervisor's own (after the kernel's struct): the
	// call's relative path was resolved against a remote directory (a
	// remote cwd or a remote directory's fd), so it names a remote file.
	viaRemote bool
}

type notifResp struct { // struct seccomp_notif_resp
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

type notifAddfd struct { // struct seccomp_notif_addfd
	ID         uint64
	Flags      uint32
	Srcfd      uint32
	Newfd      uint32
	NewfdFlags uint32
}

// trapped are the syscalls that always go to the supervisor, on every
// architecture (legacyTrapped adds x86_64's old path calls).
var trapped = append([]uint32{
	unix.SYS_CONNECT, unix.SYS_GETPEERNAME,
	unix.SYS_BIND, unix.SYS_LISTEN, unix.SYS_ACCEPT, unix.SYS_ACCEPT4,
	// sendmsg/sendmmsg may carry a destination in their msghdr, and
	// recvmsg/recvmmsg report a datagram's source there: the filter cannot
	// look inside, so all of them go to the supervisor.
	unix.SYS_SENDMSG, unix.SYS_SENDMMSG, unix.SYS_RECVMSG, unix.SYS_RECVMMSG,
	unix.SYS_OPENAT, unix.SYS_OPENAT2,
	unix.SYS_NEWFSTATAT, unix.SYS_STATX,
	unix.SYS_FACCESSAT, unix.SYS_FACCESSAT2,
	unix.SYS_READLINKAT,
	unix.SYS_GETXATTR, unix.SYS_LGETXATTR, unix.SYS_LISTXATTR, unix.SYS_LLISTXATTR,
	unix.SYS_UNAME,
	unix.SYS_MKDIRAT, unix.SYS_UNLINKAT,
	unix.SYS_RENAMEAT, unix.SYS_RENAMEAT2,
	// fstat and the fd xattr calls: injected fds report the remote
	// file's identity.
	unix.SYS_FSTAT, unix.SYS_FGETXATTR, unix.SYS_FLISTXATTR,
	// The working directory can be remote (emulated, see cwd_linux.go).
	unix.SYS_CHDIR, unix.SYS_FCHDIR, unix.SYS_GETCWD,
	unix.SYS_EXECVE, unix.SYS_EXECVEAT,
	// Metadata and links: remote in write mode, EROFS in read mode.
	unix.SYS_FCHMODAT, unix.SYS_FCHMODAT2, unix.SYS_FCHOWNAT, unix.SYS_UTIMENSAT,
	unix.SYS_TRUNCATE, unix.SYS_SYMLINKAT, unix.SYS_LINKAT,
}, legacyTrapped...)

// writeTrapped are trapped only when remote files can be written (fs.mode
// write, or fs.read_write): close and fsync of a local copy wait for its
// upload, fchmod/fchown of one change the target's file.
var writeTrapped = []uint32{
	unix.SYS_CLOSE, unix.SYS_FSYNC, unix.SYS_FDATASYNC, unix.SYS_FCHMOD, unix.SYS_FCHOWN,
}

// Filter return values.
const (
	retAllow  = unix.SECCOMP_RET_ALLOW
	retNotify = unix.SECCOMP_RET_USER_NOTIF
	retENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	retKill   = unix.SECCOMP_RET_KILL_PROCESS
)

// filterProgram is the classic-BPF program, in order:
//
//	arch != auditArch                    -> KILL_PROCESS (a foreign ABI would bypass the checks)
//	x32 syscall (x86_64)                 -> ENOSYS
//	io_uring_*                           -> ENOSYS (io_uring would bypass the filter)
//	sendto with dest_addr != NULL        -> NOTIFY (unconnected UDP), else ALLOW
//	recvfrom with src_addr != NULL       -> NOTIFY (the source may be a relay), else ALLOW
//	trapped                              -> NOTIFY
//	everything else                      -> ALLOW
//
// The launch trampoline installs the filter before it hands the listener
// over, so it uses only untrapped calls (write, read) for that.
func filterProgram(writes bool) []bpf.Instruction {
	ret := func(v uint32) bpf.Instruction { return bpf.RetConstant{Val: v} }
	ldArgLow := func(i int) bpf.Instruction { return bpf.LoadAbsolute{Off: uint32(offArgs + 8*i), Size: 4} }
	ldArgHigh := func(i int) bpf.Instruction { return bpf.LoadAbsolute{Off: uint32(offArgs + 8*i + 4), Size: 4} }
	p := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: auditArch, SkipTrue: 1},
		ret(retKill),
		bpf.LoadAbsolute{Off: offNr, Size: 4},
	}
	if hasX32 {
		p = append(p,
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32SyscallBit, SkipFalse: 1},
			ret(retENOSYS),
		)
	}
	for _, nr := range []uint32{unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER} {
		p = append(p, bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipFalse: 1}, ret(retENOSYS))
	}
	// sendto(fd, buf, len, flags, dest_addr, addrlen) and
	// recvfrom(fd, buf, len, flags, src_addr, addrlen): the address is arg4.
	for _, nr := range []uint32{unix.SYS_SENDTO, unix.SYS_RECVFROM} {
		p = append(p,
			bpf.LoadAbsolute{Off: offNr, Size: 4},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipFalse: 6},
			ldArgLow(4),
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0, SkipTrue: 2},
			ldArgHigh(4),
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0, SkipFalse: 1},
			ret(retNotify),
			ret(retAllow),
		)
	}
	p = append(p, bpf.LoadAbsolute{Off: offNr, Size: 4})
	all := trapped
	if writes {
		all = append(all[:len(all):len(all)], writeTrapped...)
	}
	for _, nr := range all {
		p = append(p, bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipFalse: 1}, ret(retNotify))
	}
	return append(p, ret(retAllow))
}

// buildFilter assembles filterProgram for the kernel.
func buildFilter(writes bool) ([]unix.SockFilter, error) {
	raw, err := bpf.Assemble(filterProgram(writes))
	if err != nil {
		return nil, fmt.Errorf("assembling seccomp filter: %w", err)
	}
	out := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out, nil
}

// Filter flags: NEW_LISTENER|TSYNC alone is EINVAL, TSYNC_ESRCH fixes it;
// WAIT_KILLABLE_RECV (5.19) keeps the two-step ADDFD from leaking fds.
const filterFlags = unix.SECCOMP_FILTER_FLAG_NEW_LISTENER | unix.SECCOMP_FILTER_FLAG_TSYNC |
	unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH | unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV

// installFilter sets no_new_privs and installs the filter on every thread
// of the calling process, returning the notification listener fd.
func installFilter(writes bool) (int, error) {
	prog, err := buildFilter(writes)
	if err != nil {
		return -1, err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return -1, fmt.Errorf("PR_SET_NO_NEW_PRIVS: %w", err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	fd, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, filterFlags, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return -1, fmt.Errorf("seccomp(SET_MODE_FILTER, %#x): %w", filterFlags, errno)
	}
	return int(fd), nil
}

func ioctlPtr(fd int, req uintptr, p unsafe.Pointer) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(p))
	if errno != 0 {
		return r, errno
	}
	return r, nil
}

func notifRecv(lfd int, n *notif) error {
	*n = notif{} // the kernel wants a zeroed buffer
	_, err := ioctlPtr(lfd, unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(n))
	return err
}

func notifSend(lfd int, r *notifResp) error {
	_, err := ioctlPtr(lfd, unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(r))
	return err
}

func notifIDValid(lfd int, id uint64) bool {
	_, err := ioctlPtr(lfd, unix.SECCOMP_IOCTL_NOTIF_ID_VALID, unsafe.Pointer(&id))
	return err == nil
}

// notifAddFD installs srcfd into the trapped process and returns its number
// there. Never with SECCOMP_ADDFD_FLAG_SEND: a signal hitting the
// supervisor inside that ioctl can leave the notification answered with 0
// (seen on 6.18); inject first, then reply.
func notifAddFD(lfd int, id uint64, srcfd int, cloexec bool) (int, error) {
	a := notifAddfd{ID: id, Srcfd: uint32(srcfd)}
	if cloexec {
		a.NewfdFlags = unix.O_CLOEXEC
	}
	r, err := ioctlPtr(lfd, unix.SECCOMP_IOCTL_NOTIF_ADDFD, unsafe.Pointer(&a))
	return int(r), err
}

// readMem reads the trapped process's memory (needs the same rights as ptrace attach).
func readMem(pid int, addr uint64, buf []byte) (int, error) {
	if len(buf) == 0 {
		return 0, nil
	}
	local := []unix.Iovec{{Base: &buf[0], Len: uint64(len(buf))}}
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(buf)}}
	return unix.ProcessVMReadv(pid, local, remote, 0)
}

func writeMem(pid int, addr uint64, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	local := []unix.Iovec{{Base: &buf[0], Len: uint64(len(buf))}}
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(buf)}}
	n, err := unix.ProcessVMWritev(pid, local, remote, 0)
	if err == nil && n != len(buf) {
		err = fmt.Errorf("short write to process memory: %d of %d bytes", n, len(buf))
	}
	return err
}

// readString reads a NUL-terminated string page by page (one iovec would
// fail at an unmapped page even when the NUL comes before it).
func readString(pid int, addr uint64) (string, error) {
	if addr == 0 {
		return "", unix.EFAULT
	}
	var out []byte
	var small [256]byte
	buf := small[:]
	for len(out) < unix.PathMax {
		// Most paths are short: read 256 bytes first, then whole pages,
		// never across a page end (the next page may be unmapped).
		chunk := min(len(buf), 4096-int(addr%4096))
		n, err := readMem(pid, addr, buf[:chunk])
		if err != nil {
			return "", err
		}
		for i := 0; i < n; i++ {
			if buf[i] == 0 {
				return string(append(out, buf[:i]...)), nil
			}
		}
		out = append(out, buf[:n]...)
		addr += uint64(n)
		if len(buf) < 4096 {
			buf = make([]byte, 4096)
		}
	}
	return "", unix.ENAMETOOLONG
}

func readU32(pid int, addr uint64) (uint32, error) {
	var b [4]byte
	if _, err := readMem(pid, addr, b[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b[:]), nil
}

// atFDCWD is AT_FDCWD as the 32-bit register value a caller passes.
const atFDCWD = uint32(0xffffff9c)
