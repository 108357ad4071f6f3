package layer

import (
	"encoding/binary"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/protocol"
)

// File metadata and links on remote paths: chmod, chown, utimensat,
// truncate, symlink and link reach the target in write mode and fail with
// EROFS in read mode, as on a read-only mount. On a file open for writing
// (a local copy), the fd calls go to the target too, and the copy's times
// follow it at each upload; close and fsync return only once the target has
// the data (or with the error it gave).

// metaOp is one decoded metadata call on a path.
type metaOp struct {
	path   string
	follow bool
	attr   protocol.Attr
	// symlink: target is the link's content; link: to is the new name.
	kind   string // "attr", "symlink", "link"
	target string
	to     string
}

// onMeta handles fchmodat(2), fchownat, utimensat, truncate, symlinkat,
// linkat (and so chmod, chown, lchown, symlink, link).
func (s *supervisor) onMeta(n notif) {
	a := n.Data.Args
	pid := int(n.Pid)
	var op metaOp
	dirfd, ptr := int32(a[0]), a[1]
	flags := uint64(0)
	switch n.Data.Nr {
	case unix.SYS_FCHMODAT, unix.SYS_FCHMODAT2:
		m := uint32(a[2]) & 0o7777
		op.attr.Mode = &m
		if n.Data.Nr == unix.SYS_FCHMODAT2 {
			flags = a[3]
		}
	case unix.SYS_FCHOWNAT:
		op.attr.Uid, op.attr.Gid = owner(a[2]), owner(a[3])
		flags = a[4]
	case unix.SYS_UTIMENSAT:
		flags = a[3]
		if !s.decodeTimes(pid, a[2], &op.attr) {
			s.fail(&n, unix.EFAULT)
			return
		}
	case unix.SYS_TRUNCATE:
		dirfd, ptr = unix.AT_FDCWD, a[0]
		size := int64(a[1])
		op.attr.Size = &size
	case unix.SYS_SYMLINKAT:
		target, err := readString(pid, a[0])
		if err != nil {
			s.cont(&n)
			return
		}
		op.kind, op.target = "symlink", target
		dirfd, ptr = int32(a[1]), a[2]
	case unix.SYS_LINKAT:
		flags = a[4]
		op.kind = "link"
	}
	if op.kind == "" {
		op.kind = "attr"
	}
	op.follow = flags&unix.AT_SYMLINK_NOFOLLOW == 0
	if n.Data.Nr == unix.SYS_LINKAT {
		op.follow = flags&unix.AT_SYMLINK_FOLLOW != 0
	}
	if ptr == 0 || (flags&unix.AT_EMPTY_PATH != 0 && emptyString(pid, ptr)) {
		s.onFdMeta(n, op) // futimens, fchownat(fd, "", AT_EMPTY_PATH)
		return
	}
	p, ok := s.readPath(&n, dirfd, ptr)
	if !ok {
		s.cont(&n)
		return
	}
	op.path = p
	route := s.routeFile(&n, p)
	if op.kind == "link" {
		to, ok := s.readPath(&n, int32(a[2]), a[3])
		if !ok {
			s.cont(&n)
			return
		}
		op.to = to
		if toRoute := s.routeFile(&n, to); (route == Local) != (toRoute == Local) {
			s.fail(&n, unix.EXDEV)
			return
		} else if toRoute != RemoteWrite && route == RemoteWrite {
			route = toRoute
		}
	}
	if _, virtual := s.sess.VirtualFile(p); virtual {
		route = RemoteRead
	}
	if s.answeredLocally(&n, route) {
		return
	}
	s.slow(func() {
		ctx, cancel := s.remoteCtx()
		defer cancel()
		if route == RemoteRead {
			// A read-only file system: EROFS for what exists (and for new
			// links), ENOENT for a missing file.
			missing := false
			switch op.kind {
			case "attr":
				_, err := s.sess.Stat(ctx, p, op.follow)
				missing = errnoOf(err) == unix.ENOENT
			case "symlink":
				missing = s.parentMissing(ctx, p)
			case "link":
				_, err := s.sess.Stat(ctx, p, op.follow)
				missing = errnoOf(err) == unix.ENOENT || s.parentMissing(ctx, op.to)
			}
			if missing {
				s.fail(&n, unix.ENOENT)
				return
			}
			s.fail(&n, unix.EROFS)
			return
		}
		s.wb.flushPath(ctx, p) // a pending upload first: ordered as written
		var err error
		switch op.kind {
		case "symlink":
			err = s.sess.Symlink(ctx, op.target, p)
		case "link":
			s.wb.flushPath(ctx, op.to)
			err = s.sess.Link(ctx, p, op.to, op.follow)
		default:
			err = s.sess.SetAttr(ctx, p, op.follow, op.attr)
		}
		if err != nil {
			s.failErr(&n, err)
			return
		}
		s.ret(&n, 0)
	})
}

