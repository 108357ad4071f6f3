package layer

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// seccompInput builds a struct seccomp_data for x/net/bpf's VM. The VM
// loads words big-endian while the kernel's struct is native (little)
// endian, so each 32-bit field the filter loads is stored big-endian here:
// the filter then sees the same values it sees in the kernel.
func seccompInput(arch uint32, nr uint32, args [6]uint64) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[offNr:], nr)
	binary.BigEndian.PutUint32(b[offArch:], arch)
	for i, a := range args {
		binary.BigEndian.PutUint32(b[offArgs+8*i:], uint32(a))
		binary.BigEndian.PutUint32(b[offArgs+8*i+4:], uint32(a>>32))
	}
	return b
}

func TestFilter(t *testing.T) {
	vm, err := bpf.NewVM(filterProgram(false))
	if err != nil {
		t.Fatal(err)
	}
	const someAddr = 0x7ffe_1234_5678
	tests := []struct {
		name string
		arch uint32
		nr   uint32
		args [6]uint64
		want uint32
	}{
		{"foreign arch killed", 0x40000003 /* i386 */, unix.SYS_OPENAT, [6]uint64{}, retKill},
		{"io_uring_setup ENOSYS", auditArch, unix.SYS_IO_URING_SETUP, [6]uint64{}, retENOSYS},
		{"io_uring_enter ENOSYS", auditArch, unix.SYS_IO_URING_ENTER, [6]uint64{}, retENOSYS},
		{"io_uring_register ENOSYS", auditArch, unix.SYS_IO_URING_REGISTER, [6]uint64{}, retENOSYS},
		{"read allowed", auditArch, unix.SYS_READ, [6]uint64{}, retAllow},
		{"write allowed", auditArch, unix.SYS_WRITE, [6]uint64{}, retAllow},
		{"sendmsg trapped", auditArch, unix.SYS_SENDMSG, [6]uint64{}, retNotify},
		{"sendmmsg trapped", auditArch, unix.SYS_SENDMMSG, [6]uint64{}, retNotify},
		{"recvmsg trapped", auditArch, unix.SYS_RECVMSG, [6]uint64{}, retNotify},
		{"recvmmsg trapped", auditArch, unix.SYS_RECVMMSG, [6]uint64{}, retNotify},
		{"recvfrom without address allowed", auditArch, unix.SYS_RECVFROM, [6]uint64{3, someAddr, 10, 0, 0, 0}, retAllow},
		{"recvfrom with address trapped", auditArch, unix.SYS_RECVFROM, [6]uint64{3, someAddr, 10, 0, someAddr, someAddr}, retNotify},
		{"recvfrom address in high word trapped", auditArch, unix.SYS_RECVFROM, [6]uint64{3, someAddr, 10, 0, 1 << 40, someAddr}, retNotify},
		{"recv-style read allowed", auditArch, unix.SYS_READ, [6]uint64{3, someAddr, 10}, retAllow},
		{"openat trapped", auditArch, unix.SYS_OPENAT, [6]uint64{}, retNotify},
		{"connect trapped", auditArch, unix.SYS_CONNECT, [6]uint64{}, retNotify},
		{"getpeername trapped", auditArch, unix.SYS_GETPEERNAME, [6]uint64{}, retNotify},
		{"uname trapped", auditArch, unix.SYS_UNAME, [6]uint64{}, retNotify},
		{"fstat via newfstatat trapped (injected fds)", auditArch, unix.SYS_NEWFSTATAT, [6]uint64{3, someAddr, someAddr, unix.AT_EMPTY_PATH}, retNotify},
		{"fstat trapped", auditArch, unix.SYS_FSTAT, [6]uint64{3, someAddr}, retNotify},
		{"chdir trapped", auditArch, unix.SYS_CHDIR, [6]uint64{someAddr}, retNotify},
		{"getcwd trapped", auditArch, unix.SYS_GETCWD, [6]uint64{someAddr, 4096}, retNotify},
		{"close allowed", auditArch, unix.SYS_CLOSE, [6]uint64{3}, retAllow},
		{"newfstatat path trapped", auditArch, unix.SYS_NEWFSTATAT, [6]uint64{unix.AT_FDCWD & 0xffffffff, someAddr, someAddr, 0}, retNotify},
		{"statx fd trapped", auditArch, unix.SYS_STATX, [6]uint64{3, someAddr, unix.AT_EMPTY_PATH, 0x7ff, someAddr}, retNotify},
		{"statx path trapped", auditArch, unix.SYS_STATX, [6]uint64{3, someAddr, unix.AT_SYMLINK_NOFOLLOW, 0x7ff, someAddr}, retNotify},
		{"sendto connected allowed", auditArch, unix.SYS_SENDTO, [6]uint64{3, someAddr, 10, 0, 0, 0}, retAllow},
		{"sendto with dest trapped", auditArch, unix.SYS_SENDTO, [6]uint64{3, someAddr, 10, 0, someAddr, 16}, retNotify},
		{"sendto dest in high word trapped", auditArch, unix.SYS_SENDTO, [6]uint64{3, someAddr, 10, 0, 1 << 40, 16}, retNotify},
	}
	if hasX32 {
		tests = append(tests, struct {
			name string
			arch uint32
			nr   uint32
			args [6]uint64
			want uint32
		}{"x32 ENOSYS", auditArch, x32SyscallBit | unix.SYS_OPENAT, [6]uint64{}, retENOSYS})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := vm.Run(seccompInput(tt.arch, tt.nr, tt.args))
			if err != nil {
				t.Fatal(err)
			}
			if uint32(got) != tt.want {
				t.Fatalf("filter returned %#x, want %#x", got, tt.want)
			}
		})
	}
	for _, nr := range trapped {
		got, _ := vm.Run(seccompInput(auditArch, nr, [6]uint64{}))
		if uint32(got) != retNotify {
			t.Errorf("syscall %d in trapped list returned %#x", nr, got)
		}
	}
	if _, err := buildFilter(false); err != nil {
		t.Fatal(err)
	}
	// The write-mode filter adds close/fsync/fchmod/fchown; the read-mode
	// one leaves them alone (close is the hottest syscall there is).
	wvm, err := bpf.NewVM(filterProgram(true))
	if err != nil {
		t.Fatal(err)
	}
	for _, nr := range append(append([]uint32(nil), trapped...), writeTrapped...) {
		got, _ := wvm.Run(seccompInput(auditArch, nr, [6]uint64{}))
		if uint32(got) != retNotify {
			t.Errorf("write mode: syscall %d returned %#x, want NOTIFY", nr, got)
		}
	}
	for _, nr := range writeTrapped {
		if got, _ := vm.Run(seccompInput(auditArch, nr, [6]uint64{})); uint32(got) != retAllow {
			t.Errorf("read mode: syscall %d returned %#x, want ALLOW", nr, got)
		}
	}
	if _, err := buildFilter(true); err != nil {
		t.Fatal(err)
	}
}

