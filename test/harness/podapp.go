package harness

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Ports of the app the harness runs in the pod (see Env.PodApp): HTTP/1.1
// + h2c + WebSocket + gRPC on each of PodAppHTTPPorts, a raw TCP line echo
// on each of PodAppEchoPorts. Tests pick their own port from these ranges so
// that they do not disturb each other.
const (
	PodAppFirstHTTPPort = 18080
	PodAppLastHTTPPort  = 18119
	PodAppFirstEchoPort = 19090
	PodAppLastEchoPort  = 19099
	// PodAppPath is where the app's binary is in the pod.
	PodAppPath = "/usr/local/bin/podapp"
)

// Who values of podapp answers.
const (
	WhoPod   = "pod"
	WhoLocal = "local"
)

// PodApp builds the podapp server (test/harness/podapp) once per test
// binary, static like the probe, and returns its path.
func PodApp(t testing.TB) string {
	t.Helper()
	return GoBinary(t, "./test/harness/podapp", "podapp")
}

// App is a running podapp: the one in the pod, or a local one (under
// `tether exec` or not).
type App struct {
	Who string
	PID int // the podapp process itself (from its ready line)

	proc   *proc
	exec   *Process // nil for the pod's app
	stdout *syncBuffer
	stderr *syncBuffer
}

// Stdout returns the app's standard output so far (for a local app under
// tether, also what tether printed there).
func (a *App) Stdout() string { return a.stdout.String() }

// Stderr returns the standard error so far (tether's messages included).
func (a *App) Stderr() string { return a.stderr.String() }

// Exited reports whether the app (for a local app: the command started,
// e.g. tether exec) has exited.
func (a *App) Exited() bool { return a.proc.exited() }

// Process is the started command of a local app (tether exec, or podapp
// itself without tether); nil for the pod's app.
func (a *App) Process() *Process { return a.exec }

// WaitStdout waits until stdout contains substr.
func (a *App) WaitStdout(substr string, timeout time.Duration) bool {
	return a.stdout.waitFor(substr, timeout, a.proc.done)
}

// WaitStderr waits until stderr contains substr.
func (a *App) WaitStderr(substr string, timeout time.Duration) bool {
	return a.stderr.waitFor(substr, timeout, a.proc.done)
}

// Requests returns the requests the app has logged so far ("request:"
// lines), as Answers without Status.
func (a *App) Requests() []Answer { return ParseRequestLog(a.Stdout()) }

// Saw reports whether the app logged a request for path.
func (a *App) Saw(path string) bool {
	_, ok := a.Find(func(r Answer) bool { return r.Path == path })
	return ok
}

// Find returns the first logged request for which match is true.
func (a *App) Find(match func(Answer) bool) (Answer, bool) {
	for _, r := range a.Requests() {
		if match(r) {
			return r, true
		}
	}
	return Answer{}, false
}

// WaitSaw waits until the app logged a request for each path; it returns
// the paths still missing at the timeout.
func (a *App) WaitSaw(timeout time.Duration, paths ...string) []string {
	var missing []string
	WaitFor(timeout, func() error {
		missing = missing[:0]
		for _, p := range paths {
			if !a.Saw(p) {
				missing = append(missing, p)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("missing %v", missing)
		}
		return nil
	})
	return missing
}

// Describe formats the app's output for failure messages.
func (a *App) Describe() string {
	return fmt.Sprintf("podapp who=%s pid=%d\nstdout:\n%s\nstderr:\n%s", a.Who, a.PID, indent(a.Stdout()), indent(a.Stderr()))
}

// ParseRequestLog extracts the "request: k=v ..." lines of podapp output.
func ParseRequestLog(out string) []Answer {
	var rs []Answer
	for _, l := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(l), "request:")
		if !ok {
			continue
		}
		var a Answer
		for _, f := range strings.Fields(rest) {
			k, v, _ := strings.Cut(f, "=")
			if uv, err := url.PathUnescape(v); err == nil {
				v = uv
			}
			a.set(k, v)
		}
		rs = append(rs, a)
	}
	return rs
}

// AppOpts describes a local podapp run.
type AppOpts struct {
	Who       string // default WhoLocal
	HTTPPorts []int  // --http
	EchoPorts []int  // --echo
	// Host is the listen address (default "": all addresses, dual-stack
	// [::], as a Go server's ":PORT").
	Host string
	// Config is the tether config (JSON unless ConfigName says otherwise).
	Config     string
	ConfigName string
	// Args are extra `tether exec` flags.
	Args []string
}

func (o AppOpts) argv(bin string) []string {
	who := o.Who
	if who == "" {
		who = WhoLocal
	}
	argv := []string{bin, "--who", who}
	if o.Host != "" {
		argv = append(argv, "--host", o.Host)
	}
	for _, p := range o.HTTPPorts {
		argv = append(argv, "--http", strconv.Itoa(p))
	}
	for _, p := range o.EchoPorts {
		argv = append(argv, "--echo", strconv.Itoa(p))
	}
	return argv
}

// AppReadyLine starts the line podapp prints once all its listeners are up.
const AppReadyLine = "podapp ready "

// AppStartTimeout bounds the wait for a local app's ready line.
const AppStartTimeout = 60 * time.Second

