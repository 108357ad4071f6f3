package layer

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestNormalize: each legacy x86_64 path call becomes the *at call the
// kernel runs for it, with the same arguments.
func TestNormalize(t *testing.T) {
	const p, q, buf = 0x1000, 0x2000, 0x3000
	cwd := uint64(atFDCWD)
	tests := []struct {
		name   string
		nr     uint32
		args   [6]uint64
		wantNr uint32
		want   [6]uint64
	}{
		{"open", unix.SYS_OPEN, [6]uint64{p, unix.O_RDONLY, 0o644}, unix.SYS_OPENAT, [6]uint64{cwd, p, unix.O_RDONLY, 0o644}},
		{"creat", unix.SYS_CREAT, [6]uint64{p, 0o600}, unix.SYS_OPENAT, [6]uint64{cwd, p, unix.O_CREAT | unix.O_WRONLY | unix.O_TRUNC, 0o600}},
		{"stat", unix.SYS_STAT, [6]uint64{p, buf}, unix.SYS_NEWFSTATAT, [6]uint64{cwd, p, buf, 0}},
		{"lstat", unix.SYS_LSTAT, [6]uint64{p, buf}, unix.SYS_NEWFSTATAT, [6]uint64{cwd, p, buf, unix.AT_SYMLINK_NOFOLLOW}},
		{"access", unix.SYS_ACCESS, [6]uint64{p, unix.W_OK}, unix.SYS_FACCESSAT, [6]uint64{cwd, p, unix.W_OK, 0}},
		{"readlink", unix.SYS_READLINK, [6]uint64{p, buf, 64}, unix.SYS_READLINKAT, [6]uint64{cwd, p, buf, 64}},
		{"mkdir", unix.SYS_MKDIR, [6]uint64{p, 0o755}, unix.SYS_MKDIRAT, [6]uint64{cwd, p, 0o755}},
		{"rmdir", unix.SYS_RMDIR, [6]uint64{p}, unix.SYS_UNLINKAT, [6]uint64{cwd, p, unix.AT_REMOVEDIR}},
		{"unlink", unix.SYS_UNLINK, [6]uint64{p}, unix.SYS_UNLINKAT, [6]uint64{cwd, p, 0}},
		{"rename", unix.SYS_RENAME, [6]uint64{p, q}, unix.SYS_RENAMEAT2, [6]uint64{cwd, p, cwd, q, 0}},
		{"chmod", unix.SYS_CHMOD, [6]uint64{p, 0o640}, unix.SYS_FCHMODAT, [6]uint64{cwd, p, 0o640}},
		{"chown", unix.SYS_CHOWN, [6]uint64{p, 1, 2}, unix.SYS_FCHOWNAT, [6]uint64{cwd, p, 1, 2, 0}},
		{"lchown", unix.SYS_LCHOWN, [6]uint64{p, 1, 2}, unix.SYS_FCHOWNAT, [6]uint64{cwd, p, 1, 2, unix.AT_SYMLINK_NOFOLLOW}},
		{"symlink", unix.SYS_SYMLINK, [6]uint64{p, q}, unix.SYS_SYMLINKAT, [6]uint64{p, cwd, q}},
		{"link", unix.SYS_LINK, [6]uint64{p, q}, unix.SYS_LINKAT, [6]uint64{cwd, p, cwd, q, 0}},
		{"openat untouched", unix.SYS_OPENAT, [6]uint64{5, p, 0, 0}, unix.SYS_OPENAT, [6]uint64{5, p, 0, 0}},
	}
	for _, tt := range tests {
		d := seccompData{Nr: int32(tt.nr), Args: tt.args}
		normalize(&d)
		if uint32(d.Nr) != tt.wantNr || d.Args != tt.want {
			t.Errorf("%s: got nr %d args %v, want nr %d args %v", tt.name, d.Nr, d.Args, tt.wantNr, tt.want)
		}
	}
	for _, nr := range legacyTrapped {
		d := seccompData{Nr: int32(nr)}
		normalize(&d)
		if uint32(d.Nr) == nr {
			t.Errorf("trapped legacy syscall %d is not normalised: no handler sees it", nr)
		}
	}
}
