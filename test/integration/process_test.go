package integration

import (
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/test/harness"
)

// TestHostname: gethostname/uname and Go's os.Hostname (which reads
// /proc/sys/kernel/hostname) report the pod's hostname.
func TestHostname(t *testing.T) {
	f := start(t)
	localName, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	if localName == harness.PodHostname {
		t.Fatalf("local hostname equals the pod's (%s): the test cannot tell them apart", localName)
	}
	for _, c := range []struct {
		name string
		cmd  []string
	}{
		{"hostname", []string{"hostname"}},
		{"uname", []string{"uname", "-n"}},
		{"busybox", []string{harness.NeedTool(t, "busybox"), "hostname"}},
		{"go", []string{harness.Probe(t), "hostname"}},
		{"python", []string{python3, "-c", "import socket; print(socket.gethostname())"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := f.tether(t, "", c.cmd...)
			if wantOK(t, r); strings.TrimSpace(r.Stdout) != harness.PodHostname {
				t.Fatalf("want %q\n%s", harness.PodHostname, r)
			}
		})
	}
	t.Run("disabled", func(t *testing.T) {
		r := f.tether(t, `{"hostname": false}`, harness.Probe(t), "hostname")
		if wantOK(t, r); strings.TrimSpace(r.Stdout) != localName {
			t.Fatalf("with hostname: false want the local %q\n%s", localName, r)
		}
	})
}

// TestShellPipeline: children and grandchildren of a shell are all covered.
func TestShellPipeline(t *testing.T) {
	f := start(t)
	harness.NeedTool(t, "curl")
	r := f.tether(t, "", "sh", "-c", `sh -c "cat /app/response.txt" | wc -c; curl -sS --noproxy '*' --max-time 20 http://web/pipeline`)
	wantOK(t, r)
	if l := lines(r.Stdout); len(l) == 0 || l[0] != strconv.Itoa(len(harness.PodResponse)) {
		t.Fatalf("want %d from wc -c first\n%s", len(harness.PodResponse), r)
	}
	wantStdout(t, r, webProof("/pipeline")...)
}

// TestExitCode: the child's exit status is tether's.
func TestExitCode(t *testing.T) {
	f := start(t)
	for _, code := range []int{0, 1, 7, 42} {
		r := f.tether(t, "", "sh", "-c", "exit "+strconv.Itoa(code))
		if r.ExitCode != code {
			t.Fatalf("want exit code %d\n%s", code, r)
		}
	}
}

// startSleepingChild runs `sleep 30` (through sh, which prints its PID)
// under tether exec and returns the tether process and the child's PID. A
// child tether leaves behind is killed at the end of the test.
func startSleepingChild(t *testing.T, f *fixture) (*harness.Process, int) {
	t.Helper()
	p := harness.StartExec(t, f.agent.Addr, harness.ExecOpts{}, "sh", "-c", `echo "child=$$"; exec sleep 30`)
	if !p.WaitStdout("child=", 30*time.Second) || !p.WaitStdout("\n", 5*time.Second) {
		res, _ := p.Wait(0)
		t.Fatalf("the child did not start\n%s", res)
	}
	var childPID int
	for _, l := range lines(p.Stdout()) {
		if v, ok := strings.CutPrefix(l, "child="); ok {
			childPID, _ = strconv.Atoi(v)
		}
	}
	if childPID <= 1 {
		t.Fatalf("bad child pid in %q", p.Stdout())
	}
	t.Cleanup(func() {
		// If tether left it behind, end it (it is ours: a sleep we started).
		if cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(childPID) + "/cmdline"); err == nil && strings.HasPrefix(string(cmdline), "sleep\x00") {
			syscall.Kill(childPID, syscall.SIGKILL)
		}
	})
	return p, childPID
}

// TestSIGINT: SIGINT to tether exec stops the child promptly; tether exits 130.
func TestSIGINT(t *testing.T) {
	f := start(t)
	p, childPID := startSleepingChild(t, f)
	time.Sleep(200 * time.Millisecond) // let the child settle in sleep
	sent := time.Now()
	if err := p.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	res, ok := p.Wait(10 * time.Second)
	if !ok {
		p.Kill()
		res, _ = p.Wait(5 * time.Second)
		t.Fatalf("tether exec did not exit within 10s of SIGINT\n%s", res)
	}
	if res.ExitCode != 130 {
		t.Errorf("want tether exit code 130 after SIGINT\n%s", res)
	}
	if d := time.Since(sent); d > 5*time.Second {
		t.Errorf("tether took %v to exit after SIGINT", d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for harness.ProcessAlive(childPID) {
		if time.Now().After(deadline) {
			t.Fatalf("the child (pid %d, sleep 30) still runs after tether exited", childPID)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestIOURing: io_uring is refused (ENOSYS), since it would bypass the
// syscall interception.
func TestIOURing(t *testing.T) {
	f := start(t)
	probe := harness.Probe(t)
	wantStdout(t, f.tether(t, "", probe, "uring"), "io_uring: errno=38 ")
	if r := local(t, probe, "uring"); !strings.Contains(r.Stdout, "io_uring: ok") {
		t.Logf("note: io_uring is not available locally either (%s); only the tether side is checked", strings.TrimSpace(r.Stdout))
	}
}

// TestBadAgentAddress: tether exec fails clearly when the agent is not there.
func TestBadAgentAddress(t *testing.T) {
	harness.Setup(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // now nothing listens there
	marker := "tth-ran-" + randHex()
	r := harness.Exec(t, addr, harness.ExecOpts{Timeout: 45 * time.Second}, "echo", marker)
	if r.OK() {
		t.Fatalf("want failure for an agent address where nothing listens\n%s", r)
	}
	if !strings.Contains(r.Stderr+r.Stdout, addr) {
		t.Errorf("the error should mention the address %s\n%s", addr, r)
	}
	if strings.Contains(r.Stdout, marker) {
		t.Errorf("the command ran although there is no agent\n%s", r)
	}
}

// TestKillTetherKillsChild: when tether itself is killed (SIGKILL, no
// chance to clean up), the command it supervised does not run on without
// its supervisor.
func TestKillTetherKillsChild(t *testing.T) {
	f := start(t)
	p, childPID := startSleepingChild(t, f)
	// Wait until the child is settled in sleep (exec done, libraries
	// loaded): a child still making trapped syscalls would die of ENOSYS
	// anyway and prove nothing.
	settle := time.Now().Add(10 * time.Second)
	for {
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(childPID) + "/comm")
		if strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if time.Now().After(settle) {
			t.Fatalf("child %d never became sleep (comm %q)", childPID, comm)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	p.Kill()
	p.Wait(10 * time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for harness.ProcessAlive(childPID) {
		if time.Now().After(deadline) {
			syscall.Kill(childPID, syscall.SIGKILL)
			t.Fatalf("child %d still running after tether was killed", childPID)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