// FuzzFilter checks the filter's invariants on arbitrary syscall data: a
// foreign architecture is always killed, io_uring never runs, and a
// trapped syscall on x86_64 always reaches the supervisor.
func FuzzFilter(f *testing.F) {
	vm, err := bpf.NewVM(filterProgram(false))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint32(auditArch), uint32(unix.SYS_OPENAT), uint64(0), uint64(0), uint64(0), uint64(0), uint64(0))
	f.Add(uint32(auditArch), uint32(unix.SYS_SENDTO), uint64(3), uint64(1), uint64(0), uint64(0), uint64(1<<33))
	f.Fuzz(func(t *testing.T, arch, nr uint32, a0, a1, a2, a3, a4 uint64) {
		got, err := vm.Run(seccompInput(arch, nr, [6]uint64{a0, a1, a2, a3, a4, 0}))
		if err != nil {
			t.Fatal(err)
		}
		ret := uint32(got)
		switch {
		case arch != auditArch:
			if ret != retKill {
				t.Fatalf("arch %#x nr %d: %#x, want KILL", arch, nr, ret)
			}
		case hasX32 && nr >= x32SyscallBit:
			if ret != retENOSYS {
				t.Fatalf("x32 nr %#x: %#x, want ENOSYS", nr, ret)
			}
		case nr == unix.SYS_IO_URING_SETUP || nr == unix.SYS_IO_URING_ENTER || nr == unix.SYS_IO_URING_REGISTER:
			if ret != retENOSYS {
				t.Fatalf("io_uring nr %d: %#x", nr, ret)
			}
		case ret != retAllow && ret != retNotify:
			t.Fatalf("nr %d: unexpected %#x", nr, ret)
		}
		for _, tr := range trapped {
			if arch == auditArch && nr == tr && ret != retNotify {
				t.Fatalf("trapped nr %d returned %#x", nr, ret)
			}
		}
	})
}
