package layer

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/protocol"
)

// writeback serves remote files opened for writing (fs mode "write"): the
// caller gets a private local copy, and its content goes back to the
// target each time a writer closes it (inotify IN_CLOSE_WRITE) and once
// more when the command ends.
type writeback struct {
	s   *supervisor
	dir string
	ifd int

	mu    sync.Mutex
	seq   int
	byWD  map[int32]*wbFile
	files []*wbFile
}

type wbFile struct {
	mu     sync.Mutex
	remote string
	local  string
	perm   uint32
	base   *protocol.Stat // the remote file's stat at open (nil: a new file)
	synced fileVersion
	// times: the program set the copy's times (futimens): each upload
	// gives the target the copy's times too.
	times bool
}

func (wf *wbFile) setTimes() {
	wf.mu.Lock()
	wf.times = true
	wf.mu.Unlock()
}

func (wf *wbFile) setPerm(m uint32) {
	wf.mu.Lock()
	wf.perm = m & 0o7777
	wf.mu.Unlock()
}

// liveStat is the remote file as the writer sees it now: the remote
// identity (device, inode, owner) with the local copy's size and times.
func (wf *wbFile) liveStat(local *unix.Stat_t) *protocol.Stat {
	st := protocol.Stat{Dev: local.Dev, Ino: local.Ino, Uid: local.Uid, Gid: local.Gid, Nlink: 1}
	if wf.base != nil {
		st = *wf.base
	}
	wf.mu.Lock()
	st.Mode = unix.S_IFREG | wf.perm
	wf.mu.Unlock()
	st.Size, st.Blocks, st.Blksize = local.Size, local.Blocks, int64(local.Blksize)
	st.Atime, st.Mtime, st.Ctime = local.Atim.Nano(), local.Mtim.Nano(), local.Ctim.Nano()
	return &st
}

type fileVersion struct {
	size  int64
	mtime int64
	ctime int64
}

func versionOf(p string) (fileVersion, error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return fileVersion{}, err
	}
	return fileVersion{st.Size, st.Mtim.Nano(), st.Ctim.Nano()}, nil
}

func newWriteback(s *supervisor, dir string) (*writeback, error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	ifd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err == unix.EMFILE {
		return nil, inotifyLimitError()
	}
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	w := &writeback{s: s, dir: dir, ifd: ifd, byWD: map[int32]*wbFile{}}
	go w.watch()
	return w, nil
}

func (w *writeback) close() { unix.Close(w.ifd) }

// open creates the local copy of remote path p and injects it.
func (w *writeback) open(ctx context.Context, n *notif, p string, flags uint64, mode uint32) {
	s := w.s
	w.flushPath(ctx, p) // another writer's pending changes come first
	st, err := s.sess.Stat(ctx, p, flags&unix.O_NOFOLLOW == 0)
	exists := err == nil
	switch {
	case err != nil && errnoOf(err) != unix.ENOENT:
		s.failErr(n, err)
		return
	case !exists && flags&unix.O_CREAT == 0:
		s.fail(n, unix.ENOENT)
		return
	case exists && flags&(unix.O_CREAT|unix.O_EXCL) == unix.O_CREAT|unix.O_EXCL:
		s.fail(n, unix.EEXIST)
		return
	case exists && st.Mode&unix.S_IFMT == unix.S_IFDIR:
		s.fail(n, unix.EISDIR)
		return
	}
	w.mu.Lock()
	w.seq++
	local := path.Join(w.dir, strconv.Itoa(w.seq)+"-"+path.Base(p))
	w.mu.Unlock()
	f, err := os.OpenFile(local, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		s.failErr(n, err)
		return
	}
	perm := mode &^ umaskOf(int(n.Pid)) & 0o7777
	if exists {
		perm = st.Mode & 0o7777
		if flags&unix.O_TRUNC == 0 {
			_, rc, err := s.sess.ReadFile(ctx, p)
			if err != nil {
				f.Close()
				s.failErr(n, err)
				return
			}
			_, err = f.ReadFrom(rc)
			rc.Close()
			if err != nil {
				f.Close()
				s.failErr(n, err)
				return
			}
		}
	}
	f.Close()
	wf := &wbFile{remote: p, local: local, perm: perm}
	if exists {
		wf.base = st
	}
	if !exists || flags&unix.O_TRUNC != 0 {
		// Create/truncate now, as the kernel would, so errors (missing
		// directory, permissions) surface at open.
		if err := wf.upload(ctx, s); err != nil {
			os.Remove(local)
			s.failErr(n, err)
			return
		}
	} else {
		wf.synced, _ = versionOf(local)
	}
	wd, err := unix.InotifyAddWatch(w.ifd, local, unix.IN_CLOSE_WRITE)
	if err == nil {
		w.mu.Lock()
		w.byWD[int32(wd)] = wf
		w.files = append(w.files, wf)
		w.mu.Unlock()
	}
	keep := int(flags & (unix.O_ACCMODE | unix.O_APPEND | unix.O_NONBLOCK | unix.O_DSYNC | unix.O_SYNC))
	fd, err := unix.Open(local, keep|unix.O_CLOEXEC, 0)
	if err != nil {
		s.failErr(n, err)
		return
	}
	defer unix.Close(fd)
	s.fds.add(fd, fdInfo{path: p, wb: wf})
	s.inject(n, fd, flags)
}

