package layer

import (
	"hash/fnv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/protocol"
)

// Path queries: stat, access and readlink of remote and virtual paths,
// answered in the layouts the kernel uses.

// pathQueryArgs decodes the path argument of the *at stat/access/readlink
// calls (the legacy ones arrive in that form, see normalize).
func pathQueryArgs(n *notif) (dirfd int32, ptr uint64) {
	return int32(n.Data.Args[0]), n.Data.Args[1]
}

// onPathQuery handles newfstatat/statx/faccessat*/readlinkat (and so
// stat/lstat/access/readlink).
func (s *supervisor) onPathQuery(n notif) {
	dirfd, ptr := pathQueryArgs(&n)
	p, ok := s.readPath(&n, dirfd, ptr)
	if !ok {
		s.cont(&n)
		return
	}
	if content, ok := s.sess.VirtualFile(p); ok {
		s.answerPathQuery(&n, p, s.virtualStat(p, content), nil, Local)
		return
	}
	if strings.HasPrefix(p, "/proc/") {
		if info, ok := s.magicFD(&n, p); ok {
			s.answerMagicFD(&n, info)
			return
		}
	}
	route := s.routeFile(&n, p)
	if s.answeredLocally(&n, route) {
		return
	}
	s.slow(func() {
		ctx, cancel := s.remoteCtx()
		defer cancel()
		nr := n.Data.Nr
		if nr == unix.SYS_READLINKAT {
			target, err := s.sess.Readlink(ctx, p)
			if err != nil {
				s.failErr(&n, err)
				return
			}
			s.answerReadlink(&n, target)
			return
		}
		st, err := s.sess.Stat(ctx, p, statFollows(&n))
		s.answerPathQuery(&n, p, st, err, route)
	})
}

// statFollows reports whether a stat-family call follows a final symlink.
func statFollows(n *notif) bool {
	a := n.Data.Args
	switch n.Data.Nr {
	case unix.SYS_NEWFSTATAT:
		return a[3]&unix.AT_SYMLINK_NOFOLLOW == 0
	case unix.SYS_STATX:
		return a[2]&unix.AT_SYMLINK_NOFOLLOW == 0
	case unix.SYS_FACCESSAT2:
		return a[3]&unix.AT_SYMLINK_NOFOLLOW == 0
	}
	return true
}

// virtualStat describes a virtual file: the same for every call of a
// session (its times are the session's start, its inode a hash of its path).
func (s *supervisor) virtualStat(p string, content []byte) *protocol.Stat {
	h := fnv.New64a()
	h.Write([]byte(p))
	return &protocol.Stat{Mode: unix.S_IFREG | 0o644, Size: int64(len(content)), Nlink: 1, Blksize: 4096,
		Ino: h.Sum64() >> 1, Blocks: (int64(len(content)) + 511) / 512, Atime: s.started, Mtime: s.started, Ctime: s.started}
}

// answerMagicFD answers a path query on /proc/.../fd/N for an injected fd:
// readlink gives the remote path, a stat that follows the link the remote
// stat.
func (s *supervisor) answerMagicFD(n *notif, info fdInfo) {
	switch {
	case n.Data.Nr == unix.SYS_READLINKAT:
		s.answerReadlink(n, info.path)
	case (n.Data.Nr == unix.SYS_NEWFSTATAT || n.Data.Nr == unix.SYS_STATX) && statFollows(n) && info.st != nil:
		s.writeStat(n, info.st)
	default:
		s.cont(n)
	}
}

func (s *supervisor) answerPathQuery(n *notif, p string, st *protocol.Stat, err error, route Route) {
	a := n.Data.Args
	pid := int(n.Pid)
	if n.Data.Nr == unix.SYS_READLINKAT {
		s.fail(n, unix.EINVAL) // virtual files are not symlinks
		return
	}
	if err != nil {
		s.failErr(n, err)
		return
	}
	switch n.Data.Nr {
	case unix.SYS_NEWFSTATAT:
		if writeMem(pid, a[2], statBytes(st)) != nil {
			s.fail(n, unix.EFAULT)
			return
		}
		s.ret(n, 0)
	case unix.SYS_STATX:
		if writeMem(pid, a[4], statxBytes(st)) != nil {
			s.fail(n, unix.EFAULT)
			return
		}
		s.ret(n, 0)
	case unix.SYS_FACCESSAT, unix.SYS_FACCESSAT2:
		mode := a[2]
		if mode&unix.W_OK != 0 && route != RemoteWrite {
			s.fail(n, unix.EROFS)
			return
		}
		if mode&unix.X_OK != 0 && st.Mode&0o111 == 0 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			s.fail(n, unix.EACCES)
			return
		}
		s.ret(n, 0)
	default:
		s.cont(n)
	}
}

func (s *supervisor) answerReadlink(n *notif, target string) {
	buf, size := n.Data.Args[2], n.Data.Args[3]
	if int64(size) <= 0 {
		s.fail(n, unix.EINVAL)
		return
	}
	b := []byte(target)
	if uint64(len(b)) > size {
		b = b[:size]
	}
	if writeMem(int(n.Pid), buf, b) != nil {
		s.fail(n, unix.EFAULT)
		return
	}
	s.ret(n, int64(len(b)))
}

// statBytes renders st as this architecture's struct stat.
func statBytes(st *protocol.Stat) []byte {
	var k unix.Stat_t
	k.Dev, k.Ino, k.Mode = st.Dev, st.Ino, st.Mode
	k.Nlink = typeOf(k.Nlink, st.Nlink)
	k.Uid, k.Gid, k.Rdev, k.Size = st.Uid, st.Gid, st.Rdev, st.Size
	k.Blksize, k.Blocks = typeOf(k.Blksize, st.Blksize), st.Blocks
	k.Atim = unix.NsecToTimespec(st.Atime)
	k.Mtim = unix.NsecToTimespec(st.Mtime)
	k.Ctim = unix.NsecToTimespec(st.Ctime)
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&k)), unsafe.Sizeof(k))...)
}

// typeOf converts v to the integer type of like (Stat_t's field types
// differ between architectures).
func typeOf[T, V int32 | uint32 | int64 | uint64](like T, v V) T { return T(v) }

func statxTS(ns int64) unix.StatxTimestamp {
	return unix.StatxTimestamp{Sec: ns / 1e9, Nsec: uint32(ns % 1e9)}
}

// statxBytes renders st as struct statx.
func statxBytes(st *protocol.Stat) []byte {
	var k unix.Statx_t
	k.Mask = unix.STATX_BASIC_STATS
	k.Blksize = uint32(st.Blksize)
	k.Nlink = uint32(st.Nlink)
	k.Uid, k.Gid = st.Uid, st.Gid
	k.Mode = uint16(st.Mode)
	k.Ino = st.Ino
	k.Size = uint64(st.Size)
	k.Blocks = uint64(st.Blocks)
	k.Atime, k.Mtime, k.Ctime = statxTS(st.Atime), statxTS(st.Mtime), statxTS(st.Ctime)
	k.Rdev_major, k.Rdev_minor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
	k.Dev_major, k.Dev_minor = unix.Major(st.Dev), unix.Minor(st.Dev)
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&k)), unsafe.Sizeof(k))...)
}
