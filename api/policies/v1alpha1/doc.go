// Package v1alpha1 is tether's policy API, policies.tether.dev/v1alpha1:
// Policy (namespaced) and ClusterPolicy, which a platform team writes to
// say what developers may do to the targets they select. tether-operator
// and the agents it creates enforce them, whatever the client sends.
//
// +kubebuilder:object:generate=true
// +groupName=policies.tether.dev
package v1alpha1
