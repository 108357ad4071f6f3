package operator

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestGitOps: the managers whose sync would undo a split's patch are
// named from their annotations and labels.
func TestGitOps(t *testing.T) {
	for _, tc := range []struct {
		name                string
		labels, annotations map[string]string
		want                string
	}{
		{"none", nil, nil, ""},
		{"Argo CD tracking id", nil, map[string]string{"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/web"}, "Argo CD (shop:apps/Deployment:shop/web)"},
		{"Argo CD instance label", map[string]string{"argocd.argoproj.io/instance": "shop"}, nil, "Argo CD (application shop)"},
		{"Argo CD with the standard label", map[string]string{"app.kubernetes.io/instance": "shop"}, map[string]string{"argocd.argoproj.io/sync-options": "Prune=false"}, "Argo CD (application shop)"},
		{"the standard label alone is Helm's too", map[string]string{"app.kubernetes.io/instance": "shop"}, nil, ""},
		{"Flux kustomization", map[string]string{"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}, nil, "Flux (kustomization flux-system/apps)"},
		{"Flux helm release", map[string]string{"helm.toolkit.fluxcd.io/name": "web", "helm.toolkit.fluxcd.io/namespace": "shop"}, nil, "Flux (helm release shop/web)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := workload{deploy: &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Labels: tc.labels, Annotations: tc.annotations}}}
			if got := gitOps(w); got != tc.want {
				t.Errorf("gitOps = %q, want %q", got, tc.want)
			}
		})
	}
}
