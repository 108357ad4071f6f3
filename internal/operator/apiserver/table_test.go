package apiserver

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tether-dev/tether/api/v1alpha1"
)

func TestTargetsTable(t *testing.T) {
	tg := v1alpha1.Target{
		ObjectMeta: metav1.ObjectMeta{Name: "deployment.web", Namespace: "demo"},
		Spec:       v1alpha1.TargetSpec{Kind: "deployment", Name: "web"},
		Status:     v1alpha1.TargetStatus{Pods: []v1alpha1.TargetPod{{Name: "web-1", Ready: true}, {Name: "web-2"}}},
	}
	one, err := (&targets{}).ConvertToTable(context.Background(), &tg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := one.Rows[0].Cells; len(got) != 4 || got[0] != "deployment.web" || got[1] != "deployment" || got[2] != "web" || got[3] != "1/2" {
		t.Errorf("get: cells %v, want deployment.web deployment web 1/2", got)
	}
	list, err := (&targets{}).ConvertToTable(context.Background(), &v1alpha1.TargetList{Items: []v1alpha1.Target{tg, tg}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Rows) != 2 || list.Rows[1].Cells[3] != "" {
		t.Errorf("list: %d rows, pods cell %q; want 2 rows without pod counts (a list does not read pods)", len(list.Rows), list.Rows[1].Cells[3])
	}
	if len(one.ColumnDefinitions) != 4 {
		t.Errorf("%d columns, want 4", len(one.ColumnDefinitions))
	}
	if _, err := (&targets{}).ConvertToTable(context.Background(), &v1alpha1.Session{}, nil); err == nil {
		t.Error("a table of a Session: no error")
	}
}
