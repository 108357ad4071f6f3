package deploy

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/tether-dev/tether/api/v1alpha1"
)

// apiService registers tether.dev/v1alpha1 with the API server, served
// by the operator's Service. Its caBundle is the operator's to set (it
// makes its own CA): the manifests carry no certificate.
func apiService(ns string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1",
		"kind":       "APIService",
		"metadata":   map[string]any{"name": APIServiceName, "labels": toAny(labels())},
		"spec": map[string]any{
			"group":                v1alpha1.GroupName,
			"version":              v1alpha1.SchemeGroupVersion.Version,
			"service":              map[string]any{"name": Name, "namespace": ns, "port": int64(443)},
			"groupPriorityMinimum": int64(1000),
			"versionPriority":      int64(15),
		},
	}}
	return u
}

func toAny(m map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}
