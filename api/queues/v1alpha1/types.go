package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// QueueSplit says how tether splits the queues one workload consumes: a
// session whose user config has split_queues gets the messages its filter
// matches on its own temporary queue, the deployed workload the others
// (on a fallback queue, while any session splits). It lives in the
// workload's namespace; one per workload.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=qsplit
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.target`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Sessions",type=integer,JSONPath=`.status.activeSessions`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type QueueSplit struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   QueueSplitSpec   `json:"spec"`
	Status QueueSplitStatus `json:"status,omitempty"`
}

// QueueSplitSpec is what the platform team writes.
type QueueSplitSpec struct {
	// Target is the consuming workload, as KIND/NAME
	// (deployment/ip-visit-consumer): deployment, statefulset or rollout.
	// +kubebuilder:validation:Pattern=`^(deployment|deploy|statefulset|sts|rollout)/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Target string `json:"target"`
	// Container is the workload's container that consumes (default: its
	// first).
	// +optional
	Container string `json:"container,omitempty"`
	// SessionTTLSeconds is how long a session's split outlives its
	// client's last connection (a crashed or killed tether): then its
	// undelivered messages go back to the deployed workload.
	// +kubebuilder:validation:Minimum=5
	// +kubebuilder:default=60
	// +optional
	SessionTTLSeconds int32 `json:"sessionTTLSeconds,omitempty"`
	// Queues are the queues the workload consumes that sessions may split.
	// +listType=map
	// +listMapKey=id
	// +kubebuilder:validation:MinItems=1
	Queues []SplitQueue `json:"queues"`
}

// SplitQueue is one queue a workload consumes.
type SplitQueue struct {
	// ID names the queue in users' split_queues config.
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9][-a-zA-Z0-9_.]*$`
	ID string `json:"id"`
	// Kind is the broker's: kafka, rabbitmq or sqs.
	// +kubebuilder:validation:Enum=kafka;rabbitmq;sqs
	Kind string `json:"kind"`
	// NameFrom is where the workload reads the queue's (Kafka: topic's)
	// name; the operator rewrites it there for the fallback queue, and
	// sets it in each session's environment for the session's queue.
	NameFrom EnvSelector `json:"nameFrom"`
	// GroupFrom (Kafka) is where the workload reads its consumer group:
	// the deployed workload consumes the fallback topic in a group of its
	// own while the forwarder takes the original group's place.
	// +optional
	GroupFrom *EnvSelector `json:"groupFrom,omitempty"`
	// +optional
	Kafka *KafkaBroker `json:"kafka,omitempty"`
	// +optional
	RabbitMQ *RabbitMQBroker `json:"rabbitmq,omitempty"`
	// +optional
	SQS *SQSBroker `json:"sqs,omitempty"`
}

// EnvSelector is an environment variable of the workload's container, or
// the first capture group of Regex in its value (a queue name in a URL).
type EnvSelector struct {
	Env string `json:"env"`
	// Regex has one capture group: the part of the value that is the name.
	// +optional
	Regex string `json:"regex,omitempty"`
}

// Value is a setting, literal or from a ConfigMap, a Secret or the
// workload's environment.
type Value struct {
	// +optional
	Value string `json:"value,omitempty"`
	// +optional
	ConfigMapKeyRef *corev1.ConfigMapKeySelector `json:"configMapKeyRef,omitempty"`
	// +optional
	SecretKeyRef *corev1.SecretKeySelector `json:"secretKeyRef,omitempty"`
	// FromEnv is an environment variable of the workload's container.
	// +optional
	FromEnv string `json:"fromEnv,omitempty"`
}

// KafkaBroker is how the operator reaches a Kafka cluster.
type KafkaBroker struct {
	// Brokers is a comma-separated list of host:port.
	Brokers Value `json:"brokers"`
}

// RabbitMQBroker is how the operator reaches RabbitMQ.
type RabbitMQBroker struct {
	// URL is an AMQP URL (amqp://user:password@host:5672/vhost).
	URL Value `json:"url"`
}

// SQSBroker is how the operator reaches SQS (or a server that speaks it).
type SQSBroker struct {
	// Endpoint is the SQS endpoint URL when it is not AWS's for the
	// region: a VPC endpoint, or an emulator (http://goaws:4100).
	// +optional
	Endpoint *Value `json:"endpoint,omitempty"`
	// Region is the queues' AWS region (eu-west-1).
	Region Value `json:"region"`
	// AccessKeyID and SecretAccessKey sign the operator's requests: both
	// or neither (unsigned requests, which only an emulator takes).
	// +optional
	AccessKeyID *Value `json:"accessKeyID,omitempty"`
	// +optional
	SecretAccessKey *Value `json:"secretAccessKey,omitempty"`
	// Emulator names the SQS emulator at Endpoint when it is one whose
	// differences from SQS the operator must work around: goaws (0.4).
	// +kubebuilder:validation:Enum=goaws
	// +optional
	Emulator string `json:"emulator,omitempty"`
}

// Phases of a split.
const (
	// PhaseIdle: no session splits; the workload is as it was.
	PhaseIdle = "Idle"
	// PhasePatching: the workload is being pointed at the fallback queues.
	PhasePatching = "Patching"
	// PhaseActive: the forwarders run.
	PhaseActive = "Active"
	// PhaseRestoring: the last session ended; the workload is being
	// restored and the fallback queues drained back.
	PhaseRestoring = "Restoring"
	// PhaseFailed: something needs a person (Message says what).
	PhaseFailed = "Failed"
)

// QueueSplitStatus is the split's state, kept by tether-operator.
type QueueSplitStatus struct {
	// +optional
	Phase string `json:"phase,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
	// ActiveSessions counts the sessions that split now.
	// +optional
	ActiveSessions int32 `json:"activeSessions,omitempty"`
	// Patch is what the operator changed in the workload, to restore it.
	// +optional
	Patch *WorkloadPatch `json:"patch,omitempty"`
	// Sessions are the sessions that split, earliest first.
	// +optional
	Sessions []SplitSession `json:"sessions,omitempty"`
	// Queues are the split queues' temporary queues and counts.
	// +optional
	Queues []SplitQueueStatus `json:"queues,omitempty"`
}

