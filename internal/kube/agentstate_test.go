package kube

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestAgentContainerStateKilled: an agent killed at start says why and
// what to do; under a memory limit a SIGKILL is the OOM killer even when
// the runtime reports a plain "Error".
func TestAgentContainerStateKilled(t *testing.T) {
	pod := func(limit string, reason string, code int32) *corev1.Pod {
		c := corev1.Container{Name: "agent"}
		if limit != "" {
			c.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(limit)}
		}
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "ns"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{c}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
				Name: "agent", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: reason, ExitCode: code}},
			}}},
		}
	}
	for _, c := range []struct {
		name string
		pod  *corev1.Pod
		want []string
	}{
		{"OOMKilled", pod("4Mi", "OOMKilled", 137), []string{"ran out of memory", "4Mi", "raise agent.memory_limit"}},
		{"Error 137 under a limit", pod("4Mi", "Error", 137), []string{"killed (Error, code 137)", "4Mi", "most likely ran out of memory", "raise agent.memory_limit"}},
		{"Error 137 without a limit", pod("", "Error", 137), []string{"the agent exited (Error, code 137)", "kubectl -n ns logs a -c agent"}},
		{"Error 1 under a limit", pod("4Mi", "Error", 1), []string{"the agent exited (Error, code 1)"}},
	} {
		_, _, err := agentContainerState(c.pod, "agent")
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", c.name, err, w)
			}
		}
	}
}
