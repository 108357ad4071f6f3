package operator

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tether-dev/tether/internal/kube"
	"github.com/tether-dev/tether/internal/protocol"
)

// AgentSelector selects the operator's agent pods in its namespace.
const AgentSelector = kube.LabelApp + "=" + kube.AppAgent

// agentPods returns the running agent pods of the operator's namespace.
func (o *Operator) agentPods(ctx context.Context) ([]corev1.Pod, error) {
	list, err := o.Client.CoreV1().Pods(o.Namespace).List(ctx, metav1.ListOptions{LabelSelector: AgentSelector})
	if err != nil {
		return nil, fmt.Errorf("listing the agents in %s: %w", o.Namespace, err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// adminTimeout bounds one exchange on an agent's admin channel.
const adminTimeout = 5 * time.Second

// admin makes one request on agent pod p's admin channel.
func (o *Operator) admin(ctx context.Context, p *corev1.Pod, req protocol.AdminRequest) (protocol.AdminResponse, error) {
	var resp protocol.AdminResponse
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	port := kube.DefaultAgentPort
	if o.Agent.Port != 0 {
		port = o.Agent.Port
	}
	c, err := o.dial(ctx, net.JoinHostPort(p.Status.PodIP, strconv.Itoa(port)), kube.AgentToken(p))
	if err != nil {
		return resp, err
	}
	defer c.Close()
	if _, err := protocol.ClientHandshake(c, protocol.Hello{Admin: true, Token: kube.AgentToken(p), Client: "tether-operator"}); err != nil {
		return resp, fmt.Errorf("agent %s: %w", p.Name, err)
	}
	c.SetDeadline(time.Now().Add(adminTimeout))
	if err := protocol.WriteFrame(c, req); err != nil {
		return resp, fmt.Errorf("agent %s: %w", p.Name, err)
	}
	if err := protocol.ReadFrame(c, &resp); err != nil {
		return resp, fmt.Errorf("agent %s: reading its answer: %w", p.Name, err)
	}
	if resp.Error != "" {
		return resp, fmt.Errorf("agent %s: %s", p.Name, resp.Error)
	}
	return resp, nil
}

// agentSessions is one agent pod's sessions.
type agentSessions struct {
	pod      *corev1.Pod
	sessions []protocol.SessionInfo
	err      error
}

// allSessions asks every agent for its sessions, in parallel.
func (o *Operator) allSessions(ctx context.Context) ([]agentSessions, error) {
	pods, err := o.agentPods(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]agentSessions, len(pods))
	var wg sync.WaitGroup
	for i := range pods {
		wg.Go(func() {
			resp, err := o.admin(ctx, &pods[i], protocol.AdminRequest{Op: protocol.AdminSessions})
			out[i] = agentSessions{pod: &pods[i], sessions: resp.Sessions, err: err}
		})
	}
	wg.Wait()
	return out, nil
}
