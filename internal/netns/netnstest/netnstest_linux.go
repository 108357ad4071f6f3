// Package netnstest gives tests a fresh network namespace to work in.
package netnstest

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"
)

// New starts a process in a fresh network namespace (loopback up) and
// returns the namespace's path; the process ends with the test. It skips
// the test unless TETHER_INTEGRATION=1 (make test sets it), and fails it
// when not root.
func New(t *testing.T) string {
	t.Helper()
	if os.Getenv("TETHER_INTEGRATION") != "1" {
		t.Skip("needs root and network namespaces: set TETHER_INTEGRATION=1 (make test does)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("TETHER_INTEGRATION=1 needs root")
	}
	cmd := exec.Command("unshare", "--net", "--", "sh", "-c", "ip link set lo up && echo ready && exec sleep 600")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 6)
	if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("namespace helper: %q %v", buf, err)
	}
	return fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)
}
