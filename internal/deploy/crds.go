package deploy

import (
	"context"
	"embed"
	"fmt"
	"path"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	queuesv1 "github.com/tether-dev/tether/api/queues/v1alpha1"
)

// The CustomResourceDefinitions, as hack/generate.sh makes them from
// api/ (TestGenerated checks they are current).
//
//go:embed crds/*.yaml
var crdFiles embed.FS

// crds returns the CRDs as objects, with install's labels.
func crds() ([]*unstructured.Unstructured, error) {
	entries, err := crdFiles.ReadDir("crds")
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, e := range entries {
		b, err := crdFiles.ReadFile(path.Join("crds", e.Name()))
		if err != nil {
			return nil, err
		}
		var obj map[string]any
		if err := yaml.Unmarshal(b, &obj); err != nil {
			return nil, fmt.Errorf("CRD %s: %w", e.Name(), err)
		}
		u := &unstructured.Unstructured{Object: obj}
		u.SetLabels(labels())
		out = append(out, u)
	}
	return out, nil
}

// removeSplits deletes every QueueSplit and waits until they are gone:
// the operator, still running, restores the workloads they patched and
// drains their queues back (their finalizer holds them until then).
func removeSplits(ctx context.Context, dyn dynamic.Interface, say func(string)) error {
	ri := dyn.Resource(queuesv1.GroupVersionResource)
	list, err := ri.List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return nil // no CRD
	}
	if err != nil {
		return fmt.Errorf("listing the QueueSplits: %w", err)
	}
	for _, qs := range list.Items {
		err := ri.Namespace(qs.GetNamespace()).Delete(ctx, qs.GetName(), metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting QueueSplit %s/%s: %w", qs.GetNamespace(), qs.GetName(), err)
		}
		if say != nil {
			say("QueueSplit " + qs.GetNamespace() + "/" + qs.GetName())
		}
	}
	var left []string
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := ri.List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		left = left[:0]
		for _, qs := range list.Items {
			left = append(left, qs.GetNamespace()+"/"+qs.GetName())
		}
		return len(left) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("QueueSplits %s are still restoring their workloads after 2 minutes (kubectl describe queuesplit -n NS NAME says why); run uninstall again once they are gone: %w", strings.Join(left, ", "), err)
	}
	return nil
}
