package layer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// trampolineArg marks the re-executed tether binary that installs the
// filter and execs the user's command.
const trampolineArg = "__tether_trampoline"

// MaybeTrampoline must be called first thing in main of any binary that
// calls Run. In the re-executed child it installs the filter, hands the
// listener to the supervisor and execs the command; it never returns there.
func MaybeTrampoline() {
	if len(os.Args) < 3 || os.Args[1] != trampolineArg {
		return
	}
	trampoline(os.Args[3:], os.Args[2] == "writes")
}

// trampoline runs in the child: look up the command, install the filter,
// tell the supervisor the listener's fd number (fd 3 is a SEQPACKET
// socket), wait until it has taken the listener with pidfd_getfd, exec.
func trampoline(args []string, writes bool) {
	// TSYNC puts the filter on all of Go's threads; locking keeps execve on
	// the thread that installed it, for clarity.
	runtime.LockOSThread()
	// The parent-death signal (Pdeathsig, see Run) belongs to the thread
	// the child was forked as, and a new thread has none: Go may run this
	// goroutine on another of its threads, whose execve would drop it, and
	// the command would outlive a killed tether (seen once in a make test
	// run: TestKillTetherKillsChild). Set it on this thread, the one that
	// execs, and make sure tether did not die before that.
	parent := os.Getppid()
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		os.Exit(126)
	}
	const sock = 3
	fail := func(code int, msg string) {
		unix.Write(sock, []byte("err:"+msg))
		os.Exit(code)
	}
	if len(args) == 0 {
		fail(2, "no command given")
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		fail(127, fmt.Sprintf("%s: command not found (check the name and PATH)", args[0]))
	}
	lfd, err := installFilter(writes)
	if err != nil {
		fail(126, err.Error())
	}
	// From here on only untrapped calls: nobody answers trapped ones until
	// the supervisor holds the listener. write and read are never trapped.
	if _, err := unix.Write(sock, []byte("ok:"+strconv.Itoa(lfd))); err != nil {
		os.Exit(126)
	}
	var ack [8]byte
	if n, err := unix.Read(sock, ack[:]); err != nil || string(ack[:n]) != "go" {
		os.Exit(126) // the supervisor is gone
	}
	unix.Close(lfd)
	unix.Close(sock)
	if os.Getppid() != parent {
		os.Exit(126) // tether is gone: nobody would supervise the command
	}
	err = syscall.Exec(path, args, os.Environ())
	fmt.Fprintf(os.Stderr, "tether: exec %s: %v\n", path, err)
	os.Exit(126)
}

// Options describe one supervised command.
type Options struct {
	Args    []string // command and arguments
	Env     []string // its full environment
	Dir     string   // working directory ("" = ours)
	Stdin   *os.File
	Stdout  io.Writer
	Stderr  io.Writer
	Session Session
	Log     *slog.Logger
	// Writes: remote files can be written (fs.mode write or fs.read_write),
	// so close and fsync wait for uploads.
	Writes bool
}

// ExitError reports how the supervised command ended when it did not exit 0.
type ExitError struct {
	Code   int            // exit code, or 128+signal
	Signal syscall.Signal // set when killed by a signal
}

func (e *ExitError) Error() string {
	if e.Signal != 0 {
		return fmt.Sprintf("command killed by signal %v", e.Signal)
	}
	return fmt.Sprintf("command exited with code %d", e.Code)
}

