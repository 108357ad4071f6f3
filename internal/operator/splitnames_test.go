package operator

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	queuesv1 "github.com/tether-dev/tether/api/queues/v1alpha1"
)

func TestQueueNames(t *testing.T) {
	for _, tc := range []struct {
		sel            queuesv1.EnvSelector
		value          string
		name, replaced string
		wantErr        string
	}{
		{sel: queuesv1.EnvSelector{Env: "T"}, value: "visits", name: "visits", replaced: "NEW"},
		{sel: queuesv1.EnvSelector{Env: "U", Regex: `/queue/([^/?]+)`}, value: "http://sqs:9324/queue/visits?x=1", name: "visits", replaced: "http://sqs:9324/queue/NEW?x=1"},
		{sel: queuesv1.EnvSelector{Env: "U", Regex: `/queue/([^/]+)`}, value: "http://sqs:9324/other", wantErr: "does not match"},
		{sel: queuesv1.EnvSelector{Env: "U", Regex: `/queue/[^/]+`}, value: "http://sqs/queue/a", wantErr: "no capture group"},
		{sel: queuesv1.EnvSelector{Env: "U", Regex: `(`}, value: "x", wantErr: "regex"},
		{sel: queuesv1.EnvSelector{Env: "T"}, value: "", wantErr: "is empty"},
	} {
		name, err := nameIn(tc.sel, tc.value)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("nameIn(%+v, %q) = %q, %v; want error %q", tc.sel, tc.value, name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || name != tc.name {
			t.Errorf("nameIn(%+v, %q) = %q, %v; want %q", tc.sel, tc.value, name, err, tc.name)
		}
		got, err := withName(tc.sel, tc.value, "NEW")
		if err != nil || got != tc.replaced {
			t.Errorf("withName(%+v, %q) = %q, %v; want %q", tc.sel, tc.value, got, err, tc.replaced)
		}
	}
	if fallbackName("visits") != "visits-tether-fallback" || sessionQueueName("visits", "ab12") != "visits-tether-ab12" || fallbackName("") != "" ||
		fallbackName("visits.fifo") != "visits-tether-fallback.fifo" || sessionQueueName("visits.fifo", "ab12") != "visits-tether-ab12.fifo" {
		t.Error("temporary names changed: an operator that restarts would not find the queues of the one before")
	}
}

func TestValidateSplit(t *testing.T) {
	good := func() *queuesv1.QueueSplit {
		return &queuesv1.QueueSplit{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "n"}, Spec: queuesv1.QueueSplitSpec{
			Target: "deployment/consumer",
			Queues: []queuesv1.SplitQueue{{ID: "visits", Kind: "kafka", NameFrom: queuesv1.EnvSelector{Env: "T"}, GroupFrom: &queuesv1.EnvSelector{Env: "G"},
				Kafka: &queuesv1.KafkaBroker{Brokers: queuesv1.Value{Value: "kafka:9092"}}}},
		}}
	}
	for _, tc := range []struct {
		name    string
		edit    func(*queuesv1.QueueSplit)
		wantErr string
	}{
		{"good", func(*queuesv1.QueueSplit) {}, ""},
		{"pod target", func(q *queuesv1.QueueSplit) { q.Spec.Target = "pod/x" }, "patches a deployment or a statefulset"},
		{"bad target", func(q *queuesv1.QueueSplit) { q.Spec.Target = "nope/x" }, "unknown kind"},
		{"kafka without group", func(q *queuesv1.QueueSplit) { q.Spec.Queues[0].GroupFrom = nil }, "needs groupFrom.env"},
		{"kafka without brokers", func(q *queuesv1.QueueSplit) { q.Spec.Queues[0].Kafka = nil }, "needs kafka.brokers"},
		{"unknown kind", func(q *queuesv1.QueueSplit) { q.Spec.Queues[0].Kind = "pubsub" }, `unknown kind "pubsub"`},
		{"regex without capture", func(q *queuesv1.QueueSplit) { q.Spec.Queues[0].NameFrom.Regex = "a" }, "no capture group"},
	} {
		qs := good()
		tc.edit(qs)
		err := validateSplit(qs)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: validateSplit = %v, want %q", tc.name, err, tc.wantErr)
		}
	}
}

// TestPatchRoundTrip: restoring a patched container gives back exactly
// the container it was (values, ConfigMap references, variables that came
// from envFrom).
func TestPatchRoundTrip(t *testing.T) {
	orig := corev1.Container{Name: "app", Env: []corev1.EnvVar{
		{Name: "A", Value: "1"},
		{Name: "TOPIC", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Key: "topic"}}},
		{Name: "B", Value: "2"},
	}}
	c := *orig.DeepCopy()
	patched := []corev1.EnvVar{{Name: "TOPIC", Value: "t-tether-fallback"}, {Name: "GROUP", Value: "g-tether-fallback"}}
	p := queuesv1.WorkloadPatch{Original: []corev1.EnvVar{orig.Env[1]}, Added: []string{"GROUP"}, Patched: patched}
	if isPatched(&c, patched) {
		t.Fatal("isPatched before the patch")
	}
	setEnv(&c, patched)
	if !isPatched(&c, patched) || c.Env[1].ValueFrom != nil || c.Env[1].Value != "t-tether-fallback" || len(c.Env) != 4 {
		t.Fatalf("patched: %+v", c.Env)
	}
	restoreEnv(&c, p.Original, p.Added)
	if len(c.Env) != 3 || c.Env[1].ValueFrom == nil || c.Env[1].ValueFrom.ConfigMapKeyRef.Key != "topic" || c.Env[0].Value != "1" || c.Env[2].Value != "2" {
		t.Fatalf("restored: %+v", c.Env)
	}
	if isPatched(&c, patched) {
		t.Error("isPatched after restoring")
	}
}
