package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/tether-dev/tether/internal/agenttls"
	"github.com/tether-dev/tether/internal/kube"
)

// The direct transport (agent.transport): tether inside the cluster (a CI
// runner pod, a dev container) connects to its agent's pod IP, in TLS
// keyed by the agent's token, instead of through the API server's
// port-forward: no API server, kubelet and SPDY/WebSocket framing on the
// path of every byte.

// directTimeout bounds auto's attempt at the direct transport: past it,
// the pod network is taken to be out of reach and port-forward is used.
const directTimeout = time.Second

// transportState is what auto learned: agents whose pod IP did not answer.
type transportState struct {
	mode        string // agent.transport; "" as auto
	unreachable sync.Map
}

// inCluster reports whether tether runs in a Kubernetes pod.
func inCluster() bool { return os.Getenv("KUBERNETES_SERVICE_HOST") != "" }

// dialDirect connects to ag's pod IP when the transport says so; ok
// false: use the port-forward.
func (k *kubeClients) dialDirect(ctx context.Context, ag *kube.Agent) (c net.Conn, ok bool, err error) {
	mode := k.transport.mode
	switch {
	case mode == "port-forward":
		return nil, false, nil
	case mode == "direct" && (ag.PodIP == "" || ag.Token == ""):
		return nil, true, fmt.Errorf("agent.transport is direct, but agent %s/%s has no pod IP of its own (an ephemeral agent runs in its target's pod): use a Job agent (drop --ephemeral), or set agent.transport to auto", ag.Namespace, ag.Pod)
	case mode != "direct" && (ag.PodIP == "" || ag.Token == "" || !inCluster()):
		return nil, false, nil
	}
	addr := net.JoinHostPort(ag.PodIP, strconv.Itoa(ag.Port))
	if _, gave := k.transport.unreachable.Load(addr); gave && mode != "direct" {
		return nil, false, nil
	}
	dctx := ctx
	if mode != "direct" {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, directTimeout)
		defer cancel()
	}
	var d net.Dialer
	raw, err := d.DialContext(dctx, "tcp", addr)
	if err == nil {
		tc := agenttls.Client(raw, ag.Token)
		if err = tc.HandshakeContext(dctx); err == nil {
			return tc, true, nil
		}
		raw.Close()
	}
	if mode == "direct" {
		return nil, true, fmt.Errorf("agent.transport is direct, but agent %s/%s does not answer at %s: %w; tether must run where pod IPs are reachable (a pod, a dev container in the cluster), or set agent.transport to auto or port-forward", ag.Namespace, ag.Pod, addr, err)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && ctx.Err() == nil {
		// Not reachable from here (a refusal is an agent not yet
		// listening: tried again next time).
		k.transport.unreachable.Store(addr, true)
	}
	return nil, false, nil
}
