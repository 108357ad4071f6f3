package kube

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// AgentMode is how the agent reaches its target.
type AgentMode string

// Agent spawn modes.
const (
	// ModeJob: a Job pinned to the target's node, hostPID, entering the
	// target container's namespaces (the default).
	ModeJob AgentMode = "job"
	// ModeEphemeral: an ephemeral container inside the target pod.
	ModeEphemeral AgentMode = "ephemeral"
	// ModeTargetless: a plain pod, for outgoing traffic and DNS only.
	ModeTargetless AgentMode = "targetless"
)

// Labels tether puts on its objects.
const (
	LabelApp    = "app.kubernetes.io/name"
	AppAgent    = "tether-agent"
	LabelTarget = "tether.dev/target-uid"
)

// DefaultAgentPort is where the agent listens, on loopback inside its pod:
// only a port-forward reaches it.
const DefaultAgentPort = 7077

// AgentOptions describe the agent to run.
type AgentOptions struct {
	Image          string
	PullPolicy     corev1.PullPolicy
	Mode           AgentMode
	Port           int
	Linger         time.Duration
	StartupTimeout time.Duration
	// SessionGrace is how long the agent keeps a disconnected session
	// (0: the agent's default, 60s).
	SessionGrace time.Duration
	// MemoryLimit limits the Job agent's memory (zero: no limit).
	// Ephemeral containers cannot have resources.
	MemoryLimit resource.Quantity
	// Early makes Ensure return a new Job agent once its pod is on its
	// node and its container is not failing, before the API says it runs
	// (Agent.Starting): the kubelet reports a started container up to a
	// second late (its relist period), while a port-forward reaches the
	// agent as soon as it listens. The caller dials until it answers.
	Early bool
	// PerNode makes a Job agent serve every target pod of its namespace
	// on its node (tether-agent --node): the replicas of a workload on one
	// node share one agent, whose sessions name their container
	// (Agent.Target), so that a session on N replicas does not wait for N
	// agent pods to start.
	PerNode bool
	// Namespace is where a Job agent runs ("": the target's namespace):
	// tether-operator keeps its agents in its own, out of its users' reach.
	Namespace string
	// ListenAll makes the agent listen on its pod's IP, not only on
	// loopback: for tether-operator, which dials it there (with its token)
	// instead of port-forwarding.
	ListenAll bool
	// Audited makes the agent, once idle, wait (briefly) for its audit
	// trail to have read how its last sessions ended before it exits:
	// tether-operator's agents.
	Audited bool
	// TargetlessDNS, when set, is the DNS of a targetless agent's pod: for
	// one that runs outside the namespace it serves (tether-operator's),
	// so that names resolve as in that namespace's pods.
	TargetlessDNS *corev1.PodDNSConfig
}

// Agent is a running agent: the pod and port to port-forward to.
type Agent struct {
	Namespace string
	Pod       string
	PodIP     string // its pod's IP, when known (Job agents)
	// OnPodIP: the agent listens on its pod's IP (AgentOptions.ListenAll,
	// in TLS there), not only on its loopback, so that the direct
	// transport and tether-operator can reach it.
	OnPodIP bool
	// Ephemeral: an ephemeral container in its target's pod.
	Ephemeral bool
	Port      int
	Name      string // Job or ephemeral container name
	Created   bool   // this call created it; false: an existing agent is shared
	Token     string // what clients must present to the agent
	// Target is the container a session names in its hello, for an agent
	// that serves several ("": the agent's own target).
	Target string
	// Starting: returned early (AgentOptions.Early), its container was
	// not seen running yet; dials fail until the agent listens.
	Starting bool
	// Via, when set, is the targets.tether.dev name the agent is reached
	// through (tether-operator's targets/connect), for Pod (the target's
	// pod, then) and Container.
	Via       string
	Container string
}

// TokenEnv carries the agent's token into its container.
const TokenEnv = "TETHER_AGENT_TOKEN"

