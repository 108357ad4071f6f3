package layer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type supervisor struct {
	ctx  context.Context
	sess Session
	log  *slog.Logger
	lfd  int

	// tmp is a private (0700) directory for shadow directories (remote
	// directory listings materialised as empty entries) and write-back files.
	tmp       string
	shadowDir string
	wb        *writeback

	listen  listenState
	relayed relayedSockets // UDP sockets whose receives the supervisor does
	fds     fdRegistry     // injected objects -> the remote files they stand for
	cwd     cwdState       // remote working directories
	started int64          // UnixNano: the times of virtual files
	stats   counters
	wg      sync.WaitGroup // slow handlers in flight
	// wgMu orders slow's Add before finish's Wait: a notification received
	// as the command exits (another thread's call) may start a handler
	// while finish waits.
	wgMu     sync.Mutex
	finished bool
}

type counters struct {
	total, cont, emulated, injected, stale atomic.Int64
}

func newSupervisor(ctx context.Context, sess Session, log *slog.Logger) (*supervisor, error) {
	tmp, err := os.MkdirTemp("", "tether-layer-")
	if err != nil {
		return nil, fmt.Errorf("creating the supervisor's temp dir: %w", err)
	}
	s := &supervisor{ctx: ctx, sess: sess, log: log, lfd: -1, tmp: tmp, shadowDir: path.Join(tmp, "shadow"), started: time.Now().UnixNano()}
	s.relayed.m.size = 1 << 14
	s.fds.m.size = 1 << 16
	if err := os.Mkdir(s.shadowDir, 0o700); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	s.wb, err = newWriteback(s, path.Join(tmp, "wb"))
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	return s, nil
}

// finish runs when the command has exited: slow handlers finish, pending
// writes reach the target.
func (s *supervisor) finish() {
	s.wgMu.Lock()
	s.finished = true
	s.wgMu.Unlock()
	s.wg.Wait()
	s.wb.flushAll()
	s.log.Debug("supervisor stats", "notifications", s.stats.total.Load(), "continued", s.stats.cont.Load(),
		"emulated", s.stats.emulated.Load(), "injected", s.stats.injected.Load(), "stale", s.stats.stale.Load())
}

func (s *supervisor) close() {
	s.listen.closeAll()
	if s.lfd >= 0 {
		unix.Close(s.lfd)
	}
	s.wb.close()
	os.RemoveAll(s.tmp)
}

// loop receives notifications on one goroutine (one RECV thread was the
// fastest in the spike); handlers that wait on the agent run on their own
// goroutines and reply from there.
func (s *supervisor) loop() {
	var n notif
	for {
		if err := notifRecv(s.lfd, &n); err != nil {
			if err == unix.EINTR || err == unix.ENOENT {
				continue // ENOENT: the caller died or was signalled before RECV
			}
			return // EBADF after close, or no filter users left
		}
		s.stats.total.Add(1)
		s.dispatch(n)
	}
}

