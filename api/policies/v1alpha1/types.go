package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Policy limits what developers may do to the targets it selects in its
// namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=tpol
// +kubebuilder:printcolumn:name="Targets",type=string,JSONPath=`.spec.targetPath`
// +kubebuilder:printcolumn:name="Block",type=string,JSONPath=`.spec.block`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Policy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec PolicySpec `json:"spec"`
}

// PolicyList is a list of Policies.
//
// +kubebuilder:object:root=true
type PolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Policy `json:"items"`
}

// ClusterPolicy is a Policy for the targets it selects in every
// namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=tcpol
// +kubebuilder:printcolumn:name="Targets",type=string,JSONPath=`.spec.targetPath`
// +kubebuilder:printcolumn:name="Block",type=string,JSONPath=`.spec.block`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec PolicySpec `json:"spec"`
}

// ClusterPolicyList is a list of ClusterPolicies.
//
// +kubebuilder:object:root=true
type ClusterPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterPolicy `json:"items"`
}

// PolicySpec selects targets and says what is refused on them. A target
// is selected when it matches TargetPath (if set) and Selector (if set);
// a policy with neither selects every target.
type PolicySpec struct {
	// TargetPath is a glob of KIND/NAME (deployment/payments-*, pod/*,
	// */db-*): * is any run of characters but /, ? one.
	// +optional
	TargetPath string `json:"targetPath,omitempty"`
	// Selector matches the labels of the target workload (a pod's own
	// for a pod target).
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// Block lists features refused on the selected targets.
	// +optional
	// +listType=set
	Block []BlockedFeature `json:"block,omitempty"`
	// +optional
	Incoming *IncomingPolicy `json:"incoming,omitempty"`
	// +optional
	Env *EnvPolicy `json:"env,omitempty"`
	// +optional
	FS *FSPolicy `json:"fs,omitempty"`
	// +optional
	Outgoing *OutgoingPolicy `json:"outgoing,omitempty"`
}

// BlockedFeature is one feature a policy refuses (the list is
// internal/policy.Features).
// +kubebuilder:validation:Enum=steal;steal-without-filter;mirror;outgoing;incoming;fs-write;queue-split;copy-target
type BlockedFeature string

// IncomingPolicy limits what a session may take of incoming traffic.
type IncomingPolicy struct {
	// RequireHeaderFilter is a regular expression every stealing
	// session's HTTP filter must match (^x-tether-user: .+$): a steal
	// without a filter, or with one that does not match it, is refused.
	// +optional
	RequireHeaderFilter string `json:"requireHeaderFilter,omitempty"`
}

// EnvPolicy limits the target's environment a session gets.
type EnvPolicy struct {
	// Exclude lists variables (wildcards: *_PASSWORD) a session never
	// gets, whatever its config includes.
	// +optional
	Exclude []string `json:"exclude,omitempty"`
	// Mask lists variables (wildcards) a session gets with their value
	// replaced by "********".
	// +optional
	Mask []string `json:"mask,omitempty"`
}

// FSPolicy limits the target's files a session reaches; each is a list of
// regular expressions on the absolute path, and beats the user's config.
type FSPolicy struct {
	// ReadOnly paths may be read, never opened for writing (EROFS).
	// +optional
	ReadOnly []string `json:"readOnly,omitempty"`
	// Local paths are the developer's machine's, never the target's.
	// +optional
	Local []string `json:"local,omitempty"`
	// NotFound paths do not exist for the session (ENOENT).
	// +optional
	NotFound []string `json:"notFound,omitempty"`
}

// OutgoingPolicy limits the connections a session makes from the
// target's network. With Allow rules, only what one allows is allowed;
// a Block rule beats every Allow rule.
type OutgoingPolicy struct {
	// +optional
	Allow []OutgoingRule `json:"allow,omitempty"`
	// +optional
	Block []OutgoingRule `json:"block,omitempty"`
}

// OutgoingRule matches a connection (or UDP flow) by where it goes: every
// field set must match.
type OutgoingRule struct {
	// CIDR is the destination's network (10.0.0.0/8, fd00::/8, a single
	// address as /32).
	// +optional
	CIDR string `json:"cidr,omitempty"`
	// Except are networks inside CIDR the rule does not match.
	// +optional
	Except []string `json:"except,omitempty"`
	// Hostname is a regular expression on a name the target's pod
	// resolved to the destination address (redis.shop.svc.cluster.local).
	// +optional
	Hostname string `json:"hostname,omitempty"`
	// Port is the destination port (0: any).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`
	// Protocol is tcp or udp ("": both).
	// +kubebuilder:validation:Enum=tcp;udp
	// +optional
	Protocol string `json:"protocol,omitempty"`
}