// newToken returns a random agent token.
func newToken() string {
	var b [24]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// AgentToken is the token of a Job agent's pod ("" when it has none).
func AgentToken(p *corev1.Pod) string {
	for _, c := range p.Spec.Containers {
		if t := tokenOf(c.Env); t != "" {
			return t
		}
	}
	return ""
}

// tokenOf reads the token from a container's environment.
func tokenOf(env []corev1.EnvVar) string {
	for _, e := range env {
		if e.Name == TokenEnv {
			return e.Value
		}
	}
	return ""
}

// AgentManager finds or creates agents.
type AgentManager struct {
	Client kubernetes.Interface
	// Progress, when set, hears about waiting steps.
	Progress func(msg string)
}

func (m *AgentManager) say(format string, args ...any) {
	if m.Progress != nil {
		m.Progress(fmt.Sprintf(format, args...))
	}
}

// agentName is deterministic per target pod (or per namespace when
// targetless), so sessions started at the same moment share one agent.
func agentName(t *Resolved, perNode bool, agentNS string) string {
	key := "targetless/" + t.Namespace
	switch {
	case t.Pod != nil && perNode:
		// One per node and agent namespace: the operator's serve every
		// namespace's pods on their node.
		key = "node/" + cmp.Or(agentNS, t.Namespace) + "/" + t.Pod.Spec.NodeName
	case t.Pod != nil:
		key = string(t.Pod.UID) + "/" + t.Container
	}
	sum := sha256.Sum256([]byte(key))
	return "tether-agent-" + hex.EncodeToString(sum[:])[:12]
}

func (o *AgentOptions) defaults() {
	if o.Port == 0 {
		o.Port = DefaultAgentPort
	}
	if o.Linger == 0 {
		o.Linger = 30 * time.Second
	}
	if o.StartupTimeout == 0 {
		o.StartupTimeout = 60 * time.Second
	}
	if o.PullPolicy == "" {
		o.PullPolicy = corev1.PullIfNotPresent
	}
}

// agentArgs is the agent's command line.
func agentArgs(o AgentOptions, target []string) []string {
	host := "127.0.0.1"
	if o.ListenAll {
		host = "0.0.0.0"
	}
	args := []string{"--listen", host + ":" + strconv.Itoa(o.Port), "--linger", o.Linger.String()}
	if o.SessionGrace > 0 {
		args = append(args, "--session-grace", o.SessionGrace.String())
	}
	if o.Audited {
		args = append(args, "--audited")
	}
	return append(args, target...)
}

// listensOnPodIP reports whether an agent with these arguments (agentArgs)
// listens on its pod's IP.
func listensOnPodIP(args []string) bool {
	for i, a := range args {
		if a == "--listen" && i+1 < len(args) {
			host, _, err := net.SplitHostPort(args[i+1])
			return err == nil && !isLoopbackHost(host)
		}
	}
	return false
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// agentCapabilities are all the agent needs: enter namespaces (SYS_ADMIN),
// read the target's /proc entries (SYS_PTRACE), redirect rules and socket
// marks (NET_ADMIN), capture a mirrored port's packets (NET_RAW).
var agentCapabilities = []corev1.Capability{"NET_ADMIN", "NET_RAW", "SYS_ADMIN", "SYS_PTRACE"}

// jobPod is the pod template of a Job agent.
func jobPod(t *Resolved, o AgentOptions, name string) corev1.PodSpec {
	spec := corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever,
		// Room for the agent's drain (agent.ShutdownLimit, 13 s): its
		// clients' requests in flight finish before it goes.
		TerminationGracePeriodSeconds: ptr.To[int64](15),
		AutomountServiceAccountToken:  ptr.To(false),
		EnableServiceLinks:            ptr.To(false),
		Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		Containers: []corev1.Container{{
			Name:            "agent",
			Image:           o.Image,
			ImagePullPolicy: o.PullPolicy,
			SecurityContext: &corev1.SecurityContext{
				RunAsUser:                ptr.To[int64](0),
				AllowPrivilegeEscalation: ptr.To(false),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: agentCapabilities},
			},
			Env: []corev1.EnvVar{{Name: TokenEnv, Value: newToken()}},
		}},
	}
	c := &spec.Containers[0]
	if !o.MemoryLimit.IsZero() {
		c.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: o.MemoryLimit}
	}
	if t.Pod == nil {
		c.Args = agentArgs(o, []string{"--target-self"})
		c.SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
		if o.TargetlessDNS != nil {
			spec.DNSPolicy, spec.DNSConfig = corev1.DNSNone, o.TargetlessDNS.DeepCopy()
		}
		return spec
	}
	spec.NodeName = t.Pod.Spec.NodeName
	spec.HostPID = true
	target := []string{"--target-container-id", t.ContainerID}
	if o.PerNode {
		target = append(target, "--node")
	}
	c.Args = agentArgs(o, target)
	return spec
}

