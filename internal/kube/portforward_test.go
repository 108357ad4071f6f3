package kube

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

// TestForwardError: the kubelet's long report that nothing listens is
// said short and is an ECONNREFUSED; other reports are kept as they are.
func TestForwardError(t *testing.T) {
	refused := `error forwarding port 7077 to pod f45f14fc9798d681170c2516de20bb17121daa025a8336e2821531823f24ec12, uid : failed to execute portforward in network namespace "/var/run/netns/cni-9f5a1404": failed to connect to localhost:7077 inside namespace "f45f14fc9798", IPv4: dial tcp4 127.0.0.1:7077: connect: connection refused IPv6 dial tcp6: address localhost: no suitable address found`
	err := forwardError(refused)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("%v: not an ECONNREFUSED", err)
	}
	if got := err.Error(); !strings.Contains(got, "nothing listens on the port in the pod") || !strings.Contains(got, "failed to connect to localhost:7077") || strings.Contains(got, "cni-") {
		t.Errorf("refused: %q", got)
	}
	other := "pod not found"
	if err := forwardError(other); errors.Is(err, syscall.ECONNREFUSED) || err.Error() != other {
		t.Errorf("other: %v", err)
	}
}
