package layer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/protocol"
)

// remoteTimeout bounds one file request to the agent.
const remoteTimeout = 60 * time.Second

func (s *supervisor) remoteCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, remoteTimeout)
}

// openArgs decodes openat/openat2 arguments (open and creat arrive as
// openat, see normalize).
func openArgs(n *notif) (dirfd int32, pathPtr uint64, flags uint64, mode uint32, ok bool) {
	a := n.Data.Args
	switch n.Data.Nr {
	case unix.SYS_OPENAT:
		return int32(a[0]), a[1], a[2], uint32(a[3]), true
	case unix.SYS_OPENAT2:
		var how unix.OpenHow
		b := unsafe.Slice((*byte)(unsafe.Pointer(&how)), unsafe.Sizeof(how))
		if _, err := readMem(int(n.Pid), a[2], b); err != nil {
			return 0, 0, 0, 0, false
		}
		return int32(a[0]), a[1], how.Flags, uint32(how.Mode), true
	}
	return 0, 0, 0, 0, false
}

func wantsWrite(flags uint64) bool {
	return flags&unix.O_ACCMODE != unix.O_RDONLY || flags&(unix.O_CREAT|unix.O_TRUNC) != 0
}

func (s *supervisor) onOpen(n notif) {
	dirfd, ptr, flags, mode, ok := openArgs(&n)
	if !ok {
		s.cont(&n)
		return
	}
	p, ok := s.readPath(&n, dirfd, ptr)
	if !ok {
		s.cont(&n)
		return
	}
	if content, ok := s.sess.VirtualFile(p); ok {
		if wantsWrite(flags) {
			s.fail(&n, unix.EROFS)
			return
		}
		s.injectContent(&n, p, bytes.NewReader(content), flags, s.virtualStat(p, content))
		return
	}
	route := s.routeFile(&n, p)
	if s.answeredLocally(&n, route) {
		return
	}
	s.slow(func() { s.openRemote(&n, p, flags, mode, route) })
}

func (s *supervisor) openRemote(n *notif, p string, flags uint64, mode uint32, route Route) {
	ctx, cancel := s.remoteCtx()
	defer cancel()
	if wantsWrite(flags) {
		if route != RemoteWrite {
			// A read-only file system: EROFS, unless the path is simply missing.
			if _, err := s.sess.Stat(ctx, p, true); errnoOf(err) == unix.ENOENT && (flags&unix.O_CREAT == 0 || s.parentMissing(ctx, p)) {
				s.fail(n, unix.ENOENT)
				return
			}
			s.fail(n, unix.EROFS)
			return
		}
		s.wb.open(ctx, n, p, flags, mode)
		return
	}
	s.wb.flushPath(ctx, p) // a reader sees what a writer here wrote
	if flags&unix.O_DIRECTORY == 0 {
		st, rc, err := s.sess.ReadFile(ctx, p)
		if err == nil {
			defer rc.Close()
			s.injectContent(n, p, io.LimitReader(rc, st.Size), flags, st)
			return
		}
		if errnoOf(err) != unix.EISDIR {
			s.failErr(n, err)
			return
		}
	}
	s.openRemoteDir(ctx, n, p, flags)
}

// parentMissing reports whether p's directory does not exist remotely (a
// create there is ENOENT even on a read-only file system).
func (s *supervisor) parentMissing(ctx context.Context, p string) bool {
	_, err := s.sess.Stat(ctx, path.Dir(p), true)
	return errnoOf(err) == unix.ENOENT
}

var shadowGen atomic.Int64

// openRemoteDir materialises a remote directory listing as a shadow
// directory of empty entries (so getdents and d_type work natively) and
// injects it. Lookups relative to it map back to the remote path.
func (s *supervisor) openRemoteDir(ctx context.Context, n *notif, p string, flags uint64) {
	entries, dst, err := s.sess.ReadDir(ctx, p)
	if err == nil && dst == nil { // an older agent: ask separately
		dst, err = s.sess.Stat(ctx, p, true)
	}
	if err != nil {
		s.failErr(n, err)
		return
	}
	dir := path.Join(s.shadowDir, strconv.FormatInt(shadowGen.Add(1), 10), p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		s.failErr(n, err)
		return
	}
	for _, e := range entries {
		if e.Name == "" || strings.Contains(e.Name, "/") || e.Name == "." || e.Name == ".." {
			continue
		}
		ep := path.Join(dir, e.Name)
		switch e.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			os.Mkdir(ep, 0o700)
		case unix.S_IFLNK:
			os.Symlink("remote", ep)
		default:
			if f, err := os.OpenFile(ep, os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
				f.Close()
			}
		}
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		s.failErr(n, err)
		return
	}
	defer unix.Close(fd)
	s.fds.add(fd, fdInfo{path: p, st: dst})
	s.inject(n, fd, flags)
}

// shadowToRemote maps a path inside the shadow tree back to the remote path.
func (s *supervisor) shadowToRemote(p string) (string, bool) {
	rest, ok := strings.CutPrefix(p, s.shadowDir+"/")
	if !ok {
		return "", false
	}
	_, after, _ := strings.Cut(rest, "/") // drop the generation
	return "/" + after, true
}