// Ensure returns a ready agent for the target, creating it when none runs.
func (m *AgentManager) Ensure(ctx context.Context, t *Resolved, o AgentOptions) (*Agent, error) {
	o.defaults()
	if o.Image == "" {
		return nil, fmt.Errorf("no agent image: set agent.image in the config")
	}
	mode := o.Mode
	if t.Pod == nil {
		mode = ModeTargetless
	}
	ctx, cancel := context.WithTimeout(ctx, o.StartupTimeout)
	defer cancel()
	var a *Agent
	var err error
	switch mode {
	case ModeEphemeral:
		a, err = m.ensureEphemeral(ctx, t, o)
	default:
		a, err = m.ensureJob(ctx, t, o)
	}
	// client-go's rate limiter refuses a wait that would pass the
	// deadline before the deadline comes, with an error of its own.
	if err != nil && (ctx.Err() != nil || strings.Contains(err.Error(), "would exceed context deadline")) {
		return nil, fmt.Errorf("the agent was not ready within agent.startup_timeout (%v): %w; raise agent.startup_timeout if the cluster is slow to pull images or schedule pods", o.StartupTimeout, err)
	}
	return a, err
}

func (m *AgentManager) ensureJob(ctx context.Context, t *Resolved, o AgentOptions) (*Agent, error) {
	ns, name := cmp.Or(o.Namespace, t.Namespace), agentName(t, o.PerNode && t.Pod != nil, o.Namespace)
	var target string // what sessions name in their hello
	if o.PerNode && t.Pod != nil {
		target = t.ContainerID
	}
	labels := map[string]string{LabelApp: AppAgent, "tether.dev/agent": name}
	if t.Pod != nil {
		labels[LabelTarget] = string(t.Pod.UID)
	}
	spec := jobPod(t, o, name)
	// A dry run first: Pod Security Admission and RBAC refuse a pod at
	// once, while a Job would be accepted and then never get its pod.
	probe := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name + "-check", Namespace: ns, Labels: labels}, Spec: spec}
	if _, err := m.Client.CoreV1().Pods(ns).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, admissionError(err, ns, "pods")
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr.To[int32](0),
			TTLSecondsAfterFinished: ptr.To[int32](5),
			Template:                corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}
	token := tokenOf(spec.Containers[0].Env)
	for attempt := 0; ; attempt++ {
		if attempt > 5 {
			return nil, fmt.Errorf("agent job %s/%s keeps ending; see kubectl -n %s logs job/%s", ns, name, ns, name)
		}
		created, err := m.Client.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{})
		if err == nil {
			m.say("created agent job %s/%s", ns, name)
			pod, ip, starting, err := m.waitJobPod(ctx, ns, created, o.Early)
			if err != nil {
				// Never leave a broken agent behind: the next session would
				// share it and fail the same way.
				m.deleteJob(context.WithoutCancel(ctx), ns, name)
				return nil, err
			}
			return &Agent{Namespace: ns, Pod: pod, PodIP: ip, OnPodIP: o.ListenAll, Port: o.Port, Name: name, Created: true, Token: token, Target: target, Starting: starting}, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, admissionError(err, ns, "jobs")
		}
		// Another session's agent: share it, unless it has ended (lingered
		// out: its Job waits for garbage collection, or its pod has just
		// exited) or cannot start.
		existing, gerr := m.Client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		if gerr != nil {
			if apierrors.IsNotFound(gerr) {
				continue
			}
			return nil, forbiddenHint(gerr, "get", "jobs", ns)
		}
		if !jobFinished(existing) && existing.DeletionTimestamp == nil {
			pod, ip, starting, err := m.waitJobPod(ctx, ns, existing, o.Early)
			if err == nil {
				m.say("sharing the running agent job %s/%s", ns, name)
				onPodIP := false
				if cs := existing.Spec.Template.Spec.Containers; len(cs) > 0 {
					token, onPodIP = tokenOf(cs[0].Env), listensOnPodIP(cs[0].Args)
				}
				return &Agent{Namespace: ns, Pod: pod, PodIP: ip, OnPodIP: onPodIP, Port: o.Port, Name: name, Token: token, Target: target, Starting: starting}, nil
			}
			if ctx.Err() != nil {
				return nil, err
			}
			m.say("the existing agent job %s cannot serve (%v); replacing it", name, err)
		} else {
			m.say("the previous agent job %s has ended; replacing it", name)
		}
		if err := m.deleteJob(ctx, ns, name); err != nil {
			return nil, err
		}
	}
}

