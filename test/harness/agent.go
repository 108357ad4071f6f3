package harness

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"strings"
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
		p.stop(syscall.SIGTERM, 5*time.Second, false)
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