// slow runs fn on its own goroutine, tracked so finish can wait for it.
func (s *supervisor) slow(fn func()) {
	s.wgMu.Lock()
	defer s.wgMu.Unlock()
	if s.finished {
		// The command has exited: its caller is gone, nothing waits.
		go fn()
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

func (s *supervisor) send(r notifResp) {
	if err := notifSend(s.lfd, &r); err != nil && err != unix.ENOENT {
		// ENOENT: the caller was interrupted; the kernel restarts or fails it.
		s.log.Debug("NOTIF_SEND failed", "err", err)
	}
}

func (s *supervisor) cont(n *notif) {
	s.stats.cont.Add(1)
	s.send(notifResp{ID: n.ID, Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE})
}

func (s *supervisor) ret(n *notif, val int64) {
	s.stats.emulated.Add(1)
	s.send(notifResp{ID: n.ID, Val: val})
}

func (s *supervisor) fail(n *notif, errno syscall.Errno) {
	s.stats.emulated.Add(1)
	s.send(notifResp{ID: n.ID, Error: -int32(errno)})
}

// failErr answers with the errno inside err (EIO when it has none).
func (s *supervisor) failErr(n *notif, err error) {
	s.fail(n, errnoOf(err))
}

func errnoOf(err error) syscall.Errno {
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	if errors.Is(err, os.ErrNotExist) {
		return unix.ENOENT
	}
	return unix.EIO
}

func (s *supervisor) dispatch(n notif) {
	normalize(&n.Data)
	switch n.Data.Nr {
	case unix.SYS_CONNECT:
		s.onConnect(&n)
	case unix.SYS_SENDTO:
		s.onSendto(&n)
	case unix.SYS_SENDMSG:
		s.onSendmsg(&n)
	case unix.SYS_SENDMMSG:
		s.onSendmmsg(&n)
	case unix.SYS_RECVFROM, unix.SYS_RECVMSG, unix.SYS_RECVMMSG:
		s.onRecv(&n)
	case unix.SYS_GETPEERNAME:
		s.onGetpeername(&n)
	case unix.SYS_UNAME:
		s.onUname(&n)
	case unix.SYS_BIND:
		s.onBind(&n)
	case unix.SYS_LISTEN:
		s.onListen(&n)
	case unix.SYS_ACCEPT, unix.SYS_ACCEPT4:
		s.onAccept(&n)
	case unix.SYS_OPENAT, unix.SYS_OPENAT2:
		s.onOpen(n)
	case unix.SYS_FSTAT:
		s.onFstat(n)
	case unix.SYS_NEWFSTATAT:
		if n.Data.Args[3]&unix.AT_EMPTY_PATH != 0 {
			s.onFstat(n)
		} else {
			s.onPathQuery(n)
		}
	case unix.SYS_STATX:
		if n.Data.Args[2]&unix.AT_EMPTY_PATH != 0 {
			s.onFstat(n)
		} else {
			s.onPathQuery(n)
		}
	case unix.SYS_FACCESSAT, unix.SYS_FACCESSAT2, unix.SYS_READLINKAT:
		s.onPathQuery(n)
	case unix.SYS_FGETXATTR, unix.SYS_FLISTXATTR:
		s.onFxattr(&n)
	case unix.SYS_CHDIR, unix.SYS_FCHDIR:
		s.onChdir(n)
	case unix.SYS_GETCWD:
		s.onGetcwd(&n)
	case unix.SYS_EXECVE, unix.SYS_EXECVEAT:
		s.onExec(&n)
	case unix.SYS_FCHMODAT, unix.SYS_FCHMODAT2, unix.SYS_FCHOWNAT, unix.SYS_UTIMENSAT,
		unix.SYS_TRUNCATE, unix.SYS_SYMLINKAT, unix.SYS_LINKAT:
		s.onMeta(n)
	case unix.SYS_FCHMOD, unix.SYS_FCHOWN:
		s.onFdMeta(n, fdMeta(&n))
	case unix.SYS_CLOSE, unix.SYS_FSYNC, unix.SYS_FDATASYNC:
		s.onFdSync(n)
	case unix.SYS_GETXATTR, unix.SYS_LGETXATTR, unix.SYS_LISTXATTR, unix.SYS_LLISTXATTR:
		s.onXattr(&n)
	case unix.SYS_MKDIRAT, unix.SYS_UNLINKAT, unix.SYS_RENAMEAT, unix.SYS_RENAMEAT2:
		s.onModify(n)
	default:
		s.cont(&n)
	}
}

var errStale = errors.New("notification no longer valid")

// getfd duplicates fd of the trapped thread into the supervisor. The
// notification's pid is a thread id: PIDFD_THREAD (6.9) opens it directly,
// older kernels need the thread group leader.
func (s *supervisor) getfd(n *notif, fd int) (int, error) {
	pidfd, err := unix.PidfdOpen(int(n.Pid), unix.PIDFD_THREAD)
	if err == unix.EINVAL {
		pidfd, err = unix.PidfdOpen(tgidOf(int(n.Pid)), 0)
	}
	if err != nil {
		return -1, err
	}
	defer unix.Close(pidfd)
	tfd, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return -1, err
	}
	// The pid may have been recycled between RECV and pidfd_open.
	if !notifIDValid(s.lfd, n.ID) {
		unix.Close(tfd)
		s.stats.stale.Add(1)
		return -1, errStale
	}
	return tfd, nil
}

func tgidOf(tid int) int {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Tgid:"); ok {
			if t, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				return t
			}
		}
	}
	return tid
}

// absPath resolves (dirfd, p) to the absolute path the kernel would start
// from. Paths inside a shadow directory map back to the remote path.
func (s *supervisor) absPath(n *notif, dirfd int32, p string) string {
	if strings.HasPrefix(p, "/") {
		return path.Clean(p)
	}
	var base string
	if dirfd == unix.AT_FDCWD {
		if cwd, ok := s.cwd.of(int(n.Pid)); ok {
			n.viaRemote = true
			return path.Clean(cwd + "/" + p)
		}
		base, _ = os.Readlink("/proc/" + strconv.Itoa(int(n.Pid)) + "/cwd")
	} else {
		base, _ = os.Readlink("/proc/" + strconv.Itoa(int(n.Pid)) + "/fd/" + strconv.Itoa(int(dirfd)))
	}
	if remote, ok := s.shadowToRemote(base); ok {
		base = remote
		n.viaRemote = true
	}
	if p == "" {
		return path.Clean(base)
	}
	return path.Clean(base + "/" + p)
}

// answeredLocally answers the calls whose route needs no agent: a local
// path continues in the kernel, a not_found one is ENOENT.
func (s *supervisor) answeredLocally(n *notif, route Route) bool {
	switch route {
	case Local:
		s.cont(n)
		return true
	case NotFound:
		s.fail(n, unix.ENOENT)
		return true
	}
	return false
}

// routeFile is the session's route for p, except that a path reached
// relatively from a remote directory names a remote file even where an
// absolute one would be local (the pod's /app/x.py, its .git).
func (s *supervisor) routeFile(n *notif, p string) Route {
	r := s.sess.RouteFile(p)
	if r == Local && n.viaRemote && p != "/" {
		return RemoteRead
	}
	return r
}

// readPath reads a path argument and makes it absolute.
func (s *supervisor) readPath(n *notif, dirfd int32, ptr uint64) (string, bool) {
	raw, err := readString(int(n.Pid), ptr)
	if err != nil || raw == "" {
		return "", false
	}
	return s.absPath(n, dirfd, raw), true
}

// onUname reports the target's hostname as the node name.
func (s *supervisor) onUname(n *notif) {
	host, ok := s.sess.Hostname()
	if !ok {
		s.cont(n)
		return
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		s.cont(n)
		return
	}
	clear(u.Nodename[:])
	copy(u.Nodename[:len(u.Nodename)-1], host)
	if err := writeMem(int(n.Pid), n.Data.Args[0], utsnameBytes(&u)); err != nil {
		s.fail(n, unix.EFAULT)
		return
	}
	s.ret(n, 0)
}