// Remove deletes a Job agent (its Job and pod) and waits until it is
// gone: for an agent that cannot serve (its worker died but its pod still
// runs, or it never listened). Ephemeral containers cannot be removed;
// they end with their process.
func (m *AgentManager) Remove(ctx context.Context, a *Agent) error {
	if a == nil || !strings.HasPrefix(a.Name, "tether-agent-") || a.Pod == "" {
		return nil
	}
	job, err := m.Client.BatchV1().Jobs(a.Namespace).Get(ctx, a.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil // an ephemeral agent, or gone already
	}
	if err != nil {
		return forbiddenHint(err, "get", "jobs", a.Namespace)
	}
	return m.deleteJob(ctx, a.Namespace, job.Name)
}

// deleteJob deletes an agent Job and its pods and waits until it is gone.
func (m *AgentManager) deleteJob(ctx context.Context, ns, name string) error {
	bg := metav1.DeletePropagationBackground
	if err := m.Client.BatchV1().Jobs(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
		return forbiddenHint(err, "delete", "jobs", ns)
	}
	return waitGone(ctx, func() error {
		_, err := m.Client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		return err
	})
}

func jobFinished(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return j.Status.Succeeded > 0 || j.Status.Failed > 0
}

func waitGone(ctx context.Context, get func() error) error {
	return wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
		err := get()
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, nil
	})
}

// waitJobPod waits until the Job's pod runs its agent container (early:
// until it is on its node and its container is not failing; starting
// then says it does not run yet), failing fast on image pull errors and
// pod failures. Pods are matched by the Job's UID: an earlier Job of the
// same name may still have pods around.
func (m *AgentManager) waitJobPod(ctx context.Context, ns string, job *batchv1.Job, early bool) (pod, ip string, starting bool, err error) {
	var last string
	var result string
	selector := "controller-uid=" + string(job.UID) // set by the Job controller on every pod it makes
	if job.UID == "" {
		selector = "job-name=" + job.Name
	}
	every := 250 * time.Millisecond
	if early {
		every = 100 * time.Millisecond // the pod appears within moments of its Job
	}
	err = wait.PollUntilContextCancel(ctx, every, true, func(ctx context.Context) (bool, error) {
		pods, err := m.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, forbiddenHint(err, "list", "pods", ns)
		}
		if len(pods.Items) == 0 {
			if reason := m.jobCreateFailure(ctx, ns, job.Name); reason != "" {
				return false, admissionText(reason, ns)
			}
			last = "waiting for the agent pod to be created"
			return false, nil
		}
		sort.Slice(pods.Items, func(i, j int) bool {
			return pods.Items[j].CreationTimestamp.Before(&pods.Items[i].CreationTimestamp)
		})
		p := &pods.Items[0]
		ready, msg, err := agentContainerState(p, "agent")
		if err != nil {
			return false, err
		}
		last = msg
		if early && !ready && p.Spec.NodeName != "" && p.DeletionTimestamp == nil {
			result, ip, starting = p.Name, p.Status.PodIP, true
			return true, nil
		}
		if ready {
			result, ip = p.Name, p.Status.PodIP
		}
		return ready, nil
	})
	if err != nil {
		if ctx.Err() != nil && last != "" {
			return "", "", false, fmt.Errorf("%s: %w", last, err)
		}
		return "", "", false, err
	}
	return result, ip, starting, nil
}

// jobCreateFailure returns the message of a FailedCreate event of the Job
// (Pod Security Admission refusing its pod, a quota...), if any.
func (m *AgentManager) jobCreateFailure(ctx context.Context, ns, job string) string {
	evs, err := m.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Job,involvedObject.name=" + job})
	if err != nil {
		return ""
	}
	for _, e := range evs.Items {
		if e.Reason == "FailedCreate" {
			return e.Message
		}
	}
	return ""
}