// owner decodes a chown id argument (-1: unchanged).
func owner(v uint64) *int64 {
	id := int64(int32(v))
	if id == -1 {
		return nil
	}
	return &id
}

func emptyString(pid int, ptr uint64) bool {
	var b [1]byte
	_, err := readMem(pid, ptr, b[:])
	return err == nil && b[0] == 0
}

// decodeTimes reads utimensat's struct timespec[2] (NULL: both now).
func (s *supervisor) decodeTimes(pid int, ptr uint64, a *protocol.Attr) bool {
	if ptr == 0 {
		a.AtimeNow, a.MtimeNow = true, true
		return true
	}
	var b [32]byte
	if _, err := readMem(pid, ptr, b[:]); err != nil {
		return false
	}
	for i, dst := range []struct {
		ns  **int64
		now *bool
	}{{&a.Atime, &a.AtimeNow}, {&a.Mtime, &a.MtimeNow}} {
		sec := int64(binary.LittleEndian.Uint64(b[16*i:]))
		nsec := int64(binary.LittleEndian.Uint64(b[16*i+8:]))
		switch nsec {
		case unix.UTIME_OMIT:
		case unix.UTIME_NOW:
			*dst.now = true
		default:
			v := time.Unix(sec, nsec).UnixNano()
			*dst.ns = &v
		}
	}
	return true
}

// onFdMeta handles metadata calls on an fd (futimens, fchmod, fchown,
// fchownat with AT_EMPTY_PATH): a remote file open read-only is on a
// read-only file system; a local copy of one open for writing changes
// remotely too.
func (s *supervisor) onFdMeta(n notif, op metaOp) {
	fd := int(int32(n.Data.Args[0]))
	info, ok := s.remoteFD(int(n.Pid), fd)
	if !ok {
		s.cont(&n)
		return
	}
	if info.wb == nil {
		s.fail(&n, unix.EROFS)
		return
	}
	wf := info.wb
	if op.attr.Atime != nil || op.attr.Mtime != nil || op.attr.AtimeNow || op.attr.MtimeNow {
		// Set on the copy by the kernel; each upload then sets the
		// target's times from the copy's.
		wf.setTimes()
		s.cont(&n)
		return
	}
	s.slow(func() {
		ctx, cancel := s.remoteCtx()
		defer cancel()
		if err := s.sess.SetAttr(ctx, wf.remote, true, op.attr); err != nil {
			s.failErr(&n, err)
			return
		}
		if op.attr.Mode != nil {
			wf.setPerm(*op.attr.Mode)
			s.cont(&n) // the copy's mode follows (its fstat says so)
			return
		}
		s.ret(&n, 0) // an owner the copy here may not be allowed to take
	})
}

// onFdSync handles close, fsync and fdatasync of a local copy of a remote
// file: the target gets the data before the call returns, or the call
// returns the target's error (a close that fails leaves the fd open).
func (s *supervisor) onFdSync(n notif) {
	info, ok := s.remoteFD(int(n.Pid), int(int32(n.Data.Args[0])))
	if !ok || info.wb == nil {
		s.cont(&n)
		return
	}
	s.slow(func() {
		ctx, cancel := s.remoteCtx()
		defer cancel()
		if err := info.wb.upload(ctx, s); err != nil {
			s.failErr(&n, err)
			return
		}
		s.cont(&n)
	})
}

// fdMeta decodes fchmod/fchown into a metadata op on the fd.
func fdMeta(n *notif) metaOp {
	a := n.Data.Args
	op := metaOp{kind: "attr", follow: true}
	if n.Data.Nr == unix.SYS_FCHMOD {
		m := uint32(a[1]) & 0o7777
		op.attr.Mode = &m
	} else {
		op.attr.Uid, op.attr.Gid = owner(a[1]), owner(a[2])
	}
	return op
}
