package operator

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/tether-dev/tether/internal/kube"
)

// Event reasons: the audit trail on each target.
const (
	ReasonStarted = "TetherSessionStarted"
	ReasonEnded   = "TetherSessionEnded"
	ReasonRefused = "TetherRefused"
	ReasonKilled  = "TetherSessionKilled"
	// Queue splitting: a session's split, the workload's patch and its
	// restoring, failures that need a person.
	ReasonSplitStarted = "TetherSplitStarted"
	ReasonSplitEnded   = "TetherSplitEnded"
	ReasonPatched      = "TetherWorkloadPatched"
	ReasonRestored     = "TetherWorkloadRestored"
	ReasonSplitFailed  = "TetherSplitFailed"
)

// targetRef is the object Events about target spec in ns are recorded
// on: the workload (or pod) itself, with its UID when it can be read.
func (o *Operator) targetRef(ctx context.Context, ns string, spec kube.TargetSpec) *corev1.ObjectReference {
	ref := &corev1.ObjectReference{Namespace: ns, Name: spec.Name}
	var meta *metav1.ObjectMeta
	opts := metav1.GetOptions{}
	switch spec.Kind {
	case kube.KindPod:
		ref.Kind, ref.APIVersion = "Pod", "v1"
		if p, err := o.Client.CoreV1().Pods(ns).Get(ctx, spec.Name, opts); err == nil {
			meta = &p.ObjectMeta
		}
	case kube.KindDeployment:
		ref.Kind, ref.APIVersion = "Deployment", "apps/v1"
		if d, err := o.Client.AppsV1().Deployments(ns).Get(ctx, spec.Name, opts); err == nil {
			meta = &d.ObjectMeta
		}
	case kube.KindStatefulSet:
		ref.Kind, ref.APIVersion = "StatefulSet", "apps/v1"
		if d, err := o.Client.AppsV1().StatefulSets(ns).Get(ctx, spec.Name, opts); err == nil {
			meta = &d.ObjectMeta
		}
	case kube.KindReplicaSet:
		ref.Kind, ref.APIVersion = "ReplicaSet", "apps/v1"
		if d, err := o.Client.AppsV1().ReplicaSets(ns).Get(ctx, spec.Name, opts); err == nil {
			meta = &d.ObjectMeta
		}
	case kube.KindJob:
		ref.Kind, ref.APIVersion = "Job", "batch/v1"
		if d, err := o.Client.BatchV1().Jobs(ns).Get(ctx, spec.Name, opts); err == nil {
			meta = &d.ObjectMeta
		}
	case kube.KindCronJob:
		ref.Kind, ref.APIVersion = "CronJob", "batch/v1"
		if d, err := o.Client.BatchV1().CronJobs(ns).Get(ctx, spec.Name, opts); err == nil {
			meta = &d.ObjectMeta
		}
	case kube.KindService:
		ref.Kind, ref.APIVersion = "Service", "v1"
		if d, err := o.Client.CoreV1().Services(ns).Get(ctx, spec.Name, opts); err == nil {
			meta = &d.ObjectMeta
		}
	case kube.KindRollout:
		ref.Kind, ref.APIVersion = "Rollout", "argoproj.io/v1alpha1"
	default:
		ref.Kind, ref.APIVersion, ref.Name = "Namespace", "v1", ns
		ref.Namespace = ""
	}
	if meta != nil {
		ref.UID, ref.ResourceVersion = meta.UID, meta.ResourceVersion
	}
	return ref
}

// event records an Event on target spec in ns.
func (o *Operator) event(ctx context.Context, ns string, spec kube.TargetSpec, kind, reason, format string, args ...any) {
	if o.Events == nil {
		return
	}
	o.Events.Eventf(o.targetRef(ctx, ns, spec), kind, reason, format, args...)
}

// refused records and logs that u was refused verb on a target.
func (o *Operator) refused(ctx context.Context, u user.Info, ns string, spec kube.TargetSpec, verb, msg string) {
	o.log().Warn("refused", "user", u.GetName(), "groups", u.GetGroups(), "namespace", ns, "target", spec.String(), "verb", verb, "why", msg)
	o.event(ctx, ns, spec, corev1.EventTypeWarning, ReasonRefused, "%s", truncate(msg))
}

// truncate keeps an Event's message within what the API takes.
func truncate(s string) string {
	const max = 1000
	if len(s) > max {
		return s[:max-3] + "..."
	}
	return s
}