// agentContainerState reports whether the agent container runs, or fails
// fast with the reason when it never will.
func agentContainerState(p *corev1.Pod, container string) (bool, string, error) {
	statuses := append(append([]corev1.ContainerStatus{}, p.Status.ContainerStatuses...), p.Status.EphemeralContainerStatuses...)
	if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
		for _, cs := range statuses {
			if t := cs.State.Terminated; cs.Name == container && t != nil && t.Reason == "OOMKilled" {
				return false, "", oomError(p, container)
			}
		}
		return false, "", fmt.Errorf("agent pod %s/%s ended (%s): see kubectl -n %s logs %s", p.Namespace, p.Name, p.Status.Phase, p.Namespace, p.Name)
	}
	for _, cs := range statuses {
		if cs.Name != container {
			continue
		}
		if w := cs.State.Waiting; w != nil {
			switch w.Reason {
			case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull":
				return false, "", fmt.Errorf("the agent image %q cannot be pulled (%s: %s): check agent.image and that the cluster can reach its registry", cs.Image, w.Reason, w.Message)
			case "CreateContainerConfigError", "CreateContainerError", "RunContainerError":
				return false, "", fmt.Errorf("the agent container cannot start (%s: %s)", w.Reason, w.Message)
			}
			return false, fmt.Sprintf("agent pod %s: container %s", p.Name, strings.ToLower(w.Reason)), nil
		}
		if t := cs.State.Terminated; t != nil {
			if t.Reason == "OOMKilled" {
				return false, "", oomError(p, container)
			}
			if limit, ok := memoryLimit(p, container); ok && t.ExitCode == 137 {
				// SIGKILLed at start under a memory limit: the kernel's OOM
				// killer, even when the runtime reports a plain "Error" (a
				// kill during the container's init is not seen as OOM).
				return false, "", fmt.Errorf("the agent in pod %s/%s was killed (%s, code 137) under its memory limit of %s: it most likely ran out of memory; raise agent.memory_limit", p.Namespace, p.Name, t.Reason, limit)
			}
			return false, "", fmt.Errorf("the agent exited (%s, code %d): %s; see kubectl -n %s logs %s -c %s", t.Reason, t.ExitCode, strings.TrimSpace(t.Message), p.Namespace, p.Name, container)
		}
		if cs.State.Running != nil {
			return true, "", nil
		}
	}
	if p.Status.Phase == corev1.PodPending {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Message != "" {
				return false, "agent pod not scheduled: " + c.Message, nil
			}
		}
	}
	return false, fmt.Sprintf("agent pod %s is %s", p.Name, strings.ToLower(string(p.Status.Phase))), nil
}

// AgentPodState is nil while an agent pod can still serve, else why it
// cannot (it ended, ran out of memory, cannot pull its image...).
func AgentPodState(p *corev1.Pod) error {
	name := "agent"
	if len(p.Spec.EphemeralContainers) > 0 {
		name = p.Spec.EphemeralContainers[len(p.Spec.EphemeralContainers)-1].Name
	}
	_, _, err := agentContainerState(p, name)
	return err
}

// memoryLimit is the memory limit of the pod's container, if it has one.
func memoryLimit(p *corev1.Pod, container string) (string, bool) {
	for _, c := range p.Spec.Containers {
		if q, ok := c.Resources.Limits[corev1.ResourceMemory]; c.Name == container && ok {
			return q.String(), true
		}
	}
	return "", false
}

// oomError says that the agent ran out of memory, and what to do.
func oomError(p *corev1.Pod, container string) error {
	limit := "its memory limit"
	if l, ok := memoryLimit(p, container); ok {
		limit = "its memory limit of " + l
	}
	return fmt.Errorf("the agent in pod %s/%s ran out of memory (OOMKilled at %s): raise agent.memory_limit", p.Namespace, p.Name, limit)
}

// admissionError explains a refused create: Pod Security Admission (with
// the way out) or RBAC (with the verb and resource).
func admissionError(err error, ns, resource string) error {
	if err == nil {
		return nil
	}
	if strings.Contains(err.Error(), "violates PodSecurity") {
		return admissionText(err.Error(), ns)
	}
	return forbiddenHint(err, "create", resource, ns)
}

// PodSecurityError is a refusal by Pod Security Admission.
type PodSecurityError struct {
	Namespace, Message string
}

func (e *PodSecurityError) Error() string {
	return fmt.Sprintf("Pod Security Admission in namespace %s refuses the agent pod (it needs hostPID and the NET_ADMIN, NET_RAW, SYS_ADMIN and SYS_PTRACE capabilities): %s. Try --ephemeral (an ephemeral container in the target pod), or ask for the namespace label pod-security.kubernetes.io/enforce=privileged", e.Namespace, e.Message)
}

func admissionText(msg, ns string) error {
	if !strings.Contains(msg, "PodSecurity") {
		return fmt.Errorf("the agent pod cannot be created in namespace %s: %s", ns, msg)
	}
	return &PodSecurityError{Namespace: ns, Message: msg}
}
