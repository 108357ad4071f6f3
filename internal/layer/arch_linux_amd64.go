package layer

import "golang.org/x/sys/unix"

// auditArch is the only ABI the filter lets through: a process switching to
// another (int 0x80 for i386 on x86_64) would bypass every check.
const auditArch = unix.AUDIT_ARCH_X86_64

// hasX32 is true where x32 syscalls (nr | 0x40000000) share the ABI and
// must be refused.
const hasX32 = true

// legacyTrapped are x86_64's path syscalls that arm64 never had (it has only
// the *at forms). normalize turns each into its *at equivalent, so the
// handlers deal with one form.
var legacyTrapped = []uint32{
	unix.SYS_OPEN, unix.SYS_CREAT, unix.SYS_STAT, unix.SYS_LSTAT,
	unix.SYS_ACCESS, unix.SYS_READLINK,
	unix.SYS_MKDIR, unix.SYS_RMDIR, unix.SYS_UNLINK, unix.SYS_RENAME,
	unix.SYS_CHMOD, unix.SYS_CHOWN, unix.SYS_LCHOWN, unix.SYS_SYMLINK, unix.SYS_LINK,
}

// normalize rewrites a legacy path syscall as the *at call the kernel
// would run for it (in the supervisor's copy of the notification only).
func normalize(d *seccompData) {
	a := &d.Args
	cwd := uint64(atFDCWD) // the kernel reads dirfd as an int
	switch d.Nr {
	case unix.SYS_OPEN:
		d.Nr, a[0], a[1], a[2], a[3] = unix.SYS_OPENAT, cwd, a[0], a[1], a[2]
	case unix.SYS_CREAT:
		d.Nr, a[0], a[1], a[2], a[3] = unix.SYS_OPENAT, cwd, a[0], unix.O_CREAT|unix.O_WRONLY|unix.O_TRUNC, a[1]
	case unix.SYS_STAT:
		d.Nr, a[0], a[1], a[2], a[3] = unix.SYS_NEWFSTATAT, cwd, a[0], a[1], 0
	case unix.SYS_LSTAT:
		d.Nr, a[0], a[1], a[2], a[3] = unix.SYS_NEWFSTATAT, cwd, a[0], a[1], unix.AT_SYMLINK_NOFOLLOW
	case unix.SYS_ACCESS:
		d.Nr, a[0], a[1], a[2], a[3] = unix.SYS_FACCESSAT, cwd, a[0], a[1], 0
	case unix.SYS_READLINK:
		d.Nr, a[0], a[1], a[2], a[3] = unix.SYS_READLINKAT, cwd, a[0], a[1], a[2]
	case unix.SYS_MKDIR:
		d.Nr, a[0], a[1], a[2] = unix.SYS_MKDIRAT, cwd, a[0], a[1]
	case unix.SYS_RMDIR:
		d.Nr, a[0], a[1], a[2] = unix.SYS_UNLINKAT, cwd, a[0], unix.AT_REMOVEDIR
	case unix.SYS_UNLINK:
		d.Nr, a[0], a[1], a[2] = unix.SYS_UNLINKAT, cwd, a[0], 0
	case unix.SYS_RENAME:
		d.Nr, a[0], a[1], a[2], a[3], a[4] = unix.SYS_RENAMEAT2, cwd, a[0], cwd, a[1], 0
	case unix.SYS_CHMOD:
		d.Nr, a[0], a[1], a[2] = unix.SYS_FCHMODAT, cwd, a[0], a[1]
	case unix.SYS_CHOWN:
		d.Nr, a[0], a[1], a[2], a[3], a[4] = unix.SYS_FCHOWNAT, cwd, a[0], a[1], a[2], 0
	case unix.SYS_LCHOWN:
		d.Nr, a[0], a[1], a[2], a[3], a[4] = unix.SYS_FCHOWNAT, cwd, a[0], a[1], a[2], unix.AT_SYMLINK_NOFOLLOW
	case unix.SYS_SYMLINK:
		d.Nr, a[1], a[2] = unix.SYS_SYMLINKAT, cwd, a[1]
	case unix.SYS_LINK:
		d.Nr, a[0], a[1], a[2], a[3], a[4] = unix.SYS_LINKAT, cwd, a[0], cwd, a[1], 0
	}
}
