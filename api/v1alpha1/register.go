package v1alpha1

import (
	"fmt"
	"net/url"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is tether's API group.
const GroupName = "tether.dev"

// SchemeGroupVersion is this package's group and version.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

// Resources and the verbs tether-operator checks on targets, beyond the
// API's own (get, list, create on targets/connect, delete on sessions).
const (
	ResourceTargets    = "targets"
	ResourceSessions   = "sessions"
	SubresourceConnect = "connect"
	// SubresourceSplit is targets/split (create): a session's split of
	// the target's queues.
	SubresourceSplit = "split"
	// SubresourcePolicy is targets/policy (get): the policies a session
	// on the target gets.
	SubresourcePolicy = "policy"
	// VerbUse: the target's environment, files, DNS and outgoing network.
	VerbUse = "use"
	// VerbMirror, VerbSteal: a copy of its incoming traffic, or the
	// traffic itself (with or without an HTTP filter).
	VerbMirror = "mirror"
	VerbSteal  = "steal"
)

// CausePolicy is the StatusCause type of a refusal by a policy
// (policies.tether.dev), not by RBAC: asking for a role does not help.
const CausePolicy = "TetherPolicy"

// UpgradeProtocol is what a targets/connect request upgrades to: after
// the 101 the connection carries tether's protocol (handshake, then the
// stream multiplexer), as a port-forward to an agent would.
const UpgradeProtocol = "tether-stream/1"

var (
	// SchemeBuilder adds this package's types to a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds this package's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion, &Target{}, &TargetList{}, &TargetConnectOptions{}, &Session{}, &SessionList{}, &SplitRequest{}, &TargetPolicy{})
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return s.AddConversionFunc((*url.Values)(nil), (*TargetConnectOptions)(nil), func(a, b any, _ conversion.Scope) error {
		return ConnectOptionsFromQuery(*a.(*url.Values), b.(*TargetConnectOptions))
	})
}

// ConnectOptionsFromQuery reads targets/connect's query parameters.
func ConnectOptionsFromQuery(q url.Values, o *TargetConnectOptions) error {
	for k := range q {
		switch k {
		case "pod", "container":
		default:
			return fmt.Errorf("unknown parameter %q of targets/connect (want pod, container)", k)
		}
	}
	o.Pod, o.Container = q.Get("pod"), q.Get("container")
	return nil
}

// Query is o as targets/connect's query parameters.
func (o *TargetConnectOptions) Query() url.Values {
	q := url.Values{}
	if o.Pod != "" {
		q.Set("pod", o.Pod)
	}
	if o.Container != "" {
		q.Set("container", o.Container)
	}
	return q
}
