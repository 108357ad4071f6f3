// Package v1alpha1 is tether's Kubernetes API, group tether.dev, served
// by tether-operator as an aggregated API: targets (what a session may
// run in, with the connect subresource a session's stream goes through)
// and sessions (who runs what, where; deleting one ends it).
//
// +k8s:deepcopy-gen=package
// +k8s:openapi-gen=true
// +groupName=tether.dev
package v1alpha1