// injectContent puts r's bytes in a sealed memfd and injects it; its
// fstat reports st.
func (s *supervisor) injectContent(n *notif, name string, r io.Reader, flags uint64, st *protocol.Stat) {
	fd, err := sealedMemfd(name, r)
	if err != nil {
		s.failErr(n, err)
		return
	}
	defer unix.Close(fd)
	s.fds.add(fd, fdInfo{path: name, st: st})
	s.injectReadOnly(n, fd, flags)
}

// injectReadOnly re-opens the memfd read-only (so F_GETFL and writes behave
// as on a read-only file) and injects that.
func (s *supervisor) injectReadOnly(n *notif, memfd int, flags uint64) {
	ro, err := unix.Open("/proc/self/fd/"+strconv.Itoa(memfd), unix.O_RDONLY|unix.O_CLOEXEC|int(flags&unix.O_NONBLOCK), 0)
	if err != nil {
		s.failErr(n, err)
		return
	}
	defer unix.Close(ro)
	s.inject(n, ro, flags)
}

// inject installs fd in the caller and answers the open with its number.
func (s *supervisor) inject(n *notif, fd int, flags uint64) {
	newfd, err := notifAddFD(s.lfd, n.ID, fd, flags&unix.O_CLOEXEC != 0)
	if err != nil {
		if err != unix.ENOENT && err != unix.ESRCH {
			s.log.Debug("ADDFD failed", "err", err)
			s.fail(n, unix.EMFILE)
		}
		return // interrupted or exiting: the kernel restarts or drops the call
	}
	s.stats.injected.Add(1)
	s.ret(n, int64(newfd))
}

// sealedMemfd returns a memfd holding r's bytes, sealed against changes.
func sealedMemfd(name string, r io.Reader) (int, error) {
	fd, err := unix.MemfdCreate("tether:"+name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return -1, err
	}
	dup, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	f.Close()
	if err != nil {
		return -1, err
	}
	unix.FcntlInt(uintptr(dup), unix.F_ADD_SEALS, unix.F_SEAL_WRITE|unix.F_SEAL_GROW|unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL)
	return dup, nil
}

// onXattr: remote files have no extended attributes (ls -l asks for
// security.selinux and ACLs).
func (s *supervisor) onXattr(n *notif) {
	p, ok := s.readPath(n, unix.AT_FDCWD, n.Data.Args[0])
	if !ok {
		s.cont(n)
		return
	}
	if _, virtual := s.sess.VirtualFile(p); !virtual && s.routeFile(n, p) == Local {
		s.cont(n)
		return
	}
	if n.Data.Nr == unix.SYS_LISTXATTR || n.Data.Nr == unix.SYS_LLISTXATTR {
		s.ret(n, 0)
		return
	}
	s.fail(n, unix.ENODATA)
}

// modifyArgs decodes mkdirat/unlinkat/renameat* arguments (and so
// mkdir/rmdir/unlink/rename) into absolute paths (to is set for renames).
func (s *supervisor) modifyArgs(n *notif) (op string, from, to string, perm uint32, ok bool) {
	a := n.Data.Args
	get := func(dirfd int32, ptr uint64) string {
		p, good := s.readPath(n, dirfd, ptr)
		if !good {
			ok = false
		}
		return p
	}
	ok = true
	switch n.Data.Nr {
	case unix.SYS_MKDIRAT:
		return "mkdir", get(int32(a[0]), a[1]), "", uint32(a[2]), ok
	case unix.SYS_UNLINKAT:
		return "remove", get(int32(a[0]), a[1]), "", 0, ok
	case unix.SYS_RENAMEAT, unix.SYS_RENAMEAT2:
		return "rename", get(int32(a[0]), a[1]), get(int32(a[2]), a[3]), 0, ok
	}
	return "", "", "", 0, false
}

func (s *supervisor) onModify(n notif) {
	op, from, to, perm, ok := s.modifyArgs(&n)
	if !ok {
		s.cont(&n)
		return
	}
	route := s.routeFile(&n, from)
	if _, virtual := s.sess.VirtualFile(from); virtual {
		route = RemoteRead
	}
	if op == "rename" {
		toRoute := s.routeFile(&n, to)
		if (route == Local) != (toRoute == Local) {
			s.fail(&n, unix.EXDEV) // across file systems, as the kernel says
			return
		}
	}
	switch route {
	case Local:
		s.cont(&n)
		return
	case NotFound:
		s.fail(&n, unix.ENOENT)
		return
	case RemoteRead:
		s.fail(&n, unix.EROFS)
		return
	}
	s.slow(func() {
		ctx, cancel := s.remoteCtx()
		defer cancel()
		var err error
		switch op {
		case "mkdir":
			err = s.sess.Mkdir(ctx, from, perm&^umaskOf(int(n.Pid)))
		case "remove":
			s.wb.flushPath(ctx, from) // pending writes land first, then go
			err = s.sess.Remove(ctx, from)
		case "rename":
			s.wb.flushPath(ctx, from)
			s.wb.flushPath(ctx, to)
			err = s.sess.Rename(ctx, from, to)
		}
		if err != nil {
			s.failErr(&n, err)
			return
		}
		s.ret(&n, 0)
	})
}

// umaskOf reads a process's umask (0022 when unknown).
func umaskOf(pid int) uint32 {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Umask:"); ok {
			if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
				return uint32(m)
			}
		}
	}
	return 0o022
}
