package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultTimeout bounds each command run by Exec and RunLocal.
const DefaultTimeout = 60 * time.Second

// ExecOpts tunes one command run.
type ExecOpts struct {
	// Config is the content of a tether config file, written to a temporary
	// file passed with -f. Empty: no -f.
	Config string
	// ConfigName is the config file's name; its extension picks the format.
	// Default "tether.json".
	ConfigName string
	// Args are extra `tether exec` flags, placed before "--".
	Args []string
	// Env entries (KEY=VALUE) are added to the local environment, replacing
	// variables of the same name.
	Env []string
	// Dir is the working directory (default: a fresh temporary directory).
	Dir string
	// Stdin is the command's standard input (default: empty).
	Stdin string
	// Timeout kills the command (default DefaultTimeout).
	Timeout time.Duration
}

// Result is the outcome of a command.
type Result struct {
	Cmd      []string
	Stdout   string
	Stderr   string
	ExitCode int            // exit status; -1 if killed by a signal
	Signal   syscall.Signal // the signal that killed it, if any
	Duration time.Duration
	// CPU is the user+system time of the command and the descendants it
	// waited for.
	CPU time.Duration
}

// OK reports whether the command exited with status 0.
func (r Result) OK() bool { return r.ExitCode == 0 }

// String formats the result for test failure messages.
func (r Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "command: %s\nexit code: %d", shellQuote(r.Cmd), r.ExitCode)
	if r.Signal != 0 {
		fmt.Fprintf(&b, " (killed by %v)", r.Signal)
	}
	fmt.Fprintf(&b, " after %v\nstdout:\n%s\nstderr:\n%s", r.Duration.Round(time.Millisecond), indent(r.Stdout), indent(r.Stderr))
	return b.String()
}

// TetherCommand returns the argv of `tether exec` against agentAddr: the
// config file (if any) is written into a temporary directory of t.
func TetherCommand(t testing.TB, agentAddr string, opts ExecOpts, cmd ...string) []string {
	t.Helper()
	argv := []string{Tether(t), "exec", "--agent-addr", agentAddr}
	if opts.Config != "" {
		name := opts.ConfigName
		if name == "" {
			name = "tether.json"
		}
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, []byte(opts.Config), 0o644); err != nil {
			t.Fatal(err)
		}
		argv = append(argv, "-f", path)
	}
	argv = append(argv, opts.Args...)
	argv = append(argv, "--")
	return append(argv, cmd...)
}

// Exec runs `tether exec --agent-addr ADDR [-f CONFIG] -- CMD...` locally
// and returns its result. It fails t if the command cannot start or times
// out (the process and its process group are killed by PID).
func Exec(t testing.TB, agentAddr string, opts ExecOpts, cmd ...string) Result {
	t.Helper()
	return RunLocal(t, opts, TetherCommand(t, agentAddr, opts, cmd...)...)
}

// RunLocal runs cmd directly on the local machine (no tether), in the same
// conditions as Exec: the local environment (see LocalEnv), and a private
// mount namespace whose /etc/resolv.conf points at LocalNameserver, so that
// names resolved locally never reach the machine's real DNS server.
func RunLocal(t testing.TB, opts ExecOpts, cmd ...string) Result {
	t.Helper()
	p := Start(t, opts, cmd...)
	return p.waitOrFail(t, opts.Timeout)
}

func (p *Process) waitOrFail(t testing.TB, timeout time.Duration) Result {
	t.Helper()
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	res, ok := p.Wait(timeout)
	if !ok {
		p.Kill()
		res, _ = p.Wait(15 * time.Second)
		t.Fatalf("timed out after %v:\n%s", timeout, res)
	}
	if res.Duration > SlowCommand {
		t.Logf("slow command (%v): %s", res.Duration.Round(time.Millisecond), shellQuote(res.Cmd))
	}
	return res
}

// SlowCommand is the duration above which a command is logged as slow.
const SlowCommand = 2 * time.Second

// Process is a command started by Start or StartExec.
type Process struct {
	PID    int
	argv   []string
	start  time.Time
	proc   *proc
	stdout *syncBuffer
	stderr *syncBuffer
}

// StartExec starts `tether exec` like Exec but does not wait for it.
func StartExec(t testing.TB, agentAddr string, opts ExecOpts, cmd ...string) *Process {
	t.Helper()
	return Start(t, opts, TetherCommand(t, agentAddr, opts, cmd...)...)
}

// Start starts cmd like RunLocal but does not wait for it. It is killed
// (with its process group) when t ends, if still running.
func Start(t testing.TB, opts ExecOpts, cmd ...string) *Process {
	t.Helper()
	if len(cmd) == 0 {
		t.Fatal("harness: empty command")
	}
	argv, err := sandboxArgv(t, cmd)
	if err != nil {
		t.Fatal(err)
	}
	dir := opts.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	return startRaw(t, cmd, argv, mergeEnv(LocalEnv(t), opts.Env), dir, opts.Stdin)
}

