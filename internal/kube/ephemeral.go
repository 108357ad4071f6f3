package kube

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
)

// ephemeralPrefix names tether's ephemeral containers. Ephemeral containers
// cannot be removed from a pod, so each new agent gets the next number.
const ephemeralPrefix = "tether-agent"

// ensureEphemeral runs the agent as an ephemeral container in the target
// pod (sharing its network, and the target container's PID namespace), or
// shares the one already running there.
func (m *AgentManager) ensureEphemeral(ctx context.Context, t *Resolved, o AgentOptions) (*Agent, error) {
	ns := t.Namespace
	for attempt := 0; ; attempt++ {
		a, err := m.tryEphemeral(ctx, t, o)
		if err == nil || !apierrors.IsConflict(err) || attempt >= 5 {
			return a, err
		}
		// Another session changed the pod at the same moment (probably
		// adding its own agent): look again, and share that one.
		m.say("pod %s/%s changed meanwhile; looking again", ns, t.Pod.Name)
	}
}

func (m *AgentManager) tryEphemeral(ctx context.Context, t *Resolved, o AgentOptions) (*Agent, error) {
	ns := t.Namespace
	pod, err := m.Client.CoreV1().Pods(ns).Get(ctx, t.Pod.Name, metav1.GetOptions{})
	if err != nil {
		return nil, forbiddenHint(err, "get", "pods", ns)
	}
	n := 0
	for _, ec := range pod.Spec.EphemeralContainers {
		if !strings.HasPrefix(ec.Name, ephemeralPrefix) {
			continue
		}
		n++
		// Share a running agent, or one still starting (no status yet, or
		// waiting to start); ended ones cannot be restarted.
		var st *corev1.ContainerStatus
		for i := range pod.Status.EphemeralContainerStatuses {
			if pod.Status.EphemeralContainerStatuses[i].Name == ec.Name {
				st = &pod.Status.EphemeralContainerStatuses[i]
			}
		}
		if st != nil && st.State.Terminated != nil {
			continue
		}
		if st != nil && st.State.Waiting != nil && st.State.Waiting.Reason != "" && st.State.Waiting.Reason != "ContainerCreating" && st.State.Waiting.Reason != "PodInitializing" {
			continue // e.g. an image that cannot be pulled: not worth sharing
		}
		m.say("sharing the agent %s in pod %s", ec.Name, pod.Name)
		if err := m.waitEphemeral(ctx, ns, pod.Name, ec.Name); err != nil {
			return nil, err
		}
		return &Agent{Namespace: ns, Pod: pod.Name, Port: o.Port, Name: ec.Name, Token: tokenOf(ec.Env), Ephemeral: true}, nil
	}
	name := fmt.Sprintf("%s-%d", ephemeralPrefix, n+1)
	token := newToken()
	ec := corev1.EphemeralContainer{
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name:            name,
			Image:           o.Image,
			ImagePullPolicy: o.PullPolicy,
			// In the target container's PID namespace its main process is 1.
			Args: agentArgs(o, []string{"--target-pid", "1"}),
			Env:  []corev1.EnvVar{{Name: TokenEnv, Value: token}},
			SecurityContext: &corev1.SecurityContext{
				RunAsUser:    ptr.To[int64](0),
				Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW", "SYS_PTRACE"}},
			},
		},
		TargetContainerName: t.Container,
	}
	updated := pod.DeepCopy()
	updated.Spec.EphemeralContainers = append(updated.Spec.EphemeralContainers, ec)
	_, err = m.Client.CoreV1().Pods(ns).UpdateEphemeralContainers(ctx, pod.Name, updated, metav1.UpdateOptions{})
	if err != nil && strings.Contains(err.Error(), "PodSecurity") {
		// Baseline namespaces refuse added capabilities: run without them.
		// Files, environment, DNS and outgoing traffic still work; incoming
		// needs NET_ADMIN.
		m.say("Pod Security Admission refuses NET_ADMIN/NET_RAW/SYS_PTRACE in namespace %s: starting the agent without them (no incoming traffic)", ns)
		updated.Spec.EphemeralContainers[len(updated.Spec.EphemeralContainers)-1].SecurityContext.Capabilities = nil
		_, err = m.Client.CoreV1().Pods(ns).UpdateEphemeralContainers(ctx, pod.Name, updated, metav1.UpdateOptions{})
	}
	if err != nil {
		if apierrors.IsConflict(err) {
			return nil, err
		}
		return nil, admissionError(err, ns, "pods/ephemeralcontainers")
	}
	m.say("added ephemeral container %s to pod %s", name, pod.Name)
	if err := m.waitEphemeral(ctx, ns, pod.Name, name); err != nil {
		return nil, err
	}
	return &Agent{Namespace: ns, Pod: pod.Name, Port: o.Port, Name: name, Created: true, Token: token, Ephemeral: true}, nil
}

// waitEphemeral waits until the named ephemeral container runs.
func (m *AgentManager) waitEphemeral(ctx context.Context, ns, pod, name string) error {
	return wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		p, err := m.Client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return false, forbiddenHint(err, "get", "pods", ns)
		}
		ready, _, err := agentContainerState(p, name)
		return ready, err
	})
}
