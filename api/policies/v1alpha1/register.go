package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the policy API's group: CustomResourceDefinitions, apart
// from tether.dev, which tether-operator serves itself.
const GroupName = "policies.tether.dev"

// SchemeGroupVersion is this package's group and version.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

// The resources' plurals.
const (
	ResourcePolicies        = "policies"
	ResourceClusterPolicies = "clusterpolicies"
)

// GroupVersionResources of Policy and ClusterPolicy.
var (
	PoliciesResource        = SchemeGroupVersion.WithResource(ResourcePolicies)
	ClusterPoliciesResource = SchemeGroupVersion.WithResource(ResourceClusterPolicies)
)

var (
	// SchemeBuilder adds this package's types to a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(func(s *runtime.Scheme) error {
		s.AddKnownTypes(SchemeGroupVersion, &Policy{}, &PolicyList{}, &ClusterPolicy{}, &ClusterPolicyList{})
		metav1.AddToGroupVersion(s, SchemeGroupVersion)
		return nil
	})
	// AddToScheme adds this package's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