// Run starts opt.Args under the supervisor and serves its trapped syscalls
// until it exits. Signals SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to this
// process are forwarded to the command's process group. It returns nil for
// exit code 0, an *ExitError for other endings, or a setup error.
func Run(ctx context.Context, opt Options) error {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	s, err := newSupervisor(ctx, opt.Session, opt.Log)
	if err != nil {
		return err
	}
	defer s.close()

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("creating the launch socket: %w", err)
	}
	parent, child := fds[0], os.NewFile(uintptr(fds[1]), "tether-launch")
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the tether executable: %w", err)
	}
	mode := "--"
	if opt.Writes {
		mode = "writes" // the filter traps close and fsync too
	}
	cmd := exec.Command(exe, append([]string{trampolineArg, mode}, opt.Args...)...)
	cmd.Args[0] = opt.Args[0] // ps shows the user's command while the trampoline runs
	cmd.Env = opt.Env
	cmd.Dir = opt.Dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = opt.Stdin, opt.Stdout, opt.Stderr
	cmd.ExtraFiles = []*os.File{child}
	// Setpgid: signals are forwarded to the command's whole group.
	// Pdeathsig: if tether itself is killed, the command does not run on
	// without its supervisor (its trapped syscalls would fail with ENOSYS).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	tty := opt.Stdin != nil && isTerminal(int(opt.Stdin.Fd()))
	if tty {
		// Job control like a shell: the command's group owns the terminal,
		// so Ctrl-C reaches it (and its children) once, not twice.
		cmd.SysProcAttr.Foreground = true
		cmd.SysProcAttr.Ctty = 0 // the child's fd 0 is opt.Stdin
	}
	// Catch signals before the child exists so none is lost in between.
	sigc := make(chan os.Signal, 8)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigc)
	if err := cmd.Start(); err != nil {
		child.Close()
		unix.Close(parent)
		return fmt.Errorf("starting %s: %w", opt.Args[0], err)
	}
	child.Close()
	if tty {
		defer reclaimTerminal(int(opt.Stdin.Fd()))
	}
	lfd, err := receiveListener(parent, cmd.Process.Pid)
	unix.Close(parent)
	if err != nil {
		cmd.Wait()
		return err
	}
	s.lfd = lfd
	if os.Getenv("TETHER_SYNC_WAKE") != "0" {
		// Linux 6.6+: wake the trapped thread on the supervisor's CPU when
		// answering. Measured here: 10 µs per trapped call instead of 15-18
		// (make bench). Older kernels refuse it harmlessly.
		unix.Syscall(unix.SYS_IOCTL, uintptr(lfd), unix.SECCOMP_IOCTL_NOTIF_SET_FLAGS, unix.SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
	}
	go s.loop()
	go func() {
		for sig := range sigc {
			// The whole group: shell pipelines and their children stop too.
			unix.Kill(-cmd.Process.Pid, sig.(syscall.Signal))
		}
	}()
	werr := cmd.Wait()
	s.finish()
	if werr == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return &ExitError{Code: 128 + int(ws.Signal()), Signal: ws.Signal()}
		}
		return &ExitError{Code: ee.ExitCode()}
	}
	return fmt.Errorf("waiting for %s: %w", opt.Args[0], werr)
}

// receiveListener reads the trampoline's report and takes the listener
// fd out of process pid (pidfd_getfd: the trampoline cannot send it with
// sendmsg, which its own filter traps), or returns why it failed.
func receiveListener(sock, pid int) (int, error) {
	buf := make([]byte, 512)
	n, err := unix.Read(sock, buf)
	if err != nil || n == 0 {
		return -1, fmt.Errorf("the launcher died before installing the seccomp filter (%v)", err)
	}
	msg := string(buf[:n])
	if m, ok := strings.CutPrefix(msg, "err:"); ok {
		return -1, &LaunchError{Msg: m}
	}
	num, ok := strings.CutPrefix(msg, "ok:")
	fd, err := strconv.Atoi(num)
	if !ok || err != nil {
		return -1, fmt.Errorf("the launcher sent %q instead of the listener's fd number", msg)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, fmt.Errorf("opening the launcher (pid %d): %w", pid, err)
	}
	defer unix.Close(pidfd)
	lfd, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return -1, fmt.Errorf("taking the seccomp listener from the launcher (pidfd_getfd: %w); tether needs to be allowed to inspect its own child processes (kernel.yama.ptrace_scope 0 or 1)", err)
	}
	if _, err := unix.Write(sock, []byte("go")); err != nil {
		unix.Close(lfd)
		return -1, fmt.Errorf("the launcher died after installing the seccomp filter: %w", err)
	}
	return lfd, nil
}

// LaunchError is a failure to start the command (not found, filter refused).
type LaunchError struct{ Msg string }

func (e *LaunchError) Error() string { return e.Msg }

func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

// reclaimTerminal makes our process group the terminal's foreground again.
func reclaimTerminal(fd int) {
	signal.Ignore(syscall.SIGTTOU)
	defer signal.Reset(syscall.SIGTTOU)
	unix.IoctlSetPointerInt(fd, unix.TIOCSPGRP, unix.Getpgrp())
}
