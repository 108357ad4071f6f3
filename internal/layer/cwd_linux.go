package layer

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The working directory. The kernel cannot make a remote directory a
// process's cwd, so chdir/fchdir into one is emulated: the supervisor
// remembers the remote cwd per process (its kernel cwd stays where it
// was), resolves relative paths of trapped calls against it and answers
// getcwd with it. A child started while its parent is in a remote cwd
// inherits it on its first trapped call. Limits: a relative path from a
// remote cwd to a local file fails (EXDEV: the kernel would resolve it
// against the old local cwd), and so does running a program by a relative
// path there (ENOENT: remote programs do not run locally).

type cwdState struct {
	active atomic.Int32 // processes in a remote cwd; 0 keeps every lookup free
	mu     sync.Mutex
	procs  map[int]cwdEntry // tgid ->
}

// cwdEntry is a process's cwd as the supervisor knows it; path "" means
// its own, local one (it left a remote cwd, or never inherited one).
type cwdEntry struct {
	path  string
	start string // the process's start time, against pid reuse
}

// procStat returns the fields of /proc/PID/stat after the command name
// (field 3, the state, first).
func procStat(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// startTime returns field 22 of /proc/PID/stat (clock ticks since boot).
func startTime(pid int) string {
	if f := procStat(pid); len(f) > 19 {
		return f[19]
	}
	return ""
}

func ppidOf(pid int) int {
	if f := procStat(pid); len(f) > 1 {
		p, _ := strconv.Atoi(f[1])
		return p
	}
	return 0
}

// of returns the remote cwd of thread tid's process, if it has one.
func (c *cwdState) of(tid int) (string, bool) {
	if c.active.Load() == 0 {
		return "", false
	}
	tgid := tgidOf(tid)
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.valid(tgid); ok {
		return e.path, e.path != ""
	}
	// First seen: inherit from the nearest known ancestor.
	for pid, hops := ppidOf(tgid), 0; pid > 1 && hops < 16; pid, hops = ppidOf(pid), hops+1 {
		if e, ok := c.valid(pid); ok {
			c.setLocked(tgid, e.path)
			return e.path, e.path != ""
		}
	}
	return "", false
}

// valid returns tgid's entry unless the pid was reused since.
func (c *cwdState) valid(tgid int) (cwdEntry, bool) {
	e, ok := c.procs[tgid]
	if !ok {
		return e, false
	}
	if e.start != startTime(tgid) {
		c.deleteLocked(tgid)
		return cwdEntry{}, false
	}
	return e, true
}

// set records tid's process's cwd: a remote path, or "" for its own.
func (c *cwdState) set(tid int, path string) {
	if path == "" && c.active.Load() == 0 {
		return // nobody is in a remote cwd: nothing to remember
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setLocked(tgidOf(tid), path)
}

func (c *cwdState) setLocked(tgid int, path string) {
	if c.procs == nil {
		c.procs = map[int]cwdEntry{}
	}
	c.deleteLocked(tgid)
	c.procs[tgid] = cwdEntry{path: path, start: startTime(tgid)}
	if path != "" {
		c.active.Add(1)
	}
}

func (c *cwdState) deleteLocked(tgid int) {
	if e, ok := c.procs[tgid]; ok {
		delete(c.procs, tgid)
		if e.path != "" {
			c.active.Add(-1)
		}
	}
}

// onChdir handles chdir and fchdir.
func (s *supervisor) onChdir(n notif) {
	pid := int(n.Pid)
	if n.Data.Nr == unix.SYS_FCHDIR {
		link, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + strconv.Itoa(int(int32(n.Data.Args[0]))))
		if remote, ok := s.shadowToRemote(link); ok {
			s.cwd.set(pid, remote)
			s.ret(&n, 0)
			return
		}
		s.cwd.set(pid, "")
		s.cont(&n)
		return
	}
	raw, err := readString(pid, n.Data.Args[0])
	if err != nil || raw == "" {
		s.cont(&n)
		return
	}
	_, inRemote := s.cwd.of(pid)
	p := s.absPath(&n, unix.AT_FDCWD, raw)
	if _, virtual := s.sess.VirtualFile(p); virtual {
		s.fail(&n, unix.ENOTDIR)
		return
	}
	switch s.sess.RouteFile(p) {
	case Local:
		if inRemote && !strings.HasPrefix(raw, "/") {
			s.fail(&n, unix.EXDEV) // the kernel would resolve raw against the old local cwd
			return
		}
		s.cwd.set(pid, "")
		s.cont(&n)
		return
	case NotFound:
		s.fail(&n, unix.ENOENT)
		return
	}
	s.slow(func() {
		ctx, cancel := s.remoteCtx()
		defer cancel()
		st, err := s.sess.Stat(ctx, p, true)
		switch {
		case err != nil:
			s.failErr(&n, err)
		case st.Mode&unix.S_IFMT != unix.S_IFDIR:
			s.fail(&n, unix.ENOTDIR)
		default:
			s.cwd.set(pid, p)
			s.ret(&n, 0)
		}
	})
}

// onGetcwd reports a remote cwd.
func (s *supervisor) onGetcwd(n *notif) {
	cwd, ok := s.cwd.of(int(n.Pid))
	if !ok {
		s.cont(n)
		return
	}
	b := append([]byte(cwd), 0)
	if uint64(len(b)) > n.Data.Args[1] {
		s.fail(n, unix.ERANGE)
		return
	}
	if writeMem(int(n.Pid), n.Data.Args[0], b) != nil {
		s.fail(n, unix.EFAULT)
		return
	}
	s.ret(n, int64(len(b)))
}

// onExec refuses a relative program path from a remote cwd: the kernel
// would look in the old local cwd (and remote programs do not run here).
func (s *supervisor) onExec(n *notif) {
	ptr := n.Data.Args[0]
	if n.Data.Nr == unix.SYS_EXECVEAT {
		ptr = n.Data.Args[1]
		if int32(n.Data.Args[0]) != unix.AT_FDCWD {
			s.cont(n)
			return
		}
	}
	if _, ok := s.cwd.of(int(n.Pid)); !ok {
		s.cont(n)
		return
	}
	raw, err := readString(int(n.Pid), ptr)
	if err != nil || strings.HasPrefix(raw, "/") {
		s.cont(n)
		return
	}
	s.fail(n, unix.ENOENT)
}
