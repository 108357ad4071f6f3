package apiserver

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/tether-dev/tether/api/v1alpha1"
)

// ConvertToTable is kubectl get sessions' table.
func (s *sessions) ConvertToTable(_ context.Context, obj runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	t := &metav1.Table{ColumnDefinitions: []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string", Format: "name"},
		{Name: "User", Type: "string"},
		{Name: "Target", Type: "string"},
		{Name: "Pods", Type: "integer"},
		{Name: "Incoming", Type: "string"},
		{Name: "Client", Type: "string", Priority: 1},
		{Name: "Age", Type: "string"},
	}}
	var items []v1alpha1.Session
	switch o := obj.(type) {
	case *v1alpha1.Session:
		items = []v1alpha1.Session{*o}
	case *v1alpha1.SessionList:
		items = o.Items
		t.ResourceVersion = o.ResourceVersion
	default:
		return nil, fmt.Errorf("a table of %T", obj)
	}
	for i := range items {
		s := &items[i]
		t.Rows = append(t.Rows, metav1.TableRow{
			Cells:  []any{s.Name, s.Spec.User, s.Spec.Target, int64(len(s.Status.Pods)), s.Incoming(), s.Spec.Client, duration.HumanDuration(time.Since(s.Status.Started.Time))},
			Object: runtime.RawExtension{Object: s},
		})
	}
	if m, err := meta.ListAccessor(obj); err == nil {
		t.Continue = m.GetContinue()
	}
	return t, nil
}

// ConvertToTable is kubectl get targets' table (targets have no age of
// their own: they are views of workloads).
func (t *targets) ConvertToTable(_ context.Context, obj runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	tab := &metav1.Table{ColumnDefinitions: []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string", Format: "name"},
		{Name: "Kind", Type: "string"},
		{Name: "Workload", Type: "string"},
		{Name: "Pods", Type: "string", Description: "ready pods / pods (get only)"},
	}}
	var items []v1alpha1.Target
	switch o := obj.(type) {
	case *v1alpha1.Target:
		items = []v1alpha1.Target{*o}
	case *v1alpha1.TargetList:
		items = o.Items
	default:
		return nil, fmt.Errorf("a table of %T", obj)
	}
	for i := range items {
		tg := &items[i]
		pods := ""
		if _, single := obj.(*v1alpha1.Target); single {
			ready := 0
			for _, p := range tg.Status.Pods {
				if p.Ready {
					ready++
				}
			}
			pods = fmt.Sprintf("%d/%d", ready, len(tg.Status.Pods))
		}
		tab.Rows = append(tab.Rows, metav1.TableRow{
			Cells:  []any{tg.Name, tg.Spec.Kind, tg.Spec.Name, pods},
			Object: runtime.RawExtension{Object: tg},
		})
	}
	return tab, nil
}
