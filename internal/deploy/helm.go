package deploy

import (
	"bytes"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// Release images the checked-in manifests name (deploy/): a release
// pins its own (tether operator install does).
const (
	ReleaseImage      = "ghcr.io/tether-dev/tether-operator:latest"
	ReleaseAgentImage = "ghcr.io/tether-dev/tether-agent:latest"
)

// Manifest is deploy/tether-operator.yaml: the objects with the release
// images, for kubectl apply -f.
func Manifest() ([]byte, error) {
	objs, err := Objects(Options{Image: ReleaseImage, AgentImage: ReleaseAgentImage})
	if err != nil {
		return nil, err
	}
	return YAML(objs)
}

// Helm placeholders: values rendered into the objects, then replaced by
// the chart's template expressions.
const (
	helmNS       = "helm-release-namespace"
	helmImage    = "helm-image"
	helmAgent    = "helm-agent-image"
	helmReplicas = 7331
)

// HelmTemplate is the Helm chart's templates/tether-operator.yaml: the
// same objects but the CRDs (HelmCRDs) and the Namespace (Helm's to
// create: helm install --create-namespace), with the release namespace,
// the images and the replicas from the chart's values.
func HelmTemplate() ([]byte, error) {
	objs, err := Objects(Options{Namespace: helmNS, Image: helmImage, AgentImage: helmAgent, Replicas: helmReplicas})
	if err != nil {
		return nil, err
	}
	var rest []runtime.Object
	for _, o := range objs {
		_, isNS := o.(*corev1.Namespace)
		if u, ok := o.(*unstructured.Unstructured); isNS || ok && u.GetKind() == "CustomResourceDefinition" {
			continue
		}
		rest = append(rest, o)
	}
	b, err := YAML(rest)
	if err != nil {
		return nil, err
	}
	for _, r := range []struct{ from, to string }{
		{helmNS, "{{ .Release.Namespace }}"},
		{helmAgent, "{{ .Values.agentImage }}"},
		{helmImage, "{{ .Values.image }}"},
		{fmt.Sprint(helmReplicas), "{{ .Values.replicas }}"},
	} {
		if !bytes.Contains(b, []byte(r.from)) {
			return nil, fmt.Errorf("the manifests no longer hold %q", r.from)
		}
		b = bytes.ReplaceAll(b, []byte(r.from), []byte(r.to))
	}
	return append([]byte(generatedHeader), b...), nil
}

// HelmCRDs is the Helm chart's crds/tether.yaml: the CustomResourceDefinitions,
// which Helm installs before the templates (and, as Helm does with CRDs,
// never upgrades or deletes: tether operator uninstall does).
func HelmCRDs() ([]byte, error) {
	c, err := crds()
	if err != nil {
		return nil, err
	}
	objs := make([]runtime.Object, len(c))
	for i := range c {
		objs[i] = c[i]
	}
	b, err := YAML(objs)
	if err != nil {
		return nil, err
	}
	return append([]byte(generatedHeader), b...), nil
}

const generatedHeader = "# Generated from internal/deploy (go test ./internal/deploy -update). Do not edit.\n"