// WorkloadPatch is the environment the operator set in the workload, and
// what it was before.
type WorkloadPatch struct {
	Container string `json:"container"`
	// Original are the container's env entries the patch replaced, as
	// they were.
	// +optional
	Original []corev1.EnvVar `json:"original,omitempty"`
	// Added are the variables the patch added to env (they came from
	// envFrom).
	// +optional
	Added []string `json:"added,omitempty"`
	// Patched are the values the operator set.
	Patched []corev1.EnvVar `json:"patched"`
}

// SplitSession is one session splitting queues.
type SplitSession struct {
	// Run is the session's ID (tether sessions).
	Run    string `json:"run"`
	User   string `json:"user"`
	Client string `json:"client,omitempty"`
	// Started orders sessions: a message two filters match goes to the
	// earliest.
	Started metav1.Time `json:"started"`
	// LastSeen is when its client was last known connected.
	LastSeen metav1.Time `json:"lastSeen"`
	// Queues are its filters and temporary queues.
	Queues []SessionQueue `json:"queues"`
	// Ready: its queues exist and the forwarders route to them.
	// +optional
	Ready bool `json:"ready,omitempty"`
	// Ending: its client said it ended, or its TTL passed.
	// +optional
	Ending bool `json:"ending,omitempty"`
	// Error is why it could not start.
	// +optional
	Error string `json:"error,omitempty"`
}

// SessionQueue is a session's split of one queue.
type SessionQueue struct {
	ID string `json:"id"`
	// Filter is header → regular expression; all must match.
	Filter map[string]string `json:"filter"`
	// Name is its temporary queue's (topic's) name; Group its consumer
	// group (Kafka).
	Name string `json:"name"`
	// +optional
	Group string `json:"group,omitempty"`
	// +optional
	Delivered int64 `json:"delivered,omitempty"`
	// Overlaps counts messages its filter matched that an earlier
	// session got; OverlapsWon those it got that a later session's
	// filter matched too.
	// +optional
	Overlaps int64 `json:"overlaps,omitempty"`
	// +optional
	OverlapsWon int64 `json:"overlapsWon,omitempty"`
	// Env is what the session's program reads instead of the workload's
	// variables.
	// +optional
	Env map[string]string `json:"env,omitempty"`
}

// SplitQueueStatus is one split queue's state.
type SplitQueueStatus struct {
	ID string `json:"id"`
	// Source is the queue the workload read before the split; Fallback the
	// one it reads now. Group and FallbackGroup are their consumer groups
	// (Kafka).
	Source string `json:"source"`
	// +optional
	Group string `json:"group,omitempty"`
	// +optional
	Fallback string `json:"fallback,omitempty"`
	// +optional
	FallbackGroup string `json:"fallbackGroup,omitempty"`
	// +optional
	ToFallback int64 `json:"toFallback,omitempty"`
	// Lag is how many messages of the source the forwarder has not moved.
	// +optional
	Lag int64 `json:"lag,omitempty"`
}

// QueueSplitList is a list of QueueSplits.
//
// +kubebuilder:object:root=true
type QueueSplitList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []QueueSplit `json:"items"`
}