// upload sends the local copy to the target if it changed since the last upload.
func (wf *wbFile) upload(ctx context.Context, s *supervisor) error {
	wf.mu.Lock()
	defer wf.mu.Unlock()
	var st unix.Stat_t
	if err := unix.Stat(wf.local, &st); err != nil {
		return err
	}
	v := fileVersion{st.Size, st.Mtim.Nano(), st.Ctim.Nano()}
	if v == wf.synced && v != (fileVersion{}) {
		return nil
	}
	// O_NOATIME: reading the copy must not move the atime it hands over.
	f, err := os.OpenFile(wf.local, os.O_RDONLY|unix.O_NOATIME, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := s.sess.WriteFile(ctx, wf.remote, f, v.size, wf.perm); err != nil {
		s.log.Warn("writing back a remote file failed", "path", wf.remote, "err", err)
		return err
	}
	if wf.times {
		at, mt := st.Atim.Nano(), st.Mtim.Nano()
		if err := s.sess.SetAttr(ctx, wf.remote, true, protocol.Attr{Atime: &at, Mtime: &mt}); err != nil {
			return err
		}
	}
	wf.synced = v
	return nil
}

// flushPath uploads the pending changes of the files open for writing at
// remote path p, so an operation on p comes after them.
func (w *writeback) flushPath(ctx context.Context, p string) {
	w.mu.Lock()
	var todo []*wbFile
	for _, wf := range w.files {
		if wf.remote == p {
			todo = append(todo, wf)
		}
	}
	w.mu.Unlock()
	for _, wf := range todo {
		wf.upload(ctx, w.s)
	}
}

// watch uploads files as their writers close them.
func (w *writeback) watch() {
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := unix.Read(w.ifd, buf)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			wd := int32(binary.LittleEndian.Uint32(buf[off:]))
			nameLen := int(binary.LittleEndian.Uint32(buf[off+12:]))
			off += unix.SizeofInotifyEvent + nameLen
			w.mu.Lock()
			wf := w.byWD[wd]
			w.mu.Unlock()
			if wf != nil {
				ctx, cancel := context.WithTimeout(w.s.ctx, remoteTimeout)
				wf.upload(ctx, w.s)
				cancel()
			}
		}
	}
}

// flushAll uploads every file whose local copy changed since its last upload.
func (w *writeback) flushAll() {
	w.mu.Lock()
	files := append([]*wbFile(nil), w.files...)
	w.mu.Unlock()
	for _, wf := range files {
		ctx, cancel := context.WithTimeout(w.s.ctx, remoteTimeout)
		wf.upload(ctx, w.s)
		cancel()
	}
}

// inotifyLimitError explains EMFILE from inotify_init: the per-user limit
// of inotify instances (editors and file watchers use them too), not the
// process's open files.
func inotifyLimitError() error {
	limit := "fs.inotify.max_user_instances"
	if b, err := os.ReadFile("/proc/sys/fs/inotify/max_user_instances"); err == nil {
		limit += " = " + strings.TrimSpace(string(b))
	}
	return fmt.Errorf("this user has as many inotify instances as the system allows (%s; each tether exec uses one, as do editors and file watchers): raise the limit, e.g. sudo sysctl fs.inotify.max_user_instances=1024, or end some of them", limit)
}
