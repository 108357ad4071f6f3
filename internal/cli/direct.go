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

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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

// transportState is what auto learned: agents whose pod IP did not answer,
// and the IPs of agent pods that had none yet when they were found.
type transportState struct {
	mode        string // agent.transport; "" as auto
	unreachable sync.Map
	ips         sync.Map // namespace/pod -> IP
}

// inCluster reports whether tether runs in a Kubernetes pod.
func inCluster() bool { return os.Getenv("KUBERNETES_SERVICE_HOST") != "" }

// listenOnPodIP reports whether a Job agent started with this transport
// should listen on its pod's IP (in TLS) as well as its loopback: only
// when the direct transport will be tried, so that an agent of a tether
// outside the cluster takes nothing from the pod network.
func listenOnPodIP(transport string) bool {
	return transport == "direct" || transport != "port-forward" && inCluster()
}

// dialDirect connects to ag's pod IP when the transport says so; ok
// false: use the port-forward.
func (k *kubeClients) dialDirect(ctx context.Context, ag *kube.Agent) (c net.Conn, ok bool, err error) {
	mode := k.transport.mode
	direct := mode == "direct"
	switch {
	case mode == "port-forward", !direct && !inCluster():
		return nil, false, nil
	case ag.Ephemeral || ag.Token == "":
		if direct {
			return nil, true, &UsageError{Err: fmt.Errorf("agent.transport is direct, but agent %s/%s has no pod IP of its own (an ephemeral agent runs in its target's pod): use a Job agent (drop --ephemeral), or set agent.transport to auto", ag.Namespace, ag.Pod)}
		}
		return nil, false, nil
	case !ag.OnPodIP:
		if direct {
			return nil, true, &UsageError{Err: fmt.Errorf("agent.transport is direct, but agent %s/%s listens on its pod's loopback only: it was started for a tether outside the cluster or with agent.transport port-forward, and its other sessions share it; set agent.transport to auto, or run again once it has ended (agent.linger after its last session)", ag.Namespace, ag.Pod)}
		}
		return nil, false, nil
	}
	ip := k.agentIP(ctx, ag)
	if ip == "" {
		if direct {
			// A starting agent's pod gets its IP from the network plugin
			// a moment after it is on its node: the caller retries.
			return nil, true, fmt.Errorf("agent pod %s/%s has no IP yet", ag.Namespace, ag.Pod)
		}
		return nil, false, nil
	}
	addr := net.JoinHostPort(ip, strconv.Itoa(ag.Port))
	if _, gave := k.transport.unreachable.Load(addr); gave && !direct {
		return nil, false, nil
	}
	dctx := ctx
	if !direct {
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
	if direct {
		if errors.Is(err, syscall.ECONNREFUSED) {
			// Not listening yet (starting) or any more (ending): the
			// caller retries or looks at the agent's pod.
			return nil, true, fmt.Errorf("agent %s/%s at %s: %w", ag.Namespace, ag.Pod, addr, err)
		}
		return nil, true, fmt.Errorf("agent.transport is direct, but agent %s/%s does not answer at %s: %w; tether must run where pod IPs are reachable (a pod, a dev container in the cluster), or set agent.transport to auto or port-forward", ag.Namespace, ag.Pod, addr, err)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && ctx.Err() == nil {
		// Not reachable from here (a refusal is an agent not yet
		// listening: tried again next time).
		k.transport.unreachable.Store(addr, true)
	}
	return nil, false, nil
}

// agentIP is ag's pod IP; for an agent found while its pod had none yet
// (AgentOptions.Early), read from its pod once it has one.
func (k *kubeClients) agentIP(ctx context.Context, ag *kube.Agent) string {
	if ag.PodIP != "" {
		return ag.PodIP
	}
	key := ag.Namespace + "/" + ag.Pod
	if ip, ok := k.transport.ips.Load(key); ok {
		return ip.(string)
	}
	p, err := k.client.CoreV1().Pods(ag.Namespace).Get(ctx, ag.Pod, metav1.GetOptions{})
	if err != nil || p.Status.PodIP == "" {
		return ""
	}
	k.transport.ips.Store(key, p.Status.PodIP)
	return p.Status.PodIP
}