// startRaw starts argv (shown as cmd in results) in its own process group.
func startRaw(t testing.TB, cmd, argv, env []string, dir, stdin string) *Process {
	t.Helper()
	c := exec.Command(argv[0], argv[1:]...)
	c.Env = env
	c.Dir = dir
	c.Stdin = strings.NewReader(stdin)
	p := &Process{argv: cmd, stdout: newSyncBuffer(), stderr: newSyncBuffer()}
	c.Stdout = p.stdout
	c.Stderr = p.stderr
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.start = time.Now()
	pr, err := startProc(c)
	if err != nil {
		t.Fatalf("starting %s: %v", shellQuote(cmd), err)
	}
	p.proc = pr
	p.PID = pr.pid()
	t.Cleanup(func() { pr.stop(syscall.SIGKILL, 0, true) })
	return p
}

// Signal sends sig to the process (by PID; not to its group).
func (p *Process) Signal(sig syscall.Signal) error { return syscall.Kill(p.PID, sig) }

// Kill ends the process and its process group with SIGKILL.
func (p *Process) Kill() { p.proc.stop(syscall.SIGKILL, 0, true) }

// Stdout returns the standard output so far.
func (p *Process) Stdout() string { return p.stdout.String() }

// Stderr returns the standard error so far.
func (p *Process) Stderr() string { return p.stderr.String() }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool { return p.proc.exited() }

// WaitStdout waits until stdout contains substr; false on timeout or exit
// without it.
func (p *Process) WaitStdout(substr string, timeout time.Duration) bool {
	return p.stdout.waitFor(substr, timeout, p.proc.done)
}

// Wait waits up to timeout for the process to exit. ok is false on timeout
// (the Result then holds the output so far).
func (p *Process) Wait(timeout time.Duration) (res Result, ok bool) {
	ok = p.proc.wait(timeout)
	res = Result{Cmd: p.argv, Stdout: p.Stdout(), Stderr: p.Stderr(), ExitCode: -1}
	if !ok {
		res.Duration = time.Since(p.start)
		return res, false
	}
	res.Duration = p.proc.end.Sub(p.start)
	st := p.proc.cmd.ProcessState
	if st == nil {
		res.Stderr += fmt.Sprintf("\n[harness: wait: %v]", p.proc.waitErr)
		return res, true
	}
	res.ExitCode = st.ExitCode()
	res.CPU = st.UserTime() + st.SystemTime()
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		res.Signal = ws.Signal()
	}
	var ee *exec.ExitError
	if p.proc.waitErr != nil && !errors.As(p.proc.waitErr, &ee) && !errors.Is(p.proc.waitErr, exec.ErrWaitDelay) {
		res.Stderr += fmt.Sprintf("\n[harness: wait: %v]", p.proc.waitErr)
	}
	return res, true
}

var (
	localOnce sync.Once
	localErr  error
	localHome string
	localRes  string
)

func prepareLocal(t testing.TB) {
	t.Helper()
	dir := RunDir(t)
	localOnce.Do(func() {
		localHome = filepath.Join(dir, "home")
		if localErr = os.MkdirAll(localHome, 0o755); localErr != nil {
			return
		}
		localRes = filepath.Join(dir, "local-resolv.conf")
		localErr = os.WriteFile(localRes, []byte(
			"# tether integration harness: the local resolver points into "+BlockedCIDR+"\n"+
				"# (unreachable) so that nothing leaves the machine.\n"+
				"nameserver "+LocalNameserver+"\n"+
				"options timeout:1 attempts:1\n"), 0o644)
	})
	if localErr != nil {
		t.Fatalf("harness: preparing local environment: %v", localErr)
	}
}

// LocalHome is the HOME of local commands (a directory of the run).
func LocalHome(t testing.TB) string {
	t.Helper()
	prepareLocal(t)
	return localHome
}

// LocalEnv is the base environment of local commands: this process's
// environment without proxy settings and without the pod's variable names
// (so remote values are recognisable), with HOME=LocalHome and LC_ALL=C.
// PATH is this process's PATH.
func LocalEnv(t testing.TB) []string {
	t.Helper()
	prepareLocal(t)
	return mergeEnv(cleanEnviron(), []string{"HOME=" + localHome, "LC_ALL=C"})
}

func cleanEnviron() []string {
	drop := map[string]bool{}
	for _, kv := range PodEnv {
		k, _, _ := strings.Cut(kv, "=")
		if k != "PATH" && k != "HOME" {
			drop[k] = true
		}
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		lk := strings.ToLower(k)
		if drop[k] || lk == "http_proxy" || lk == "https_proxy" || lk == "all_proxy" || lk == "no_proxy" || lk == "ftp_proxy" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// mergeEnv returns base with extra's KEY=VALUE entries replacing or added.
func mergeEnv(base, extra []string) []string {
	out := make([]string, 0, len(base)+len(extra))
	set := map[string]bool{}
	for _, kv := range extra {
		k, _, _ := strings.Cut(kv, "=")
		set[k] = true
	}
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if !set[k] {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}

// sandboxArgv wraps cmd so it runs in a private mount namespace with the
// harness's /etc/resolv.conf bind-mounted over the real one. unshare and sh
// exec, so the PID of the returned argv is the PID of cmd.
func sandboxArgv(t testing.TB, cmd []string) ([]string, error) {
	t.Helper()
	prepareLocal(t)
	unshare, err := lookTool("unshare")
	if err != nil {
		return nil, fmt.Errorf("unshare not found: %w", err)
	}
	const script = `mount --bind "$1" /etc/resolv.conf || exit 125; shift; exec "$@"`
	argv := []string{unshare, "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "tth-sandbox", localRes}
	return append(argv, cmd...), nil
}

func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`|&;<>(){}*?[]#~!") {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
