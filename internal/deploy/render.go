package deploy

import (
	"bytes"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// Unstructured turns objects into what the dynamic client applies: with
// their kind, without status or empty creation timestamps.
func Unstructured(objs []runtime.Object) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, obj := range objs {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			out = append(out, u)
			continue
		}
		gvks, _, err := clientgoscheme.Scheme.ObjectKinds(obj)
		if err != nil || len(gvks) == 0 {
			return nil, fmt.Errorf("the kind of %T: %v", obj, err)
		}
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			return nil, err
		}
		delete(m, "status")
		if md, ok := m["metadata"].(map[string]any); ok {
			delete(md, "creationTimestamp")
		}
		if tmpl, ok, _ := unstructured.NestedMap(m, "spec", "template", "metadata"); ok {
			delete(tmpl, "creationTimestamp")
			unstructured.SetNestedMap(m, tmpl, "spec", "template", "metadata")
		}
		u := &unstructured.Unstructured{Object: m}
		u.SetGroupVersionKind(gvks[0])
		out = append(out, u)
	}
	return out, nil
}

// YAML renders objects as one multi-document YAML stream.
func YAML(objs []runtime.Object) ([]byte, error) {
	us, err := Unstructured(objs)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	for i, u := range us {
		b, err := yaml.Marshal(u.Object)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

// resources maps the kinds the manifests hold to their resources.
var resources = map[string]string{
	"Namespace": "namespaces", "ServiceAccount": "serviceaccounts", "Service": "services",
	"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings", "Role": "roles", "RoleBinding": "rolebindings",
	"Deployment": "deployments", "APIService": "apiservices", "Secret": "secrets",
	"CustomResourceDefinition": "customresourcedefinitions",
}

// GVR is the resource of u.
func GVR(u *unstructured.Unstructured) (schema.GroupVersionResource, error) {
	gvk := u.GroupVersionKind()
	r, ok := resources[gvk.Kind]
	if !ok {
		return schema.GroupVersionResource{}, fmt.Errorf("no resource known for kind %s", gvk.Kind)
	}
	return gvk.GroupVersion().WithResource(r), nil
}

// Describe is "Kind ns/name" for messages.
func Describe(u *unstructured.Unstructured) string {
	return strings.TrimPrefix(u.GetKind()+" "+strings.TrimPrefix(u.GetNamespace()+"/"+u.GetName(), "/"), " ")
}