// StartLocalApp runs podapp under `tether exec --agent-addr agentAddr`
// (with opts.Config) and waits for its ready line. It fails t if the app
// does not get ready. Its output is logged if t fails.
func StartLocalApp(t testing.TB, agentAddr string, opts AppOpts) *App {
	t.Helper()
	a := StartLocalAppNoWait(t, agentAddr, opts)
	a.waitReady(t)
	return a
}

// StartLocalAppNoWait is StartLocalApp without waiting for readiness (for
// runs expected to fail).
func StartLocalAppNoWait(t testing.TB, agentAddr string, opts AppOpts) *App {
	t.Helper()
	p := StartExec(t, agentAddr, ExecOpts{Config: opts.Config, ConfigName: opts.ConfigName, Args: opts.Args}, opts.argv(PodApp(t))...)
	return newLocalApp(t, p, opts)
}

// StartApp runs podapp locally without tether and waits for its ready line.
func StartApp(t testing.TB, opts AppOpts) *App {
	t.Helper()
	p := Start(t, ExecOpts{}, opts.argv(PodApp(t))...)
	a := newLocalApp(t, p, opts)
	a.waitReady(t)
	return a
}

func newLocalApp(t testing.TB, p *Process, opts AppOpts) *App {
	who := opts.Who
	if who == "" {
		who = WhoLocal
	}
	a := &App{Who: who, proc: p.proc, exec: p, stdout: p.stdout, stderr: p.stderr}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("local app (%s, pid %d):\n%s", shellQuote(p.argv), p.PID, indent(a.Describe()))
		}
	})
	return a
}

func (a *App) waitReady(t testing.TB) {
	t.Helper()
	if !a.WaitStdout(AppReadyLine, AppStartTimeout) {
		res, _ := a.exec.Wait(0)
		t.Fatalf("the local app did not print %q within %v\n%s", AppReadyLine, AppStartTimeout, res)
	}
	// The line may be incomplete when the prefix arrives.
	a.WaitStdout(AppReadyLine+"who="+a.Who+" pid=", 5*time.Second)
	WaitFor(5*time.Second, func() error {
		pid, err := parseReadyPID(a.Stdout())
		a.PID = pid
		return err
	})
}

func parseReadyPID(out string) (int, error) {
	i := strings.Index(out, AppReadyLine)
	if i < 0 {
		return 0, fmt.Errorf("no ready line")
	}
	line, _, complete := strings.Cut(out[i:], "\n")
	if !complete {
		return 0, fmt.Errorf("incomplete ready line")
	}
	_, p, ok := strings.Cut(line, " pid=")
	if !ok {
		return 0, fmt.Errorf("no pid in %q", line)
	}
	return strconv.Atoi(strings.TrimSpace(p))
}

// PodApp returns the app running in the pod, starting it on first use:
// PodAppPath in the pod's network, mount and UTS namespaces and root (via
// nsenter, which execs it: the PID is the app's), serving every port of
// PodAppHTTPPorts and PodAppEchoPorts. It runs until the test binary ends.
func (e *Env) PodApp(t testing.TB) *App {
	t.Helper()
	bin := PodApp(t)
	e.podAppOnce.Do(func() { e.podApp, e.podAppErr = startPodApp(e.Pod, bin) })
	if e.podAppErr != nil {
		t.Fatalf("harness: the pod's app: %v", e.podAppErr)
	}
	if e.podApp.Exited() || !processAlive(e.podApp.PID) {
		t.Fatalf("harness: the pod's app (pid %d) has exited\n%s", e.podApp.PID, e.podApp.Describe())
	}
	return e.podApp
}

func startPodApp(pod *Pod, bin string) (*App, error) {
	dst := pod.Path(PodAppPath)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return nil, err
	}
	if err := copyFile(bin, dst, 0o755); err != nil {
		return nil, err
	}
	nsenter, err := lookTool("nsenter")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(nsenter, "-t", strconv.Itoa(pod.PID), "-n", "-m", "-u", "-r", "-w", "--",
		PodAppPath, "--who", WhoPod,
		"--http", fmt.Sprintf("%d-%d", PodAppFirstHTTPPort, PodAppLastHTTPPort),
		"--echo", fmt.Sprintf("%d-%d", PodAppFirstEchoPort, PodAppLastEchoPort))
	cmd.Env = pod.Env
	cmd.Dir = "/"
	a := &App{Who: WhoPod, stdout: newSyncBuffer(), stderr: newSyncBuffer()}
	cmd.Stdout = a.stdout
	cmd.Stderr = a.stderr
	p, err := startProc(cmd)
	if err != nil {
		return nil, fmt.Errorf("starting the pod's app: %w", err)
	}
	a.proc = p
	addGlobalCleanup(func() { p.stop(syscall.SIGTERM, 3*time.Second, false) })
	if !a.WaitStdout(AppReadyLine, 15*time.Second) {
		p.stop(syscall.SIGKILL, 0, false)
		return nil, fmt.Errorf("the pod's app did not get ready\n%s", a.Describe())
	}
	if err := WaitFor(5*time.Second, func() error {
		pid, err := parseReadyPID(a.Stdout())
		a.PID = pid
		return err
	}); err != nil {
		return nil, err
	}
	if a.PID != p.pid() {
		return nil, fmt.Errorf("the pod's app reports pid %d, nsenter was %d (nsenter forked?)", a.PID, p.pid())
	}
	return a, nil
}

// WaitFor calls cond every 50 ms until it returns nil or timeout has
// passed; it returns nil, or the last error of cond.
func WaitFor(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
