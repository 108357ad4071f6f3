package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	crdGVR     = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	rolloutGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}
)

// rolloutCRD is the part of Argo Rollouts' CRD tether reads (no
// controller: the test makes the Rollout's ReplicaSet itself, as Argo would).
const rolloutCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: rollouts.argoproj.io}
spec:
  group: argoproj.io
  scope: Namespaced
  names: {kind: Rollout, listKind: RolloutList, plural: rollouts, singular: rollout, shortNames: [ro]}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`

// TestRolloutTarget: -t rollout/NAME resolves an Argo Rollout (through the
// dynamic client) to a pod of its selector, and tether ls lists it. The
// cluster has no Argo Rollouts: the test installs its CRD for the test's
// duration (it is skipped when the CRD is already there).
func TestRolloutTarget(t *testing.T) {
	requireE2E(t)
	ctx := context.Background()
	switch _, err := dyn.Resource(crdGVR).Get(ctx, "rollouts.argoproj.io", metav1.GetOptions{}); {
	case err == nil:
		t.Skip("the cluster has Argo Rollouts' CRD already: not touching it")
	case !apierrors.IsNotFound(err):
		t.Fatalf("looking for the Argo Rollouts CRD: %v", err)
	}
	ns := newNamespace(t, "e2e-rollout", nil)
	apply(t, []byte(rolloutCRD))
	t.Cleanup(func() {
		if err := dyn.Resource(crdGVR).Delete(ctx, "rollouts.argoproj.io", metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting the Rollout CRD: %v", err)
			return
		}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			_, err := dyn.Resource(crdGVR).Get(ctx, "rollouts.argoproj.io", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("the Rollout CRD is still there 2 minutes after its deletion")
				return
			}
			time.Sleep(500 * time.Millisecond)
		}
	})
	// The Rollout, once its CRD is served.
	rollout := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
		"metadata": map[string]any{"name": "canary", "namespace": ns},
		"spec": map[string]any{
			"replicas": int64(1),
			"selector": map[string]any{"matchLabels": map[string]any{"app": "canary"}},
		},
	}}
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := dyn.Resource(rolloutGVR).Namespace(ns).Create(ctx, rollout, metav1.CreateOptions{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("creating the Rollout: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Its ReplicaSet, and a decoy deployment whose pods it must not pick.
	apply(t, []byte(fmt.Sprintf(`apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: canary-6d4f8, namespace: %[1]s, labels: {app: canary}}
spec:
  replicas: 1
  selector: {matchLabels: {app: canary}}
  template:
    metadata: {labels: {app: canary}}
    spec:%[2]s
---
%[3]s`, ns, podSpec("Always", ipInfoContainer("app", "rollout", 8080)), deploymentYAML(ns, "canary-stable", "deployment", false))))
	waitPodsReady(t, ns, "app=canary", 1, 2*time.Minute)
	waitDeployments(t, ns, 2*time.Minute)
	dir := t.TempDir()
	cfg := agentConfig(t, dir)

	for _, target := range []string{"rollout/canary", "ro/canary"} {
		out, errOut, code := runTether(t, dir, 2*time.Minute, "exec", "-f", cfg, "-n", ns, "-t", target, "--progress", "plain", "--", "printenv", "MARKER")
		if code != 0 || out != "rollout\n" {
			t.Fatalf("tether exec -t %s -- printenv MARKER: exit %d, stdout %q, want \"rollout\\n\"\nstderr:\n%s", target, code, out, errOut)
		}
	}
	_, errOut, code := runTether(t, dir, time.Minute, "exec", "-f", cfg, "-n", ns, "-t", "rollout/canry", "--", "printenv", "MARKER")
	if code != 1 || !strings.Contains(errOut, "Did you mean rollout/canary?") {
		t.Errorf("a misspelt rollout: exit %d, want 1 and \"Did you mean rollout/canary?\"\nstderr:\n%s", code, errOut)
	}
	out, errOut, code := runTether(t, dir, time.Minute, "ls", "-n", ns)
	if code != 0 || !strings.Contains(out, "rollout/canary") {
		t.Errorf("tether ls: exit %d, want rollout/canary listed\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}
