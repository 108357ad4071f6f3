package harness

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// AgentListenPrefix starts the first line tether-agent prints on stdout,
// followed by the address it listens on.
const AgentListenPrefix = "tether-agent listening on "

// Agent is a running tether-agent attached to a pod.
type Agent struct {
	Addr string // host:port to pass to tether exec --agent-addr
	PID  int

	proc   *proc
	stdout *syncBuffer
	stderr *syncBuffer

	mu   sync.Mutex
	kids map[int]string // descendants seen: pid -> start time
}

// Stderr returns what the agent has logged so far.
func (a *Agent) Stderr() string { return a.stderr.String() }

// Stdout returns what the agent printed after its first line.
func (a *Agent) Stdout() string { return a.stdout.String() }

// Exited reports whether the agent has exited.
func (a *Agent) Exited() bool { return a.proc.exited() }

// StartAgent runs `tether-agent --listen 127.0.0.1:0 --target-pid PID` for
// pod and waits (10 s) for its first stdout line, "tether-agent listening on
// ADDR". It is stopped (SIGTERM, then SIGKILL) when t ends; its log is shown
// if t failed.
func StartAgent(t testing.TB, pod *Pod) *Agent {
	t.Helper()
	bin := AgentBinary(t)
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--target-pid", fmt.Sprint(pod.PID))
	cmd.Dir = RunDir(t)
	cmd.Env = agentEnv()
	a := &Agent{stdout: newSyncBuffer(), stderr: newSyncBuffer()}
	cmd.Stderr = a.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := startProc(cmd)
	if err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	a.proc = p
	a.PID = p.pid()
	t.Cleanup(func() {
		a.noteChildren()
		p.stop(syscall.SIGTERM, 5*time.Second, false)
		// The agent's worker must end with it; the harness makes sure.
		if left := a.killDescendants(); len(left) > 0 {
			t.Logf("harness: tether-agent (pid %d) exited but left processes %v running; killed them", a.PID, left)
		}
		if t.Failed() {
			t.Logf("tether-agent (pid %d) stderr:\n%s", a.PID, indent(a.Stderr()))
		}
	})

	lineC := make(chan string, 1)
	errC := make(chan error, 1)
	go func() {
		r := bufio.NewReader(out)
		line, err := r.ReadString('\n')
		if err != nil {
			errC <- err
			return
		}
		lineC <- strings.TrimRight(line, "\r\n")
		io.Copy(a.stdout, r)
	}()
	select {
	case line := <-lineC:
		addr, ok := ParseAgentListenLine(line)
		if !ok {
			t.Fatalf("tether-agent: first stdout line is %q, want %q; stderr:\n%s", line, AgentListenPrefix+"ADDR", indent(a.Stderr()))
		}
		a.Addr = addr
	case err := <-errC:
		p.wait(2 * time.Second)
		t.Fatalf("tether-agent exited or closed stdout before printing its address (%v; %v); stderr:\n%s", err, p.waitErr, indent(a.Stderr()))
	case <-time.After(10 * time.Second):
		t.Fatalf("tether-agent did not print %q within 10s; stderr:\n%s", AgentListenPrefix+"ADDR", indent(a.Stderr()))
	}
	return a
}

// Children returns the agent's child processes (PIDs).
func (a *Agent) Children() ([]int, error) {
	if a.proc.exited() {
		return nil, fmt.Errorf("tether-agent (pid %d) has exited", a.PID)
	}
	kids, err := Children(a.PID)
	if err == nil {
		a.note(kids)
	}
	return kids, err
}

// WorkerPID returns the PID of the agent's worker: the only child process
// of the tether-agent PID the harness started.
func (a *Agent) WorkerPID() (int, error) {
	kids, err := a.Children()
	if err != nil {
		return 0, fmt.Errorf("listing the children of tether-agent (pid %d): %w", a.PID, err)
	}
	if len(kids) != 1 {
		return 0, fmt.Errorf("tether-agent (pid %d) has %d child processes %v, want exactly one (its worker)", a.PID, len(kids), kids)
	}
	return kids[0], nil
}

// Signal sends sig to the agent's (parent) process.
func (a *Agent) Signal(sig syscall.Signal) error { return syscall.Kill(a.PID, sig) }

// Terminate sends SIGTERM to the agent and waits up to timeout for it to
// exit; it reports whether it did.
func (a *Agent) Terminate(timeout time.Duration) bool {
	a.noteChildren()
	if a.proc.exited() {
		return true
	}
	a.proc.cmd.Process.Signal(syscall.SIGTERM)
	return a.proc.wait(timeout)
}

// Wait waits up to timeout for the agent to exit.
func (a *Agent) Wait(timeout time.Duration) bool { return a.proc.wait(timeout) }

func (a *Agent) noteChildren() {
	if a.proc.exited() {
		return // reaped: the PID may belong to another process now
	}
	if kids, err := Children(a.PID); err == nil {
		a.note(kids)
	}
}

// note remembers descendants (and their children) so cleanup can end them
// even after the agent itself is gone.
func (a *Agent) note(pids []int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.kids == nil {
		a.kids = map[int]string{}
	}
	for _, pid := range pids {
		if _, ok := a.kids[pid]; ok {
			continue
		}
		st, err := procStartTime(pid)
		if err != nil {
			continue
		}
		a.kids[pid] = st
		recordProcess(pid)
		if grand, err := Children(pid); err == nil {
			a.mu.Unlock()
			a.note(grand)
			a.mu.Lock()
		}
	}
}

// AliveDescendants returns the noted descendants that still run.
func (a *Agent) AliveDescendants() []int {
	a.noteChildren()
	a.mu.Lock()
	defer a.mu.Unlock()
	var alive []int
	for pid, st := range a.kids {
		if cur, err := procStartTime(pid); err == nil && cur == st && processAlive(pid) {
			alive = append(alive, pid)
		}
	}
	return alive
}

// killDescendants SIGKILLs the noted descendants still running and returns
// them.
func (a *Agent) killDescendants() []int {
	alive := a.AliveDescendants()
	for _, pid := range alive {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	return alive
}

// ParseAgentListenLine extracts ADDR from "tether-agent listening on ADDR".
func ParseAgentListenLine(line string) (string, bool) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), AgentListenPrefix)
	if !ok {
		return "", false
	}
	addr := strings.TrimSpace(rest)
	if addr == "" || strings.ContainsAny(addr, " \t") || !strings.Contains(addr, ":") {
		return "", false
	}
	return addr, true
}

func agentEnv() []string {
	return append(cleanEnviron(), "HOME="+runDir)
}

func indent(s string) string {
	if s == "" {
		return "    (empty)"
	}
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}
