package layer

import (
	"os"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/protocol"
)

// Remote identity of injected fds. A remote file the program opens is a
// sealed memfd, a remote directory a shadow directory, a file opened for
// writing a local copy: to the kernel they are local objects with their own
// mode, owner, times and inode. fstat (and fstatat/statx with AT_EMPTY_PATH,
// fgetxattr, readlink of /proc/self/fd/N) on them is answered with the
// remote file's identity instead, so a program sees one consistent file:
// what stat says of the path is what fstat says of the fd (cp, tar, rsync
// and git compare the two).

// memfdPrefix starts the /proc/PID/fd link of every memfd tether injects.
const memfdPrefix = "/memfd:tether:"

// fdInfo is what an injected object stands for.
type fdInfo struct {
	path string
	st   *protocol.Stat // the remote stat at open (nil for a new write-back file)
	wb   *wbFile        // set for write-back copies: size and times are live
}

type fileKey struct{ dev, ino uint64 }

// fdRegistry maps injected objects (by local dev/ino) to their remote
// identity; objects not looked up for a whole generation are forgotten
// (their fstat falls back to the kernel's).
type fdRegistry struct{ m genMap[fileKey, fdInfo] }

func (r *fdRegistry) add(fd int, info fdInfo) {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) == nil {
		r.m.put(fileKey{st.Dev, st.Ino}, info)
	}
}

func (r *fdRegistry) get(k fileKey) (fdInfo, bool) { return r.m.get(k) }

// remoteFD returns the remote identity of the caller's fd, if it is an
// object the supervisor injected. One readlink tells most fds apart.
func (s *supervisor) remoteFD(tid, fd int) (fdInfo, bool) {
	p := "/proc/" + strconv.Itoa(tid) + "/fd/" + strconv.Itoa(fd)
	link, err := os.Readlink(p)
	if err != nil || !(strings.HasPrefix(link, memfdPrefix) || strings.HasPrefix(link, s.tmp+"/")) {
		return fdInfo{}, false
	}
	var st unix.Stat_t
	if unix.Stat(p, &st) != nil {
		return fdInfo{}, false
	}
	info, ok := s.fds.get(fileKey{st.Dev, st.Ino})
	if !ok {
		return fdInfo{}, false
	}
	if info.wb != nil {
		info.st = info.wb.liveStat(&st)
	}
	return info, true
}

// onFstat answers fstat, and fstatat/statx with AT_EMPTY_PATH and an
// empty path, for injected fds; a non-empty path is a path query.
func (s *supervisor) onFstat(n notif) {
	a := n.Data.Args
	var fd int
	switch n.Data.Nr {
	case unix.SYS_FSTAT:
		fd = int(int32(a[0]))
	default: // newfstatat, statx with AT_EMPTY_PATH
		raw, err := readString(int(n.Pid), a[1])
		if err != nil {
			s.cont(&n)
			return
		}
		if raw != "" {
			s.onPathQuery(n)
			return
		}
		fd = int(int32(a[0]))
		if int32(a[0]) == unix.AT_FDCWD {
			if cwd, ok := s.cwd.of(int(n.Pid)); ok {
				s.slow(func() { s.statRemote(&n, cwd) })
				return
			}
			s.cont(&n)
			return
		}
	}
	info, ok := s.remoteFD(int(n.Pid), fd)
	if !ok || info.st == nil {
		s.cont(&n)
		return
	}
	s.writeStat(&n, info.st)
}

// statRemote answers a stat-family call with path p's remote stat.
func (s *supervisor) statRemote(n *notif, p string) {
	ctx, cancel := s.remoteCtx()
	defer cancel()
	st, err := s.sess.Stat(ctx, p, true)
	if err != nil {
		s.failErr(n, err)
		return
	}
	s.writeStat(n, st)
}

// writeStat writes st in the layout the call expects and answers 0.
func (s *supervisor) writeStat(n *notif, st *protocol.Stat) {
	a := n.Data.Args
	var buf uint64
	var out []byte
	switch n.Data.Nr {
	case unix.SYS_FSTAT:
		buf, out = a[1], statBytes(st)
	case unix.SYS_NEWFSTATAT:
		buf, out = a[2], statBytes(st)
	case unix.SYS_STATX:
		buf, out = a[4], statxBytes(st)
	default:
		s.fail(n, unix.ENOSYS)
		return
	}
	if writeMem(int(n.Pid), buf, out) != nil {
		s.fail(n, unix.EFAULT)
		return
	}
	s.ret(n, 0)
}

// onFxattr: injected fds stand for remote files, which have no extended
// attributes here (like their paths, see onXattr).
func (s *supervisor) onFxattr(n *notif) {
	if _, ok := s.remoteFD(int(n.Pid), int(int32(n.Data.Args[0]))); !ok {
		s.cont(n)
		return
	}
	if n.Data.Nr == unix.SYS_FLISTXATTR {
		s.ret(n, 0)
		return
	}
	s.fail(n, unix.ENODATA)
}

// procFD matches /proc/{self,thread-self,PID}[/task/TID]/fd/N.
var procFD = regexp.MustCompile(`^/proc/(self|thread-self|[0-9]+)(?:/task/([0-9]+))?/fd/([0-9]+)$`)

// magicFD resolves a /proc/.../fd/N path to the remote identity of that fd
// when it is an injected one.
func (s *supervisor) magicFD(n *notif, p string) (fdInfo, bool) {
	m := procFD.FindStringSubmatch(p)
	if m == nil {
		return fdInfo{}, false
	}
	var owner int
	switch {
	case m[2] != "":
		owner, _ = strconv.Atoi(m[2])
	case m[1] == "self":
		owner = tgidOf(int(n.Pid))
	case m[1] == "thread-self":
		owner = int(n.Pid)
	default:
		owner, _ = strconv.Atoi(m[1])
	}
	fd, err := strconv.Atoi(m[3])
	if err != nil || owner <= 0 {
		return fdInfo{}, false
	}
	return s.remoteFD(owner, fd)
}
