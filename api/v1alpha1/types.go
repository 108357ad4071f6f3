package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Target is a workload or pod of a namespace that tether sessions can run
// in. Its name is KIND.NAME (deployment.api, pod.api-7d9f-x2x1c), as a
// session names it with -t KIND/NAME. RBAC on targets decides what a user
// may do: the verbs use (environment, files, DNS, outgoing traffic),
// mirror and steal (incoming traffic), and create on targets/connect
// (opening a session at all).
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type Target struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TargetSpec   `json:"spec"`
	Status TargetStatus `json:"status,omitempty"`
}

// TargetSpec is what the target is.
type TargetSpec struct {
	// Kind is the workload kind: pod, deployment, statefulset, daemonset,
	// replicaset, job, rollout, service.
	Kind string `json:"kind"`
	// Name is the workload's name.
	Name string `json:"name"`
}

// TargetStatus is what the target runs now.
type TargetStatus struct {
	Pods []TargetPod `json:"pods,omitempty"`
}

// TargetPod is one pod of a target.
type TargetPod struct {
	Name       string   `json:"name"`
	Node       string   `json:"node,omitempty"`
	Ready      bool     `json:"ready"`
	Containers []string `json:"containers,omitempty"`
}

// TargetList is a list of targets.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type TargetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Target `json:"items"`
}

// TargetConnectOptions are the query parameters of targets/connect.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type TargetConnectOptions struct {
	metav1.TypeMeta `json:",inline"`

	// Pod is the target's pod the session runs in (one of its replicas).
	Pod string `json:"pod,omitempty"`
	// Container is the pod's container ("": its first).
	Container string `json:"container,omitempty"`
}

// Session is one tether run (tether exec) through the operator: one agent
// session per pod it runs in (every replica of a workload). Its name is
// the run's ID; deleting it ends the run (the RBAC verb delete on
// sessions, for the platform team).
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type Session struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   SessionSpec   `json:"spec"`
	Status SessionStatus `json:"status,omitempty"`
}

// SessionSpec is who runs the session and on what.
type SessionSpec struct {
	// User and Groups are the user as the API server authenticated them.
	User   string   `json:"user"`
	Groups []string `json:"groups,omitempty"`
	// Target is the workload, as KIND/NAME.
	Target string `json:"target"`
	// Client is the client's build (tether/VERSION).
	Client string `json:"client,omitempty"`
}

// SessionStatus is what the session does now.
type SessionStatus struct {
	// Started is when its first agent session began.
	Started metav1.Time `json:"started"`
	// Pods are the pods it runs in, one agent session each.
	Pods []SessionPod `json:"pods,omitempty"`
	// Ports are the target's ports it receives traffic of.
	Ports []SessionPort `json:"ports,omitempty"`
	// Refused are the latest actions its user was refused.
	Refused []SessionRefusal `json:"refused,omitempty"`
}

// SessionPod is the session's agent session in one pod.
type SessionPod struct {
	Name string `json:"name"`
	// Agent is the agent pod that serves it.
	Agent string `json:"agent,omitempty"`
	// ID is the agent session's ID.
	ID string `json:"id"`
	// Connected is false while the client reconnects.
	Connected bool `json:"connected"`
}

// SessionPort is one port the session subscribed.
type SessionPort struct {
	Port int32 `json:"port"`
	// Mode is mirror or steal.
	Mode string `json:"mode"`
	// Filter is the HTTP filter of a filtered steal.
	Filter string `json:"filter,omitempty"`
}

// SessionRefusal is an action the session's user was refused.
type SessionRefusal struct {
	Time   metav1.Time `json:"time"`
	Action string      `json:"action"`
	Detail string      `json:"detail"`
}

// SessionList is a list of sessions.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type SessionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Session `json:"items"`
}

// SplitRequest is the body and the answer of targets/split: a session
// asks for its share of the queues of the target's QueueSplit
// (queues.tether.dev), then asks again until Status.Ready. Its name is
// the target's (KIND.NAME).
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type SplitRequest struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   SplitRequestSpec   `json:"spec"`
	Status SplitRequestStatus `json:"status,omitempty"`
}

// SplitRequestSpec is what the session asks.
type SplitRequestSpec struct {
	// Run is the session's ID (as in tether sessions).
	Run string `json:"run"`
	// Client is the client's build (tether/VERSION).
	Client string `json:"client,omitempty"`
	// Queues are the session's message filters, by queue ID: header →
	// regular expression, all of which must match.
	Queues map[string]map[string]string `json:"queues,omitempty"`
	// End says the session ended: its messages go back to the deployed
	// workload.
	End bool `json:"end,omitempty"`
}

// SplitRequestStatus is where the session's split is.
type SplitRequestStatus struct {
	// Ready: the session's queues exist and receive its messages.
	Ready bool `json:"ready"`
	// Message says what is being done (the workload's rollout...).
	Message string `json:"message,omitempty"`
	// Env is what the session's program must read instead of the
	// workload's environment: its own queue names and groups.
	Env map[string]string `json:"env,omitempty"`
	// Queues are the session's queues.
	Queues []SplitRequestQueue `json:"queues,omitempty"`
}

// SplitRequestQueue is a session's queue.
type SplitRequestQueue struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Group string `json:"group,omitempty"`
	// Overlaps counts messages its filter matched that an earlier
	// session got; OverlapsWon those it got that a later session's
	// filter matched too.
	Overlaps    int64 `json:"overlaps,omitempty"`
	OverlapsWon int64 `json:"overlapsWon,omitempty"`
}

// TargetPolicy is targets/policy (get): what the platform team's
// Policies and ClusterPolicies (policies.tether.dev) say of a session on
// the target now. Its name is the target's (KIND.NAME).
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type TargetPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Pod is the pod a session would run on ("" for targetless).
	Pod string `json:"pod,omitempty"`
	// Policies are the rules of the policies that select the session,
	// in the order the agent applies them.
	Policies []PolicyRules `json:"policies,omitempty"`
}

// PolicyRules are one policy's rules, as the agent gets them (its
// selection left out; see the Policy type of policies.tether.dev).
type PolicyRules struct {
	// Name is "ClusterPolicy NAME" or "Policy NAMESPACE/NAME".
	Name                string               `json:"name"`
	Block               []string             `json:"block,omitempty"`
	RequireHeaderFilter string               `json:"requireHeaderFilter,omitempty"`
	EnvExclude          []string             `json:"envExclude,omitempty"`
	EnvMask             []string             `json:"envMask,omitempty"`
	FSReadOnly          []string             `json:"fsReadOnly,omitempty"`
	FSLocal             []string             `json:"fsLocal,omitempty"`
	FSNotFound          []string             `json:"fsNotFound,omitempty"`
	OutgoingAllow       []PolicyOutgoingRule `json:"outgoingAllow,omitempty"`
	OutgoingBlock       []PolicyOutgoingRule `json:"outgoingBlock,omitempty"`
}

// PolicyOutgoingRule is one outgoing rule of PolicyRules.
type PolicyOutgoingRule struct {
	CIDR     string   `json:"cidr,omitempty"`
	Except   []string `json:"except,omitempty"`
	Hostname string   `json:"hostname,omitempty"`
	Port     int32    `json:"port,omitempty"`
	Protocol string   `json:"protocol,omitempty"`
}
