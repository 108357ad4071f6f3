// Package apiserver serves tether's API (tether.dev/v1alpha1: targets with
// their connect subresource, sessions) as a Kubernetes aggregated API
// server, built on k8s.io/apiserver: the Kubernetes API server
// authenticates each user and passes them on (request-header
// authentication with its front-proxy certificate), authorization is
// delegated back to it (SubjectAccessReviews), and the operator's logic
// (internal/operator) does the rest.
package apiserver

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"

	"github.com/tether-dev/tether/api/v1alpha1"
)

var (
	// Scheme holds tether's API types: v1alpha1, which is also the
	// internal version (the API has one version, nothing to convert).
	Scheme = runtime.NewScheme()
	// Codecs encodes and decodes them.
	Codecs = serializer.NewCodecFactory(Scheme)
	// ParameterCodec decodes query parameters (targets/connect's).
	ParameterCodec = runtime.NewParameterCodec(Scheme)
)

func init() {
	utilruntime.Must(v1alpha1.AddToScheme(Scheme))
	internal := schema.GroupVersion{Group: v1alpha1.GroupName, Version: runtime.APIVersionInternal}
	Scheme.AddKnownTypes(internal, &v1alpha1.Target{}, &v1alpha1.TargetList{}, &v1alpha1.TargetConnectOptions{}, &v1alpha1.Session{}, &v1alpha1.SessionList{})
	utilruntime.Must(Scheme.SetVersionPriority(v1alpha1.SchemeGroupVersion))
	// The generic server decodes its own options (list, delete) in v1.
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
	Scheme.AddUnversionedTypes(schema.GroupVersion{Group: "", Version: "v1"},
		&metav1.Status{}, &metav1.APIVersions{}, &metav1.APIGroupList{}, &metav1.APIGroup{}, &metav1.APIResourceList{})
}
